"""The board read from a real database: calls by phase, today's figures with
the fail-safe answers, the waiting line and counselors."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import asyncpg
import pytest

from ivr.admin.console.board import load_board
from ivr.storage.database import open_pool
from tests.storage.test_queue import person, staff, wait


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await open_pool(dsn)
    yield p
    await p.close()


async def _call(pool: asyncpg.Pool, sid: str, phase: str, state: str | None = "TX",
                **outcome: object) -> None:
    await pool.execute(
        "INSERT INTO calls (call_sid, flow_id, flow_version, seq, state, phase, location_state)"
        " VALUES ($1, 'lifeline', 'v', 0, '{}'::jsonb, $2, $3)", sid, phase, state)
    if outcome:
        sets = ", ".join(f"{k} = ${n + 2}" for n, k in enumerate(outcome))
        await pool.execute(f"UPDATE calls SET {sets} WHERE call_sid = $1", sid, *outcome.values())


async def test_calls_by_phase_and_todays_figures(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann", center="tx"), person("bob", center="tx"), available=["bob"])
    await _call(pool, "CAmenu", "flow")
    await _call(pool, "CAhold", "transfer",
                transfer={"queue": "crisis", "phase": "holding"}, transfer_started_at=_ago(30))
    await wait(pool, "CAhold", ["ann", "bob"], ago=30)
    await _call(pool, "CAdial", "transfer", transfer={"queue": "crisis", "phase": "dialing"},
                transfer_started_at=_ago(60))
    await _call(pool, "CAdone", "ended", transfer={"queue": "crisis", "phase": "connected"},
                transfer_started_at=_ago(120), answered_at=_ago(100), answered_tier="national",
                answered_in_state=False, ended_at=_ago(10))
    await _call(pool, "CAlocal", "ended", state="NY",
                transfer={"queue": "crisis", "phase": "connected"},
                transfer_started_at=_ago(120), answered_at=_ago(110), answered_tier="local",
                answered_in_state=True, ended_at=_ago(10))

    board = await load_board(pool)

    assert board.phases == {"menus": 1, "holding": 1, "talking": 0, "external": 1}
    assert [(w.call_sid, w.caller_state, w.tier_kind) for w in board.waiting] == [
        ("CAhold", "TX", "local")]
    assert board.waiting[0].waited_seconds >= 30
    figures = {f.state: f for f in board.figures}
    assert set(figures) == {"NY", "TX", "all"}
    assert figures["TX"].failsafe == 1 and figures["NY"].failsafe == 0
    assert figures["all"].failsafe == 1
    assert figures["NY"].in_state_rate == 1.0 and figures["NY"].meets_goal is True
    assert figures["TX"].base.calls == 3  # held, dialling, answered by the national backup
    assert figures["TX"].meets_goal is False
    people = {c.id: c for c in board.counselors}
    assert people["bob"].presence == "available" and people["ann"].presence == "offline"
    assert board.by_center() == {"tx": [people["ann"], people["bob"]]}


def _ago(seconds: float) -> dt.datetime:
    """That long ago, but today (UTC): the board counts from midnight."""
    now = dt.datetime.now(dt.UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return max(now - dt.timedelta(seconds=seconds), midnight + dt.timedelta(milliseconds=1))
