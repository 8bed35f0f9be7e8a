"""Grouped call writes (calls.create_calls, advance_calls, record_ends and
CallWrites) against a real PostgreSQL: each item of a grouped statement must
be written exactly as its own statement writes it, guards included, and one
item's bad data must cost the others nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from ivr.storage import calls as db
from ivr.storage.callwrites import CallWrites
from ivr.storage.database import open_pool
from ivr.storage.groupwrite import GroupWrite

STATE = {"flow_id": "main", "node": "menu", "seq": 1, "vars": {"language": "es"}}
DIALING = {"phase": "dialing", "stage": 0, "steps": [{"tier": 1, "name": "Austin"}]}
OFFERED = {**DIALING, "offer": 7}


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


def new_call(sid: str, **changes: Any) -> db.NewCall:
    new = db.NewCall(
        call_sid=sid, caller_hash="h:" + sid, caller_area_code="512", called="+18002738255",
        flow_id="main", flow_version="v1", seq=1, state=STATE, location_state="TX",
        location_source="area-code", phase="flow", transfer=None, twiml="<Response/>",
        events=[("voice", {"CallStatus": "ringing"}), ("located", {"state": "TX"})],
        content_version="c1",
    )
    return replace(new, **changes)


# Row columns compared between the two ways of writing (timestamps: whether set).
COMPARED = """seq, phase, state, transfer, last_twiml, listen, twilio_status, abandoned,
    caller_hash, caller_area_code, called, flow_id, flow_version, location_state,
    location_source, content_version, transfer_started_at IS NOT NULL AS transfer_started,
    first_ring_at IS NOT NULL AS rung, ended_at IS NOT NULL AS ended"""


async def written(pool: asyncpg.Pool, sid: str) -> tuple[dict[str, Any] | None, list[Any]]:
    """A call's row (without what names the call) and its event trail."""
    row = await pool.fetchrow(f"SELECT {COMPARED} FROM calls WHERE call_sid = $1", sid)
    found = None if row is None else dict(row)
    if found is not None and found["caller_hash"] is not None:
        found["caller_hash"] = found["caller_hash"].removesuffix(sid)
    return found, await db.events_of(pool, sid)


async def same_as_alone(
    pool: asyncpg.Pool,
    cases: Sequence[Callable[[str], Any]],
    alone: Callable[[Any], Any],
    together: Callable[[Sequence[Any]], Any],
) -> list[Any]:
    """Write each case (an item made for a CallSid) alone on one call and all
    together on another, from the same starting rows; the results, rows and
    trails must match. Returns the results."""
    by_one = [await alone(case(f"one-{n}")) for n, case in enumerate(cases)]
    grouped = await together([case(f"all-{n}") for n, case in enumerate(cases)])
    assert grouped == by_one
    for n in range(len(cases)):
        assert await written(pool, f"all-{n}") == await written(pool, f"one-{n}")
    return list(by_one)


async def both_exist(pool: asyncpg.Pool, count: int, **changes: Any) -> None:
    for n in range(count):
        for prefix in ("one", "all"):
            assert await db.create_call(pool, new_call(f"{prefix}-{n}", **changes))


async def test_new_calls_written_together_are_written_as_alone(pool: asyncpg.Pool) -> None:
    await both_exist(pool, 1)  # the first case: a call that already exists
    cases: list[Callable[[str], db.NewCall]] = [
        lambda sid: new_call(sid, events=[("voice", {"again": True})]),
        lambda sid: new_call(sid),
        lambda sid: new_call(sid, phase="transfer", transfer=DIALING, ringing=True,
                             caller_hash=None, listen={"token": "t"}),
        lambda sid: new_call(sid, events=[]),
    ]
    results = await same_as_alone(pool, cases, lambda new: db.create_call(pool, new),
                                  lambda news: db.create_calls(pool, news))
    assert results == [False, True, True, True]
    row, trail = await written(pool, "all-2")
    assert row is not None and row["transfer_started"] and row["rung"]
    # The call that existed keeps its trail: a second voice webhook adds nothing.
    _, trail = await written(pool, "all-0")
    assert trail == [("voice", {"CallStatus": "ringing"}), ("located", {"state": "TX"})]


