"""Waiting callers and offers on a real PostgreSQL: order, outcomes, atomicity."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from itertools import pairwise
from types import MappingProxyType

import asyncpg
import pytest

from ivr.routing.model import Center, Counselor, Line, Queue, RoutingPlan, Tier
from ivr.routing.tiers import rank
from ivr.storage import counselors as cs
from ivr.storage import queue as q
from ivr.storage.database import open_pool
from tests.storage.dispatching import make_offers


def plan_of(people: Sequence[Counselor]) -> RoutingPlan:
    centers: dict[str, list[Counselor]] = defaultdict(list)
    for p in people:
        centers[p.center].append(p)
    return RoutingPlan(
        national_backup=Line("national", "National", "+18005550100"),
        centers=MappingProxyType({
            cid: Center(cid, cid, ("TX",), (), ("en", "es"), (), tuple(members))
            for cid, members in centers.items()
        }),
        queues=MappingProxyType({"crisis": Queue("crisis", (Tier("local"), Tier("national")))}),
    )


def person(pid: str, center: str = "c1", languages: tuple[str, ...] = ("en",),
           skills: tuple[str, ...] = ()) -> Counselor:
    return Counselor(pid, pid.title(), center, sip=f"sip:{pid}@{center}.example.org",
                     languages=languages, skills=skills)


async def staff(pool: asyncpg.Pool, *people: Counselor, available: Sequence[str] = ()) -> None:
    """Load counselors; `available` ones become free in that order (first = longest idle)."""
    await cs.sync_counselors(pool, plan_of(people))
    for n, pid in enumerate(available):
        await cs.set_presence(pool, pid, "available")
        await pool.execute(
            "UPDATE counselors SET idle_since = now() - make_interval(secs => $2) WHERE id = $1",
            pid, 1000.0 - n,
        )


async def wait(pool: asyncpg.Pool, sid: str, eligible: Sequence[str], *, ago: float = 0.0,
               need: str | None = None, language: str = "en",
               ranks: Sequence[int] = ()) -> None:
    """Put a caller on the line; `ranks` as tiers.rank gives them (none: all alike)."""
    assert await q.enqueue(pool, sid, "crisis", language, need, "TX", 0, "local", eligible,
                           ranks)
    if ago:
        await pool.execute(
            "UPDATE waiting SET enqueued_at = now() - make_interval(secs => $2)"
            " WHERE call_sid = $1",
            sid, ago,
        )


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await open_pool(dsn)
    yield p
    await p.close()


async def presence(pool: asyncpg.Pool, pid: str) -> str:
    return (await cs.get_counselor(pool, pid)).presence


async def status(pool: asyncpg.Pool, sid: str) -> tuple[str, int]:
    w = await q.get_waiting(pool, sid)
    assert w is not None
    return w.status, w.attempts


# --- selection order -----------------------------------------------------------------


async def test_longest_waiting_caller_gets_longest_idle_counselor(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), person("bob"), person("cat"), available=["bob", "ann"])
    await wait(pool, "CA-new", ["ann", "bob", "cat"], ago=5)
    await wait(pool, "CA-old", ["ann", "bob", "cat"], ago=50)
    await wait(pool, "CA-mid", ["ann", "bob", "cat"], ago=20)
    offers = await make_offers(pool)
    assert [(o.call_sid, o.counselor_id) for o in offers] == [("CA-old", "bob"), ("CA-mid", "ann")]
    first = offers[0]
    assert first.address == person("bob").address
    assert first.center_id == "c1" and first.tier_kind == "local" and first.state == "ringing"
    assert first.language == "en" and first.caller_state == "TX"
    assert 49 < first.waited_seconds < 60
    assert await status(pool, "CA-new") == ("waiting", 0)
    assert await status(pool, "CA-old") == ("offering", 0)
    assert await presence(pool, "bob") == "offered"
    assert (await cs.get_counselor(pool, "bob")).current_call == "CA-old"
    assert await make_offers(pool) == []  # nobody free any more


async def test_needed_skill_comes_before_idle_time(pool: asyncpg.Pool) -> None:
    ann, vet = person("ann"), person("vet", skills=("veteran",))
    await staff(pool, ann, vet, available=["ann", "vet"])
    await wait(pool, "CA-v", ["vet", "ann"], need="veteran", ago=10,
               ranks=[rank(vet, "veteran"), rank(ann, "veteran")])
    await wait(pool, "CA-x", ["vet", "ann"], ago=5, ranks=[rank(vet, None), rank(ann, None)])
    offers = await make_offers(pool)
    assert [(o.call_sid, o.counselor_id) for o in offers] == [("CA-v", "vet"), ("CA-x", "ann")]
    assert offers[0].need == "veteran"


async def test_need_without_skilled_counselor_still_gets_someone(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), available=["ann"])
    await wait(pool, "CA-v", ["ann"], need="veteran")
    assert [o.counselor_id for o in await make_offers(pool)] == ["ann"]


async def test_only_eligible_counselors_are_offered(pool: asyncpg.Pool) -> None:
    # The language filter comes from tiers.resolve through `eligible`.
    await staff(pool, person("ann"), person("eva", languages=("es",)), available=["ann", "eva"])
    await wait(pool, "CA-es", ["eva"], language="es", ago=30)
    await wait(pool, "CA-far", [], ago=20)  # an external-number tier: nobody to offer
    offers = await make_offers(pool)
    assert [(o.call_sid, o.counselor_id, o.language) for o in offers] == [("CA-es", "eva", "es")]
    assert await presence(pool, "ann") == "available"


async def test_a_caller_nobody_can_take_does_not_block_the_line(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), person("bob"), available=["bob"])
    await wait(pool, "CA-1", ["ann"], ago=30)  # ann is offline
    await wait(pool, "CA-2", ["bob"], ago=10)
    assert [o.call_sid for o in await make_offers(pool)] == ["CA-2"]


async def test_limit_bounds_one_pass(pool: asyncpg.Pool) -> None:
    names = [f"p{i}" for i in range(5)]
    await staff(pool, *(person(n) for n in names), available=names)
    for i in range(5):
        await wait(pool, f"CA-{i}", names, ago=100 - i)
    assert [o.call_sid for o in await make_offers(pool, limit=2)] == ["CA-0", "CA-1"]
    assert [o.call_sid for o in await make_offers(pool, limit=10)] == ["CA-2", "CA-3", "CA-4"]


async def test_enqueue_is_idempotent(pool: asyncpg.Pool) -> None:
    await wait(pool, "CA-1", ["ann"])
    assert not await q.enqueue(pool, "CA-1", "other", "es", None, None, 3, "backup", [], [])
    w = await q.get_waiting(pool, "CA-1")
    assert w is not None and w.queue == "crisis" and w.tier_index == 0


# --- how offers end ------------------------------------------------------------------


async def test_accepted_connects_once(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), available=["ann"])
    await wait(pool, "CA-1", ["ann"])
    (offer,) = await make_offers(pool)
    assert await q.set_leg(pool, offer.id, "CA-leg-1")
    assert await q.offer_accepted(pool, offer.id)
    assert not await q.offer_accepted(pool, offer.id)
    assert not await q.offer_missed(pool, offer.id, "missed")
    assert await status(pool, "CA-1") == ("connected", 0)
    row = await cs.get_counselor(pool, "ann")
    assert (row.presence, row.current_call) == ("on-call", "CA-1")
    found = await q.offer_by_leg(pool, "CA-leg-1")
    assert found is not None and found.id == offer.id and found.state == "accepted"
    assert await q.open_offers_of(pool, "CA-1") == []


async def test_no_answer_sets_counselor_not_ready(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), person("bob"), available=["ann", "bob"])
    await wait(pool, "CA-1", ["ann", "bob"])
    (offer,) = await make_offers(pool)
    assert offer.counselor_id == "ann"
    assert await q.offer_missed(pool, offer.id, "missed")
    assert await presence(pool, "ann") == "offline"
    assert await status(pool, "CA-1") == ("waiting", 1)
    (second,) = await make_offers(pool)
    assert second.counselor_id == "bob"


async def test_failed_leg_sets_counselor_not_ready(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), available=["ann"])
    await wait(pool, "CA-1", ["ann"])
    (offer,) = await make_offers(pool)
    assert await q.offer_missed(pool, offer.id, "failed")
    assert await presence(pool, "ann") == "offline"


async def test_decline_keeps_place_but_not_this_caller(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), person("bob"), available=["ann"])
    await wait(pool, "CA-1", ["ann", "bob"], ago=20)
    idle_before = (await cs.get_counselor(pool, "ann")).idle_since
    (offer,) = await make_offers(pool)
    assert await q.offer_missed(pool, offer.id, "declined")
    ann = await cs.get_counselor(pool, "ann")
    assert ann.presence == "available" and ann.idle_since == idle_before
    assert await status(pool, "CA-1") == ("waiting", 1)
    # Not rung again for the same caller in the same tier...
    assert await make_offers(pool) == []
    # ...but still first in line for the next caller.
    await wait(pool, "CA-2", ["ann"])
    assert [(o.call_sid, o.counselor_id) for o in await make_offers(pool)] == [("CA-2", "ann")]


async def test_a_new_tier_may_ring_the_same_counselor_again(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), available=["ann"])
    await wait(pool, "CA-1", ["ann"])
    (offer,) = await make_offers(pool)
    assert await q.offer_missed(pool, offer.id, "declined")
    assert await q.set_tier(pool, "CA-1", 1, "backup", ["ann"], [0]) == []
    (again,) = await make_offers(pool)
    assert again.counselor_id == "ann" and again.tier_kind == "backup"


async def test_cancel_does_not_count_as_an_attempt(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), available=["ann"])
    await wait(pool, "CA-1", ["ann"])
    (offer,) = await make_offers(pool)
    assert await q.offer_missed(pool, offer.id, "canceled")
    assert await status(pool, "CA-1") == ("waiting", 0)
    assert await presence(pool, "ann") == "available"


async def test_set_tier_cancels_the_ringing_offer(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), person("bob"), available=["ann", "bob"])
    await wait(pool, "CA-1", ["ann"])
    (offer,) = await make_offers(pool)
    await q.set_leg(pool, offer.id, "CA-leg")
    (cancelled,) = await q.set_tier(pool, "CA-1", 1, "backup", ["bob"], [0])
    assert (cancelled.id, cancelled.state, cancelled.leg_sid) == (offer.id, "canceled", "CA-leg")
    assert await presence(pool, "ann") == "available"
    w = await q.get_waiting(pool, "CA-1")
    assert w is not None and (w.status, w.tier_index, w.tier_kind) == ("waiting", 1, "backup")
    assert not await q.offer_accepted(pool, offer.id)
    assert [o.counselor_id for o in await make_offers(pool)] == ["bob"]


async def test_abandon_cancels_and_returns_legs_to_hang_up(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), available=["ann"])
    await wait(pool, "CA-1", ["ann"])
    (offer,) = await make_offers(pool)
    await q.set_leg(pool, offer.id, "CA-leg")
    assert [o.id for o in await q.open_offers_of(pool, "CA-1")] == [offer.id]
    (cancelled,) = await q.abandon(pool, "CA-1")
    assert (cancelled.id, cancelled.state, cancelled.leg_sid) == (offer.id, "canceled", "CA-leg")
    assert await status(pool, "CA-1") == ("abandoned", 0)
    assert await presence(pool, "ann") == "available"
    # The counselor pressing 1 a moment later connects nobody.
    assert not await q.offer_accepted(pool, offer.id)
    assert await make_offers(pool) == []
    assert await q.abandon(pool, "CA-1") == []
    assert await q.waiting_callers(pool) == []


async def test_leg_created_after_the_caller_left_must_be_cancelled(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), available=["ann"])
    await wait(pool, "CA-1", ["ann"])
    (offer,) = await make_offers(pool)
    (cancelled,) = await q.abandon(pool, "CA-1")
    assert cancelled.leg_sid is None  # the REST create had not returned yet
    assert not await q.set_leg(pool, offer.id, "CA-late-leg")


async def test_a_phone_is_rung_again_only_once_its_earlier_leg_is_over(
    pool: asyncpg.Pool
) -> None:
    await staff(pool, person("ann"), available=["ann"])
    await wait(pool, "CA-1", ["ann"])
    (first,) = await make_offers(pool)
    assert await q.placing(pool, first.id, "ann", 30) is True
    # The REST create's answer was lost; the leg's first callback names it.
    await q.leg_seen(pool, first.id, "CA-leg-1")
    await q.leg_seen(pool, first.id, "CA-other")  # a second name changes nothing
    (cancelled,) = await q.abandon(pool, "CA-1")  # its cancel not (yet) taken by Twilio
    assert cancelled.leg_sid == "CA-leg-1"
    await wait(pool, "CA-2", ["ann"])
    (second,) = await make_offers(pool)
    assert second.counselor_id == "ann"  # free again in the database at once...
    # ... but her phone is not rung for the second caller while the first leg may ring.
    assert await q.placing(pool, second.id, "ann", 30) == [q.OpenLeg(first.id, "CA-leg-1")]
    await q.leg_over(pool, first.id)
    assert await q.placing(pool, second.id, "ann", 30) is True
    # An answered leg rings no more; a leg past its ring time blocks nobody.
    assert await q.offer_accepted(pool, second.id)
    assert await pool.fetchval("SELECT leg_until FROM offers WHERE id = $1", second.id) is None
    await pool.execute("UPDATE offers SET leg_until = now() - interval '1 second'"
                       " WHERE id = $1", first.id)
    await wait(pool, "CA-3", ["ann"])
    await cs.set_presence(pool, "ann", "offline")  # (her call over) and back
    await cs.set_presence(pool, "ann", "available")
    (third,) = await make_offers(pool)
    assert await q.placing(pool, third.id, "ann", 30) is True
    # An offer that no longer rings is not marked (nor placed).
    await q.abandon(pool, "CA-3")
    assert await q.placing(pool, third.id, "ann", 30) is False


async def test_dequeue_keeps_the_first_final_status(pool: asyncpg.Pool) -> None:
    await wait(pool, "CA-1", [])
    assert await q.dequeue(pool, "CA-1", "backup") == []
    await q.abandon(pool, "CA-1")
    assert await status(pool, "CA-1") == ("backup", 0)
    assert await q.dequeue(pool, "CA-unknown", "abandoned") == []
    with pytest.raises(ValueError):
        await q.dequeue(pool, "CA-1", "waiting")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await q.offer_missed(pool, 1, "accepted")  # type: ignore[arg-type]


# --- atomicity across instances ------------------------------------------------------


async def test_two_instances_never_double_offer(dsn: str) -> None:
    """Two pools (two server instances) make and resolve offers at full speed."""
    pools = [await open_pool(dsn, min_size=3, max_size=3) for _ in range(2)]
    try:
        names = [f"p{i}" for i in range(6)]
        await staff(pools[0], *(person(n) for n in names), available=names)
        callers = [f"CA-{i:03d}" for i in range(80)]
        for i, sid in enumerate(callers):
            await wait(pools[0], sid, random.Random(i).sample(names, 3), ago=1000 - i)
        claimed: list[q.Offer] = []

        async def instance(pool: asyncpg.Pool, seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(60):
                offers = await make_offers(pool, limit=3)
                claimed.extend(offers)
                for offer in offers:
                    outcome = rng.random()
                    if outcome < 0.4:
                        assert await q.offer_accepted(pool, offer.id)
                        await cs.call_ended_for_counselor(pool, offer.counselor_id)
                        await cs.set_presence(pool, offer.counselor_id, "available")
                    elif outcome < 0.7:
                        assert await q.offer_missed(pool, offer.id, "declined")
                    else:
                        assert await q.offer_missed(pool, offer.id, "missed")
                        await cs.set_presence(pool, offer.counselor_id, "available")

        await asyncio.gather(instance(pools[0], 1), instance(pools[1], 2))
        rows = await pools[0].fetch(
            "SELECT counselor_id, call_sid, created_at, ended_at, state FROM offers ORDER BY id"
        )
    finally:
        for p in pools:
            await p.close()
    assert len(claimed) == len(rows) > 40
    assert len({o.id for o in claimed}) == len(claimed)
    # Every offer has ended and no two open intervals of one counselor, or of
    # one caller, ever overlapped.
    by_counselor: dict[str, list[asyncpg.Record]] = defaultdict(list)
    by_call: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for r in rows:
        assert r["state"] != "ringing" and r["ended_at"] is not None
        by_counselor[r["counselor_id"]].append(r)
        by_call[r["call_sid"]].append(r)
    for group in (*by_counselor.values(), *by_call.values()):
        spans = sorted((r["created_at"], r["ended_at"]) for r in group)
        for (_, end), (start, _) in pairwise(spans):
            assert end <= start
    # A caller is connected at most once.
    accepted = [r["call_sid"] for r in rows if r["state"] == "accepted"]
    assert len(accepted) == len(set(accepted))


async def test_requeue_after_a_dropped_counselor_keeps_the_place(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), person("bob"), available=["ann"])
    await wait(pool, "CA-1", ["ann"], ago=60)
    (offer,) = await make_offers(pool)
    assert not await q.requeue(pool, "CA-1", 0, "local", ["bob"], [0])  # not connected yet
    assert await q.offer_accepted(pool, offer.id)
    await wait(pool, "CA-2", ["bob"], ago=5)
    assert await q.requeue(pool, "CA-1", 0, "local", ["bob"], [0])
    await cs.set_presence(pool, "bob", "available")
    # The first caller is still the longest waiting, with a list of their new tier.
    assert [(o.call_sid, o.counselor_id) for o in await make_offers(pool)] == [("CA-1", "bob")]


async def test_dispatchers_are_woken_when_someone_may_be_matched(
    pool: asyncpg.Pool, dsn: str
) -> None:
    listener = await asyncpg.connect(dsn)
    woken: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(q.ROUTING_CHANNEL, lambda *args: woken.put_nowait(args[2]))
    try:
        await staff(pool, person("ann"))
        await wait(pool, "CA-1", ["ann"])
        await asyncio.wait_for(woken.get(), 5)  # a caller joined the line
        await cs.set_presence(pool, "ann", "available")
        await asyncio.wait_for(woken.get(), 5)  # a counselor became free
        (offer,) = await make_offers(pool)
        await q.offer_missed(pool, offer.id, "declined")
        await asyncio.wait_for(woken.get(), 5)  # the caller waits again
        assert woken.empty()
    finally:
        await listener.close()
