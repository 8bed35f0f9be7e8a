"""What the conference wait URL needs to know of a holding caller, in one query,
and what becomes of a caller its fail-safe sent to the backup line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ivr.storage import timers
from ivr.storage.queue import Offer


@dataclass(frozen=True)
class Holder:
    seq: int
    phase: str
    transfer: dict[str, Any] | None
    waiting: bool  # in the line and nobody is being rung for them
    content_version: str | None = None  # the version the call started on


async def holder(pool: asyncpg.Pool, call_sid: str) -> Holder | None:
    record = await pool.fetchrow(
        """
        SELECT c.seq, c.phase, c.transfer, c.content_version,
               coalesce(w.status = 'waiting', false) AS waiting
        FROM calls c LEFT JOIN waiting w USING (call_sid)
        WHERE c.call_sid = $1
        """,
        call_sid)
    return None if record is None else Holder(**dict(record))


async def record_lifeline(
    pool: asyncpg.Pool, call_sid: str, now: datetime
) -> list[Offer] | None:
    """A caller our fail-safe sent to the backup line: their call leaves the
    transfer for good, in one transaction: marked (lifeline_at, phase 'ended'
    while the call itself goes on with the backup line), off the waiting line
    (status 'backup', a ringing offer ended and returned so its leg can be
    cancelled), and its open timers closed. None when already recorded or
    unknown."""
    async with pool.acquire() as conn, conn.transaction():
        marked = await conn.fetchval(
            """
            WITH c AS (
                UPDATE calls SET lifeline_at = $2, updated_at = now(),
                       phase = CASE WHEN phase IN ('flow', 'transfer') THEN 'ended'
                                    ELSE phase END
                WHERE call_sid = $1 AND lifeline_at IS NULL
                RETURNING call_sid
            ), e AS (
                INSERT INTO call_events (call_sid, kind, detail)
                SELECT call_sid, 'lifeline', '{}'::jsonb FROM c
            )
            SELECT call_sid FROM c
            """,
            call_sid, now)
        if marked is None:
            return None
        offers = [Offer(**dict(r)) for r in await conn.fetch(
            "SELECT * FROM ivr_leave_queue($1, 'backup')", call_sid)]
        await timers.cancel_for_call(conn, call_sid, now, timers.KINDS, "caller on the lifeline")
    return offers