async def test_steps_written_together_are_written_as_alone_guards_included(
    pool: asyncpg.Pool,
) -> None:
    await both_exist(pool, 8)
    await pool.execute(
        "INSERT INTO counselors (id, center_id, name, address, presence, idle_since)"
        " VALUES ('ana', 'tx', 'Ana', '+15125550100', 'available', now()),"
        " ('ben', 'tx', 'Ben', '+15125550101', 'offline', NULL)")
    for prefix in ("one", "all"):  # a caller offered early: the transfer is in the row
        await pool.execute("UPDATE calls SET transfer = $2 WHERE call_sid = $1",
                           f"{prefix}-4", OFFERED)

    def step(**changes: Any) -> Callable[[str], db.Advance]:
        base = db.Advance(call_sid="", expected_seq=1, expected_phase="flow", seq=2,
                          state={**STATE, "seq": 2}, phase="flow", transfer=None,
                          twiml="<Response><Gather/></Response>",
                          events=[("gather", {"Digits": "2"}), ("twiml", {"xml": "x"})])
        return lambda sid: replace(base, call_sid=sid, **changes)

    cases = [
        step(),  # at the step it saw: moves
        step(expected_seq=0),  # a step already taken
        step(expected_phase="transfer"),  # in another phase
        step(expected_phase=None, phase="transfer", transfer=DIALING, ringing=True),
        step(expected_transfer=DIALING, phase="transfer", transfer=DIALING),  # offered since
        step(expected_transfer=None, phase="ended", events=[]),  # transfer as seen: moves
        step(none_free=["ana", "ben"], phase="transfer", transfer=DIALING),  # Ana is free
        step(none_free=["ben"], phase="transfer", transfer=DIALING, listen={"token": "t"}),
    ]
    results = await same_as_alone(pool, cases, lambda s: db.advance_call(pool, s),
                                  lambda steps: db.advance_calls(pool, steps))
    assert results == [True, False, False, True, False, True, False, True]
    moved, _ = await written(pool, "all-3")
    assert moved is not None and moved["rung"] and moved["seq"] == 2
    ended, _ = await written(pool, "all-5")
    assert ended is not None and ended["ended"]


async def test_hang_ups_written_together_are_written_as_alone(pool: asyncpg.Pool) -> None:
    await both_exist(pool, 3, phase="transfer", transfer=DIALING, ringing=True)
    gone = {**DIALING, "phase": "abandoned"}

    def end(seen: dict[str, Any]) -> Callable[[str], db.End]:
        return lambda sid: db.End(sid, "completed", {"CallStatus": "completed"}, seen, gone)

    cases = [
        end(DIALING),  # left the transfer it was seen in: abandoned
        end(OFFERED),  # the transfer moved on since: the status alone
        end(DIALING),
        lambda sid: db.End("never-" + sid, "completed", {}, DIALING, gone),  # unknown
    ]
    results = await same_as_alone(pool, cases, lambda e: db.record_end(pool, e),
                                  lambda ends: db.record_ends(pool, ends))
    assert [r is not None and r.left for r in results] == [True, False, True, False]
    assert results[3] is None
    row, trail = await written(pool, "all-0")
    assert row is not None and row["abandoned"] and row["transfer"] == gone
    assert trail[-1] == ("status", {"CallStatus": "completed"})
    kept, _ = await written(pool, "all-1")
    assert kept is not None and not kept["abandoned"] and kept["transfer"] == DIALING


async def test_concurrent_writes_share_statements_and_each_gets_its_own_answer(
    pool: asyncpg.Pool,
) -> None:
    writes = CallWrites(pool, in_flight=1)
    sids = [f"c-{n}" for n in range(30)]
    created = await asyncio.gather(*(writes.create(new_call(sid)) for sid in sids))
    assert created == [True] * 30
    assert writes.creates.writes == 30 and writes.creates.statements < 10  # grouped
    # Every other step is stale: those alone must miss.
    steps = [db.Advance(call_sid=sid, expected_seq=1 + n % 2, expected_phase="flow", seq=3,
                        state=STATE, phase="flow", transfer=None, twiml="<Response/>",
                        events=[("gather", {"n": n})]) for n, sid in enumerate(sids)]
    moved = await asyncio.gather(*(writes.advance(s) for s in steps))
    assert moved == [n % 2 == 0 for n in range(30)]
    for n, sid in enumerate(sids):
        row, trail = await written(pool, sid)
        assert row is not None and row["seq"] == (3 if n % 2 == 0 else 1)
        assert (trail[-1] == ("gather", {"n": n})) == (n % 2 == 0)


