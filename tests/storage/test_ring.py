"""The progression's Ring on a real PostgreSQL: the guarded statement (ivr_ring)
and the dispatcher pass that advances the line with it (Transfers.dispatch_once)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

import asyncpg
import pytest

from ivr.routing.progression import Availability, advance
from ivr.routing.signals import CounselorFreed, LegDeclined, Ring
from ivr.routing.steps import DialStep, Step, WarmStep
from ivr.storage import dispatch
from ivr.storage import queue as q
from ivr.storage.database import open_pool
from ivr.telephony.transfer import Transfers
from tests.storage.dispatching import holding, progress, ringing
from tests.storage.test_queue import person, staff

NATIONAL = DialStep("national", "National", ("+18005550100",), 30, last=True)


def steps_for(counselors: Sequence[str], ranks: Sequence[int] = (),
              skip: bool = False) -> tuple[Step, ...]:
    return (WarmStep("local", "Center 1", tuple(counselors), 60, skip, ("c1",), tuple(ranks)),
            NATIONAL)


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await open_pool(dsn)
    yield p
    await p.close()


# The guarded statement -------------------------------------------------------------


async def test_a_ring_makes_the_offer_and_stores_the_progress_in_one_statement(
    pool: asyncpg.Pool,
) -> None:
    await staff(pool, person("ann"), available=["ann"])
    await holding(pool, "CA-1", steps_for(["ann"]), ago=5)
    seen = await progress(pool, "CA-1")
    rung = seen.__class__.from_json({**seen.to_json(), "offers_made": 1})
    offer = await dispatch.ring(pool, "CA-1", "ann", 1, seen.to_json(), rung.to_json())
    assert offer is not None and (offer.counselor_id, offer.number) == ("ann", 1)
    assert (await progress(pool, "CA-1")).offers_made == 1
    assert await ringing(pool) == {("CA-1", "ann", 1)}
    assert (await q.get_waiting(pool, "CA-1")).status == "offering"  # type: ignore[union-attr]


async def test_a_ring_is_refused_when_the_progress_moved_or_the_counselor_is_taken(
    pool: asyncpg.Pool,
) -> None:
    await staff(pool, person("ann"), person("bob"), available=["ann"])
    await holding(pool, "CA-1", steps_for(["ann", "bob"]), ago=5)
    await holding(pool, "CA-2", steps_for(["ann", "bob"]), ago=1)
    seen = (await progress(pool, "CA-1")).to_json()
    stale = {**seen, "tried": ["zed"]}
    assert await dispatch.ring(pool, "CA-1", "ann", 1, stale, seen) is None  # moved meanwhile
    assert await dispatch.ring(pool, "CA-1", "bob", 1, seen, seen) is None  # bob is offline
    assert await dispatch.ring(pool, "CA-1", "ann", 1, seen, seen) is not None
    other = (await progress(pool, "CA-2")).to_json()
    assert await dispatch.ring(pool, "CA-2", "ann", 1, other, other) is None  # ann is offered
    await q.set_tier(pool, "CA-1", 0, "local", ["ann", "bob"], [])  # ends ann's offer
    await pool.execute("UPDATE counselors SET presence = 'wrap-up' WHERE id = 'ann'")
    assert await dispatch.ring(pool, "CA-2", "ann", 1, other, other) is None  # in wrap-up
    assert await ringing(pool) == set()


async def test_an_offer_number_is_made_once_at_most(pool: asyncpg.Pool) -> None:
    """Made once, never again, whatever became of it (its leg event may not have
    reached the progress yet): a progress that still reads as before the offer
    cannot have it made a second time."""
    await staff(pool, person("ann"), available=["ann"])
    await holding(pool, "CA-1", steps_for(["ann"]), ago=5)
    seen = (await progress(pool, "CA-1")).to_json()
    rung = {**seen, "offers_made": 1}
    offer = await dispatch.ring(pool, "CA-1", "ann", 1, seen, rung)
    assert offer is not None and offer.number == 1
    assert await q.offer_missed(pool, offer.id, "declined")  # ann is available again
    await pool.execute("UPDATE calls SET transfer = $2 WHERE call_sid = $1", "CA-1", seen)
    assert await dispatch.ring(pool, "CA-1", "ann", 1, seen, rung) is None
    assert await ringing(pool) == set()
    assert (await progress(pool, "CA-1")).to_json() == seen


# The dispatcher ------------------------------------------------------------------------


async def test_the_longest_waiting_caller_gets_the_freed_counselor(
    pool: asyncpg.Pool, transfers_on: Callable[[asyncpg.Pool], Transfers]
) -> None:
    await staff(pool, person("ann"), person("zed"))
    await holding(pool, "CA-new", steps_for(["ann"]), ago=10)
    await holding(pool, "CA-old", steps_for(["ann"]), ago=30)
    await holding(pool, "CA-oldest", steps_for(["zed"]), ago=60)  # not one of ann's
    transfers = transfers_on(pool)
    await transfers.dispatch_once()
    assert await ringing(pool) == set()  # nobody free
    untouched = await progress(pool, "CA-new")
    await staff(pool, person("ann"), person("zed"), available=["ann"])
    await transfers.dispatch_once()
    assert await ringing(pool) == {("CA-old", "ann", 1)}
    p = await progress(pool, "CA-old")
    assert p.offer is not None and (p.offer.number, p.offer.counselor) == (1, "ann")
    assert await progress(pool, "CA-new") == untouched
    # The leg's placement is recorded before it is made (a timer row).
    assert await pool.fetchval(
        "SELECT count(*) FROM timers WHERE kind = 'place_leg' AND call_sid = 'CA-old'") == 1


async def test_one_pass_rings_each_free_counselor_once_best_rank_first(
    pool: asyncpg.Pool, transfers_on: Callable[[asyncpg.Pool], Transfers]
) -> None:
    """Two counselors free, three callers who could each have either: the two
    longest waiting are rung, each by another counselor; the better ranked
    (a skill the caller needs) goes to the first, though longer idle."""
    await staff(pool, person("ann"), person("bob"), available=["ann", "bob"])
    for sid, ago in (("CA-1", 30), ("CA-2", 20), ("CA-3", 10)):
        await holding(pool, sid, steps_for(["ann", "bob"], ranks=[1, 0]), ago=ago)
    await transfers_on(pool).dispatch_once()
    assert await ringing(pool) == {("CA-1", "bob", 1), ("CA-2", "ann", 1)}
    assert (await progress(pool, "CA-3")).offer is None


async def test_no_caller_is_rung_ahead_of_one_whose_ring_was_refused(
    pool: asyncpg.Pool, transfers_on: Callable[[asyncpg.Pool], Transfers]
) -> None:
    """Two counselors free, two callers: the one who waited longer has their
    call row changed by another transaction as the pass rings (a webhook of
    theirs), so their ring is refused. The caller after them is not rung
    ahead of them in that pass: the next pass rings both, in the order of
    waiting (first offers never overtake the line)."""
    await staff(pool, person("ann"), person("bob"), available=["ann", "bob"])
    await holding(pool, "CA-1", steps_for(["ann", "bob"]), ago=30)
    await holding(pool, "CA-2", steps_for(["ann", "bob"]), ago=20)
    transfers = transfers_on(pool)
    async with pool.acquire() as webhook, webhook.transaction():
        await webhook.execute("SELECT 1 FROM calls WHERE call_sid = 'CA-1' FOR UPDATE")
        await transfers.dispatch_once()
        assert await ringing(pool) == set()
    await transfers.dispatch_once()
    rung = await pool.fetch("SELECT call_sid FROM offers ORDER BY id")
    assert [r["call_sid"] for r in rung] == ["CA-1", "CA-2"]


async def test_a_ring_reaching_carry_out_rings_nobody_and_moves_the_caller_on(
    pool: asyncpg.Pool, transfers_on: Callable[[asyncpg.Pool], Transfers],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only a dispatcher pass rings: a Ring reaching carry_out (a programming
    error) rings nobody, is logged as an error, and the offer the stored
    progress holds is withdrawn; ann being taken by a caller waiting longer,
    and nobody else free in a tier that does not wait, the progression moves
    the caller on."""
    await staff(pool, person("ann"), available=["ann"])
    await holding(pool, "CA-1", steps_for(["ann"]), ago=30)
    await holding(pool, "CA-2", steps_for(["ann"], skip=True), ago=10)
    seen = await progress(pool, "CA-2")
    intent, actions = advance(seen, CounselorFreed(), datetime.now(UTC),
                              Availability(free=("ann",)))
    assert [type(a) for a in actions] == [Ring]
    await pool.execute("UPDATE calls SET transfer = $2 WHERE call_sid = $1", "CA-2",
                       intent.to_json())
    transfers = transfers_on(pool)
    await transfers.dispatch_once()  # the longest waiting has ann
    assert await ringing(pool) == {("CA-1", "ann", 1)}
    with caplog.at_level(logging.ERROR, logger="ivr.telephony.transfer"):
        await transfers.carry_out("CA-2", intent, actions, 3)
    assert await ringing(pool) == {("CA-1", "ann", 1)}
    assert any("reached carry_out" in r.getMessage() and r.levelno == logging.ERROR
               for r in caplog.records)
    moved = await progress(pool, "CA-2")
    assert (moved.step.tier, moved.stage, moved.offer) == ("national", 2, None)
    assert (await q.get_waiting(pool, "CA-2")).status == "backup"  # type: ignore[union-attr]


