"""A counselor's phone rings for one caller at a time, as Twilio sees it.

An offer ends in the database (its caller hung up) a moment before its leg
stops ringing at Twilio: the cancel is a REST request sent after the
commit, still on its way, or lost with an instance that died before sending
it. The counselor is free again for the next caller at once, but the next
leg to their phone is placed only once the earlier one is over: cancelled
by whoever places the next one, or rung out.

Here the first cancel is held on its way to Twilio (a proxy between the
server and the simulated API) until Ana has been rung for the next caller,
or for a while.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port

from ivr import keys
from ivr.sim import CallScript, NoAnswer, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.storage.counselors import set_presence
from tests.e2e.test_fault_drills import HOP, overlapping_legs
from tests.helpers import catch_all_server
from tests.waiting import eventually

ANA = "+15125550101"
TX_CALLER, TX_CALLER_2 = "+15125550123", "+15125550124"
HANGUP = 27.0  # the first caller hangs up while Ana's phone rings for them
HELD_AT_MOST = 1.0  # real seconds the first cancel is held (then it goes on)


class HoldingApi:
    """The REST API as the server reaches it: every request passes at once,
    except the first cancel, held until `release` is set (or HELD_AT_MOST)."""

    def __init__(self, world: TwilioWorld, *, drop: bool = False) -> None:
        self.world = world
        self.drop = drop  # the first cancel never reaches Twilio (502 instead)
        self.held = asyncio.Event()  # the first cancel arrived and waits
        self.release = asyncio.Event()
        self.port = unused_port()
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    async def route(self, request: web.Request) -> web.Response:
        assert self._http is not None
        body = await request.read()
        if b"Status=canceled" in body and not self.held.is_set():
            self.held.set()
            if self.drop:  # as from a balancer whose instance died with it
                return web.Response(status=502)
            try:
                async with asyncio.timeout(HELD_AT_MOST):
                    await self.release.wait()
            except TimeoutError:
                pass
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        async with self._http.request(request.method, self.world.api_url + request.path_qs,
                                      data=body, headers=headers) as resp:
            return web.Response(body=await resp.read(), status=resp.status,
                                content_type=resp.content_type or "application/json")

    async def __aenter__(self) -> HoldingApi:
        self._http = aiohttp.ClientSession()
        self._runner = await catch_all_server(self.route, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()


@pytest.fixture
async def holding(request: pytest.FixtureRequest, world: TwilioWorld
                  ) -> AsyncIterator[HoldingApi]:
    drop = request.node.get_closest_marker("drop_first_cancel") is not None
    async with HoldingApi(world, drop=drop) as api:
        yield api


@pytest.fixture
def twilio_api_url(holding: HoldingApi) -> str:
    return f"http://127.0.0.1:{holding.port}"


@pytest.fixture
async def ana_alone(server: TestServer) -> asyncpg.Pool:
    """The server's pool, with Ana the only counselor on shift (she never answers)."""
    pool: asyncpg.Pool = server.app[keys.pool]
    await set_presence(pool, "tx-ben", "offline")
    return pool


# A tenth of real time per simulated second, so that Ana is surely rung
# before the first caller hangs up (7 simulated seconds later).
@pytest.mark.counselors(counselors={ANA: NoAnswer()}, time_scale=0.1)
async def test_a_phone_whose_cancel_is_on_its_way_rings_for_nobody_else_meanwhile(
    sim: SimConfig, ana_alone: asyncpg.Pool, world: TwilioWorld, holding: HoldingApi
) -> None:
    pool = ana_alone
    first = asyncio.create_task(simulate_call(sim, CallScript(
        from_number=TX_CALLER, inputs=(Silence(),), hangup_after=HANGUP), world=world))
    await eventually(holding.held.wait, "the first caller's leg is being cancelled")
    # Ana is free again in the database; her phone still rings at Twilio.
    second = asyncio.create_task(simulate_call(
        sim, CallScript(from_number=TX_CALLER_2, inputs=(Silence(),)), world=world))
    await eventually(lambda: len(world.legs) > 1 or second.done(),
                     "Ana rung for the second caller", pause=0.001)
    holding.release.set()
    assert not (await first).reached_human
    assert (await second).reached_human
    await world.wait_idle(60)

    legs = [leg for leg in world.legs if leg.who == ANA]
    told = [(leg.sid, leg.created_at, leg.ended_at, leg.final_status) for leg in legs]
    assert len(legs) == 2, told  # Ana was rung for the second caller too
    assert overlapping_legs(world) == [], told
    earlier, later = legs
    # Cancelled by the placement of the next leg, not by the held request.
    assert earlier.final_status == "canceled", told
    assert earlier.ended_at is not None and earlier.ended_at <= later.created_at, told
    rows = await pool.fetch("SELECT state, leg_until FROM offers WHERE counselor_id = 'tx-ana'"
                            " ORDER BY id")
    assert [r["state"] for r in rows] == ["canceled", "missed"]
    assert [r["leg_until"] for r in rows] == [None, None]  # both legs known over


# Half of real time per simulated second: the server's clock is the real one,
# and the sweep (every 5 s, taking a cancel for lost 3 s after its offer
# ended) must come before Ana's phone rings out.
@pytest.mark.drop_first_cancel
@pytest.mark.counselors(counselors={ANA: NoAnswer()}, time_scale=0.5)
async def test_a_cancel_that_never_reached_twilio_is_sent_again_by_the_sweep(
    sim: SimConfig, ana_alone: asyncpg.Pool, world: TwilioWorld, holding: HoldingApi
) -> None:
    pool = ana_alone
    t = await simulate_call(sim, CallScript(from_number=TX_CALLER, inputs=(Silence(),),
                                            hangup_after=HANGUP), world=world)
    assert not t.reached_human
    assert holding.held.is_set()  # the cancel sent when they hung up was lost
    await world.wait_idle(60)
    [leg] = world.legs
    # Nobody else needed Ana's phone: the reconciliation cancelled it, well
    # before its 19-20 s of ringing ran out.
    assert leg.final_status == "canceled", (leg.created_at, leg.ended_at, leg.final_status)
    cancels = [r for r in world.api_requests
               if r.path.endswith(f"/Calls/{leg.sid}.json") and r.method == "POST"]
    assert [r.status for r in cancels] == [200]  # the first never reached Twilio
    assert await pool.fetchval("SELECT leg_until FROM offers WHERE leg_sid = $1",
                               leg.sid) is None
