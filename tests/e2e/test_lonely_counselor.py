"""No music for nobody: a counselor who accepts as the caller leaves hears a
short goodbye and the leg ends; no leg waits in an empty conference."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ivr import keys
from ivr.app import create_app
from ivr.config import Settings
from ivr.content import Content
from ivr.sim import CallScript, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.storage import transfers as outcomes
from ivr.storage.counselors import get_counselor
from tests.conftest import AUTH_TOKEN, bounded
from tests.helpers import staff_all

TX_CALLER = "+15125550123"
# Webhook delivery is asynchronous: news of the caller's hang-up can reach
# the server after the counselor's key. Here it does, by this much wall time
# (a long while in simulated time).
LATE = 1.5
FINAL = ("completed", "busy", "failed", "no-answer", "canceled")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def late_hangup_news(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in ("/twilio/conference-end", "/twilio/status"):
        form = await request.post()
        if form.get("CallStatus") in FINAL and form.get("Direction") == "inbound":
            await asyncio.sleep(LATE)
    return await handler(request)


@pytest.fixture
async def late_server(settings: Settings, content: Content) -> AsyncIterator[TestServer]:
    app = create_app(settings, content)
    app.middlewares.append(late_hangup_news)
    port = int(settings.public_url.rsplit(":", 1)[1])
    srv = TestServer(app, host="127.0.0.1", port=port)
    await srv.start_server()
    yield srv
    await bounded(srv.close(), "closing the test server")


async def test_accepting_as_the_caller_leaves_gets_a_goodbye_not_hold_music(
    late_server: TestServer, settings: Settings, world: TwilioWorld
) -> None:
    await staff_all(late_server)
    sim = SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                    account_sid=settings.account_sid)
    # The caller joins their conference about 25 s in; the counselor answers
    # about 5 s later and presses 1 about 12 s later: the caller hangs up
    # during the whisper, and the server hears of it only after the key.
    script = CallScript(from_number=TX_CALLER, inputs=(Silence(),), hangup_after=33.0)
    t = await simulate_call(sim, script, world=world)
    assert not t.reached_human
    assert await world.wait_idle(60)
    [leg] = world.legs
    events = [(e.event, e.detail) for e in world.events if e.sid == leg.sid]
    assert ("pressed", "1") in events, events
    # It found the conference empty and was sent off at once: a goodbye, no music.
    assert not [e for e in events if e[0] in ("heard hold music", "heard silence")], events
    heard = [detail for event, detail in events if event == "heard"]
    assert any("no longer waiting" in h for h in heard), events
    assert leg.final_status == "completed"
    assert leg.end_reason == "server's TwiML hung up (<Hangup>)"
    conn = await asyncpg.connect(settings.database_url)
    try:
        row = await conn.fetchrow(
            "SELECT abandoned, answered_at, phase FROM calls WHERE call_sid = $1", t.call_sid)
    finally:
        await conn.close()
    assert row is not None
    assert row["abandoned"] is True and row["answered_at"] is None and row["phase"] == "ended"


async def test_nobody_is_joined_to_a_call_known_to_be_over(
    server: TestServer, sim: SimConfig, world: TwilioWorld
) -> None:
    # The acceptance itself checks the caller, under the call row's lock.
    t = await simulate_call(sim, CallScript(from_number=TX_CALLER, inputs=(Silence(),)),
                            world=world)
    assert t.reached_human
    pool = server.app[keys.pool]
    offer_id = await pool.fetchval("SELECT id FROM offers WHERE call_sid = $1", t.call_sid)
    # The call is over: even an offer made ringing again could not be accepted.
    await pool.execute("UPDATE offers SET state = 'ringing' WHERE id = $1", offer_id)
    assert not await outcomes.accept_offer(pool, offer_id, "local", "tx", True)
    counselor = await pool.fetchval("SELECT counselor_id FROM offers WHERE id = $1", offer_id)
    assert (await get_counselor(pool, counselor)).presence != "on-call"