async def test_two_dispatchers_racing_never_ring_a_counselor_or_caller_twice(
    dsn: str, pool: asyncpg.Pool, transfers_on: Callable[[asyncpg.Pool], Transfers]
) -> None:
    """Two instances' dispatchers pass at once, over and over, while offers end and
    counselors come back: every offer made is one the caller's progress holds, and
    no counselor or caller ever has two open offers (the unique indexes would
    refuse it: the pass would raise)."""
    people = [person(f"k{n:02d}") for n in range(12)]
    ids = [p.id for p in people]
    await staff(pool, *people, available=ids)
    rng = random.Random(5)
    for n in range(40):
        await holding(pool, f"CA-{n:02d}", steps_for(rng.sample(ids, 6)), ago=100 - n)
    other = await open_pool(dsn)
    try:
        a, b = transfers_on(pool), transfers_on(other)
        made = 0
        for _ in range(15):
            await asyncio.gather(a.dispatch_once(), b.dispatch_once())
            open_now = await ringing(pool)
            assert len({c for _, c, _ in open_now}) == len(open_now)
            assert len({s for s, _, _ in open_now}) == len(open_now)
            for sid, counselor, number in open_now:
                p = await progress(pool, sid)
                assert p.offer is not None and (p.offer.counselor, p.offer.number) == (
                    counselor, number)
            made += len(open_now)
            # Half the phones stop ringing (declined: the counselor is free again).
            for offer_id in await pool.fetchval(
                    "SELECT array_agg(id) FROM offers WHERE state = 'ringing'") or []:
                if rng.random() < 0.5:
                    offer = await q.get_offer(pool, offer_id)
                    assert offer is not None and offer.number is not None
                    await a.leg_ended(offer, "declined", LegDeclined(offer.number))
        assert made > 12
        # Every offer row is one its caller's progress made: numbered, at most once.
        rows = await pool.fetch("SELECT call_sid, number FROM offers")
        assert all(r["number"] is not None for r in rows)
        assert len({(r["call_sid"], r["number"]) for r in rows}) == len(rows)
    finally:
        await other.close()


