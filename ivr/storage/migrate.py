"""SQL migrations, applied at start-up under an advisory lock.

Two instances starting together both call `migrate`; the lock makes the
second wait and then find nothing left to do.
"""

from __future__ import annotations

import asyncio
from importlib import resources

import asyncpg

# Any constant works; it only has to be the same in every instance.
_LOCK_KEY = 0x1F0988


def available() -> list[tuple[int, str, str]]:
    files = resources.files("ivr.storage") / "migrations"
    found = []
    for entry in files.iterdir():
        name = entry.name
        if name.endswith(".sql"):
            found.append((int(name.split("_", 1)[0]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply what is missing; returns the names applied."""
    applied: list[str] = []
    migrations = await asyncio.to_thread(available)  # file reads stay off the event loop
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations:
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied
