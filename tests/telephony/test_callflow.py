"""A call's steps between webhooks: the round trips a webhook costs, and the row
an instance wrote last, which must never make a stale call move."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any, cast

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from ivr import keys
from ivr.config import Settings
from ivr.content import Content
from ivr.routing.progress import Phase, Progress
from ivr.routing.signals import Action
from ivr.routing.steps import WarmStep
from ivr.storage import calls as db
from ivr.storage import queue
from ivr.storage.callwrites import CallWrites
from ivr.telephony.rest import Leg
from tests.helpers import (
    call_params,
    new_sid,
    parse_twiml,
    post_signed,
    server_on,
    staff_all,
)
from tests.waiting import eventually

STATEMENTS = ("fetch", "fetchrow", "fetchval", "execute", "executemany")


class CountingPool:
    """The server's own pool, passed through, counting the statements a webhook
    sends: those of request tasks only (the dispatcher's ticks run in tasks of
    their own, at any moment)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.sent: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.pool, name)
        if name not in STATEMENTS:
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            if in_request():
                self.sent.append(str(args[0]))
            return await attr(*args, **kwargs)

        return counted


def in_request() -> bool:
    """Whether the running task is aiohttp's handling of a request."""
    task = asyncio.current_task()
    coro = task.get_coro() if task is not None else None
    return "RequestHandler" in getattr(coro, "__qualname__", "")


def count_statements(server: TestServer) -> CountingPool:
    """Every pool the webhooks use (call flow, transfers, REST health) counted."""
    app = server.app
    counting = CountingPool(app[keys.pool])
    pool = cast(asyncpg.Pool, counting)
    app[keys.callflow].pool = pool
    app[keys.callflow].writes = CallWrites(pool)
    app[keys.callflow].early.pool = pool
    app[keys.transfers].pool = pool
    app[keys.transfers].health.pool = pool
    return counting


async def counted(counting: CountingPool, work: Callable[[], Any]) -> int:
    before = len(counting.sent)
    await work()
    return len(counting.sent) - before


async def test_a_menu_answer_where_the_menu_was_written_costs_one_statement(
    server: TestServer, settings: Settings
) -> None:
    counting = count_statements(server)
    sid, base = new_sid(), settings.public_url
    async with aiohttp.ClientSession() as s:
        await post_signed(s, base + "/twilio/voice", call_params(sid))

        async def wrong_key() -> None:
            _, body = await post_signed(s, base + "/twilio/gather?seq=1",
                                        call_params(sid, Digits="9"))
            assert parse_twiml(body).find("Gather") is not None  # asked again

        # The guarded write alone: no read of the row this instance just wrote.
        assert await counted(counting, wrong_key) == 1
    row = await db.load_call(server.app[keys.pool], sid)
    assert row is not None and row.seq == 2 and row.phase == "flow"


async def test_callers_arriving_together_share_statements(
    server: TestServer, settings: Settings
) -> None:
    """Concurrent webhooks write through the grouped writes (callwrites.py):
    each caller gets their menu and their own row, in fewer statements."""
    creates = server.app[keys.callflow].writes.creates
    before = (creates.statements, creates.writes)
    sids, base = [new_sid() for _ in range(20)], settings.public_url
    async with aiohttp.ClientSession() as s:
        answers = await asyncio.gather(
            *(post_signed(s, base + "/twilio/voice", call_params(sid)) for sid in sids))
    assert all(parse_twiml(body).find(".//Gather") is not None for _, body in answers)
    statements, writes = creates.statements - before[0], creates.writes - before[1]
    assert writes == 20 and statements < writes
    for sid in sids:
        row = await db.load_call(server.app[keys.pool], sid)
        assert row is not None and row.seq == 1 and row.phase == "flow"