async def test_a_legs_callbacks_name_it_and_tell_its_end(
    pool: asyncpg.Pool, transfers_on: Callable[[asyncpg.Pool], Transfers]
) -> None:
    """The REST create's answer lost with its instance: the leg's first status
    callback records its CallSid (so it can still be cancelled), a later one
    changes nothing, and its final status marks it over."""
    await staff(pool, person("ann"), available=["ann"])
    await holding(pool, "CA-1", steps_for(["ann"]), ago=5)
    transfers = transfers_on(pool)
    await transfers.dispatch_once()
    (offer,) = await q.open_offers_of(pool, "CA-1")
    assert await q.placing(pool, offer.id, "ann", 30) is True
    await transfers.leg_status(offer.id, "initiated", "CA-leg")
    await transfers.leg_status(offer.id, "ringing", "CA-other")
    assert (await q.get_offer(pool, offer.id)).leg_sid == "CA-leg"  # type: ignore[union-attr]
    assert await pool.fetchval("SELECT leg_until FROM offers WHERE id = $1", offer.id)
    await transfers.leg_status(offer.id, "no-answer", "CA-leg")
    assert await pool.fetchval("SELECT leg_until FROM offers WHERE id = $1", offer.id) is None
    assert (await q.get_offer(pool, offer.id)).state == "missed"  # type: ignore[union-attr]
