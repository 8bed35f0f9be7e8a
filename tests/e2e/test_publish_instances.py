"""Publishing while callers are at the menu, with several instances on one
database: every caller finishes on the content version they started on,
whichever instance their next webhook reaches, including an instance
started after the publish; every new call takes the new version."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port

from ivr.publishing.archive import to_tar
from ivr.publishing.versions import content_hash
from ivr.sim import CallScript, CounselorScript, Press, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.session import CallSession, Document, Step
from ivr.sim.transcript import Transcript
from ivr.sim.twiml import Gather
from tests.conftest import AUTH_TOKEN, ROOT, bounded
from tests.e2e.test_resilience import _wait_healthy
from tests.publishing.test_publish import CHANGED, SHIPPED
from tests.waiting import eventually, has

ADMIN = {"Authorization": "Bearer publish-admin-token"}
SID = "AC" + "1" * 32


@dataclass
class Balancer:
    """Routes each call's webhooks to the instance the test chose for it.

    A call seen for the first time goes to the next of `starters`; `pinned`
    moves a call's later webhooks elsewhere. Other requests (counselor legs)
    go round the instances. `seen` records where each request went.
    """

    instances: list[str]
    starters: list[str] = field(default_factory=list)
    pinned: dict[str, str] = field(default_factory=dict)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (sid, path, instance)

    def __post_init__(self) -> None:
        self._starter = 0
        self._others = itertools.count()

    def choose(self, call_sid: str) -> str:
        if call_sid in self.pinned:
            return self.pinned[call_sid]
        if call_sid and self.starters:
            self.pinned[call_sid] = self.starters[self._starter % len(self.starters)]
            self._starter += 1
            return self.pinned[call_sid]
        return self.instances[next(self._others) % len(self.instances)]


async def _serve_balancer(balancer: Balancer) -> tuple[web.AppRunner, str]:
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        sid = parse_qs(body.decode()).get("CallSid", [""])[0]
        # A counselor leg's webhooks carry the leg's own SID: not a caller we route.
        caller = sid if request.path.startswith("/twilio/") and "offer" not in request.query else ""
        target = balancer.choose(caller)
        balancer.seen.append((caller, request.path, target))
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length")}
        async with session.request(request.method, target + request.path_qs,
                                   data=body, headers=headers) as resp:
            return web.Response(body=await resp.read(), status=resp.status,
                                content_type=resp.content_type)

    async def close(_: web.Application) -> None:
        await session.close()

    app = web.Application()
    app.on_cleanup.append(close)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = unused_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@dataclass
class Cluster:
    public: str
    world: TwilioWorld
    balancer: Balancer
    start: Callable[[str], Awaitable[str]]  # a new instance, by name: its URL


@pytest.fixture
async def cluster(dsn: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    balancer = Balancer([])
    runner, public = await _serve_balancer(balancer)
    world = TwilioWorld(default=CounselorScript(answer_after=3, talk_seconds=10))
    await world.start()
    procs: list[subprocess.Popen[bytes]] = []

    async def start(name: str) -> str:
        port = unused_port()
        env = {
            **os.environ,
            "IVR_DATABASE_URL": dsn, "IVR_PUBLIC_URL": public,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_ACCOUNT_SID": SID,
            "IVR_ADMIN_TOKEN": ADMIN["Authorization"].removeprefix("Bearer "),
            "IVR_TWILIO_API_URL": world.api_url,
            "IVR_WRAP_UP_SECONDS": "0", "IVR_DATA_DIR": str(tmp_path / name),
            "IVR_FLOWS_DIR": str(tmp_path / "flows"),
            "IVR_PROMPTS_DIR": str(tmp_path / "prompts"), "IVR_LOG_LEVEL": "WARNING",
        }
        # Popen returns at once; only waiting on a process would block the loop.
        proc = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "ivr.cli", "serve", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        await _wait_healthy(url, proc)
        balancer.instances.append(url)
        return url

    try:
        yield Cluster(public, world, balancer, start)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
        await bounded(world.stop(), "stopping the simulated Twilio")
        await bounded(runner.cleanup(), "stopping the load balancer")


async def _serving(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(f"{url}/healthz") as resp:
        return str((await resp.json())["content_version"])


async def _until_serving(http: aiohttp.ClientSession, url: str, version: str) -> None:
    await eventually(lambda: has(_serving(http, url), version),
                f"{url} serving content version {version}", seconds=20)


class HeldAtMenu:
    """A caller who reaches the menu, says so, and waits there until released."""

    def __init__(self, world: TwilioWorld) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.sid = ""
        handlers = world.handlers()
        original = handlers[Gather]

        async def gather(session: CallSession, document: Document, verb: Any) -> Step:
            if not self.reached.is_set():
                self.sid = session.call_sid
                self.reached.set()
                await self.release.wait()
            return await original(session, document, verb)

        self.handlers = {**handlers, Gather: gather}


async def _calls(dsn: str, sids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each call's content version and the transfer its flow made."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT c.call_sid, c.content_version, e.detail::text AS transfer FROM calls c"
            " JOIN call_events e ON e.call_sid = c.call_sid AND e.kind = 'transfer'"
            " WHERE c.call_sid = ANY($1::text[])", sids)
    finally:
        await conn.close()
    return {r["call_sid"]: (r["content_version"], json.loads(r["transfer"])) for r in rows}


async def test_callers_at_the_menu_finish_on_the_version_they_started_on(
    cluster: Cluster, dsn: str, tmp_path: Path
) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    old = content_hash(SHIPPED)
    new = content_hash(CHANGED)
    sim = SimConfig(server_url=cluster.public, auth_token=AUTH_TOKEN, account_sid=SID)
    press_1 = CallScript(from_number="+15125550123", inputs=(Press("1"),))
    balancer = cluster.balancer

    async with aiohttp.ClientSession() as http:
        assert {await _serving(http, a), await _serving(http, b)} == {old}
        # Four callers at the menu, started alternately on the two instances.
        balancer.starters = [a, b]
        held = [HeldAtMenu(cluster.world) for _ in range(4)]
        calls: list[asyncio.Task[Transcript]] = []
        for caller in held:
            calls.append(asyncio.create_task(
                simulate_call(sim, press_1, world=cluster.world, handlers=caller.handlers)))
            async with asyncio.timeout(30):
                await caller.reached.wait()
        assert [balancer.pinned[c.sid] for c in held] == [a, b, a, b]

        # Key 1 changes from the veterans line to the crisis queue.
        async with http.post(f"{a}/admin/content/publish", data=to_tar(CHANGED),
                             headers=ADMIN) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["version"] == new
        await _until_serving(http, a, new)
        await _until_serving(http, b, new)  # told by NOTIFY
        c = await cluster.start("c")  # started after the publish
        assert await _serving(http, c) == new

        # Each caller's next webhook goes to another instance than its first.
        for caller, moved_to in zip(held, [b, a, c, c], strict=True):
            balancer.pinned[caller.sid] = moved_to
            caller.release.set()
        old_calls = await asyncio.gather(*calls)

        balancer.starters = [a, b, c]  # new calls, one on each instance
        new_calls = await asyncio.gather(*(
            simulate_call(sim, press_1, world=cluster.world) for _ in range(3)))

    for transcript in (*old_calls, *new_calls):
        assert transcript.reached_human, transcript.format()
    old_sids = [caller.sid for caller in held]
    gathered = {(sid, to) for sid, path, to in balancer.seen if path == "/twilio/gather"}
    # Every old caller's menu answer went where it was moved, the late instance included.
    assert {(sid, to) for sid, to in gathered if sid in old_sids} == set(
        zip(old_sids, [b, a, c, c], strict=True))
    new_sids = [t.call_sid for t in new_calls]
    assert sorted(balancer.pinned[sid] for sid in new_sids) == sorted([a, b, c])
    found = await _calls(dsn, old_sids + new_sids)
    for sid in old_sids:
        version, transfer = found[sid]
        assert (version, transfer["line"], transfer["queue"]) == (old, "veterans", None)
    for sid in new_sids:
        version, transfer = found[sid]
        assert (version, transfer["line"], transfer["queue"]) == (new, None, "crisis")
