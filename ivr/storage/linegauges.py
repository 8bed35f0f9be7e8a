"""What the metrics read from the database: the line-wide gauges of a scrape,
and a call's times to first ring and to answer.

The gauges are two small aggregate queries over the open waiting rows
(partial index waiting_open) and the counselors, so a scrape costs the
same whichever instance answers it and whatever the call volume was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import asyncpg

PRESENCES: Final = ("available", "offered", "on-call", "wrap-up", "offline")


@dataclass(frozen=True)
class LineSnapshot:
    """The line-wide figures of one scrape, as read from the database."""

    waiting: dict[str, int] = field(default_factory=dict)  # by queue
    oldest_wait: dict[str, float] = field(default_factory=dict)  # seconds, by queue
    counselors: dict[tuple[str, str], int] = field(default_factory=dict)  # (center, presence)


async def line_snapshot(pool: asyncpg.Pool) -> LineSnapshot:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                        readonly=True):
        # One snapshot for both: the counselors and the line agree with each other.
        waiting = await conn.fetch(
            """
            SELECT queue, count(*)::int AS n,
                   greatest(extract(epoch FROM clock_timestamp() - min(enqueued_at)), 0)
                       ::double precision AS oldest
            FROM waiting WHERE status IN ('waiting', 'offering')
            GROUP BY queue
            """)
        staff = await conn.fetch(
            """
            SELECT center_id, presence, count(*)::int AS n
            FROM counselors WHERE NOT removed
            GROUP BY center_id, presence
            """)
    counselors: dict[tuple[str, str], int] = {}
    # Every presence of every center, zeros included: a series that vanishes
    # at zero would make "nobody available" look like "no data".
    for center in {r["center_id"] for r in staff}:
        for presence in PRESENCES:
            counselors[(center, presence)] = 0
    for r in staff:
        counselors[(r["center_id"], r["presence"])] = r["n"]
    return LineSnapshot(
        waiting={r["queue"]: r["n"] for r in waiting},
        oldest_wait={r["queue"]: r["oldest"] for r in waiting},
        counselors=counselors,
    )


async def call_times(pool: asyncpg.Pool, call_sid: str) -> tuple[float | None, float | None] | None:
    """(seconds to first ring, seconds to answer) of a transferred call; None if it
    never reached a transfer."""
    row = await pool.fetchrow(
        "SELECT seconds_to_first_ring, seconds_to_answer FROM call_outcomes WHERE call_sid = $1",
        call_sid)
    if row is None:
        return None
    return row["seconds_to_first_ring"], row["seconds_to_answer"]
