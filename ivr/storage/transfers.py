"""Transfer progress and outcomes: the call row's side of a warm transfer.

The counselor queue itself (waiting callers, offers) is in queue.py, what a
dispatcher pass reads in dispatch.py; this module records what the 988
reports need.
"""

from __future__ import annotations

from typing import Any

import asyncpg


async def move_transfer(
    pool: asyncpg.Pool,
    call_sid: str,
    expected_seq: int,
    transfer: dict[str, Any],
    twiml: str | None,
    event: tuple[str, dict[str, Any]],
) -> int | None:
    """Advance a call's transfer if it is still at `expected_seq`; the new seq, or None."""
    kind, detail = event
    seq: int | None = await pool.fetchval(
        """
        WITH c AS (
            UPDATE calls SET seq = seq + 1, transfer = $3,
                   last_twiml = coalesce($4, last_twiml), updated_at = now()
            WHERE call_sid = $1 AND seq = $2 AND phase = 'transfer'
            RETURNING call_sid, seq
        ), e AS (
            INSERT INTO call_events (call_sid, kind, detail) SELECT call_sid, $5, $6 FROM c
        )
        SELECT seq FROM c
        """,
        call_sid, expected_seq, transfer, twiml, kind, detail,
    )
    return seq


async def store_progress(
    pool: asyncpg.Pool, call_sid: str, seen: dict[str, Any], transfer: dict[str, Any]
) -> int | None:
    """Replace a call's transfer progress if it is still `seen` (whatever the call's
    phase: a caller gone has ended the call first); the call's seq, or None."""
    seq: int | None = await pool.fetchval(
        """
        UPDATE calls SET transfer = $3, updated_at = now()
        WHERE call_sid = $1 AND transfer = $2::jsonb
        RETURNING seq
        """,
        call_sid, seen, transfer,
    )
    return seq


async def ringing(pool: asyncpg.Pool, call_sid: str) -> None:
    await pool.execute(
        "UPDATE calls SET first_ring_at = coalesce(first_ring_at, now()) WHERE call_sid = $1",
        call_sid)


async def answered(
    pool: asyncpg.Pool, call_sid: str, tier: str, center: str, in_state: bool | None
) -> None:
    await _answered(pool, call_sid, tier, center, in_state)


async def _answered(
    db: asyncpg.Pool | asyncpg.Connection, call_sid: str, tier: str, center: str,
    in_state: bool | None,
) -> None:
    await db.execute(
        """
        WITH c AS (
            UPDATE calls SET answered_at = coalesce(answered_at, now()),
                   first_ring_at = coalesce(first_ring_at, now()),
                   answered_tier = coalesce(answered_tier, $2),
                   answered_center = coalesce(answered_center, $3),
                   answered_in_state = coalesce(answered_in_state, $4),
                   phase = 'connected', updated_at = now()
            WHERE call_sid = $1 RETURNING call_sid
        )
        INSERT INTO call_events (call_sid, kind, detail)
        SELECT call_sid, 'answered', jsonb_build_object('tier', $2::text, 'center', $3::text)
        FROM c
        """,
        call_sid, tier, center, in_state,
    )


# Twilio's final call statuses: a caller whose call reports one has hung up.
_FINAL = ["completed", "busy", "failed", "no-answer", "canceled"]


async def accept_offer(
    pool: asyncpg.Pool, offer_id: int, tier: str, center: str, in_state: bool | None
) -> bool:
    """The counselor pressed 1: accept the offer and record the answer, in one
    transaction with the check that the caller still waits for a human.

    False (nothing changed) when the caller hung up, was connected or moved to
    another step first. The call row is locked first (before the caller's line
    row, the counselor and the offer, in the order every queue function uses),
    so a hang-up recorded (record_status) or a tier moved (move_transfer) at
    the same moment is either seen here or sees the call connected.
    """
    async with pool.acquire() as conn, conn.transaction():
        call_sid: str | None = await conn.fetchval(
            """
            SELECT c.call_sid FROM calls c JOIN offers o ON o.call_sid = c.call_sid
            WHERE o.id = $1 AND c.phase = 'transfer'
              AND coalesce(c.twilio_status, '') <> ALL ($2::text[])
              AND c.transfer->>'phase' = 'holding'
            FOR UPDATE OF c
            """,
            offer_id, _FINAL,
        )
        if call_sid is None or not await conn.fetchval("SELECT ivr_offer_accepted($1)", offer_id):
            return False
        await _answered(conn, call_sid, tier, center, in_state)
    return True


async def nobody_there(pool: asyncpg.Pool, call_sid: str) -> bool:
    """A counselor who accepted found the caller's conference empty: the caller
    hung up as they accepted. The call was not answered after all: abandoned.
    False when it had been recorded so already."""
    done: str | None = await pool.fetchval(
        """
        WITH c AS (
            UPDATE calls SET answered_at = NULL, answered_tier = NULL, answered_center = NULL,
                   answered_in_state = NULL, abandoned = true, updated_at = now(),
                   phase = CASE WHEN phase = 'connected' THEN 'ended' ELSE phase END,
                   ended_at = coalesce(ended_at, now())
            WHERE call_sid = $1 AND answered_at IS NOT NULL AND transfer_started_at IS NOT NULL
            RETURNING call_sid
        ), w AS (
            UPDATE waiting SET status = 'abandoned', updated_at = now()
            WHERE call_sid = $1 AND status = 'connected'
        ), e AS (
            INSERT INTO call_events (call_sid, kind, detail)
            SELECT call_sid, 'caller_gone_before_join', '{}'::jsonb FROM c
        )
        SELECT call_sid FROM c
        """,
        call_sid)
    return done is not None


async def mark_abandoned(pool: asyncpg.Pool, call_sid: str) -> bool:
    """The caller hung up before anyone answered; False if someone had."""
    done: str | None = await pool.fetchval(
        """
        UPDATE calls SET abandoned = true
        WHERE call_sid = $1 AND answered_at IS NULL AND transfer_started_at IS NOT NULL
        RETURNING call_sid
        """,
        call_sid)
    return done is not None


async def call_context(pool: asyncpg.Pool, call_sid: str) -> asyncpg.Record | None:
    """What a counselor leg (or a timer) needs to know of the caller's call."""
    record: asyncpg.Record | None = await pool.fetchrow(
        "SELECT location_state, transfer, seq, phase, content_version FROM calls"
        " WHERE call_sid = $1",
        call_sid)
    return record


async def content_version_of(pool: asyncpg.Pool, call_sid: str) -> tuple[str | None] | None:
    """The content version a call started on, in a 1-tuple (None in it: a call
    from before versions); None when there is no such call."""
    record = await pool.fetchrow("SELECT content_version FROM calls WHERE call_sid = $1",
                                 call_sid)
    return None if record is None else (record["content_version"],)


async def end_wrap_up(pool: asyncpg.Pool, after_seconds: float) -> int:
    """Counselors in wrap-up longer than `after_seconds` become available again."""
    rows = await pool.fetch(
        """
        UPDATE counselors SET presence = 'available', presence_since = now(),
               idle_since = now(), updated_at = now()
        WHERE presence = 'wrap-up' AND NOT removed
          AND presence_since <= now() - make_interval(secs => $1)
        RETURNING id
        """,
        after_seconds,
    )
    if rows:
        await pool.execute("SELECT ivr_routing_changed()")
    return len(rows)
