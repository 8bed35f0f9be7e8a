"""Timer rows: claimed by one instance at a time, leased, taken over when a
lease runs out, put back with a backoff; all on the caller's clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from ivr.storage import timers
from ivr.storage.database import open_pool

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)  # the app's clock, far from the database's


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await open_pool(dsn)
    yield p
    await p.close()


async def test_a_timer_falls_due_on_the_apps_clock(pool: asyncpg.Pool) -> None:
    assert await timers.add(pool, "tier_deadline", "CA1:1", T0 + timedelta(seconds=20),
                            call_sid="CA1", detail={"stage": 1})
    # The same intent twice is one row.
    assert not await timers.add(pool, "tier_deadline", "CA1:1", T0, call_sid="CA1")
    assert await timers.claim_due(pool, T0 + timedelta(seconds=19), "a", 30) == []
    [due] = await timers.claim_due(pool, T0 + timedelta(seconds=20), "a", 30)
    assert (due.kind, due.subject, due.detail, due.attempts) == (
        "tier_deadline", "CA1:1", {"stage": 1}, 1)


async def test_a_leased_timer_is_nobody_elses_until_the_lease_runs_out(
    pool: asyncpg.Pool,
) -> None:
    await timers.add(pool, "place_leg", "7", timers.AT_ONCE, call_sid="CA1")
    [mine] = await timers.claim_due(pool, T0, "a", 30)
    assert await timers.claim_due(pool, T0 + timedelta(seconds=29), "b", 30) == []
    # Instance a died: its lease ends, b takes the work over.
    [taken] = await timers.claim_due(pool, T0 + timedelta(seconds=30), "b", 30)
    assert taken.id == mine.id and taken.attempts == 2
    await timers.finish(pool, taken.id, T0 + timedelta(seconds=31), "placed CA2")
    assert await timers.claim_due(pool, T0 + timedelta(hours=1), "c", 30) == []
    assert await timers.open_timers(pool) == []


async def test_two_instances_claiming_at_once_split_the_timers(pool: asyncpg.Pool) -> None:
    for n in range(40):
        await timers.add(pool, "move_caller", f"CA{n}:1", timers.AT_ONCE, call_sid=f"CA{n}")
    a, b = await asyncio.gather(timers.claim_due(pool, T0, "a", 30, limit=40),
                                timers.claim_due(pool, T0, "b", 30, limit=40))
    ids = [t.id for t in a] + [t.id for t in b]
    assert len(ids) == 40 and len(set(ids)) == 40


async def test_a_failed_attempt_comes_back_later_and_a_stopping_instance_gives_back(
    pool: asyncpg.Pool,
) -> None:
    await timers.add(pool, "move_caller", "CA1:2", timers.AT_ONCE, call_sid="CA1")
    [first] = await timers.claim_due(pool, T0, "a", 30)
    await timers.retry(pool, first.id, T0 + timers.backoff(first.attempts), "failed: 503")
    assert await timers.claim_due(pool, T0 + timedelta(seconds=0.4), "a", 30) == []
    [again] = await timers.claim_due(pool, T0 + timedelta(seconds=0.5), "a", 30)
    assert await timers.release(pool, "a") == 1
    [taken] = await timers.claim_due(pool, T0 + timedelta(seconds=0.5), "b", 30)
    assert taken.id == again.id and taken.attempts == 3
    assert [timers.backoff(n).total_seconds() for n in (1, 2, 3, 4, 5, 6, 9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert await timers.cancel_for_call(pool, "CA1", T0, timers.KINDS, "over") == 1
    assert await timers.open_timers(pool, "CA1") == []


async def test_intents_recorded_leased_are_carried_out_by_their_recorder_first(
    pool: asyncpg.Pool,
) -> None:
    made = await timers.add_leased(pool, "place_leg", [("1", "CA1"), ("2", "CA2")], T0, "a", 30)
    assert sorted(t.subject for t in made) == ["1", "2"] and {t.attempts for t in made} == {1}
    # Recorded again (another dispatcher pass): still one row each, none new.
    assert await timers.add_leased(pool, "place_leg", [("1", "CA1")], T0, "b", 30) == []
    assert await timers.claim_due(pool, T0 + timedelta(seconds=29), "b", 30) == []
    taken = await timers.claim_due(pool, T0 + timedelta(seconds=30), "b", 30)  # a died
    assert sorted(t.subject for t in taken) == ["1", "2"]
