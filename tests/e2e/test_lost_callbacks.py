"""Callbacks lost to our side (a 500 while the database is away, an instance
that died) strand nobody: the offer's ring timeout is a timer row, and the
reconciliation asks Twilio what became of a leg nobody told us about."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ivr import keys
from ivr.app import create_app
from ivr.config import Settings
from ivr.content import Content
from ivr.sim import CallScript, CounselorScript, NoAnswer, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.storage.counselors import get_counselor
from tests.conftest import AUTH_TOKEN, bounded
from tests.e2e.appclock import Clock
from tests.helpers import staff_all

TX_CALLER = "+15125550123"
ANA = "+15125550101"  # the first counselor rung for a silent Texan
FINAL = ("completed", "busy", "failed", "no-answer", "canceled")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def lose_final_leg_callbacks(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What the final status callbacks of counselor legs and callers met while the
    database was away: a 500, and Twilio does not send them again."""
    if request.path in ("/twilio/leg-status", "/twilio/status"):
        form = await request.post()
        status = form.get("CallStatus")
        if isinstance(status, str) and status in FINAL:
            request.app[LOST].append(f"{request.path} {status}")
            return web.Response(status=500)
    return await handler(request)


LOST = web.AppKey("lost_callbacks", list[str])


async def _serve(settings: Settings, content: Content, clock: Clock) -> TestServer:
    app = create_app(settings, content, clock=clock)
    app[LOST] = []
    app.middlewares.append(lose_final_leg_callbacks)
    port = int(settings.public_url.rsplit(":", 1)[1])
    srv = TestServer(app, host="127.0.0.1", port=port)
    await srv.start_server()
    return srv


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def losing_server(
    settings: Settings, content: Content, clock: Clock
) -> AsyncIterator[TestServer]:
    srv = await _serve(replace(settings, wrap_up_seconds=1.0), content, clock)
    yield srv
    await bounded(srv.close(), "closing the test server")


def _sim(settings: Settings) -> SimConfig:
    return SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                     account_sid=settings.account_sid)


# A simulated second lasts 0.1 s: Ana's ring (about 20 s of the server's
# wall clock) is 200 simulated seconds, well within the caller's patience.
# Her ring is the whole seconds left of the tier, so the tier's deadline
# falls due within a second of her ring timeout: whichever comes first ends
# the offer, and this test holds with either alone (with ring_timeout made a
# no-op it passes through the deadline). It checks the caller is not
# stranded, not which timer did it.
@pytest.mark.counselors(counselors={ANA: NoAnswer()}, time_scale=0.1)
async def test_a_lost_leg_callback_does_not_strand_the_caller(
    losing_server: TestServer, settings: Settings, world: TwilioWorld
) -> None:
    await staff_all(losing_server)
    script = CallScript(from_number=TX_CALLER, inputs=(Silence(),), hold_patience=400)
    t = await simulate_call(_sim(settings), script, world=world)
    assert "/twilio/leg-status no-answer" in losing_server.app[LOST], losing_server.app[LOST]
    assert t.reached_human, t.format()
    pool = losing_server.app[keys.pool]
    first = await pool.fetchrow(
        "SELECT o.id, o.state, o.created_at, o.ended_at FROM offers o"
        " JOIN counselors k ON k.id = o.counselor_id"
        " WHERE o.call_sid = $1 AND k.address = $2", t.call_sid, ANA)
    assert first is not None
    # Ended by a timer, not by its callback: its ring timeout (Twilio, asked,
    # said no-answer) or the tier's deadline, whichever fell due first (the
    # ring is the whole seconds left of the tier).
    ended_by = await pool.fetchval(
        "SELECT outcome FROM timers WHERE kind = 'ring_timeout' AND subject = $1",
        str(first["id"]))
    assert first["state"] in ("missed", "canceled"), dict(first)
    assert ended_by in ("callback made up: no-answer", "ended in time", None), ended_by
    deadline = await pool.fetchval(
        "SELECT outcome FROM timers WHERE kind = 'tier_deadline' AND call_sid = $1"
        " ORDER BY id LIMIT 1", t.call_sid)
    assert first["state"] == "missed" or deadline.startswith("moved to"), deadline
    rang = await pool.fetchval(
        "SELECT (transfer->>'offer') IS NULL FROM calls WHERE call_sid = $1", t.call_sid)
    assert rang  # the progress holds no offer any more
    print(f"offer {first['id']}: ended {first['ended_at'] - first['created_at']} after it was "
          "made (its ring timeout, not a callback)")


