"""Callers holding and dispatchers of their own, for the storage tests of the
progression's Ring (the guarded statement, the dispatcher pass, the ring order)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg

from ivr.content import Content
from ivr.routing.progress import Progress
from ivr.routing.progression import Availability, begin
from ivr.routing.steps import Step, WarmStep
from ivr.storage import queue as q
from ivr.telephony.apihealth import ApiHealth
from ivr.telephony.rest import TwilioRest
from ivr.telephony.transfer import Transfers
from ivr.telephony.twiml import Renderer


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
