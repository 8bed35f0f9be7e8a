"""Fault drills (issue 9, item 6), the parts about deadlines and lost work:
PostgreSQL stopped for 3 s while a counselor's phone rings. Each drill
counts what a fault must never leave behind: callers who never reached a
human or a line, call rows left open, counselors left offered or on a call
for a call that has ended, counselors holding two offers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer, unused_port

from ivr import keys
from ivr.app import create_app
from ivr.content import Content
from ivr.sim import CallScript, NoAnswer, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from tests.conftest import AUTH_TOKEN, bounded, make_settings
from tests.e2e.appclock import Clock
from tests.helpers import staff_all

TX_CALLER = "+15125550123"
ANA = "+15125550101"
OUTAGE = 3.0  # seconds without PostgreSQL
CLEAN = {"open_calls": 0, "counselors_held_by_ended_calls": 0, "offers_ringing": 0,
         "double_offers": 0}  # what left_to_repair must find once a drill is over


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[tuple[Path, list[Any]]]:
    from pgserver import get_server  # type: ignore[attr-defined]

    running = [get_server(tmp_path / "pg", cleanup_mode="stop")]
    yield tmp_path / "pg", running
    running[-1].cleanup()


async def left_to_repair(pool: asyncpg.Pool) -> dict[str, int]:
    """What a drill must leave at zero once every call is over."""
    row = await pool.fetchrow(
        """
        SELECT
          (SELECT count(*) FROM calls WHERE ended_at IS NULL) AS open_calls,
          (SELECT count(*) FROM counselors k JOIN calls c ON c.call_sid = k.current_call
           WHERE k.presence IN ('offered', 'on-call') AND c.ended_at IS NOT NULL)
              AS counselors_held_by_ended_calls,
          (SELECT count(*) FROM offers WHERE state = 'ringing') AS offers_ringing,
          (SELECT count(*) FROM (SELECT counselor_id FROM offers WHERE state = 'ringing'
                                 GROUP BY counselor_id HAVING count(*) > 1) d)
              AS double_offers
        """)
    assert row is not None
    return {k: int(v) for k, v in dict(row).items()}


async def repaired(pool: asyncpg.Pool, looks: int = 300) -> dict[str, int]:
    """left_to_repair once it is clean, or as it stands after `looks` looks
    50 ms apart (the caller asserts it is CLEAN)."""
    left = await left_to_repair(pool)
    for _ in range(looks):
        if not any(left.values()):
            break
        await asyncio.sleep(0.05)
        left = await left_to_repair(pool)
    return left


# A simulated second lasts 0.1 s: Ana's phone rings out (and its callback
# meets the outage) within the 3 s PostgreSQL is away.
@pytest.mark.parametrize("callers", [1, 3])
async def test_postgres_stopped_3_s_while_phones_ring(
    callers: int, pg: tuple[Path, list[Any]], tmp_path: Path, content: Content
) -> None:
    from pgserver import get_server  # type: ignore[attr-defined]

    path, running = pg
    dsn = str(running[0].get_uri())
    async with TwilioWorld(counselors={ANA: NoAnswer()}, time_scale=0.1) as world:
        port = unused_port()
        settings = make_settings(tmp_path / "server", dsn, port, world.api_url)
        clock = Clock()
        server = TestServer(create_app(settings, content, clock=clock), host="127.0.0.1",
                            port=port)
        await server.start_server()
        try:
            await staff_all(server)
            pool = server.app[keys.pool]
            sim = SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                            account_sid=settings.account_sid)
            script = CallScript(from_number=TX_CALLER, inputs=(Silence(),), hold_patience=900)
            calls = [asyncio.create_task(simulate_call(sim, script, world=world))
                     for _ in range(callers)]
            for _ in range(1000):  # until Ana's phone rings
                if any(leg.request.to == ANA for leg in world.legs):
                    break
                await asyncio.sleep(0.02)
            ringing = sum(leg.request.to == ANA and not leg.done.is_set() for leg in world.legs)
            await asyncio.to_thread(running[-1].cleanup)
            await asyncio.sleep(OUTAGE)
            running.append(await asyncio.to_thread(get_server, path, cleanup_mode="stop"))
            done = await asyncio.wait_for(asyncio.gather(*calls), 180)
            assert await world.wait_idle(60)
            await asyncio.sleep(0.5)  # the last callbacks settle
            lost = await left_to_repair(pool)  # callbacks lost to the outage left these
            # A while later (the clock moved on) the reconciliation asks Twilio.
            clock.ahead = timedelta(minutes=5)
            left = await repaired(pool)
        finally:
            await bounded(server.close(), "closing the server")
    reached = sum(t.reached_human for t in done)
    print(f"drill pg-stopped-{OUTAGE:g}s, {callers} callers: {reached} reached a human or a "
          f"line; left by lost callbacks {lost}, after the reconciliation {left}")
    assert ringing > 0, "PostgreSQL stopped while no phone rang: the drill met nothing"
    assert reached == callers, "\n\n".join(t.format() for t in done if not t.reached_human)
    assert left == CLEAN
