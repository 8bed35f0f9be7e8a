"""Group commit: concurrent writes of one kind share one statement.

Under load, many webhooks wait at once to write their call's row, each a
statement, a transaction and a round trip of its own; PostgreSQL's cost per
statement and the event loop's per query (a pool acquire, a protocol
exchange, a backend woken) are most of what such a small write costs. A
`GroupWrite` sends a write at once when nothing of its kind is under way,
and otherwise gathers the writes that arrive meanwhile into the next
statement: no timer, no added wait when the line is quiet, and under load
one statement for many callers. Each write is still committed before its
webhook answers.

A statement that fails because of one write's data (PostgreSQL answered
with a data, integrity or rollback error, such as a deadlock) is tried
again write by write, so each gets its own result or error; a failure of
the database itself (a connection lost, a timeout) is every write's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

import asyncpg

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

# SQLSTATE classes of errors caused by a statement's data, not by the database
# being unreachable: 22 data exception, 23 integrity constraint violation, 40
# transaction rollback (a deadlock, a serialization failure).
_ONE_WRITES_FAULT = frozenset({"22", "23", "40"})


def _one_writes_fault(exc: BaseException) -> bool:
    state = getattr(exc, "sqlstate", None)
    return (isinstance(exc, asyncpg.PostgresError) and isinstance(state, str)
            and state[:2] in _ONE_WRITES_FAULT)


class GroupWrite(Generic[Item, Result]):
    """Writes of one kind, sent alone when the line is quiet and together when not.

    `one` writes an item in its own statement; `many` writes two or more in
    one statement, returning their results in order. Items with the same
    `key` (a call) never share a statement: one statement cannot step a row
    twice, so the later waits for the next one. At most `in_flight`
    statements of this kind run at once, unless none has started for
    `stalled_after` seconds while writes wait: a statement held up (by a row's
    lock, by a database that stopped answering) delays the writes behind it
    that long at most, never until its own timeout.
    """

    def __init__(
        self,
        one: Callable[[Item], Awaitable[Result]],
        many: Callable[[Sequence[Item]], Awaitable[list[Result]]],
        key: Callable[[Item], Hashable],
        in_flight: int = 2,
        stalled_after: float = 0.5,
    ) -> None:
        self._one, self._many, self._key = one, many, key
        self.in_flight, self.stalled_after = in_flight, stalled_after
        self._busy = 0  # statements under way
        self._last_start = 0.0  # the event loop's time
        self._check: asyncio.TimerHandle | None = None  # the stall check, while writes wait
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._groups: set[asyncio.Task[None]] = set()  # referenced while they run
        self.statements = 0  # sent, and the writes they carried: how well writes group
        self.writes = 0

    async def __call__(self, item: Item) -> Result:
        self.writes += 1
        if self._busy < self.in_flight and not self._waiting:
            # A quiet line: written at once, by the request itself.
            self._busy += 1
            self._last_start = asyncio.get_running_loop().time()
            self.statements += 1
            try:
                return await self._one(item)
            finally:
                self._busy -= 1
                self._start()
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._start()
        return await future

    def _start(self) -> None:
        if not self._waiting:
            return
        loop = asyncio.get_running_loop()
        while self._waiting and (self._busy < self.in_flight
                                 or loop.time() - self._last_start >= self.stalled_after):
            self._busy += 1
            self._last_start = loop.time()
            task = asyncio.create_task(self._send(self._take()))
            self._groups.add(task)
            task.add_done_callback(self._sent)
        if self._waiting and self._check is None:
            self._check = loop.call_at(self._last_start + self.stalled_after, self._stalled)

    def _stalled(self) -> None:
        self._check = None
        self._start()

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._groups.discard(task)
        self._busy -= 1
        self._start()

    def _take(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        group, later, keys = [], [], set()
        for entry in self._waiting:
            key = self._key(entry[0])
            if key in keys:
                later.append(entry)
            else:
                keys.add(key)
                group.append(entry)
        self._waiting = later
        return group

    async def _send(self, group: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        items = [item for item, _ in group]
        self.statements += 1
        try:
            results = [await self._one(items[0])] if len(items) == 1 else await self._many(items)
            if len(results) != len(items):
                raise RuntimeError(f"{len(results)} results for {len(items)} grouped writes")
        except BaseException as exc:
            if len(items) > 1 and _one_writes_fault(exc):
                log.warning("a grouped write of %d failed (%s: %s); writing them one by one",
                            len(items), type(exc).__name__, exc)
                await asyncio.gather(*(self._send([entry]) for entry in group))
                return
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(group, results, strict=True):
            if not future.done():
                future.set_result(result)
