"""Callers waiting for a counselor, and the offers that ring counselors for them.

A caller enters the line (`enqueue`) with the counselor ids of their current
tier and the rank of each (`ivr.routing.tiers.rank`, where the order of
counselors is written down); the transfer progression decides whom to
offer each caller, and dispatch.ring makes the offer (atomically across
server instances); the call flow then dials each offer's address and
reports how it ended (`offer_accepted`, `offer_missed`). Moving to the
next tier (`set_tier`) or leaving the line (`dequeue`, `abandon`) cancels an
offer still ringing and returns it, so the counselor leg can be hung up.

The state changes live in SQL functions (functions.sql): each is one round
trip and takes its row locks in one fixed order, so concurrent instances
never deadlock and never see a half-made offer.

What happens to the counselor when an offer ends without a conversation, as
in a contact center: no answer ('missed') or an unreachable address
('failed') sets them 'offline' (not ready), so the next caller is not rung to
an empty desk; a decline, or an offer cancelled because the caller left or
the tier moved on, puts them back 'available' keeping their place in line
(idle_since unchanged). A counselor who missed or declined a caller is not
offered that caller again in the same tier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import asyncpg

EndState = Literal["missed", "declined", "failed", "canceled"]
FinalStatus = Literal["connected", "abandoned", "backup"]

END_STATES: Final = frozenset({"missed", "declined", "failed", "canceled"})
FINAL_STATUSES: Final = frozenset({"connected", "abandoned", "backup"})

# NOTIFY channel raised when a caller may now be matched (a counselor became
# available, a caller waits again or changed tier): dispatchers LISTEN on it.
ROUTING_CHANNEL: Final = "ivr_routing"


@dataclass(frozen=True)
class Offer:
    id: int
    call_sid: str
    counselor_id: str
    address: str  # what to dial: staff phone number or SIP URI
    center_id: str
    tier_kind: str
    language: str
    need: str | None
    caller_state: str | None
    waited_seconds: float  # how long the caller had waited when the offer was made
    leg_sid: str | None
    state: str
    # Which offer of its caller's transfer progress this is (None: not rung yet;
    # recorded by the worker's place_leg, queue.number_offer).
    number: int | None


@dataclass(frozen=True)
class WaitingCaller:
    call_sid: str
    queue: str
    language: str
    need: str | None
    caller_state: str | None
    status: str
    waited_seconds: float
    tier_index: int
    tier_kind: str
    tier_seconds: float  # time spent in the current tier
    attempts: int
    offered_counselor: str | None


def _offers(records: Sequence[asyncpg.Record]) -> list[Offer]:
    return [Offer(**dict(r)) for r in records]


def checked_ranks(eligible: Sequence[str], ranks: Sequence[int]) -> list[int]:
    """`ranks` has one rank per eligible counselor, or none when all rank alike."""
    if ranks and len(ranks) != len(eligible):
        raise ValueError(f"{len(ranks)} ranks for {len(eligible)} eligible counselors")
    return list(ranks)


async def enqueue(
    pool: asyncpg.Pool,
    call_sid: str,
    queue: str,
    language: str,
    need: str | None,
    caller_state: str | None,
    tier_index: int,
    tier_kind: str,
    eligible: Sequence[str],
    ranks: Sequence[int],
) -> bool:
    """Put a caller on the line; False (and nothing changed) if already there.

    A caller who left the line for a dial step (status 'backup') and reaches
    another tier of counselors is back on it, keeping their place (enqueued_at).
    """
    inserted: int = await pool.fetchval(
        """
        WITH w AS (
            INSERT INTO waiting (call_sid, queue, language, need, caller_state,
                                 tier_index, tier_kind, eligible, ranks)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (call_sid) DO UPDATE
                SET status = 'waiting', offered_counselor = NULL,
                    tier_index = excluded.tier_index, tier_kind = excluded.tier_kind,
                    eligible = excluded.eligible, ranks = excluded.ranks,
                    tier_started_at = clock_timestamp(), updated_at = now()
                WHERE waiting.status = 'backup'
            RETURNING call_sid
        )
        SELECT count(*) FROM (SELECT ivr_routing_changed() FROM w) n
        """,
        call_sid, queue, language, need, caller_state, tier_index, tier_kind, list(eligible),
        checked_ranks(eligible, ranks),
    )
    return inserted == 1


async def set_tier(
    pool: asyncpg.Pool, call_sid: str, tier_index: int, tier_kind: str,
    eligible: Sequence[str], ranks: Sequence[int],
) -> list[Offer]:
    """Move a waiting caller to another tier; returns the offer it cancelled, if any."""
    return _offers(await pool.fetch(
        "SELECT * FROM ivr_set_tier($1, $2, $3, $4, $5)",
        call_sid, tier_index, tier_kind, list(eligible), checked_ranks(eligible, ranks),
    ))


async def requeue(
    pool: asyncpg.Pool, call_sid: str, tier_index: int, tier_kind: str,
    eligible: Sequence[str], ranks: Sequence[int],
) -> bool:
    """Put a connected caller back on the line (the counselor's leg dropped).

    They keep their place (enqueued_at): the longest waiting is served first.
    False when the caller was not connected.
    """
    updated: int = await pool.fetchval(
        """
        WITH w AS (
            UPDATE waiting SET status = 'waiting', offered_counselor = NULL,
                               tier_index = $2, tier_kind = $3, eligible = $4, ranks = $5,
                               tier_started_at = clock_timestamp(), updated_at = now()
            WHERE call_sid = $1 AND status = 'connected'
            RETURNING call_sid
        )
        SELECT count(*) FROM (SELECT ivr_routing_changed() FROM w) n
        """,
        call_sid, tier_index, tier_kind, list(eligible), checked_ranks(eligible, ranks),
    )
    return updated == 1


async def dequeue(pool: asyncpg.Pool, call_sid: str, status: FinalStatus) -> list[Offer]:
    """Take a caller off the line for good; returns the offer it cancelled, if any.

    A caller already off the line keeps their first final status.
    """
    if status not in FINAL_STATUSES:
        raise ValueError(f"final status must be one of {sorted(FINAL_STATUSES)}, not {status!r}")
    return _offers(await pool.fetch("SELECT * FROM ivr_leave_queue($1, $2)", call_sid, status))


async def abandon(pool: asyncpg.Pool, call_sid: str) -> list[Offer]:
    """The caller hung up: returns the offers whose counselor legs must be cancelled."""
    return await dequeue(pool, call_sid, "abandoned")


async def offer_accepted(pool: asyncpg.Pool, offer_id: int) -> bool:
    """The counselor accepted: they go 'on-call' and the caller 'connected'.

    False when the offer was no longer ringing (the caller hung up, the tier
    moved on, an admin withdrew it): the counselor leg should be hung up.
    """
    accepted: bool = await pool.fetchval("SELECT ivr_offer_accepted($1)", offer_id)
    return accepted


async def offer_missed(pool: asyncpg.Pool, offer_id: int, state: EndState = "missed") -> bool:
    """The offer ended without a conversation; the caller waits again.

    False when the offer was no longer ringing (nothing changed).
    """
    if state not in END_STATES:
        raise ValueError(f"end state must be one of {sorted(END_STATES)}, not {state!r}")
    ended: bool = await pool.fetchval("SELECT ivr_offer_ended($1, $2)", offer_id, state)
    return ended


async def set_leg(pool: asyncpg.Pool, offer_id: int, leg_sid: str) -> bool:
    """Record the counselor leg's CallSid once the REST create returned.

    False when the offer stopped ringing while the leg was being created (the
    caller hung up meanwhile): that leg must be cancelled by whoever made it.
    """
    state: str | None = await pool.fetchval(
        "UPDATE offers SET leg_sid = $2 WHERE id = $1 RETURNING state", offer_id, leg_sid
    )
    return state == "ringing"


@dataclass(frozen=True)
class OpenLeg:
    """Another offer's leg that may still ring the counselor's phone."""

    offer_id: int
    leg_sid: str | None  # None: being placed, or placed by an instance that died


async def placing(
    pool: asyncpg.Pool, offer_id: int, counselor_id: str, seconds: float
) -> list[OpenLeg] | bool:
    """Written before the REST create: a leg of this offer may ring for up to
    `seconds` from now. Not written while another leg of the counselor's is
    not known over and not past the moment it must have rung out: those legs
    are returned instead (wait for them, or end them). False when the offer
    no longer rings (do not place)."""
    row = await pool.fetchrow(
        """
        WITH earlier AS (
            SELECT id, leg_sid FROM offers
            WHERE counselor_id = $2 AND id <> $1 AND leg_until > now()
        ), marked AS (
            UPDATE offers SET leg_until = now() + make_interval(secs => $3)
            WHERE id = $1 AND state = 'ringing' AND NOT EXISTS (SELECT 1 FROM earlier)
            RETURNING id
        )
        SELECT EXISTS (SELECT 1 FROM marked) AS marked,
               ARRAY(SELECT id FROM earlier ORDER BY id) AS ids,
               ARRAY(SELECT leg_sid FROM earlier ORDER BY id) AS sids
        """, offer_id, counselor_id, seconds)
    assert row is not None
    if row["ids"]:
        return [OpenLeg(i, sid) for i, sid in zip(row["ids"], row["sids"], strict=True)]
    return bool(row["marked"])


async def leg_over(pool: asyncpg.Pool, offer_id: int) -> None:
    """The offer's leg is known over (or was never created): its counselor's
    next leg need not wait for it."""
    await pool.execute(
        "UPDATE offers SET leg_until = NULL WHERE id = $1 AND leg_until IS NOT NULL", offer_id)


async def leg_seen(pool: asyncpg.Pool, offer_id: int, leg_sid: str) -> None:
    """A status callback named the offer's leg: kept if the create's answer was
    lost (its instance died), so that the leg can still be cancelled."""
    await pool.execute(
        "UPDATE offers SET leg_sid = $2 WHERE id = $1 AND leg_sid IS NULL", offer_id, leg_sid)


async def number_offer(pool: asyncpg.Pool, offer_id: int, number: int) -> None:
    """Record which offer of its caller's transfer progress this row is."""
    await pool.execute("UPDATE offers SET number = $2 WHERE id = $1", offer_id, number)


async def offer_number(pool: asyncpg.Pool, offer_id: int) -> int | None:
    """The offer's number in its caller's transfer progress (None: never rung)."""
    number: int | None = await pool.fetchval("SELECT number FROM offers WHERE id = $1", offer_id)
    return number


async def get_offer(pool: asyncpg.Pool, offer_id: int) -> Offer | None:
    record = await pool.fetchrow("SELECT * FROM offer_details WHERE id = $1", offer_id)
    return None if record is None else Offer(**dict(record))


async def offer_by_leg(pool: asyncpg.Pool, leg_sid: str) -> Offer | None:
    """The offer a counselor leg belongs to (for the leg's status callbacks)."""
    record = await pool.fetchrow("SELECT * FROM offer_details WHERE leg_sid = $1", leg_sid)
    return None if record is None else Offer(**dict(record))


async def open_offers_of(pool: asyncpg.Pool, call_sid: str) -> list[Offer]:
    return _offers(await pool.fetch(
        "SELECT * FROM offer_details WHERE call_sid = $1 AND state = 'ringing' ORDER BY id",
        call_sid,
    ))


_WAITING = """
    SELECT call_sid, queue, language, need, caller_state, status,
           extract(epoch FROM now() - enqueued_at)::double precision AS waited_seconds,
           tier_index, tier_kind,
           greatest(extract(epoch FROM now() - tier_started_at), 0)::double precision
               AS tier_seconds,
           attempts, offered_counselor
    FROM waiting
"""


async def get_waiting(pool: asyncpg.Pool, call_sid: str) -> WaitingCaller | None:
    record = await pool.fetchrow(_WAITING + " WHERE call_sid = $1", call_sid)
    return None if record is None else WaitingCaller(**dict(record))


async def waiting_callers(pool: asyncpg.Pool) -> list[WaitingCaller]:
    """Callers still on the line (waiting or being offered), longest waiting first."""
    records = await pool.fetch(
        _WAITING + " WHERE status IN ('waiting', 'offering') ORDER BY enqueued_at, call_sid"
    )
    return [WaitingCaller(**dict(r)) for r in records]
