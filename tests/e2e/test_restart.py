"""Work in flight outlives the process: a leg placement cut short by a server
stopping (or dying) is finished by another server on the same database.

The servers sit behind a small balancer on the public address, which sends
each request to the first server that takes the connection, as a load
balancer with health checks would. The first server's REST requests go
through a proxy that never answers a call being placed, so that server is
stopped in the middle of placing the counselor's leg.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port

from ivr import keys
from ivr.app import create_app
from ivr.config import Settings
from ivr.content import Content
from ivr.sim import CallScript, NoAnswer, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.script import DialOutcome
from ivr.sim.transcript import Dialed
from ivr.storage import timers
from ivr.telephony import worker
from tests.conftest import AUTH_TOKEN, bounded
from tests.helpers import catch_all_server, staff_all

TX_CALLER = "+15125550123"
HOP = ("host", "content-length", "transfer-encoding", "connection")


async def _forward(request: web.Request, base: str, http: aiohttp.ClientSession) -> web.Response:
    body = await request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
    async with http.request(request.method, base + request.path_qs, data=body,
                            headers=headers, allow_redirects=False) as resp:
        content = await resp.read()
        return web.Response(body=content, status=resp.status,
                            content_type=resp.content_type or "application/octet-stream")


class Front:
    """A tiny HTTP front: `route` decides, per request, what to do with it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.backends: list[str] = []
        self.hold_creates = False
        self.hold_moves = False  # updates giving a call new instructions (a redirect)
        self.held = asyncio.Event()
        self.closing = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        self._runner = await catch_all_server(self.route, self.port)

    async def route(self, request: web.Request) -> web.Response:
        assert self._http is not None
        if request.method == "POST" and (
            (self.hold_creates and request.path.endswith("/Calls.json"))
            or (self.hold_moves and "/Calls/" in request.path
                and "Url" in await request.post())
        ):
            self.held.set()
            await self.closing.wait()  # never answered while the server waits for it
            return web.Response(status=503)
        for base in list(self.backends):
            try:
                return await _forward(request, base, self._http)
            except aiohttp.ClientConnectionError:
                continue  # that server is gone: the next one
        return web.Response(status=502)

    async def stop(self) -> None:
        self.closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()


@pytest.fixture
async def balancer(settings: Settings) -> AsyncIterator[Front]:
    front = Front(int(settings.public_url.rsplit(":", 1)[1]))
    await front.start()
    yield front
    await bounded(front.stop(), "stopping the balancer")


@pytest.fixture
async def slow_api(world: TwilioWorld) -> AsyncIterator[Front]:
    front = Front(unused_port())
    front.backends = [world.api_url]
    front.hold_creates = True
    await front.start()
    yield front
    await bounded(front.stop(), "stopping the REST proxy")


async def _start(settings: Settings, content: Content, api_url: str) -> TestServer:
    from dataclasses import replace

    srv = TestServer(create_app(replace(settings, twilio_api_url=api_url), content),
                     host="127.0.0.1", port=unused_port())
    await srv.start_server()
    return srv


@pytest.mark.parametrize("how", ["stopped", "died"])
async def test_a_leg_placement_cut_short_is_finished_by_another_server(
    how: str, settings: Settings, content: Content, world: TwilioWorld, balancer: Front,
    slow_api: Front, monkeypatch: pytest.MonkeyPatch,
) -> None:
    if how == "died":
        # A process killed with -9 gives nothing back: its lease runs out.
        monkeypatch.setattr(worker, "LEASE", 2.0)

        async def keeps_its_leases(*_: object) -> int:
            return 0

        monkeypatch.setattr(timers, "release", keeps_its_leases)
    first = await _start(settings, content, slow_api.url)
    second: TestServer | None = None
    try:
        balancer.backends = [f"http://127.0.0.1:{first.port}"]
        await staff_all(first)
        sim = SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                        account_sid=settings.account_sid)
        script = CallScript(from_number=TX_CALLER, inputs=(Silence(),), hold_patience=3000)
        call = asyncio.create_task(simulate_call(sim, script, world=world))
        await asyncio.wait_for(slow_api.held.wait(), 60)
        # The first server is placing the leg when it goes away.
        second = await _start(settings, content, world.api_url)
        balancer.backends.append(f"http://127.0.0.1:{second.port}")
        await bounded(first.close(), "closing the first server")
        monkeypatch.undo()
        t = await asyncio.wait_for(call, 120)
        pool = second.app[keys.pool]
        placed = await pool.fetchrow(
            "SELECT outcome, attempts FROM timers WHERE kind = 'place_leg' ORDER BY id LIMIT 1")
    finally:
        if second is not None:
            await bounded(second.close(), "closing the second server")
        await bounded(first.close(), "closing the first server")
    assert t.reached_human, t.format()
    assert placed is not None
    assert placed["outcome"].startswith("placed CA"), dict(placed)
    assert placed["attempts"] == 2  # the first server's, cut short, then the second's
    # The counselor rung is the one the first server claimed: one offer, answered.
    assert [leg.request.to for leg in world.legs] == ["+15125550101"]


GULF_BACKUP = "+15045550112"


@pytest.mark.counselors(default=NoAnswer())
async def test_a_move_cut_short_is_finished_by_another_server(
    settings: Settings, content: Content, world: TwilioWorld, balancer: Front,
    slow_api: Front,
) -> None:
    """Nobody answers in the Texas tier: the caller is to be moved out of their
    conference to the Gulf Coast backup's number; the first server stops while
    the move's REST redirect is in flight."""
    slow_api.hold_creates = False
    slow_api.hold_moves = True
    first = await _start(settings, content, slow_api.url)
    second: TestServer | None = None
    try:
        balancer.backends = [f"http://127.0.0.1:{first.port}"]
        await staff_all(first)
        sim = SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                        account_sid=settings.account_sid)
        script = CallScript(from_number=TX_CALLER, inputs=(Silence(),), hold_patience=3000,
                            dial_outcomes=(DialOutcome("answer"),))
        call = asyncio.create_task(simulate_call(sim, script, world=world))
        await asyncio.wait_for(slow_api.held.wait(), 60)
        second = await _start(settings, content, world.api_url)
        balancer.backends.append(f"http://127.0.0.1:{second.port}")
        await bounded(first.close(), "closing the first server")
        t = await asyncio.wait_for(call, 120)
        moved = await second.app[keys.pool].fetchrow(
            "SELECT outcome, attempts FROM timers WHERE kind = 'move_caller' ORDER BY id LIMIT 1")
    finally:
        if second is not None:
            await bounded(second.close(), "closing the second server")
        await bounded(first.close(), "closing the first server")
    assert t.reached_human, t.format()
    assert [d.targets for d in t.of_type(Dialed)] == [(GULF_BACKUP,)]
    assert moved is not None and (moved["outcome"], moved["attempts"]) == ("moved", 2), moved
