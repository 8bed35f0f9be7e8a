"""The live part of the console: PostgreSQL NOTIFY in, Server-Sent Events out.

Every change to the tables the console shows raises NOTIFY 'ivr_console'
(triggers in functions.sql), whichever instance made it. Each instance
LISTENs on its own connection; its hub then reads the board once, and
which of its streams' sessions are still live, and hands the board to every
open event stream of that instance, which renders its own view and sends
it (or ENDED, to a stream whose session was signed out, expired or
revoked). Changes in a burst (a call moving on touches several tables) are
gathered for a moment and read once; time waited and time in presence
also move on without any change, so an open console is redrawn every few
seconds anyway. A LISTEN connection that drops (a database
restart, a network blip) is made again, and the board read once then: what
changed meanwhile was announced to nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Final

import asyncpg

from ivr.admin.console.board import Board, load_board
from ivr.admin.console.sessions import still_live

log = logging.getLogger(__name__)

CHANNEL: Final = "ivr_console"
# Changes this close together are read as one.
GATHER_SECONDS: Final = 0.05
# At most this often per instance, however busy the line: within the 1 s promise.
MIN_INTERVAL: Final = 0.25
# Clocks on the page (time waited, time in presence) move on by themselves.
TICK_SECONDS: Final = 5.0
# Pauses before each new try at a lost LISTEN connection; the last repeats.
RECONNECT_PAUSES: Final = (0.5, 1.0, 2.0, 5.0)
CLOSE_TIMEOUT: Final = 5.0
_CONNECT_ERRORS: Final = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Ended:
    """What a stream gets instead of a board once its session is no longer live."""


ENDED: Final = Ended()
Item = Board | Ended | None


class Hub:
    """Reads the board when it changes and fans it out to the open streams."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._changed = asyncio.Event()
        # Each open stream's queue, and the digest of the session it serves.
        self._streams: dict[asyncio.Queue[Item], bytes] = {}

    def changed(self, *_: object) -> None:
        """asyncpg's listener callback: wake the hub (no I/O here)."""
        self._changed.set()

    @contextlib.asynccontextmanager
    async def subscribe(self, session_digest: bytes) -> AsyncIterator[asyncio.Queue[Item]]:
        """A queue receiving every new board (only the latest is kept) while the
        session is live, ENDED once it is not, None when the server shuts down."""
        queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=1)
        self._streams[queue] = session_digest
        self._changed.set()  # a new page gets a fresh board at once
        try:
            yield queue
        finally:
            self._streams.pop(queue, None)

    def close(self) -> None:
        """End every open stream (at shutdown: an open page must not hold it up)."""
        for queue in self._streams:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)

    async def board(self) -> Board:
        """The board now (read from the database: pages render from it)."""
        return await load_board(self._pool)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last = -MIN_INTERVAL
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_SECONDS):
                    await self._changed.wait()
            if not self._streams:
                self._changed.clear()
                continue
            await asyncio.sleep(max(GATHER_SECONDS, last + MIN_INTERVAL - loop.time()))
            self._changed.clear()
            last = loop.time()
            try:
                board = await load_board(self._pool)
                live = await still_live(self._pool, set(self._streams.values()))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("console: could not read the board (%s); trying again", exc)
                continue
            except Exception:
                # A bug must not stop every console of the instance for good.
                log.exception("console: reading the board failed; trying again")
                continue
            for queue, session_digest in list(self._streams.items()):
                if queue.full():
                    queue.get_nowait()  # a slow page skips to the newest board
                queue.put_nowait(board if session_digest in live else ENDED)


class Listener:
    """The hub's LISTEN connection, made again whenever it is lost."""

    def __init__(self, dsn: str, hub: Hub) -> None:
        self._dsn = dsn
        self._hub = hub
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()

    async def connect(self) -> None:
        """LISTEN on a new connection (the first one: a failure is start-up's)."""
        conn = await asyncpg.connect(self._dsn)
        lost = asyncio.Event()
        # Called by asyncpg when the connection closes, the server's side included.
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(CHANNEL, self._hub.changed)
        except BaseException:
            conn.terminate()
            raise
        self._conn, self._lost = conn, lost

    async def run(self) -> None:
        """Watch the connection and make it again when lost, until cancelled."""
        while True:
            await self._lost.wait()
            log.warning("console: the LISTEN connection was lost; connecting again")
            for attempt in itertools.count():
                await asyncio.sleep(RECONNECT_PAUSES[min(attempt, len(RECONNECT_PAUSES) - 1)])
                try:
                    await self.connect()
                    break
                except _CONNECT_ERRORS as exc:
                    log.warning("console: LISTEN connection not made again (%s); retrying", exc)
            log.info("console: listening for changes again")
            self._hub.changed()  # changes made while nobody listened

    async def close(self) -> None:
        conn = self._conn
        if conn is None or conn.is_closed():
            return
        try:
            await conn.close(timeout=CLOSE_TIMEOUT)
        except _CONNECT_ERRORS as exc:
            log.warning("the console's LISTEN connection did not close cleanly (%s)", exc)
            conn.terminate()


def sse_message(event: str, html: str) -> bytes:
    """One Server-Sent Events message; every line of the body is a `data:` line
    (the browser joins them with newlines)."""
    lines = [f"event: {event}"]
    lines.extend(f"data: {line}" for line in html.splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode()
