"""The database side of offers made early, while the caller is still in the flow.

An early offer is an ordinary line row and offer (queue.py): the caller joins
the line of their likely transfer's first warm step, the dispatcher's claim
matches a counselor as for any caller. Two things differ, kept here: the
caller's arrival keeps the open offer (`arrived`, where `queue.set_tier`
would cancel it), and a counselor who accepted before the caller arrived is
confirmed only once the caller has (`confirm_accept`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from ivr.routing.progress import Phase, Progress
from ivr.storage.queue import checked_ranks

# Twilio's final call statuses: a caller whose call reports one has hung up.
_FINAL = ["completed", "busy", "failed", "no-answer", "canceled"]


async def arrived(
    pool: asyncpg.Pool, call_sid: str, tier_index: int, tier_kind: str,
    eligible: Sequence[str], ranks: Sequence[int], language: str,
) -> bool:
    """The caller reached the warm step their early offer was made for."""
    done: bool = await pool.fetchval(
        "SELECT ivr_early_arrived($1, $2, $3, $4, $5, $6)",
        call_sid, tier_index, tier_kind, list(eligible), checked_ranks(eligible, ranks), language)
    return done


async def confirm_accept(pool: asyncpg.Pool, call_sid: str, number: int) -> bool:
    """The counselor of offer `number`, who accepted early, has the caller now:
    their offer is accepted (counselor on-call, caller connected on the line),
    under the lock of the call row and only while the caller's call is live.
    False (nothing changed) when the caller hung up or the offer had ended."""
    async with pool.acquire() as conn, conn.transaction():
        live: str | None = await conn.fetchval(
            """
            SELECT call_sid FROM calls
            WHERE call_sid = $1 AND coalesce(twilio_status, '') <> ALL ($2::text[])
            FOR UPDATE
            """,
            call_sid, _FINAL)
        offer: int | None = await conn.fetchval(
            "SELECT id FROM offers WHERE call_sid = $1 AND number = $2 AND state = 'ringing'",
            call_sid, number)
        if live is None or offer is None:
            return False
        accepted: bool = await conn.fetchval("SELECT ivr_offer_accepted($1)", offer)
        return accepted


async def caller_of(pool: asyncpg.Pool, call_sid: str) -> tuple[dict[str, Any] | None, bool]:
    """A call's transfer progress, and whether the caller's call is still live."""
    row = await pool.fetchrow(
        """
        SELECT transfer, coalesce(twilio_status, '') <> ALL ($2::text[]) AND phase <> 'ended'
               AS live
        FROM calls WHERE call_sid = $1
        """,
        call_sid, _FINAL)
    if row is None:
        return None, False
    return row["transfer"], bool(row["live"])


async def caller_on_the_way(pool: asyncpg.Pool, call_sid: str, number: int | None) -> bool:
    """Whether a counselor alone in the caller's conference, who accepted offer
    `number`, should keep waiting: the caller's call is live and they accepted
    it early, so the caller is still on the way."""
    transfer, live = await caller_of(pool, call_sid)
    if not live or transfer is None or number is None:
        return False
    p = Progress.from_json(transfer)
    offer = p.offer
    if offer is None or offer.number != number:
        return False
    # Accepted early: the caller is still in the menu (EARLY) or hears the
    # transfer prompt before joining (CONNECTED on arrival). A counselor who
    # accepted a caller already holding finds them there, or they left.
    return offer.accepted and p.phase in (Phase.EARLY, Phase.CONNECTED)


async def early_languages(pool: asyncpg.Pool, call_sid: str) -> tuple[str, ...]:
    """Every language a caller offered early may still choose (empty when the
    caller's language is settled: their line row says it)."""
    transfer, _ = await caller_of(pool, call_sid)
    if transfer is None:
        return ()
    p = Progress.from_json(transfer)
    return p.languages if p.phase is Phase.EARLY else ()


async def accepted_early(pool: asyncpg.Pool, call_sid: str, number: int | None) -> bool:
    """Whether offer `number` of the call was accepted before the caller arrived
    (its counselor then waited for them in their conference)."""
    transfer, _ = await caller_of(pool, call_sid)
    if transfer is None or number is None:
        return False
    offer = Progress.from_json(transfer).offer
    return offer is not None and offer.number == number and offer.accepted
