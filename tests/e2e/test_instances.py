"""Two server processes behind one load balancer, sharing one database.

Many callers at once and few counselors: every caller reaches a human, no
counselor is ever offered two callers at once, and callers are served in the
order they started waiting, whichever instance handles which request.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port

from ivr.sim import CallScript, CounselorScript, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from tests.conftest import AUTH_TOKEN, bounded
from tests.e2e.test_resilience import _wait_healthy
from tests.helpers import queueing_folders

ADMIN_TOKEN = "instances-admin-token"
CALLERS = 10


@pytest.fixture
def queued_content(tmp_path: Path) -> Path:
    """The shipped content, with a local tier that queues callers instead of skipping."""
    return queueing_folders(tmp_path)


async def _balancer(backends: list[str]) -> tuple[web.AppRunner, str]:
    """Round-robin HTTP proxy: what Twilio reaches is whichever instance is next."""
    turn = itertools.cycle(backends)
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length")}
        async with session.request(request.method, next(turn) + request.path_qs,
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


@pytest.fixture
async def cluster(
    dsn: str, tmp_path: Path, queued_content: Path
) -> AsyncIterator[tuple[str, TwilioWorld]]:
    ports = [unused_port(), unused_port()]
    runner, public = await _balancer([f"http://127.0.0.1:{p}" for p in ports])
    world = TwilioWorld(default=CounselorScript(answer_after=3, talk_seconds=10))
    await world.start()
    procs = []
    for n, port in enumerate(ports):
        env = {
            **os.environ,
            "IVR_DATABASE_URL": dsn, "IVR_PUBLIC_URL": public,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
            "IVR_ADMIN_TOKEN": ADMIN_TOKEN, "IVR_TWILIO_API_URL": world.api_url,
            "IVR_WRAP_UP_SECONDS": "0", "IVR_DATA_DIR": str(tmp_path / f"i{n}"),
            "IVR_FLOWS_DIR": str(queued_content / "flows"),
            "IVR_PROMPTS_DIR": str(queued_content / "prompts"), "IVR_LOG_LEVEL": "WARNING",
        }
        # Popen returns at once; only waiting on a process would block the loop.
        procs.append(subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "ivr.cli", "serve", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        await asyncio.gather(*(_wait_healthy(f"http://127.0.0.1:{p}", proc)
                               for p, proc in zip(ports, procs, strict=True)))
        yield public, world
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


async def test_many_callers_few_counselors_two_instances(
    cluster: tuple[str, TwilioWorld], dsn: str
) -> None:
    public, world = cluster
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as admin:
        for counselor in ("tx-ana", "tx-ben"):  # the two English speakers in Texas
            async with admin.put(f"{public}/admin/counselors/{counselor}/presence",
                                 json={"presence": "available"}) as resp:
                assert resp.status == 200, await resp.text()

    sim = SimConfig(server_url=public, auth_token=AUTH_TOKEN, account_sid="AC" + "1" * 32)
    script = CallScript(from_number="+15125550123", inputs=(Silence(),))

    async def caller(n: int) -> object:
        await asyncio.sleep(n * 0.05)  # arrivals a moment apart: a definite waiting order
        return await simulate_call(sim, script, world=world)

    transcripts = await asyncio.gather(*(caller(n) for n in range(CALLERS)))
    assert all(t.reached_human for t in transcripts), [t.format() for t in transcripts]  # type: ignore[attr-defined]

    conn = await asyncpg.connect(dsn)
    try:
        offers = await conn.fetch(
            "SELECT o.counselor_id, o.call_sid, o.state, o.created_at, o.ended_at, "
            "w.enqueued_at FROM offers o JOIN waiting w USING (call_sid) ORDER BY o.id")
        connected = await conn.fetchval(
            "SELECT count(*) FROM waiting WHERE status = 'connected'")
    finally:
        await conn.close()
    assert connected == CALLERS  # nobody needed the backup: everyone waited for Ana or Ben
    # Never two offers to one counselor at once.
    for counselor in ("tx-ana", "tx-ben"):
        mine = [o for o in offers if o["counselor_id"] == counselor]
        for before, after in itertools.pairwise(mine):
            assert before["ended_at"] is not None and before["ended_at"] <= after["created_at"]
    # Served in the order of waiting: first offers come in enqueue order.
    first: dict[str, object] = {}
    for o in offers:
        first.setdefault(o["call_sid"], o["enqueued_at"])
    assert list(first.values()) == sorted(first.values())  # type: ignore[type-var]
    assert len(first) == CALLERS