@pytest.mark.counselors(default=CounselorScript(answer_after=2.0, talk_seconds=5.0))
async def test_a_lost_end_of_an_accepted_leg_frees_the_counselor(
    losing_server: TestServer, settings: Settings, world: TwilioWorld, clock: Clock
) -> None:
    await staff_all(losing_server)
    script = CallScript(from_number=TX_CALLER, inputs=(Silence(),))
    t = await simulate_call(_sim(settings), script, world=world)
    assert t.reached_human, t.format()
    assert await world.wait_idle(60)
    assert "/twilio/leg-status completed" in losing_server.app[LOST]
    assert "/twilio/status completed" in losing_server.app[LOST]
    pool = losing_server.app[keys.pool]
    call = await pool.fetchrow("SELECT ended_at FROM calls WHERE call_sid = $1", t.call_sid)
    assert call is not None and call["ended_at"] is None  # nobody told us
    counselor = await pool.fetchval(
        "SELECT counselor_id FROM offers WHERE call_sid = $1 AND state = 'accepted'",
        t.call_sid)
    assert (await get_counselor(pool, counselor)).presence == "on-call"
    # Nobody told us the leg ended: a while later the sweep asks Twilio.
    clock.ahead = timedelta(minutes=5)
    for _ in range(200):
        if (await get_counselor(pool, counselor)).presence == "available":
            break
        await asyncio.sleep(0.05)
    row = await get_counselor(pool, counselor)
    assert row.presence == "available" and row.current_call is None, row
    # And the caller's call, which Twilio says is over, is closed as its callback would.
    for _ in range(200):
        call = await pool.fetchrow(
            "SELECT ended_at, twilio_status, phase FROM calls WHERE call_sid = $1", t.call_sid)
        if call is not None and call["ended_at"] is not None:
            break
        await asyncio.sleep(0.05)
    assert call is not None and call["ended_at"] is not None, call
    assert (call["twilio_status"], call["phase"]) == ("completed", "ended")


@web.middleware
async def first_whisper_hits_a_dead_instance(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """The first counselor's whisper request reaches an instance that is gone:
    the balancer answers 502 and Twilio ends the leg (completed)."""
    if request.path == "/twilio/whisper" and not request.app[LOST]:
        request.app[LOST].append("whisper")
        return web.Response(status=502)
    return await handler(request)


async def test_a_whisper_lost_to_our_side_does_not_set_the_counselor_offline(
    settings: Settings, content: Content, world: TwilioWorld
) -> None:
    app = create_app(settings, content)
    app[LOST] = []
    app.middlewares.append(first_whisper_hits_a_dead_instance)
    port = int(settings.public_url.rsplit(":", 1)[1])
    srv = TestServer(app, host="127.0.0.1", port=port)
    await srv.start_server()
    try:
        await staff_all(srv)
        t = await simulate_call(_sim(settings), CallScript(from_number=TX_CALLER,
                                                           inputs=(Silence(),)), world=world)
        assert await world.wait_idle(60)
        pool = srv.app[keys.pool]
        first = await pool.fetchrow(
            "SELECT counselor_id, state FROM offers WHERE call_sid = $1 ORDER BY id LIMIT 1",
            t.call_sid)
        assert first is not None
        presence = (await get_counselor(pool, first["counselor_id"])).presence
    finally:
        await bounded(srv.close(), "closing the test server")
    assert srv.app[LOST] == ["whisper"]  # nothing else lost
    assert t.reached_human, t.format()
    assert first["state"] == "canceled", dict(first)
    assert presence == "available"


@pytest.mark.counselors(default=CounselorScript(answer_after=2.0, talk_seconds=5.0))
async def test_wrap_up_ends_on_the_apps_clock(
    settings: Settings, content: Content, world: TwilioWorld, clock: Clock
) -> None:
    """The end of a wrap-up is a timer row read on the app's clock, like every
    other deadline (a test may drive the server with a faster clock)."""
    app = create_app(replace(settings, wrap_up_seconds=600.0), content, clock=clock)
    port = int(settings.public_url.rsplit(":", 1)[1])
    srv = TestServer(app, host="127.0.0.1", port=port)
    await srv.start_server()
    try:
        await staff_all(srv)
        t = await simulate_call(_sim(settings), CallScript(from_number=TX_CALLER,
                                                           inputs=(Silence(),)), world=world)
        assert t.reached_human, t.format()
        assert await world.wait_idle(60)
        pool = srv.app[keys.pool]
        counselor = await pool.fetchval(
            "SELECT counselor_id FROM offers WHERE call_sid = $1 AND state = 'accepted'",
            t.call_sid)
        for _ in range(100):
            if (await get_counselor(pool, counselor)).presence == "wrap-up":
                break
            await asyncio.sleep(0.05)
        assert (await get_counselor(pool, counselor)).presence == "wrap-up"
        clock.ahead = timedelta(minutes=11)
        for _ in range(100):
            if (await get_counselor(pool, counselor)).presence == "available":
                break
            await asyncio.sleep(0.05)
        presence = (await get_counselor(pool, counselor)).presence
    finally:
        await bounded(srv.close(), "closing the test server")
    assert presence == "available"
