"""Migrations at start-up: safe when several instances start at once."""

from __future__ import annotations

import asyncio

import asyncpg

from ivr.storage.database import open_pool
from ivr.storage.migrate import available


async def test_instances_starting_together_apply_each_migration_once(dsn: str) -> None:
    pools = await asyncio.gather(*(open_pool(dsn, min_size=1, max_size=2) for _ in range(4)))
    try:
        rows = await pools[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        migrations = await asyncio.to_thread(available)
        assert [r["version"] for r in rows] == [v for v, _, _ in migrations]
        assert await pools[0].fetchval("SELECT count(*) FROM calls") == 0
    finally:
        await asyncio.gather(*(p.close() for p in pools))


async def test_restart_applies_nothing_new(dsn: str) -> None:
    pool = await open_pool(dsn, min_size=1, max_size=1)
    await pool.close()
    conn = await asyncpg.connect(dsn)
    try:
        before = await conn.fetch("SELECT version, applied_at FROM schema_migrations")
    finally:
        await conn.close()
    pool = await open_pool(dsn, min_size=1, max_size=1)
    try:
        after = await pool.fetch("SELECT version, applied_at FROM schema_migrations")
    finally:
        await pool.close()
    assert sorted(map(tuple, before)) == sorted(map(tuple, after))
