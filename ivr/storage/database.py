"""The connection pool, and the embedded PostgreSQL used when no DSN is set."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

import asyncpg
import orjson

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
    _forget_dead_users(pgdata)
    server = get_server(pgdata, cleanup_mode="stop")
    return str(server.get_uri())


# pgserver's list of the processes using its PostgreSQL: the last to leave stops it.
_USERS_FILE = ".handle_pids.json"


def _forget_dead_users(pgdata: Path) -> None:
    """Drop from pgserver's list the processes that no longer run.

    A server killed with -9 never leaves the list, so the PostgreSQL it left
    running (which the next `ivr serve` adopts: pgserver joins a running
    postmaster) would never be stopped by anyone. Taken under pgserver's
    own lock, as it takes it around that list.
    """
    from pgserver.postgres_server import PostgresServer

    path = pgdata / _USERS_FILE
    with PostgresServer._lock:
        try:
            pids = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return
        if not isinstance(pids, list):
            return
        alive = [p for p in pids if isinstance(p, int) and _running(p)]
        if alive == pids:
            return
        gone = sorted(set(pids) - set(alive))
        log.warning("embedded PostgreSQL in %s: adopting it from stopped server process(es) "
                    "%s; it stops with the last server using it", pgdata, gone)
        path.write_text(json.dumps(alive))


# jsonb's binary wire format is its text behind a version byte (1).
_JSONB_VERSION = b"\x01"


def _jsonb_encode(value: Any) -> bytes:
    return _JSONB_VERSION + orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _jsonb_decode(data: bytes) -> Any:
    return orjson.loads(memoryview(data)[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    # orjson: a webhook's state, progress and events are encoded on every write,
    # and the standard library's encoder took seven times as long (issue 12).
    # In the binary format orjson's UTF-8 bytes go out as they are: as text
    # they were decoded to a str for asyncpg to encode back (2% of the
    # server's CPU per webhook, bench/webhooks.py).
    await conn.set_type_codec("jsonb", encoder=_jsonb_encode, decoder=_jsonb_decode,
                              schema="pg_catalog", format="binary")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool connections carry no session state (no LISTEN, no held locks, no SET):
    skipping asyncpg's reset on release saves a round trip per query."""


POOL_MIN, POOL_MAX = 2, 20  # a serving instance's: see pool_options


def pool_options(min_size: int = POOL_MIN, max_size: int = POOL_MAX) -> dict[str, Any]:
    """How a serving instance's pool lends connections (bench/webhooks.py's
    floor lends its own the same way).

    Twenty, not ten: under bench/webhooks.py's 50 callers, seven releases in ten
    handed the connection to a waiting request (issue 12), and the waits cost
    the loop more than the connections cost the database (20 against 10: 2,065
    against 1,929 req/s, server CPU 0.355 against 0.388 ms a request; at 32 the
    database's CPU per request rose by a fifth). At most max_size connections
    stay open, so none is closed for idling: no timer to arm on every release
    and cancel on every acquire."""
    return {"min_size": min_size, "max_size": max_size, "reset": _keep_session,
            "max_inactive_connection_lifetime": 0}


async def open_pool(dsn: str, *, min_size: int = POOL_MIN, max_size: int = POOL_MAX,
                    ) -> asyncpg.Pool:
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(
            dsn, init=_init_connection, command_timeout=10,
            **pool_options(min_size, max_size),
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


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, under another user
    return True
