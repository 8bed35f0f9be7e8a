"""The live part of the console: the database watched, Server-Sent Events out.

While an instance has open event streams, its hub asks PostgreSQL every
POLL_SECONDS for the current snapshot (`pg_current_snapshot()`: which
transactions are still running and where the next one starts). Any
transaction that wrote anything, whichever instance or psql session made
it, changes that text when it ends, so a new text means the board may have
changed: the hub then reads the board once, and which of its streams'
sessions are still live, and hands the board to every open stream, which
renders its own view and sends it (or ENDED, to a stream whose session was
signed out, expired or revoked). Time waited and time in presence move on
without any change, so an open console is also redrawn every few seconds.

Why polling and not NOTIFY: PostgreSQL serializes the commits of every
transaction that NOTIFYs, so a trigger announcing each change made every
webhook's commit queue behind the others'. The snapshot sees every change
whoever made it, with no call site to remember, at the cost of one trivial
statement per POLL_SECONDS per instance, only while a console page is open;
with none open the hub does nothing. The whole text is compared, not just
its xmax: a transaction that had its xid before one poll and commits after
it may leave xmax where it was, and only leave the in-progress list. A
write the board does not show (another table, another database of the
cluster) costs a needless read, at most one per POLL_SECONDS: what a busy
line cost with NOTIFY too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Final

import asyncpg

from ivr.admin.console.board import Board, load_board
from ivr.admin.console.sessions import still_live

log = logging.getLogger(__name__)

# How often an instance with open streams asks whether anything changed, and
# so reads the board at most, however busy the line: within the 1 s promise.
POLL_SECONDS: Final = 0.25
# Clocks on the page (time waited, time in presence) move on by themselves.
TICK_SECONDS: Final = 5.0
_SNAPSHOT: Final = "SELECT pg_current_snapshot()::text"
_DB_ERRORS: Final = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Ended:
    """What a stream gets instead of a board once its session is no longer live."""


ENDED: Final = Ended()
Item = Board | Ended | None


class Hub:
    """Reads the board when the database changed and fans it out to the open streams."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._opened = asyncio.Event()
        # Each open stream's queue, and the digest of the session it serves.
        self._streams: dict[asyncio.Queue[Item], bytes] = {}

    @contextlib.asynccontextmanager
    async def subscribe(self, session_digest: bytes) -> AsyncIterator[asyncio.Queue[Item]]:
        """A queue receiving every new board (only the latest is kept) while the
        session is live, ENDED once it is not, None when the server shuts down."""
        queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=1)
        self._streams[queue] = session_digest
        self._opened.set()  # a new page gets a fresh board at the next poll
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
        """Until cancelled: while streams are open, send them the board whenever
        the database changed, a new one opened, or TICK_SECONDS passed; at
        most once per POLL_SECONDS, however busy the line."""
        loop = asyncio.get_running_loop()
        seen: str | None = None  # the snapshot the last board sent was read after
        sent_at = float("-inf")
        failing = False
        while True:
            if not self._streams:
                await self._opened.wait()  # no page open: not even a poll
            opened = self._opened.is_set()
            self._opened.clear()
            try:
                # Taken before the board: a commit in between shows in this
                # board and moves the next poll's text (one read more, none missed).
                snapshot: str = await self._pool.fetchval(_SNAPSHOT)
                if opened or snapshot != seen or loop.time() - sent_at >= TICK_SECONDS:
                    sent_at = loop.time()
                    await self._send()
                    seen = snapshot
                if failing:
                    log.info("console: reading the board again")
                failing = False
            except Exception as exc:
                # Neither a lost connection (the pool makes a new one) nor a bug
                # may stop every console of the instance; said once, not at 4 Hz.
                if not failing and isinstance(exc, _DB_ERRORS):
                    log.warning("console: could not read the board (%s); trying again", exc)
                elif not failing:
                    log.exception("console: reading the board failed; trying again")
                failing = True
            await asyncio.sleep(POLL_SECONDS)

    async def _send(self) -> None:
        board = await load_board(self._pool)
        live = await still_live(self._pool, set(self._streams.values()))
        for queue, session_digest in list(self._streams.items()):
            if queue.full():
                queue.get_nowait()  # a slow page skips to the newest board
            queue.put_nowait(board if session_digest in live else ENDED)


def sse_message(event: str, html: str) -> bytes:
    """One Server-Sent Events message; every line of the body is a `data:` line
    (the browser joins them with newlines)."""
    lines = [f"event: {event}"]
    lines.extend(f"data: {line}" for line in html.splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode()