async def test_a_call_lined_up_at_its_creation_is_written_alone(pool: asyncpg.Pool) -> None:
    """Its statement also puts it on the waiting line (and wakes the
    dispatchers): never in a grouped one, even when other new calls wait."""
    writes = CallWrites(pool, in_flight=1)
    line_up = db.LineUp("crisis", "en", None, "TX", 0, "regional", ("ana",), ())
    news = [new_call(f"l-{n}", line_up=line_up if n == 3 else None) for n in range(6)]
    created = await asyncio.gather(*(writes.create(new) for new in news))
    assert created == [True] * 6
    assert writes.creates.writes == 5 and writes.creates.statements < 5  # the others grouped
    lined = await pool.fetch("SELECT call_sid FROM waiting WHERE call_sid LIKE 'l-%'")
    assert [r["call_sid"] for r in lined] == ["l-3"]


async def test_one_writes_bad_data_costs_the_others_nothing(pool: asyncpg.Pool) -> None:
    """PostgreSQL's jsonb refuses a NUL character: the grouped statement fails,
    and its writes are made one by one, each with its own outcome."""
    writes = CallWrites(pool, in_flight=1)
    news = [new_call(f"d-{n}") for n in range(6)]
    news[3] = new_call("d-3", state={**STATE, "vars": {"name": "a\u0000b"}})
    results = await asyncio.gather(*(writes.create(new) for new in news),
                                   return_exceptions=True)
    assert isinstance(results[3], asyncpg.UntranslatableCharacterError)
    assert [r for n, r in enumerate(results) if n != 3] == [True] * 5
    for n in (0, 1, 2, 4, 5):
        row, trail = await written(pool, f"d-{n}")
        assert row is not None and len(trail) == 2
    assert await written(pool, "d-3") == (None, [])


async def test_writes_of_one_call_never_share_a_statement() -> None:
    groups: list[list[str]] = []
    release = asyncio.Event()

    async def one(item: str) -> str:
        await release.wait()
        groups.append([item])
        return item

    async def many(items: Sequence[str]) -> list[str]:
        groups.append(list(items))
        return list(items)

    write: GroupWrite[str, str] = GroupWrite(one, many, key=lambda item: item[0], in_flight=1)
    first = asyncio.create_task(write("a0"))  # written alone, held until released
    await asyncio.sleep(0)
    rest = [asyncio.create_task(write(item)) for item in ("a1", "b1", "a2", "c1")]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(first, *rest) == ["a0", "a1", "b1", "a2", "c1"]
    assert groups == [["a0"], ["a1", "b1", "c1"], ["a2"]]
    assert (write.statements, write.writes) == (3, 5)


async def test_a_failure_of_the_database_is_every_writes_and_not_retried() -> None:
    tries: list[str] = []
    release = asyncio.Event()

    async def one(item: str) -> str:
        tries.append(item)
        await release.wait()
        raise ConnectionResetError("the database went away")

    async def many(items: Sequence[str]) -> list[str]:
        tries.extend(items)
        raise ConnectionResetError("the database went away")

    write: GroupWrite[str, str] = GroupWrite(one, many, key=str, in_flight=1)
    calls = [asyncio.create_task(write(item)) for item in ("a", "b", "c")]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, ConnectionResetError) for r in results)
    assert tries == ["a", "b", "c"]  # each sent once: no one-by-one retry


async def test_a_statement_held_up_holds_the_writes_behind_it_only_so_long() -> None:
    """A statement waiting (on a row's lock, on a database that stopped
    answering) does not keep the writes queued behind it until it ends."""
    release = asyncio.Event()
    groups: list[list[str]] = []

    async def one(item: str) -> str:
        groups.append([item])
        if item == "held":
            await release.wait()
        return item

    async def many(items: Sequence[str]) -> list[str]:
        groups.append(list(items))
        return list(items)

    write: GroupWrite[str, str] = GroupWrite(one, many, key=str, in_flight=1,
                                             stalled_after=0.05)
    held = asyncio.create_task(write("held"))
    await asyncio.sleep(0)
    behind = asyncio.gather(write("a"), write("b"))
    assert list(await asyncio.wait_for(behind, timeout=5)) == ["a", "b"]
    assert not held.done()
    release.set()
    assert await held == "held"
    assert groups == [["held"], ["a", "b"]]