async def test_an_incoming_call_lined_up_early_costs_one_statement(
    server: TestServer, settings: Settings
) -> None:
    """The menu's silence leads to the crisis queue: the caller is lined up early
    (preoffer.py) by the statement that writes the call row. Who is free is
    not read, counselors on shift or not: the dispatcher's claim, woken by the
    line-up, rings one."""
    await staff_all(server)
    counting = count_statements(server)
    rest = server.app[keys.transfers].rest
    place_call = rest.place_call
    legs: list[str] = []

    async def placing(**kwargs: Any) -> Any:
        legs.append(kwargs["to"])
        return await place_call(**kwargs)

    rest.place_call = placing  # type: ignore[method-assign]
    sid, base = new_sid(), settings.public_url
    async with aiohttp.ClientSession() as s:

        async def incoming() -> None:
            _, body = await post_signed(s, base + "/twilio/voice", call_params(sid))
            assert parse_twiml(body).find("Gather") is not None

        assert await counted(counting, incoming) == 1
    assert "INSERT INTO calls" in counting.sent[-1] and "INSERT INTO waiting" in counting.sent[-1]
    pool = server.app[keys.pool]
    row = await db.load_call(pool, sid)
    assert row is not None and row.transfer is not None
    early = Progress.from_json(row.transfer)
    assert early.phase is Phase.EARLY and early.queue == "crisis"
    waiting = await pool.fetchrow("SELECT queue, tier_index, tier_kind, eligible FROM waiting"
                                  " WHERE call_sid = $1", sid)
    step = early.steps[0]
    assert isinstance(step, WarmStep)
    assert waiting is not None and (waiting["queue"], waiting["tier_index"]) == ("crisis", 0)
    assert (waiting["tier_kind"], tuple(waiting["eligible"])) == (step.tier, step.counselors)
    # The dispatcher rings someone (the leg fails: no REST API here).
    await eventually(lambda: bool(legs), "a counselor rung")
    assert legs


async def test_a_menu_answer_that_dials_costs_one_statement(
    server: TestServer, settings: Settings
) -> None:
    """Spanish with nobody on shift: the transfer starts on a dial step. The
    instance's view of who is on shift (onshift.py) says none of the warm
    tier's counselors can be free: who is free is not read, the write of the
    row checks it (and that the REST API works), stamping the transfer's
    start and its first ring. With nobody on shift the caller was not lined
    up early either: no line to leave."""
    counting = count_statements(server)
    sid, base = new_sid(), settings.public_url
    async with aiohttp.ClientSession() as s:
        await post_signed(s, base + "/twilio/voice", call_params(sid))

        async def spanish() -> None:
            _, body = await post_signed(s, base + "/twilio/gather?seq=1",
                                        call_params(sid, Digits="2"))
            dial = parse_twiml(body).find("Dial")
            assert dial is not None and "/twilio/dial" in dial.get("action", "")

        assert await counted(counting, spanish) == 1
    stamps = await server.app[keys.pool].fetchrow(
        "SELECT transfer_started_at, first_ring_at FROM calls WHERE call_sid = $1", sid)
    assert stamps["transfer_started_at"] is not None and stamps["first_ring_at"] is not None


async def test_a_counselor_free_unbeknown_to_the_view_is_not_skipped(
    server: TestServer, settings: Settings
) -> None:
    """The view says nobody is on shift, but a counselor is available (set
    without the NOTIFY the view listens to): the menu answer's write finds
    them and misses, and the answer is taken again over a read of who is
    free. The caller holds for the counselor's tier, not the dial step."""
    pool, base = server.app[keys.pool], settings.public_url
    on_shift = server.app[keys.callflow].early.on_shift
    assert on_shift is not None and not on_shift.may_ring(["tx-ana"])
    sid = new_sid()
    async with aiohttp.ClientSession() as s:
        await post_signed(s, base + "/twilio/voice", call_params(sid))
        await pool.execute("UPDATE counselors SET presence = 'available', idle_since = now()"
                           " WHERE id = 'tx-ana'")
        assert not on_shift.may_ring(["tx-ana"])  # not heard: the view is stale
        _, body = await post_signed(s, base + "/twilio/gather?seq=1",
                                    call_params(sid, Digits="2"))
    answer = parse_twiml(body)
    assert answer.find("Dial/Conference") is not None, body  # holding, not dialing out
    row = await db.load_call(pool, sid)
    assert row is not None and row.transfer is not None
    p = Progress.from_json(row.transfer)
    assert p.phase is Phase.HOLDING and isinstance(p.step, WarmStep)
    assert "tx-ana" in p.step.counselors


