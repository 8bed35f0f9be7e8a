"""The webhooks' writes of call rows, grouped when they come together.

Each kind (a new call, a step, a caller's hang-up during a transfer) is a
GroupWrite: alone on a quiet line, one statement for many callers under load
(groupwrite.py). The statements are calls.py's, each item written exactly as
its single statement would write it.
"""

from __future__ import annotations

from functools import partial
from operator import attrgetter

import asyncpg

from ivr.storage import calls
from ivr.storage.groupwrite import GroupWrite

_BY_CALL = attrgetter("call_sid")  # two writes of one call never share a statement


class CallWrites:
    def __init__(self, pool: asyncpg.Pool, in_flight: int = 2) -> None:
        self.pool = pool
        self.creates = GroupWrite(partial(calls.create_call, pool),
                                  partial(calls.create_calls, pool), _BY_CALL, in_flight)
        self.advances = GroupWrite(partial(calls.advance_call, pool),
                                   partial(calls.advance_calls, pool), _BY_CALL, in_flight)
        self.ends = GroupWrite(partial(calls.record_end, pool), partial(calls.record_ends, pool),
                               _BY_CALL, in_flight)

    async def create(self, new: calls.NewCall) -> bool:
        if new.line_up is not None:
            # Lining up wakes the dispatchers (a NOTIFY): rare, and written alone.
            return await calls.create_call(self.pool, new)
        return await self.creates(new)

    async def advance(self, step: calls.Advance) -> bool:
        return await self.advances(step)

    async def end(self, end: calls.End) -> calls.EndRecorded | None:
        return await self.ends(end)
