"""The console keeps itself up: its LISTEN connection is made again after
the database drops it, and sessions signed out or expired are deleted."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from ivr.admin.console import events
from ivr.config import Settings
from tests.admin.console.helpers import ADMIN_TOKEN, board_until, browser, csrf, sign_in

# asyncpg's add_listener sends LISTEN "<channel>": the console's connection
# is the one whose last statement names its channel.
CONSOLE_LISTENERS = (
    "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %ivr_console%'"
    " AND pid <> pg_backend_pid()"
)


@pytest.fixture
def notify_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No redraw on the clock: only a NOTIFY (or a reconnect) can bring a change."""
    monkeypatch.setattr(events, "TICK_SECONDS", 3600.0)
    monkeypatch.setattr(events, "RECONNECT_PAUSES", (0.05,), raising=False)


async def test_a_dropped_listen_connection_is_made_again(
    notify_only: None, server: TestServer, settings: Settings
) -> None:
    base = settings.public_url
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with browser() as session:
            await sign_in(session, base, ADMIN_TOKEN)
            async with session.get(f"{base}/console/events") as stream:
                assert stream.status == 200
                first = await board_until(stream, "tx-ana")
                assert 'class="presence available"' not in first
                [old] = [r["pid"] for r in await conn.fetch(CONSOLE_LISTENERS)]
                assert await conn.fetchval("SELECT pg_terminate_backend($1)", old)

                # Listening again, on a new connection.
                for _ in range(600):
                    again = [r["pid"] for r in await conn.fetch(CONSOLE_LISTENERS)]
                    if again and old not in again:
                        break
                    await asyncio.sleep(0.05)
                assert again and old not in again, "the LISTEN connection was not made again"
                async with aiohttp.ClientSession() as admin, admin.put(
                    f"{base}/admin/counselors/tx-ana/presence",
                    json={"presence": "available"},
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                ) as resp:
                    assert resp.status == 200
                # Brought by the NOTIFY the new connection hears.
                await board_until(stream, 'class="presence available"')
    finally:
        await conn.close()


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