async def test_nobody_on_shift_who_could_be_rung_means_no_early_line_up(
    server: TestServer, settings: Settings
) -> None:
    """An early line-up could ring nobody while every counselor is offline: the
    caller is not lined up (onshift.py). A counselor coming on shift is heard
    (the routing NOTIFY): the next caller is lined up early again."""
    pool, base = server.app[keys.pool], settings.public_url
    assert await pool.fetchval("SELECT count(*) FROM counselors WHERE presence <> 'offline'") == 0

    async def incoming(sid: str) -> db.CallRow:
        async with aiohttp.ClientSession() as s:
            _, body = await post_signed(s, base + "/twilio/voice", call_params(sid))
        assert parse_twiml(body).find("Gather") is not None  # the menu, either way
        row = await db.load_call(pool, sid)
        assert row is not None
        return row

    alone = new_sid()
    assert (await incoming(alone)).transfer is None
    assert await pool.fetchval("SELECT count(*) FROM waiting WHERE call_sid = $1", alone) == 0
    await staff_all(server)
    staffed = new_sid()
    row = await incoming(staffed)
    assert row.transfer is not None and Progress.from_json(row.transfer).phase is Phase.EARLY
    assert await pool.fetchval("SELECT count(*) FROM waiting WHERE call_sid = $1", staffed) == 1


async def test_a_menu_answer_that_queues_the_caller_leaves_the_ring_to_the_dispatcher(
    server: TestServer, settings: Settings
) -> None:
    """Spanish with counselors on shift: the request reads who is free, writes the
    row, puts the caller on the line (where they were lined up early while
    the menu played, preoffer.py: they arrive at its tier) and records the
    tier's deadline; matching a counselor and placing their
    leg (a REST request) are the dispatcher's, in tasks of their own."""
    await staff_all(server)
    counting = count_statements(server)
    rest = server.app[keys.transfers].rest
    place_call = rest.place_call
    legs_from_requests: list[str] = []
    legs: list[str] = []

    async def placing(**kwargs: Any) -> Any:
        (legs_from_requests if in_request() else legs).append(kwargs["to"])
        return await place_call(**kwargs)

    rest.place_call = placing  # type: ignore[method-assign]
    # The caller is lined up early at the voice webhook, so the dispatcher may
    # ring a counselor for them while the menu plays. Its passes wait for the
    # menu answer: rung first, that offer would change the row under the
    # answer (taken again: more statements), and its leg, failing with no
    # REST API here, would mark the API degraded, which rightly sends the
    # arriving caller to a dial step.
    transfers = server.app[keys.transfers]
    dispatch_once = transfers.dispatch_once
    answered = asyncio.Event()

    async def after_the_answer() -> None:
        await answered.wait()
        await dispatch_once()

    transfers.dispatch_once = after_the_answer  # type: ignore[method-assign]
    sid, base = new_sid(), settings.public_url
    async with aiohttp.ClientSession() as s:
        await post_signed(s, base + "/twilio/voice", call_params(sid))

        async def spanish() -> None:
            try:
                _, body = await post_signed(s, base + "/twilio/gather?seq=1",
                                            call_params(sid, Digits="2"))
            finally:
                answered.set()
            assert parse_twiml(body).find("Dial/Conference") is not None

        # Who is free, the row, the arrival on the line, the tier's deadline
        # (a stored timer, so any instance ends the tier on time).
        assert await counted(counting, spanish) == 4
        assert any("ivr_early_arrived" in sql for sql in counting.sent[-4:])
        assert any("INSERT INTO timers" in sql for sql in counting.sent[-4:])
        # The dispatcher rings someone (the leg fails: no REST API here).
        await eventually(lambda: bool(legs), "a counselor rung")
    assert legs and not legs_from_requests


