"""The schema, brought up to date at start-up under an advisory lock.

Two parts (see the header of functions.sql):
- numbered migrations (migrations/NNN_*.sql): tables, indexes, constraints,
  data; each applied once, recorded in schema_migrations;
- functions.sql: every view and function, applied after them on every
  migrate with CREATE OR REPLACE, so a database created by any earlier
  version ends with exactly the functions of this one.

Two instances starting together both call `migrate`; the lock makes the
second wait, find no migration left, and apply functions.sql again to the
same result. An instance older than the database (it has migrations this
version does not know, as while a newer version is rolled out) leaves the
functions alone: they belong with the newer tables.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every instance.
_LOCK_KEY = 0x1F0988


@dataclass(frozen=True)
class Schema:
    migrations: tuple[tuple[int, str, str], ...]  # (version, file name, SQL), in order
    functions: str  # SQL applied after them every time; may be empty


def available() -> list[tuple[int, str, str]]:
    files = resources.files("ivr.storage") / "migrations"
    found = []
    for entry in files.iterdir():
        name = entry.name
        if name.endswith(".sql"):
            found.append((int(name.split("_", 1)[0]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def shipped() -> Schema:
    """The schema of this version (reads files: call it off the event loop)."""
    functions = resources.files("ivr.storage") / "functions.sql"
    return Schema(tuple(available()), functions.read_text(encoding="utf-8"))


async def migrate(conn: asyncpg.Connection, schema: Schema | None = None) -> list[str]:
    """Apply the migrations missing, then the functions; returns the migrations applied."""
    if schema is None:
        schema = await asyncio.to_thread(shipped)  # file reads stay off the event loop
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in schema.migrations:
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            applied.append(name)
        newer = done - {version for version, _, _ in schema.migrations}
        if newer:
            log.warning("the database has migrations newer than this version (%s):"
                        " its functions are left as they are", ", ".join(map(str, sorted(newer))))
        elif schema.functions:
            async with conn.transaction():
                await conn.execute(schema.functions)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied
