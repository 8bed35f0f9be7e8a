"""The connection pool, and the embedded PostgreSQL used when no DSN is set."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import asyncpg

from ivr.errors import DatabaseError as DatabaseError  # re-exported for callers
from ivr.storage.migrate import migrate

log = logging.getLogger(__name__)


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL whose data lives in data_dir/pg.

    pgserver keeps one server per data directory and shares it between
    processes, so a second `ivr serve` on the same IVR_DATA_DIR joins it.
    """
    from pgserver import get_server  # type: ignore[attr-defined]  # embedded mode only

    pgdata = data_dir / "pg"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="stop")
    return str(server.get_uri())


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool connections carry no session state (no LISTEN, no held locks, no SET):
    skipping asyncpg's reset on release saves a round trip per query."""


async def open_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, init=_init_connection,
            command_timeout=10, reset=_keep_session,
        )
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(f"cannot connect to the database: {exc}") from exc
    # Migrations take an advisory lock: on a connection of their own, so the
    # pool's connections never carry session state.
    try:
        conn = await asyncpg.connect(dsn)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        await pool.close()
        raise DatabaseError(f"cannot connect to the database: {exc}") from exc
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return pool


async def ping(pool: asyncpg.Pool) -> bool:
    try:
        async with asyncio.timeout(2):
            value: Any = await pool.fetchval("SELECT 1")
    except Exception:
        return False
    return bool(value == 1)