async def early_caller_rung(server: TestServer, settings: Settings,
                            s: aiohttp.ClientSession) -> str:
    """A new caller, lined up early at the menu, whose counselor's phone rings."""
    await staff_all(server)
    pool = server.app[keys.pool]
    rest = server.app[keys.transfers].rest

    async def placing(**kwargs: Any) -> Leg:
        return Leg(f"CL{kwargs['to'][-6:]}", "queued")  # the counselor's phone rings

    rest.place_call = placing  # type: ignore[method-assign]
    sid = new_sid()
    await post_signed(s, settings.public_url + "/twilio/voice", call_params(sid))

    async def rung() -> bool:
        row = await db.load_call(pool, sid)
        return bool(row and row.transfer and Progress.from_json(row.transfer).offer)

    await eventually(rung, "the early caller's counselor rung")
    return sid


def kept_offer(server: TestServer, sid: str) -> Callable[[], bool]:
    """Whether the row kept for the caller's answer holds their early offer."""
    def check() -> bool:
        row = server.app[keys.callflow].written.get(sid)
        return bool(row and row.transfer and Progress.from_json(row.transfer).offer)
    return check


async def test_a_menu_answer_after_the_early_offer_rang_writes_once(
    server: TestServer, settings: Settings
) -> None:
    """Lined up early, the caller is offered to a counselor while the menu still
    plays: ringing them stores the offer in the call row, under the copy this
    instance kept. The copy is read again off the request path, and the answer
    writes once, with no read; stepped from the old copy its write would miss
    first (three statements)."""
    pool = server.app[keys.pool]
    counting = count_statements(server)
    async with aiohttp.ClientSession() as s:
        sid = await early_caller_rung(server, settings, s)
        await eventually(kept_offer(server, sid), "the kept row read again, with the offer")

        async def wrong_key() -> None:
            _, body = await post_signed(s, settings.public_url + "/twilio/gather?seq=1",
                                        call_params(sid, Digits="9"))
            assert parse_twiml(body).find("Gather") is not None  # asked again

        assert await counted(counting, wrong_key) == 1
    assert "UPDATE calls" in counting.sent[-1]
    row = await db.load_call(pool, sid)
    assert row is not None and row.seq == 2 and row.transfer is not None
    p = Progress.from_json(row.transfer)
    assert p.phase is Phase.EARLY and p.offer is not None  # the offer stays


async def test_a_menu_answer_before_the_row_is_read_again_reads_instead_of_missing(
    server: TestServer, settings: Settings
) -> None:
    """The answer comes before the row changed under the kept copy is read again
    (here: the copy forgotten by hand, as it is until that read lands): it
    reads the row and writes once, never from the old copy."""
    counting = count_statements(server)
    async with aiohttp.ClientSession() as s:
        sid = await early_caller_rung(server, settings, s)
        await eventually(kept_offer(server, sid), "the kept row read again")
        server.app[keys.callflow].written.drop(sid)

        async def wrong_key() -> None:
            await post_signed(s, settings.public_url + "/twilio/gather?seq=1",
                              call_params(sid, Digits="9"))

        assert await counted(counting, wrong_key) == 2
    assert not any("UPDATE" in sql for sql in counting.sent[-2:-1])  # no write missed


async def test_the_menu_end_with_a_counselor_waiting_is_one_statement(
    server: TestServer, settings: Settings
) -> None:
    """The counselor offered early accepts while the menu plays and waits in the
    caller's conference; the menu's silence then puts the caller through by
    TwiML alone: one guarded write in the webhook, the accept's confirmation
    after the answer (preoffer.py)."""
    app = server.app
    pool = app[keys.pool]
    counting = count_statements(server)
    async with aiohttp.ClientSession() as s:
        sid = await early_caller_rung(server, settings, s)
        offer_id = await pool.fetchval(
            "SELECT id FROM offers WHERE call_sid = $1 ORDER BY id DESC LIMIT 1", sid)
        joined = parse_twiml(await app[keys.transfers].whisper_answer(offer_id, "1"))
        assert joined.find(".//Conference") is not None  # she waits for the caller

        def accepted() -> bool:
            row = app[keys.callflow].written.get(sid)
            if not (row and row.transfer):
                return False
            offer = Progress.from_json(row.transfer).offer
            return offer is not None and offer.accepted

        await eventually(accepted, "the kept row read again, with the accept")
        body = ""

        async def silence() -> None:
            nonlocal body
            _, body = await post_signed(s, settings.public_url + "/twilio/gather?seq=1",
                                        call_params(sid))

        assert await counted(counting, silence) == 1
    assert "UPDATE calls" in counting.sent[-1]
    conference = parse_twiml(body).find(".//Conference")
    assert conference is not None and conference.text == f"call-{sid}"
    row = await db.load_call(pool, sid)
    assert row is not None and row.phase == "transfer" and row.transfer is not None
    assert Progress.from_json(row.transfer).phase is Phase.CONNECTED


def abandoned_count(server: TestServer) -> float:
    registry = server.app[keys.metrics].registry
    return registry.get_sample_value("ivr_calls_total", {"outcome": "abandoned"}) or 0.0


def first_rings(server: TestServer) -> float:
    registry = server.app[keys.metrics].registry
    return registry.get_sample_value("ivr_time_to_first_ring_seconds_count") or 0.0


async def test_a_caller_hanging_up_while_a_dial_step_rings_costs_one_statement(
    server: TestServer, settings: Settings
) -> None:
    """The status callback of a caller who hangs up during their transfer's dial
    step: the status, the transfer left (Phase.GONE) and the call counted
    abandoned (row and metrics, with its time to first ring) in one statement,
    from the transfer this instance wrote at the menu answer."""
    counting = count_statements(server)
    pool, sid, base = server.app[keys.pool], new_sid(), settings.public_url
    abandoned, rings = abandoned_count(server), first_rings(server)
    async with aiohttp.ClientSession() as s:
        await post_signed(s, base + "/twilio/voice", call_params(sid))
        await post_signed(s, base + "/twilio/gather?seq=1", call_params(sid, Digits="2"))

        async def hang_up() -> None:
            status, _ = await post_signed(s, base + "/twilio/status",
                                          call_params(sid, CallStatus="completed"))
            assert status == 204

        assert await counted(counting, hang_up) == 1
    row = await pool.fetchrow("SELECT phase, transfer, abandoned, ended_at, twilio_status"
                              " FROM calls WHERE call_sid = $1", sid)
    assert (row["phase"], row["abandoned"], row["twilio_status"]) == ("ended", True, "completed")
    assert row["ended_at"] is not None
    assert Progress.from_json(row["transfer"]).phase is Phase.GONE
    assert (await db.events_of(pool, sid))[-1][0] == "status"
    assert abandoned_count(server) == abandoned + 1
    assert first_rings(server) == rings + 1


async def test_a_hang_up_answered_where_the_transfer_was_written_does_not_decode_it(
    server: TestServer, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The instance that wrote the caller's transfer at the menu answer keeps it
    decoded with the row: the hang-up's status callback leaves it without
    decoding the row's JSON again (and ends it as the one-statement test above
    checks)."""
    decoded: list[object] = []
    from_json = Progress.from_json

    def counting(data: Any) -> Progress:
        decoded.append(data)
        return from_json(data)

    sid, base = new_sid(), settings.public_url
    async with aiohttp.ClientSession() as s:
        await post_signed(s, base + "/twilio/voice", call_params(sid))
        await post_signed(s, base + "/twilio/gather?seq=1", call_params(sid, Digits="2"))
        monkeypatch.setattr(Progress, "from_json", staticmethod(counting))
        status, _ = await post_signed(s, base + "/twilio/status",
                                      call_params(sid, CallStatus="completed"))
        monkeypatch.undo()
    assert status == 204 and decoded == []
    row = await db.load_call(server.app[keys.pool], sid)
    assert row is not None and row.phase == "ended" and row.transfer is not None
    assert Progress.from_json(row.transfer).phase is Phase.GONE


async def test_a_hang_up_after_the_transfer_moved_elsewhere_leaves_the_stored_one(
    server: TestServer, settings: Settings
) -> None:
    """The transfer this instance wrote is no longer the row's (another instance,
    a dial result, moved it): the one statement stores the status only, and
    the caller leaves the transfer the row holds, as before."""
    pool, sid, base = server.app[keys.pool], new_sid(), settings.public_url
    abandoned = abandoned_count(server)
    async with aiohttp.ClientSession() as s:
        await post_signed(s, base + "/twilio/voice", call_params(sid))
        await post_signed(s, base + "/twilio/gather?seq=1", call_params(sid, Digits="2"))
        kept = server.app[keys.callflow].written.get(sid)
        assert kept is not None and kept.transfer is not None
        moved = {**kept.transfer, "stage": Progress.from_json(kept.transfer).stage + 1}
        await pool.execute("UPDATE calls SET transfer = $2 WHERE call_sid = $1", sid, moved)
        status, _ = await post_signed(s, base + "/twilio/status",
                                      call_params(sid, CallStatus="completed"))
        assert status == 204
    row = await pool.fetchrow("SELECT phase, transfer, abandoned FROM calls WHERE call_sid = $1",
                              sid)
    assert (row["phase"], row["abandoned"]) == ("ended", True)
    gone = Progress.from_json(row["transfer"])
    assert gone.phase is Phase.GONE and gone.stage == moved["stage"]  # left the row's transfer
    assert abandoned_count(server) == abandoned + 1


@pytest.fixture
async def other(other_settings: Settings, content: Content) -> AsyncIterator[TestServer]:
    """A second instance on the same database."""
    async with server_on(other_settings, content) as srv:
        yield srv


async def test_a_call_moved_by_another_instance_is_read_not_stepped_again(
    server: TestServer, other: TestServer, settings: Settings, other_settings: Settings
) -> None:
    sid, here, there = new_sid(), settings.public_url, other_settings.public_url
    async with aiohttp.ClientSession() as s:
        await post_signed(s, here + "/twilio/voice", call_params(sid))
        _, spanish = await post_signed(s, there + "/twilio/gather?seq=1",
                                       call_params(sid, Digits="2"))
        # A retry reaches the first instance, whose own row still says seq 1.
        _, retried = await post_signed(s, here + "/twilio/gather?seq=1",
                                       call_params(sid, Digits="1"))
    assert retried == spanish
    events = await db.events_of(server.app[keys.pool], sid)
    assert [kind for kind, _ in events].count("transfer") == 1
    assert events[-1][0] == "replayed"
    assert server.app[keys.callflow].written.get(sid) is None  # the stale row is gone


async def test_a_call_ended_elsewhere_is_not_stepped_from_the_row_written_here(
    server: TestServer, other: TestServer, settings: Settings, other_settings: Settings
) -> None:
    """A final status ends a call without a new seq: the seq alone would let a
    late menu answer start a transfer for a caller who is gone."""
    sid, here, there = new_sid(), settings.public_url, other_settings.public_url
    async with aiohttp.ClientSession() as s:
        _, menu = await post_signed(s, here + "/twilio/voice", call_params(sid))
        await post_signed(s, there + "/twilio/status", call_params(sid, CallStatus="completed"))
        # Twilio reports the end with the status callback; a menu answer that was
        # already on its way arrives after it, still marked in progress.
        _, late = await post_signed(s, here + "/twilio/gather?seq=1",
                                    call_params(sid, CallStatus="in-progress", Digits="2"))
    assert late == menu
    row = await db.load_call(server.app[keys.pool], sid)
    assert row is not None and row.phase == "ended" and row.seq == 1
    # No transfer began: at most the early line-up of the menu, ended with the caller.
    assert row.transfer is None or Progress.from_json(row.transfer).phase is Phase.GONE


async def test_kept_rows_are_bounded() -> None:
    kept: db.LastWritten[object] = db.LastWritten(size=2)
    rows = [db.CallRow(f"CA{i}", 1, "flow", {}, None, "<Response/>", None, None, None)
            for i in range(3)]
    for row in rows:
        kept.put(row)
    assert len(kept) == 2 and kept.get("CA0") is None and kept.get("CA2") == rows[2]
    kept.drop("CA2")
    assert kept.get("CA2") is None


async def test_a_kept_rows_decoded_transfer_is_only_the_kept_rows() -> None:
    kept: db.LastWritten[str] = db.LastWritten()
    row = db.CallRow("CA1", 2, "transfer", {}, {"index": 0}, "<Response/>", None, None, None)
    kept.put(row, "decoded")
    assert kept.decoded(row) == "decoded"
    # The same call read from the database (another object, maybe newer): decoded anew.
    assert kept.decoded(replace(row, transfer={"index": 1})) is None
    assert kept.decoded(replace(row)) is None
    kept.put(row)  # kept without its decoded transfer
    assert kept.decoded(row) is None
    kept.put(row, "decoded")
    kept.drop("CA1")
    assert kept.decoded(row) is None


async def test_an_early_caller_arriving_is_not_moved_on_by_their_early_line(
    server: TestServer, settings: Settings
) -> None:
    """A caller offered early whose early counselors were all offered reaches the
    transfer: their row is written before their line row reaches the tier (which
    held only the counselors fitting every language). A dispatcher pass in
    between must not find the tier spent and move them on: the tier's other
    counselors are still to be rung."""
    await staff_all(server)
    app = server.app
    pool = app[keys.pool]
    transfers = app[keys.transfers]

    async def claimed(offers: Sequence[Any]) -> None:
        pass  # no leg placed (no REST API here): the test ends the offers itself

    transfers.claimed = claimed
    early = app[keys.callflow].early
    arrival = early.carry_out

    async def dispatcher_first(sid: str, p: Progress, actions: Sequence[Action]) -> None:
        await transfers.dispatch_once()  # a pass landing between the two writes
        await arrival(sid, p, actions)

    sid, base = new_sid(), settings.public_url
    async with aiohttp.ClientSession() as s:
        await post_signed(s, base + "/twilio/voice", call_params(sid))
        eligible: list[str] = []

        async def all_offered_and_declined() -> bool:
            eligible[:] = await pool.fetchval(
                "SELECT eligible FROM waiting WHERE call_sid = $1", sid)
            offers = await pool.fetch(
                "SELECT id, counselor_id, state FROM offers WHERE call_sid = $1", sid)
            for offer in offers:
                if offer["state"] == "ringing":
                    await queue.offer_missed(pool, offer["id"], "declined")
            return bool(offers) and set(eligible) <= {o["counselor_id"] for o in offers}

        await eventually(all_offered_and_declined,
                         "every early counselor offered, and the offer declined")
        early.carry_out = dispatcher_first  # type: ignore[method-assign]
        _, body = await post_signed(s, base + "/twilio/gather?seq=1",
                                    call_params(sid, Digits="2"))
        assert parse_twiml(body).find("Dial/Conference") is not None
    row = await db.load_call(pool, sid)
    assert row is not None and row.transfer is not None
    p = Progress.from_json(row.transfer)
    assert (p.phase, p.index) == (Phase.HOLDING, 0), p
    step = p.step
    assert isinstance(step, WarmStep) and len(step.counselors) > len(eligible)
    assert await pool.fetchval("SELECT eligible FROM waiting WHERE call_sid = $1",
                               sid) == list(step.counselors)
