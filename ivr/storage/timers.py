"""Timers: deadlines and pending work that move a caller on, kept as rows.

A timer is due at `due_at` and carried out by whichever instance claims it
first (`claim_due`: FOR UPDATE SKIP LOCKED, then a lease until
`leased_until`); an instance that dies holding a lease leaves the timer to
the next claim after the lease. `finish` records the outcome, `retry` puts
the timer back with a later due time. Every time compared or written here
is the caller's `now` (the application's clock), never the database's, so
a test can drive the server with a faster clock.

Kinds (migration 010):
- tier_deadline  a warm step's deadline (the progression's ScheduleDeadline)
- ring_timeout   an offer's ring time is over: end it if it still rings
- place_leg      an offer claimed: ring its counselor through the REST API
- move_caller    take a holding caller out of their conference (REST redirect)
- wrap_up        a counselor's wrap-up after a call ends (one set by hand is ended
                 by the dispatcher's sweep, transfers.end_wrap_up)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import asyncpg

Kind = Literal["tier_deadline", "ring_timeout", "place_leg", "move_caller", "wrap_up"]
KINDS: Final[tuple[Kind, ...]] = ("tier_deadline", "ring_timeout", "place_leg", "move_caller",
                                  "wrap_up")
# Due at once: intents (a leg to place, a caller to move) wait for nobody.
AT_ONCE: Final = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Timer:
    id: int
    kind: str
    subject: str
    call_sid: str | None
    detail: dict[str, Any]
    due_at: datetime
    attempts: int  # counting this one


async def add(
    db: asyncpg.Pool | asyncpg.Connection,
    kind: Kind,
    subject: str,
    due_at: datetime,
    *,
    call_sid: str | None = None,
    detail: dict[str, Any] | None = None,
) -> bool:
    """Record a timer; False when the same one (kind and subject) is already open."""
    added: int | None = await db.fetchval(
        """
        INSERT INTO timers (kind, subject, call_sid, detail, due_at)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (kind, subject) WHERE done_at IS NULL DO NOTHING
        RETURNING id
        """,
        kind, subject, call_sid, detail or {}, _aware(due_at),
    )
    return added is not None


async def add_leased(
    pool: asyncpg.Pool, kind: Kind, items: Sequence[tuple[str, str | None]], now: datetime,
    owner: str, lease: float,
) -> list[Timer]:
    """Record timers due at once, already leased by `owner` (who carries them out
    right away; another instance takes over if it dies): one statement for all
    of `items` (subject, call). Those already open are left alone."""
    rows = await pool.fetch(
        """
        INSERT INTO timers (kind, subject, call_sid, due_at, leased_by, leased_until, attempts)
        SELECT $1, i.subject, i.call_sid, $4, $5, $6::timestamptz + make_interval(secs => $7), 1
        FROM unnest($2::text[], $3::text[]) AS i(subject, call_sid)
        ON CONFLICT (kind, subject) WHERE done_at IS NULL DO NOTHING
        RETURNING id, kind, subject, call_sid, detail, due_at, attempts
        """,
        kind, [s for s, _ in items], [c for _, c in items], AT_ONCE, owner, _aware(now), lease)
    return [Timer(**dict(r)) for r in rows]


async def claim_due(
    pool: asyncpg.Pool, now: datetime, owner: str, lease: float, limit: int = 20
) -> list[Timer]:
    """Lease up to `limit` timers due at `now` that nobody holds (or whose lease ran out)."""
    rows = await pool.fetch(
        """
        WITH due AS (
            SELECT id FROM timers
            WHERE done_at IS NULL AND due_at <= $1::timestamptz
              AND (leased_until IS NULL OR leased_until <= $1::timestamptz)
            ORDER BY due_at, id
            LIMIT $4
            FOR UPDATE SKIP LOCKED
        )
        UPDATE timers t
        SET leased_by = $2, leased_until = $1::timestamptz + make_interval(secs => $3),
            attempts = t.attempts + 1
        FROM due WHERE t.id = due.id
        RETURNING t.id, t.kind, t.subject, t.call_sid, t.detail, t.due_at, t.attempts
        """,
        _aware(now), owner, lease, limit,
    )
    return sorted((Timer(**dict(r)) for r in rows), key=lambda t: (t.due_at, t.id))


async def finish(pool: asyncpg.Pool, timer_id: int, now: datetime, outcome: str) -> None:
    await pool.execute(
        "UPDATE timers SET done_at = $2, outcome = $3, leased_until = NULL WHERE id = $1",
        timer_id, _aware(now), outcome[:500])


async def retry(pool: asyncpg.Pool, timer_id: int, due_at: datetime, outcome: str) -> None:
    """Put a timer back, due again at `due_at` (an attempt failed)."""
    await pool.execute(
        "UPDATE timers SET due_at = $2, outcome = $3, leased_by = NULL, leased_until = NULL"
        " WHERE id = $1 AND done_at IS NULL",
        timer_id, _aware(due_at), outcome[:500])


async def release(pool: asyncpg.Pool, owner: str) -> int:
    """An instance stopping gives its leases back at once (the work is not done)."""
    rows = await pool.fetch(
        "UPDATE timers SET leased_by = NULL, leased_until = NULL"
        " WHERE leased_by = $1 AND done_at IS NULL RETURNING id", owner)
    return len(rows)


async def cancel_for_call(
    db: asyncpg.Pool | asyncpg.Connection, call_sid: str, now: datetime, kinds: Sequence[Kind],
    outcome: str,
) -> int:
    """Close the open timers of these kinds for a call (nothing left for them to do)."""
    rows = await db.fetch(
        "UPDATE timers SET done_at = $2, outcome = $4, leased_until = NULL"
        " WHERE call_sid = $1 AND done_at IS NULL AND kind = ANY ($3::text[]) RETURNING id",
        call_sid, _aware(now), list(kinds), outcome)
    return len(rows)


async def open_timers(pool: asyncpg.Pool, call_sid: str | None = None) -> list[Timer]:
    rows = await pool.fetch(
        "SELECT id, kind, subject, call_sid, detail, due_at, attempts FROM timers"
        " WHERE done_at IS NULL AND ($1::text IS NULL OR call_sid = $1) ORDER BY due_at, id",
        call_sid)
    return [Timer(**dict(r)) for r in rows]


async def next_due(pool: asyncpg.Pool) -> datetime | None:
    due: datetime | None = await pool.fetchval(
        "SELECT min(due_at) FROM timers WHERE done_at IS NULL")
    return due


def backoff(attempts: int, base: float = 0.5, cap: float = 10.0) -> timedelta:
    """Pause before the next attempt after `attempts` failed: 0.5, 1, 2, 4, 8, 10, 10... s."""
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempts - 1)))


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("timer times must be timezone-aware")
    return at
