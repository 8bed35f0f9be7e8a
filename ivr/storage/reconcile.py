"""What the reconciliation sweep (ivr.telephony.reconcile) looks for: rows
whose next step hangs on a callback or a piece of work that may be lost.
Ages are measured against the application's clock (`now`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

LIMIT = 200  # rows per kind per sweep: the next sweep takes the rest


async def lost_placements(
    pool: asyncpg.Pool, now: datetime, grace: float
) -> list[tuple[int, str]]:
    """Ringing offers older than `grace` seconds with no leg and no placement pending."""
    rows = await pool.fetch(
        """
        SELECT o.id, o.call_sid FROM offers o
        WHERE o.state = 'ringing' AND o.leg_sid IS NULL
          AND o.created_at <= $1::timestamptz - make_interval(secs => $2)
          AND NOT EXISTS (SELECT 1 FROM timers t WHERE t.kind = 'place_leg'
                          AND t.subject = o.id::text AND t.done_at IS NULL)
        ORDER BY o.id LIMIT $3
        """,
        now, grace, LIMIT)
    return [(int(r["id"]), str(r["call_sid"])) for r in rows]


async def lost_cancels(
    pool: asyncpg.Pool, now: datetime, grace: float
) -> list[tuple[int, str, str]]:
    """(offer, call, leg) of offers ended without a conversation more than
    `grace` seconds ago whose leg may still ring: its cancel never reached
    Twilio (lost with an instance, or refused), and no callback told its end."""
    rows = await pool.fetch(
        """
        SELECT o.id, o.call_sid, o.leg_sid FROM offers o
        WHERE o.leg_until > now() AND o.leg_sid IS NOT NULL
          AND o.state NOT IN ('ringing', 'accepted')
          AND o.ended_at <= $1::timestamptz - make_interval(secs => $2)
        ORDER BY o.id LIMIT $3
        """,
        now, grace, LIMIT)
    return [(int(r["id"]), str(r["call_sid"]), str(r["leg_sid"])) for r in rows]


async def lost_ring_timeouts(pool: asyncpg.Pool) -> list[tuple[int, str, dict[str, Any] | None]]:
    """Ringing offers with a leg and no ring timeout pending (with the caller's progress)."""
    rows = await pool.fetch(
        """
        SELECT o.id, o.call_sid, c.transfer FROM offers o
        LEFT JOIN calls c ON c.call_sid = o.call_sid
        WHERE o.state = 'ringing' AND o.leg_sid IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM timers t WHERE t.kind = 'ring_timeout'
                          AND t.subject = o.id::text AND t.done_at IS NULL)
        ORDER BY o.id LIMIT $1
        """,
        LIMIT)
    return [(int(r["id"]), str(r["call_sid"]), r["transfer"]) for r in rows]


async def open_legs(
    pool: asyncpg.Pool, now: datetime, quiet: float
) -> list[tuple[str, str, str]]:
    """(counselor, call, leg) of counselors on a call for `quiet` seconds or more."""
    rows = await pool.fetch(
        """
        SELECT k.id, k.current_call, o.leg_sid FROM counselors k
        JOIN LATERAL (
            SELECT o.leg_sid FROM offers o
            WHERE o.call_sid = k.current_call AND o.counselor_id = k.id
              AND o.state = 'accepted' AND o.leg_sid IS NOT NULL
            ORDER BY o.id DESC LIMIT 1
        ) o ON true
        WHERE k.presence = 'on-call'
          AND k.presence_since <= $1::timestamptz - make_interval(secs => $2)
        ORDER BY k.presence_since LIMIT $3
        """,
        now, quiet, LIMIT)
    return [(str(r["id"]), str(r["current_call"]), str(r["leg_sid"])) for r in rows]


async def open_calls(pool: asyncpg.Pool, now: datetime, quiet: float) -> list[str]:
    """Calls not closed by a final status, without news for `quiet` seconds."""
    rows = await pool.fetch(
        """
        SELECT call_sid FROM calls
        WHERE ended_at IS NULL AND updated_at <= $1::timestamptz - make_interval(secs => $2)
        ORDER BY updated_at LIMIT $3
        """,
        now, quiet, LIMIT)
    return [str(r["call_sid"]) for r in rows]
