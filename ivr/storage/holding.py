"""What the conference wait URL needs to know of a holding caller, in one query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Holder:
    seq: int
    phase: str
    transfer: dict[str, Any] | None
    moved_seconds: float  # since the call row last changed (a tier move, an answer...)
    waiting: bool  # in the line and nobody is being rung for them
    tier_seconds: float  # time in the current tier (0 when not in the line)


async def holder(pool: asyncpg.Pool, call_sid: str) -> Holder | None:
    record = await pool.fetchrow(
        """
        SELECT c.seq, c.phase, c.transfer,
               greatest(extract(epoch FROM clock_timestamp() - c.updated_at), 0)
                   ::double precision AS moved_seconds,
               coalesce(w.status = 'waiting', false) AS waiting,
               coalesce(greatest(extract(epoch FROM clock_timestamp() - w.tier_started_at), 0),
                        0)::double precision AS tier_seconds
        FROM calls c LEFT JOIN waiting w USING (call_sid)
        WHERE c.call_sid = $1
        """,
        call_sid)
    return None if record is None else Holder(**dict(record))
