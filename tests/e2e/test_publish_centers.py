"""A publish that removes the center a caller is holding for: the caller goes
on to their next tier at once instead of holding for counselors who are gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from ivr.config import Settings
from ivr.publishing.archive import read_folders, to_tar
from ivr.sim import CallScript, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from tests.conftest import AUTH_TOKEN
from tests.helpers import queueing_folders, server_on_folders
from tests.waiting import eventually

TEXAS_CALLER = "+15125550123"
HOLDING = "SELECT call_sid FROM waiting WHERE status = 'waiting'"


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    """The shipped content, with a local tier that holds callers for ten minutes."""
    queueing_folders(tmp_path)
    return tmp_path


def without_texas(folders: Path) -> dict[str, bytes]:
    files = read_folders(folders / "flows", folders / "prompts")
    plan = files["flows/routing.yaml"].decode()
    start, end = plan.index("  tx-austin:\n"), plan.index("\n  ny-nyc:")
    files["flows/routing.yaml"] = (plan[:start] + plan[end + 1:]).encode()
    return files


@pytest.fixture
async def server(settings: Settings, folders: Path) -> AsyncIterator[str]:
    async with server_on_folders(settings, folders):
        yield settings.public_url


async def test_callers_holding_for_a_removed_center_go_on_to_their_next_tier(
    server: str, settings: Settings, world: TwilioWorld, folders: Path
) -> None:
    sim = SimConfig(server_url=server, auth_token=AUTH_TOKEN, account_sid=settings.account_sid)
    call = asyncio.create_task(simulate_call(
        sim, CallScript(from_number=TEXAS_CALLER, inputs=(Silence(),)), world=world))
    conn = await asyncpg.connect(settings.database_url)
    try:
        # The caller holds at the local tier: nobody is available.
        await eventually(lambda: conn.fetchval(HOLDING), "a caller holding")
        sid = await conn.fetchval(HOLDING)
        assert sid is not None

        upload = await asyncio.to_thread(without_texas, folders)
        async with aiohttp.ClientSession() as http, http.post(
                f"{server}/admin/content/publish", data=to_tar(upload),
                headers={"Authorization": f"Bearer {settings.admin_token}"}) as resp:
            assert resp.status == 200, await resp.text()
        # Ten minutes at the local tier otherwise: a minute is ample.
        async with asyncio.timeout(60):
            transcript = await call
        assert transcript.reached_human, transcript.format()
        moved = await conn.fetch(
            "SELECT detail FROM call_events WHERE call_sid = $1 AND kind = 'next_tier'", sid)
        assert moved, "the caller never left the local tier"
        gone = await conn.fetch(
            "SELECT id FROM counselors WHERE center_id = 'tx-austin' AND NOT removed")
        assert not gone
    finally:
        call.cancel()
        await conn.close()
