"""What an instance serves when it starts: its own folders when the database
has never seen them, else the active version, with that version's counselors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from ivr.config import Settings
from ivr.content import Content
from ivr.publishing import versions, wiring
from ivr.publishing.active import ServeSettings
from ivr.publishing.publish import publish
from ivr.publishing.versions import content_hash
from ivr.storage.counselors import list_counselors
from ivr.storage.database import open_pool
from tests.helpers import server_on
from tests.publishing.test_publish import SHIPPED, edited
from tests.waiting import eventually, has

WITHOUT_BEN = edited(
    "flows/routing.yaml",
    '      - {id: tx-ben, name: Ben, sip: "sip:ben@tx-crisis.example.org", languages: [en]}\n',
    "")


async def serving(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as resp:
        return str((await resp.json())["content_version"])


@pytest.fixture
async def published(dsn: str, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:
    """The shipped content published, then a plan without Ben made active."""
    pool = await open_pool(dsn)
    how = ServeSettings(public_url="http://127.0.0.1:9", caller_id="+15005550006",
                        backup_number=None, models={}, work_dir=tmp_path / "publisher")
    await publish(pool, SHIPPED, "test", how)
    await publish(pool, WITHOUT_BEN, "test", how)
    yield pool
    await pool.close()


async def test_an_instance_on_known_folders_serves_the_active_version(
    published: asyncpg.Pool, settings: Settings, content: Content
) -> None:
    # Its folders are the shipped ones, published before: it serves the active version.
    async with server_on(settings, content):
        assert await serving(settings.public_url) == content_hash(WITHOUT_BEN)
        ben = next(c for c in await list_counselors(published) if c.id == "tx-ben")
        assert ben.removed  # the served plan's counselors, not the folders'


async def test_an_instance_on_folders_never_seen_publishes_them(
    settings: Settings, content: Content, dsn: str
) -> None:
    async with server_on(settings, content):
        assert await serving(settings.public_url) == content_hash(SHIPPED)
        conn = await asyncpg.connect(dsn)
        try:
            by = await conn.fetchval("SELECT activated_by FROM content_active")
        finally:
            await conn.close()
        assert by == "ivr serve (start-up)"


async def test_an_activation_whose_announcement_was_lost_is_served_all_the_same(
    settings: Settings, content: Content, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wiring, "RECONCILE_SECONDS", 0.1)
    async with server_on(settings, content):
        assert await serving(settings.public_url) == content_hash(SHIPPED)
        version = content_hash(WITHOUT_BEN)
        pool = await open_pool(dsn, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn, conn.transaction():  # by hand: no NOTIFY
                await versions.store(conn, version, WITHOUT_BEN, "test", {})
                await conn.execute("UPDATE content_active SET version = $1, seq = seq + 1",
                                   version)
        finally:
            await pool.close()
        await eventually(lambda: has(serving(settings.public_url), version),
                    "the reconcile loop served the activation", seconds=10)
        assert await serving(settings.public_url) == version
