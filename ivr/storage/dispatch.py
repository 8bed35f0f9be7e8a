"""What a dispatcher pass reads of the line, and the one write a Ring makes.

A pass (Transfers.dispatch_once) reads, in one round trip, who is free (the
snapshot the progression decides with: `Availability`) and the callers it
may have something to decide for, longest waiting first: those whose tier
lists a free counselor they were not offered in this tier, those whose
tier may be over without anyone being freed (too little of it left for a
full ring, a tier that does not wait for counselors, the REST API
degraded), and those whose progress holds an offer not made yet (a Ring
decided by a callback: its intent, `pending`). A caller with an open offer
is not among them: their offer's leg events move them on. The rest of the
line is not read, so a pass with one counselor freed costs about the same
with 5 or 500 callers waiting.

`ring` is the guarded statement of the progression's Ring action
(ivr_ring in functions.sql).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ivr.storage.queue import Offer


@dataclass(frozen=True)
class Looked:
    """A holding (or early-offered) caller with no open offer, as stored now."""

    call_sid: str
    seq: int
    transfer: dict[str, Any]
    content_version: str | None
    eligible: frozenset[str]  # the counselors their line row holds for the tier
    may_end: bool  # their tier may be over whoever is free
    pending: bool  # their progress holds an offer not made yet


@dataclass(frozen=True)
class Line:
    degraded: bool  # the REST API is in its cool-off (api_health)
    free: tuple[str, ...]  # available counselors, longest idle first
    callers: tuple[Looked, ...]  # longest waiting first


async def look(pool: asyncpg.Pool, ring_by: datetime, api_down: bool, limit: int) -> Line:
    """The free counselors and at most `limit` callers to advance (see the module).
    `ring_by`: a tier ending before then is too near its end for a full ring.
    `api_down`: the REST API is unusable whatever api_health says (its probe)."""
    rows = await pool.fetch(
        """
        WITH s AS (
            SELECT EXISTS (SELECT 1 FROM api_health) OR $3 AS degraded,
                   ARRAY(SELECT id FROM counselors WHERE presence = 'available' AND NOT removed
                         ORDER BY idle_since, id) AS free
        )
        SELECT s.degraded, s.free, l.*
        FROM s LEFT JOIN LATERAL (
            SELECT w.call_sid, c.seq, c.transfer, c.content_version, w.eligible,
                   coalesce((c.transfer->>'deadline')::timestamptz <= $1, false)
                   -- the progress codec's keys (ivr.routing.progress)
                   OR coalesce((c.transfer->'steps'->((c.transfer->>'index')::int)
                                ->>'skip_when_unavailable')::boolean, false) AS may_end,
                   p.pending
            FROM waiting w
            JOIN calls c ON c.call_sid = w.call_sid
            CROSS JOIN LATERAL (
                SELECT jsonb_typeof(c.transfer->'offer') = 'object' AND NOT EXISTS (
                           SELECT 1 FROM offers o WHERE o.call_sid = w.call_sid
                             AND o.number = (c.transfer->'offer'->>'number')::int) AS pending
            ) p
            WHERE w.status = 'waiting'
              AND ((c.phase = 'transfer' AND c.transfer->>'phase' = 'holding')
                   OR (c.phase = 'flow' AND c.transfer->>'phase' = 'early'))
              AND (s.degraded OR p.pending
                   OR (c.transfer->>'deadline')::timestamptz <= $1
                   OR (c.transfer->'steps'->((c.transfer->>'index')::int)
                       ->>'skip_when_unavailable')::boolean
                   -- a free counselor of their tier not offered them in it yet
                   OR (w.eligible && s.free AND EXISTS (
                         SELECT 1 FROM unnest(w.eligible) AS e(id)
                         WHERE e.id = ANY (s.free) AND NOT EXISTS (
                             SELECT 1 FROM offers o
                             WHERE o.call_sid = w.call_sid AND o.counselor_id = e.id
                               AND o.created_at >= w.tier_started_at))))
            ORDER BY w.enqueued_at, w.call_sid
            LIMIT $2
        ) l ON true
        """,
        ring_by, limit, api_down,
    )
    first = rows[0]  # one row at least: the snapshot's, callers or not
    callers = tuple(
        Looked(r["call_sid"], r["seq"], r["transfer"], r["content_version"],
               frozenset(r["eligible"] or ()), r["may_end"], r["pending"])
        for r in rows if r["call_sid"] is not None
    )
    return Line(bool(first["degraded"]), tuple(first["free"]), callers)


async def ring(
    pool: asyncpg.Pool, call_sid: str, counselor: str, number: int,
    seen: dict[str, Any] | None = None, transfer: dict[str, Any] | None = None,
) -> Offer | None:
    """Offer the caller to `counselor` as offer `number` of their progress, if they
    and the counselor are both free and their stored progress is still `seen`
    (it becomes `transfer`), or, without `transfer`, holds this offer already.
    None when nothing was made (ivr_ring)."""
    record = await pool.fetchrow("SELECT * FROM ivr_ring($1, $2, $3, $4, $5)",
                                 call_sid, counselor, number, seen, transfer)
    return None if record is None else Offer(**dict(record))


async def made(pool: asyncpg.Pool, call_sid: str, number: int) -> bool:
    """Whether offer `number` of the caller's progress was made (by any instance)."""
    found: bool = await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM offers WHERE call_sid = $1 AND number = $2)",
        call_sid, number)
    return found
