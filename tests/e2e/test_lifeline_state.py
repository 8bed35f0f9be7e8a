"""The lifeline is a state: a caller the wait URL sent to the backup line while
the database was away is recorded so once it answers again, and nothing is
rung for them, nor are they moved, afterwards."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer, unused_port

from ivr import keys
from ivr.app import create_app
from ivr.content import Content, load_content
from ivr.sim import CallScript, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.script import DialOutcome
from ivr.storage.counselors import set_presence
from tests.conftest import AUTH_TOKEN, bounded, make_settings
from tests.helpers import queueing_folders
from tests.waiting import eventually

TX_CALLER = "+15125550123"
BACKUP = "+18005550100"


@pytest.fixture
def queueing_content(tmp_path: Path) -> Content:
    """The shipped content, with a local tier that waits for its counselors."""
    queueing_folders(tmp_path)
    return load_content(tmp_path / "flows", tmp_path / "prompts")


@pytest.fixture
async def pg_dir(tmp_path: Path) -> AsyncIterator[tuple[Path, list[Any]]]:
    """A PostgreSQL of the test's own, which the test stops and starts again."""
    from pgserver import get_server  # type: ignore[attr-defined]

    running = [get_server(tmp_path / "pg", cleanup_mode="stop")]
    yield tmp_path / "pg", running
    running[-1].cleanup()


def _redirects(world: TwilioWorld, sid: str) -> list[str]:
    return [dict(r.form).get("Url", "") for r in world.api_requests
            if r.method == "POST" and r.path.endswith(f"/Calls/{sid}.json")]


async def test_a_caller_on_the_lifeline_is_never_rung_for_nor_moved(
    pg_dir: tuple[Path, list[Any]], tmp_path: Path, queueing_content: Content,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pgserver import get_server  # type: ignore[attr-defined]

    path, running = pg_dir
    dsn = str(running[0].get_uri())
    caplog.set_level(logging.INFO, logger="ivr.telephony.transfer")
    caplog.set_level(logging.INFO, logger="ivr.telephony.dispatcher")
    # The caller talks with the backup line long after the database is back.
    script = CallScript(from_number=TX_CALLER, inputs=(Silence(),), hold_patience=3000,
                        dial_outcomes=(DialOutcome(talk_seconds=1500),))
    async with TwilioWorld() as world:
        port = unused_port()
        settings = make_settings(tmp_path / "server", dsn, port, world.api_url)
        server = TestServer(create_app(settings, queueing_content), host="127.0.0.1",
                            port=port)
        await server.start_server()
        try:
            pool = server.app[keys.pool]
            sim = SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                            account_sid=settings.account_sid)
            call = asyncio.create_task(simulate_call(sim, script, world=world))
            sid = None
            for _ in range(500):  # nobody is free: the caller waits in the local tier
                # Holding, not only lined up: the caller joins the line while the
                # menu still plays (an early offer, preoffer.py).
                sid = await pool.fetchval(
                    "SELECT w.call_sid FROM waiting w JOIN calls c USING (call_sid)"
                    " WHERE w.status = 'waiting' AND c.phase = 'transfer'")
                if sid:
                    break
                await asyncio.sleep(0.02)
            assert sid is not None
            await asyncio.to_thread(running[-1].cleanup)  # the database goes away
            for _ in range(1000):  # until the wait URL sends them to the backup line
                if any(u.endswith("/twilio/fallback") for u in _redirects(world, sid)):
                    break
                await asyncio.sleep(0.02)
            assert _redirects(world, sid), "the caller was not sent to the backup line"
            running.append(await asyncio.to_thread(get_server, path, cleanup_mode="stop"))
            for _ in range(500):  # the database answers again: the server catches up
                try:
                    status = await pool.fetchval(
                        "SELECT status FROM waiting WHERE call_sid = $1", sid)
                except Exception:
                    status = None
                if status not in (None, "waiting"):
                    break
                await asyncio.sleep(0.02)
            # A counselor of the caller's tier becomes free: not for this caller.
            await set_presence(pool, "tx-ana", "available")
            t = await asyncio.wait_for(call, 120)
            row = await pool.fetchrow(
                "SELECT c.lifeline_at, c.phase, w.status FROM calls c JOIN waiting w"
                " USING (call_sid) WHERE call_sid = $1", sid)
            # The dispatcher passes every 0.5 s, and its first pass after the
            # outage may meet a connection the restart broke: the call can end
            # before a pass works again, so the server stays up until one does.
            await eventually(
                lambda: [r for r in caplog.records
                         if r.getMessage() == "dispatcher pass works again"],
                "a dispatcher pass working again after the outage", seconds=10)
        finally:
            await bounded(server.close(), "closing the server")
    assert t.reached_human, t.format()
    assert [d for d in t.format().splitlines() if "dialed" in d.lower()]
    assert not world.legs, [leg.request.to for leg in world.legs]  # nobody rung for them
    # Moved once, to the backup line, and never again.
    assert [u.rsplit("/", 1)[-1] for u in _redirects(world, sid)] == ["fallback"]
    assert row is not None and row["lifeline_at"] is not None, row
    assert row["status"] == "backup"
    # One outage, one traceback: the dispatcher's passes failing every tick
    # meanwhile are not each logged at ERROR.
    failed = [r for r in caplog.records if r.name == "ivr.telephony.dispatcher"
              and r.getMessage().startswith("dispatcher pass failed")
              and r.levelno >= logging.ERROR]
    assert len(failed) == 1, [r.getMessage() for r in failed]
    assert [r for r in caplog.records if r.getMessage() == "dispatcher pass works again"]
