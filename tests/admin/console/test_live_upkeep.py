"""The console keeps itself up: its hub reads the board again after the
database was lost, and sessions signed out or expired are deleted."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from ivr.admin.console import events
from ivr.config import Settings
from tests.admin.console.helpers import ADMIN_TOKEN, board_until, browser, csrf, sign_in

# The instance's pool: every connection to its database but the LISTENing ones.
CUT_THE_POOL = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE datname = $1 AND query NOT LIKE 'LISTEN %'"
)
LOST = "console: could not read the board"


@pytest.fixture
def changes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No redraw on the clock: only a change seen in the database can bring one."""
    monkeypatch.setattr(events, "TICK_SECONDS", 3600.0)


async def test_the_board_comes_back_after_the_database_was_lost(
    changes_only: None, server: TestServer, settings: Settings, dsn: str, pg_root: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    base = settings.public_url
    caplog.set_level(logging.INFO, logger=events.__name__)
    database = urlsplit(dsn).path.lstrip("/")
    root = await asyncpg.connect(pg_root)  # another database: this one will refuse
    try:
        async with browser() as session:
            await sign_in(session, base, ADMIN_TOKEN)
            async with session.get(f"{base}/console/events") as stream:
                assert stream.status == 200
                first = await board_until(stream, "tx-ana")
                assert 'class="presence available"' not in first
                # Gone for the instance: its connections cut, new ones refused.
                await root.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
                try:
                    assert await root.fetchval(CUT_THE_POOL, database) > 0
                    for _ in range(200):
                        if any(LOST in r.getMessage() for r in caplog.records):
                            break
                        await asyncio.sleep(0.05)
                    else:
                        pytest.fail("the hub never found the database gone")
                    await asyncio.sleep(4 * events.POLL_SECONDS)  # still failing meanwhile
                finally:
                    await root.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
                conn = await asyncpg.connect(dsn)
                try:
                    await conn.execute("UPDATE counselors SET presence = 'available',"
                                       " idle_since = now() WHERE id = 'tx-ana'")
                finally:
                    await conn.close()
                await board_until(stream, 'class="presence available"')
    finally:
        await root.close()
    messages = [r.getMessage() for r in caplog.records if r.name == events.__name__]
    assert sum(LOST in m for m in messages) == 1  # said once for the outage, not per poll
    assert "console: reading the board again" in messages


async def test_sessions_signed_out_or_expired_are_deleted(
    server: TestServer, settings: Settings
) -> None:
    base = settings.public_url
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with browser() as signed_out, browser() as expired, browser() as live:
            for who in (signed_out, expired, live):
                status, _ = await sign_in(who, base, ADMIN_TOKEN)
                assert status == 200
            token = await csrf(signed_out, base)
            async with signed_out.post(f"{base}/console/signout", data={"csrf": token}) as resp:
                assert resp.status == 200
            assert await conn.fetchval(
                "SELECT count(*) FROM console_sessions WHERE ended_at IS NOT NULL") == 1
            # The expired one: as if its lifetime had passed.
            cookie = next(c.value for c in expired.cookie_jar)
            assert await conn.execute(
                "UPDATE console_sessions SET expires_at = now() - interval '1 second'"
                " WHERE digest = sha256(convert_to($1, 'UTF8'))", cookie) == "UPDATE 1"
            assert await conn.fetchval("SELECT count(*) FROM console_sessions") == 3

            async with browser() as newcomer:
                status, _ = await sign_in(newcomer, base, ADMIN_TOKEN)
                assert status == 200
            # The live session and the new one are left; the live still works.
            assert await conn.fetchval("SELECT count(*) FROM console_sessions") == 2
            async with live.get(f"{base}/console/", allow_redirects=False) as resp:
                assert resp.status == 200
    finally:
        await conn.close()
