"""Callers holding and dispatchers of their own, for the storage tests of the
progression's Ring (the guarded statement, the dispatcher pass, the ring order),
and offers made for waiting-line rows the way the server makes them (`make_offers`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg

from ivr.content import Content
from ivr.routing.progress import Progress
from ivr.routing.progression import Availability, advance, begin
from ivr.routing.signals import CounselorFreed, Ring
from ivr.routing.steps import DialStep, Step, WarmStep
from ivr.storage import dispatch
from ivr.storage import queue as q
from ivr.telephony.apihealth import ApiHealth
from ivr.telephony.dispatcher import LOOK_LIMIT
from ivr.telephony.rest import TwilioRest
from ivr.telephony.transfer import Transfers
from ivr.telephony.twiml import Renderer

# Long enough that no test's tier runs out while it makes offers.
LINE_TIER_SECONDS = 3600
NATIONAL = DialStep("national", "National", ("+18005550100",), 30, last=True)


async def holding(pool: asyncpg.Pool, sid: str, steps: Sequence[Step], *, ago: float = 0.0,
                  need: str | None = None, language: str = "en") -> None:
    """A caller holding at the first (warm) step, nobody rung, on the line `ago` s:
    the call row with its progress (as JSON, as the server keeps it) and the line row."""
    # Begun with nobody free, a tier that skips would be skipped: it is begun
    # as one that waits, then its step is the one asked for.
    first = steps[0]
    assert isinstance(first, WarmStep)
    waits = (replace(first, skip_when_unavailable=False), *steps[1:])
    p, _ = begin(waits, datetime.now(UTC), Availability(), language=language, queue="crisis",
                 need=need)
    p = replace(p, steps=tuple(steps))
    await pool.execute(
        "INSERT INTO calls (call_sid, flow_id, flow_version, seq, state, phase, transfer)"
        " VALUES ($1, 'f', '1', 3, '{}'::jsonb, 'transfer', $2)", sid, p.to_json())
    assert await q.enqueue(pool, sid, "crisis", language, need, "TX", 0, first.tier,
                           first.counselors, first.ranks)
    await pool.execute(
        "UPDATE waiting SET enqueued_at = now() - make_interval(secs => $2),"
        " tier_started_at = now() - make_interval(secs => $2) WHERE call_sid = $1", sid, ago)


async def progress(pool: asyncpg.Pool, sid: str) -> Progress:
    return Progress.from_json(await pool.fetchval(
        "SELECT transfer FROM calls WHERE call_sid = $1", sid))


async def ringing(pool: asyncpg.Pool) -> set[tuple[str, str, int]]:
    rows = await pool.fetch(
        "SELECT call_sid, counselor_id, number FROM offers WHERE state = 'ringing'")
    return {(r["call_sid"], r["counselor_id"], r["number"]) for r in rows}


def transfers_on(pool: asyncpg.Pool, content: Content) -> Transfers:
    """A dispatcher of its own, like one server instance: no timer worker (the
    legs' placements are recorded, never carried out), no REST API (nothing
    asks it). Its REST client is the caller's to close."""
    rest = TwilioRest("AC" + "0" * 32, "secret", "http://127.0.0.1:9")
    renderer = Renderer("https://ivr.example", content.flows.prompts, "+15125550100")
    return Transfers(pool, content.plan, renderer, rest, ApiHealth(pool, rest))


async def line_up(pool: asyncpg.Pool) -> None:
    """Give each caller waiting on the line the progress the server would keep
    for them, from their line row alone (these tests keep no call rows): holding
    at their tier, with its counselors in its order and ranks, those offered
    in it since it started tried, and its offers numbered on from the last one
    made. Only the rows that changed since are written (no call row yet, an
    offer the progress holds has ended, the tier changed, or offers were made
    it does not count); a write is guarded on the line row still waiting in
    that tier and the progress still as read (another instance may ring meanwhile)."""
    rows = await pool.fetch(
        """
        SELECT w.call_sid, w.language, w.need, w.queue, w.caller_state, w.tier_kind,
               w.eligible, w.ranks, w.tier_started_at,
               ARRAY(SELECT DISTINCT o.counselor_id FROM offers o
                     WHERE o.call_sid = w.call_sid AND o.created_at >= w.tier_started_at)
                   AS tried,
               m.made, c.transfer
        FROM waiting w LEFT JOIN calls c ON c.call_sid = w.call_sid
        CROSS JOIN LATERAL (SELECT coalesce(max(o.number), 0) AS made FROM offers o
                            WHERE o.call_sid = w.call_sid) m
        WHERE w.status = 'waiting'
          -- the progress codec's keys (ivr.routing.progress)
          AND (c.call_sid IS NULL OR jsonb_typeof(c.transfer->'offer') = 'object'
               OR c.updated_at <= w.tier_started_at
               OR coalesce((c.transfer->>'offers_made')::int, 0) <> m.made)
        """)
    now = datetime.now(UTC)
    for r in rows:
        step = WarmStep(r["tier_kind"], r["tier_kind"], tuple(r["eligible"]),
                        LINE_TIER_SECONDS, False, (), tuple(r["ranks"] or ()))
        p, _ = begin((step, NATIONAL), now, Availability(), language=r["language"],
                     queue=r["queue"], need=r["need"], caller_state=r["caller_state"])
        p = replace(p, tried=tuple(r["tried"]), offers_made=int(r["made"]))
        await pool.execute(
            """
            INSERT INTO calls (call_sid, flow_id, flow_version, seq, state, phase, transfer)
            SELECT $1, 'f', '1', 3, '{}'::jsonb, 'transfer', $2 FROM waiting w
            WHERE w.call_sid = $1 AND w.status = 'waiting' AND w.tier_started_at = $3
            ON CONFLICT (call_sid) DO UPDATE
            SET transfer = excluded.transfer, phase = 'transfer', updated_at = now()
            WHERE calls.transfer IS NOT DISTINCT FROM $4
            """,
            r["call_sid"], p.to_json(), r["tier_started_at"], r["transfer"])


async def decide(pool: asyncpg.Pool, limit: int = LOOK_LIMIT) -> list[dispatch.Decided]:
    """A dispatcher pass's decisions (ivr.telephony.dispatcher.pass_once): one look
    at the line (dispatch.look, at most `limit` callers), each caller, longest
    waiting first, advanced with CounselorFreed against one snapshot of who is
    free, a counselor rung leaving it for the callers after. Only the Rings:
    these tests move no caller to another tier."""
    line = await dispatch.look(pool, False, limit)
    free = list(line.free)
    decided: list[dispatch.Decided] = []
    now = datetime.now(UTC)
    for caller in line.callers:
        p = Progress.from_json(caller.transfer)
        rung, actions = advance(p, CounselorFreed(), now,
                                Availability(free=tuple(free), gone=line.gone))
        for action in actions:
            if isinstance(action, Ring):
                decided.append(dispatch.Decided(caller.call_sid, action.counselor,
                                                action.offer, caller.transfer, rung.to_json()))
                free.remove(action.counselor)
    return decided


async def make_offers(pool: asyncpg.Pool, limit: int = LOOK_LIMIT) -> list[q.Offer]:
    """Offers for the callers on the line, made as the server makes them: their
    progress from their line rows (`line_up`), a pass's decisions (`decide`),
    and the guarded statement (dispatch.ring_all). The offers made, in the
    order of waiting."""
    await line_up(pool)
    return await dispatch.ring_all(pool, await decide(pool, limit))
