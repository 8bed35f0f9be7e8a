"""What a dispatcher pass reads of the line, and the writes a Ring makes.

A pass (ivr.telephony.dispatcher) reads, in one round trip, who is free (the
snapshot the progression decides with: `Availability`) and the callers it
may ring someone for, longest waiting first: those holding (or offered
early) with no open offer whose tier lists a free counselor they were not
offered in it yet, no more of them than there are free counselors (a pass
that read that many is followed by another), or, with the REST API
degraded, every caller on the line (each one's tier is then over). Only the
line rows are walked; the call rows, with their progress, are read for
those callers alone, so a pass with one counselor freed costs about the
same with 5 or 500 callers waiting. After a publish, callers whose tier
has nobody left in the plan to try are read too (their tier is over). A
tier nearing its end with nobody free is the tier_deadline timer's.

`ring` and `ring_all` are the guarded statement of the progression's Ring
action (ivr_ring in functions.sql): the offer and the progress that holds
it, written together, so no progress holds an offer that was never made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Line:
    degraded: bool  # the REST API is in its cool-off (api_health)
    free: tuple[str, ...]  # available counselors, longest idle first
    gone: frozenset[str]  # counselors removed from the plan
    callers: tuple[Looked, ...]  # longest waiting first
    full: bool  # as many callers as a look reads: more may follow


async def look(pool: asyncpg.Pool, api_down: bool, limit: int) -> Line:
    """The free counselors and the callers to advance (see the module), at most
    `limit` of them. `api_down`: the REST API is unusable whatever api_health
    says (its probe failed)."""
    rows = await pool.fetch(
        """
        WITH s AS (
            SELECT EXISTS (SELECT 1 FROM api_health) OR $1 AS degraded,
                   ARRAY(SELECT id FROM counselors WHERE presence = 'available' AND NOT removed
                         ORDER BY idle_since, id) AS free,
                   ARRAY(SELECT id FROM counselors WHERE removed) AS gone
        ), n AS (
            SELECT CASE WHEN degraded THEN $2 ELSE least($2, cardinality(free)) END AS most
            FROM s
        ), line AS NOT MATERIALIZED (
            -- On the line with no open offer, their progress holding none either
            -- (the progress codec's keys: ivr.routing.progress). Inlined where
            -- used, so that a branch whose condition is false reads nothing.
            SELECT w.call_sid, w.enqueued_at, w.eligible, w.tier_started_at,
                   c.seq, c.transfer, c.content_version
            FROM waiting w
            JOIN calls c ON c.call_sid = w.call_sid AND c.phase IN ('transfer', 'flow')
            WHERE w.status = 'waiting'
              AND jsonb_typeof(c.transfer->'offer') IS DISTINCT FROM 'object'
        ), picked AS (
            SELECT l.* FROM s, n, ivr_look(s.free, n.most) l WHERE NOT s.degraded
            UNION ALL
            -- The REST API degraded: every caller on the line (their tier is over).
            SELECT w.call_sid, w.enqueued_at, w.eligible, w.seq, w.transfer, w.content_version
            FROM line w
            WHERE (SELECT degraded FROM s)
            ORDER BY enqueued_at, call_sid
            LIMIT (SELECT most FROM n)
        ), spent AS (
            -- After a publish: callers whose tier has nobody left in the plan to try.
            SELECT w.call_sid, w.enqueued_at, w.eligible, w.seq, w.transfer, w.content_version
            FROM line w
            CROSS JOIN s
            WHERE cardinality((SELECT gone FROM s)) > 0
              AND NOT s.degraded AND w.eligible && s.gone
              AND NOT EXISTS (
                  SELECT 1 FROM unnest(w.eligible) AS e(id)
                  WHERE NOT e.id = ANY (s.gone) AND NOT EXISTS (
                      SELECT 1 FROM offers o
                      WHERE o.call_sid = w.call_sid AND o.counselor_id = e.id
                        AND o.created_at >= w.tier_started_at))
            ORDER BY w.enqueued_at, w.call_sid
            LIMIT $2
        ), both_ AS (
            SELECT * FROM picked UNION ALL SELECT * FROM spent
            WHERE spent.call_sid NOT IN (SELECT call_sid FROM picked)
        )
        SELECT s.degraded, s.free, s.gone, (SELECT most FROM n) AS most, p.*
        FROM s LEFT JOIN both_ p ON true
        ORDER BY p.enqueued_at, p.call_sid
        """,
        api_down, limit,
    )
    first = rows[0]  # one row at least: the snapshot's, callers or not
    callers = tuple(
        Looked(r["call_sid"], r["seq"], r["transfer"], r["content_version"],
               frozenset(r["eligible"] or ()))
        for r in rows if r["call_sid"] is not None
    )
    return Line(bool(first["degraded"]), tuple(first["free"]), frozenset(first["gone"]), callers,
                len(callers) >= max(int(first["most"]), 1))


async def ring(
    pool: asyncpg.Pool, call_sid: str, counselor: str, number: int,
    seen: dict[str, Any], transfer: dict[str, Any],
) -> Offer | None:
    """Offer the caller to `counselor` as offer `number` of their progress, if they
    and the counselor are both free and their stored progress is still `seen`
    (it becomes `transfer`). None when nothing was made (ivr_ring)."""
    record = await pool.fetchrow("SELECT * FROM ivr_ring($1, $2, $3, $4, $5)",
                                 call_sid, counselor, number, seen, transfer)
    return None if record is None else Offer(**dict(record))


@dataclass(frozen=True)
class Decided:
    """A Ring a pass decided: the caller's progress `seen` becomes `transfer`."""

    call_sid: str
    counselor: str
    number: int
    seen: dict[str, Any]
    transfer: dict[str, Any]


async def ring_all(pool: asyncpg.Pool, rings: Sequence[Decided]) -> list[Offer]:
    """A pass's rings in one statement, each guarded as `ring` is (ivr_ring_all):
    the offers made."""
    if not rings:
        return []
    records = await pool.fetch(
        "SELECT * FROM ivr_ring_all($1, $2, $3, $4::jsonb[], $5::jsonb[])",
        [r.call_sid for r in rings], [r.counselor for r in rings], [r.number for r in rings],
        [r.seen for r in rings], [r.transfer for r in rings])
    return [Offer(**dict(r)) for r in records]
