"""The shared record of Twilio's REST API being degraded (migration 007)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class Degraded:
    since: datetime
    reason: str
    probe_due: bool  # the cool-off is over: one probe may tell whether it is back


async def degrade(pool: asyncpg.Pool, reason: str, cool_off: float) -> bool:
    """Mark the API degraded for at least `cool_off` seconds; True when it was not already."""
    fresh: bool = await pool.fetchval(
        """
        INSERT INTO api_health AS h (id, retry_at, reason)
        VALUES (true, now() + make_interval(secs => $1), $2)
        ON CONFLICT (id) DO UPDATE SET retry_at = excluded.retry_at, reason = excluded.reason
        RETURNING xmax = 0
        """,
        cool_off, reason,
    )
    return fresh


async def recovered(pool: asyncpg.Pool) -> datetime | None:
    """The API works again; when the degradation had started (None if it was not)."""
    since: datetime | None = await pool.fetchval("DELETE FROM api_health RETURNING since")
    return since


async def current(pool: asyncpg.Pool) -> Degraded | None:
    record = await pool.fetchrow(
        "SELECT since, reason, retry_at <= now() AS probe_due FROM api_health")
    return None if record is None else Degraded(**dict(record))


async def postpone_probe(pool: asyncpg.Pool, seconds: float) -> bool:
    """Claim the due probe for this instance; False when another instance has it."""
    claimed: bool | None = await pool.fetchval(
        """
        UPDATE api_health SET retry_at = now() + make_interval(secs => $1)
        WHERE retry_at <= now() RETURNING true
        """,
        seconds,
    )
    return bool(claimed)
