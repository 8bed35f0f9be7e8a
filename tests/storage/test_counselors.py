"""Counselors and presence on a real PostgreSQL: plan sync, rules, races with offers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from ivr.storage import counselors as cs
from ivr.storage import queue as q
from ivr.storage.database import open_pool
from tests.storage.dispatching import decide, line_up, make_offers
from tests.storage.test_queue import person, plan_of, staff, wait


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await open_pool(dsn)
    yield p
    await p.close()


async def consistent(pool: asyncpg.Pool) -> None:
    """The invariant tying the three tables together holds."""
    bad = await pool.fetch(
        """
        SELECT o.id FROM offers o
        JOIN counselors k ON k.id = o.counselor_id
        JOIN waiting w ON w.call_sid = o.call_sid
        WHERE o.state = 'ringing' AND NOT (
            k.presence = 'offered' AND k.current_call = o.call_sid
            AND w.status = 'offering' AND w.offered_counselor = o.counselor_id)
        UNION ALL
        SELECT NULL FROM counselors k WHERE k.presence = 'offered' AND NOT EXISTS (
            SELECT 1 FROM offers o WHERE o.counselor_id = k.id AND o.state = 'ringing')
        UNION ALL
        SELECT NULL FROM waiting w WHERE w.status = 'offering' AND NOT EXISTS (
            SELECT 1 FROM offers o WHERE o.call_sid = w.call_sid AND o.state = 'ringing')
        """
    )
    assert bad == []


# --- the plan ------------------------------------------------------------------------


async def test_sync_adds_offline_and_keeps_presence(pool: asyncpg.Pool) -> None:
    ann = person("ann", skills=("veteran",))
    result = await cs.sync_counselors(pool, plan_of([ann, person("bob", center="c2")]))
    assert (result.upserted, result.removed) == (2, 0)
    row = await cs.get_counselor(pool, "ann")
    assert (row.presence, row.center_id, row.address) == ("offline", "c1", ann.address)
    assert (row.languages, row.skills, row.removed) == (("en",), ("veteran",), False)
    await cs.set_presence(pool, "ann", "available")
    moved = person("ann", languages=("en", "es"))
    result = await cs.sync_counselors(pool, plan_of([moved, person("bob", center="c2")]))
    assert (result.upserted, result.removed) == (1, 0)  # bob unchanged: not rewritten
    row = await cs.get_counselor(pool, "ann")
    assert (row.presence, row.languages, row.skills) == ("available", ("en", "es"), ())
    assert [r.id for r in await cs.list_counselors(pool)] == ["ann", "bob"]
    assert [r.id for r in await cs.list_counselors(pool, "c2")] == ["bob"]


async def test_sync_flags_removed_counselors_and_never_cuts_a_call(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), person("bob"), person("cat"), available=["ann", "bob"])
    await wait(pool, "CA-1", ["ann"])
    (offer,) = await make_offers(pool)
    result = await cs.sync_counselors(pool, plan_of([person("cat")]))
    assert result.removed == 2
    ann, bob = await cs.get_counselor(pool, "ann"), await cs.get_counselor(pool, "bob")
    assert (ann.presence, ann.removed) == ("offered", True)  # still ringing
    assert (bob.presence, bob.removed) == ("offline", True)
    # Once the ring ends, a removed counselor is not put back in rotation.
    assert await q.offer_missed(pool, offer.id, "declined")
    assert (await cs.get_counselor(pool, "ann")).presence == "offline"
    with pytest.raises(cs.PresenceConflict):
        await cs.set_presence(pool, "bob", "available")
    await cs.sync_counselors(pool, plan_of([person("bob"), person("cat")]))
    assert not (await cs.get_counselor(pool, "bob")).removed
    await cs.set_presence(pool, "bob", "available")
    await consistent(pool)


# --- presence by hand ----------------------------------------------------------------


async def test_presence_rules(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"))
    for bad in ("offered", "on-call", "busy", ""):
        with pytest.raises(cs.InvalidPresence):
            await cs.set_presence(pool, "ann", bad)
    with pytest.raises(cs.UnknownCounselor):
        await cs.set_presence(pool, "nobody", "available")
    with pytest.raises(cs.UnknownCounselor):
        await cs.get_counselor(pool, "nobody")
    change = await cs.set_presence(pool, "ann", "available")
    assert change.withdrawn is None
    first = change.counselor
    assert first.presence == "available" and first.idle_since is not None
    # Saying "available" again does not send them to the back of the line.
    again = (await cs.set_presence(pool, "ann", "available")).counselor
    assert again.idle_since == first.idle_since and again.presence_since == first.presence_since
    assert (await cs.set_presence(pool, "ann", "wrap-up")).counselor.presence == "wrap-up"
    back = (await cs.set_presence(pool, "ann", "available")).counselor
    assert back.idle_since is not None and back.idle_since > first.idle_since


async def test_available_is_refused_during_a_call(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), available=["ann"])
    await wait(pool, "CA-1", ["ann"])
    (offer,) = await make_offers(pool)
    assert await q.offer_accepted(pool, offer.id)
    with pytest.raises(cs.PresenceConflict, match="on a call"):
        await cs.set_presence(pool, "ann", "available")
    assert await cs.presence_counts(pool) == {"c1": {
        "available": 0, "offered": 0, "on-call": 1, "wrap-up": 0, "offline": 0}}
    await consistent(pool)


async def test_available_works_while_offered_and_withdraws_the_offer(
    pool: asyncpg.Pool,
) -> None:
    """An administrator repairs a counselor left 'offered' (a lost callback) without
    setting them offline first: the offer is withdrawn, the counselor free."""
    await staff(pool, person("ann"), available=["ann"])
    await wait(pool, "CA-1", ["ann"])
    (offer,) = await make_offers(pool)
    await q.set_leg(pool, offer.id, "CA-leg")
    change = await cs.set_presence(pool, "ann", "available")
    assert change.counselor.presence == "available" and change.counselor.current_call is None
    assert change.withdrawn is not None
    assert (change.withdrawn.id, change.withdrawn.state) == (offer.id, "canceled")
    w = await q.get_waiting(pool, "CA-1")
    assert w is not None and (w.status, w.attempts) == ("waiting", 0)
    await consistent(pool)


async def test_offline_withdraws_a_ringing_offer(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), person("bob"), available=["ann", "bob"])
    await wait(pool, "CA-1", ["ann", "bob"])
    (offer,) = await make_offers(pool)
    await q.set_leg(pool, offer.id, "CA-leg")
    change = await cs.set_presence(pool, "ann", "offline")
    assert change.counselor.presence == "offline" and change.counselor.current_call is None
    assert change.withdrawn is not None
    assert (change.withdrawn.id, change.withdrawn.state) == (offer.id, "canceled")
    assert change.withdrawn.leg_sid == "CA-leg"
    w = await q.get_waiting(pool, "CA-1")
    assert w is not None and (w.status, w.attempts) == ("waiting", 0)
    assert not await q.offer_accepted(pool, offer.id)
    assert [o.counselor_id for o in await make_offers(pool)] == ["bob"]
    await consistent(pool)


async def test_offline_during_a_call_keeps_the_call(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), available=["ann"])
    await wait(pool, "CA-1", ["ann"])
    (offer,) = await make_offers(pool)
    assert await q.offer_accepted(pool, offer.id)
    change = await cs.set_presence(pool, "ann", "offline")
    assert change.withdrawn is None and change.counselor.presence == "offline"
    caller = await q.get_waiting(pool, "CA-1")
    assert caller is not None and (caller.status, caller.offered_counselor) == ("connected", "ann")
    assert await q.get_offer(pool, offer.id) == replace(offer, state="accepted")
    # The end of the call does not undo what the supervisor set.
    assert await cs.call_ended_for_counselor(pool, "ann", "CA-1") is None
    assert (await cs.get_counselor(pool, "ann")).presence == "offline"


async def test_call_end_moves_to_wrap_up(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), available=["ann"])
    await wait(pool, "CA-1", ["ann"])
    (offer,) = await make_offers(pool)
    assert await cs.call_ended_for_counselor(pool, "ann") is None  # still ringing
    assert await q.offer_accepted(pool, offer.id)
    assert await cs.call_ended_for_counselor(pool, "ann", "CA-other") is None
    row = await cs.call_ended_for_counselor(pool, "ann", "CA-1")
    assert row is not None and (row.presence, row.current_call) == ("wrap-up", None)
    assert await cs.call_ended_for_counselor(pool, "ann", "CA-1") is None


async def test_tier_count_available(pool: asyncpg.Pool) -> None:
    await staff(pool, person("ann"), person("bob"), person("cat"), available=["ann", "cat"])
    assert await cs.tier_count_available(pool, ["ann", "bob"]) == 1
    assert await cs.tier_count_available(pool, ("ann", "bob", "cat", "nobody")) == 2
    assert await cs.tier_count_available(pool, []) == 0


# --- races ---------------------------------------------------------------------------


async def test_presence_change_racing_acceptance(dsn: str) -> None:
    """Two instances: one reports the counselor accepted, the other sets them offline."""
    a, b = await open_pool(dsn), await open_pool(dsn)
    try:
        await staff(a, person("ann"))
        for i in range(25):
            await cs.set_presence(a, "ann", "available")
            await wait(a, f"CA-{i}", ["ann"])
            (offer,) = await make_offers(a)
            accepted, change = await asyncio.gather(
                q.offer_accepted(a, offer.id), cs.set_presence(b, "ann", "offline")
            )
            final = await q.get_offer(a, offer.id)
            caller = await q.get_waiting(a, f"CA-{i}")
            assert final is not None and caller is not None
            assert change.counselor.presence == "offline"
            if accepted:  # the call goes on; the change only keeps further calls away
                assert change.withdrawn is None
                assert (final.state, caller.status) == ("accepted", "connected")
            else:  # the offer was withdrawn first: exactly one outcome, reported once
                assert change.withdrawn is not None and change.withdrawn.id == offer.id
                assert (final.state, caller.status) == ("canceled", "waiting")
                await q.abandon(a, f"CA-{i}")
            await consistent(a)
    finally:
        await a.close()
        await b.close()


async def test_presence_change_racing_hang_up(dsn: str) -> None:
    """The caller hangs up while a supervisor sets the ringing counselor offline."""
    a, b = await open_pool(dsn), await open_pool(dsn)
    try:
        await staff(a, person("ann"))
        for i in range(25):
            await cs.set_presence(a, "ann", "available")
            await wait(a, f"CA-{i}", ["ann"])
            (offer,) = await make_offers(a)
            hung_up, change = await asyncio.gather(
                q.abandon(a, f"CA-{i}"), cs.set_presence(b, "ann", "offline")
            )
            # The leg is reported for cancelling by exactly one of the two.
            reported = [o.id for o in hung_up] + (
                [change.withdrawn.id] if change.withdrawn else [])
            assert reported == [offer.id]
            assert change.counselor.presence == "offline"
            caller = await q.get_waiting(a, f"CA-{i}")
            assert caller is not None and caller.status == "abandoned"
            await consistent(a)
    finally:
        await a.close()
        await b.close()


async def test_presence_change_blocked_by_a_ring_sees_the_new_offer(
    pool: asyncpg.Pool, dsn: str
) -> None:
    """Another instance offers the counselor while the change waits for the row lock."""
    await staff(pool, person("ann"), available=["ann"])
    await wait(pool, "CA-1", ["ann"])
    await line_up(pool)
    (ring,) = await decide(pool)  # the other instance's pass decides...
    other = await asyncpg.connect(dsn)
    try:
        claim = other.transaction()
        await claim.start()
        # ...and makes its offer (dispatch.ring_all's statement), not committed yet.
        (offered,) = await other.fetch(
            "SELECT * FROM ivr_ring_all($1, $2, $3, $4::jsonb[], $5::jsonb[])",
            [ring.call_sid], [ring.counselor], [ring.number], [json.dumps(ring.seen)],
            [json.dumps(ring.transfer)])
        change_task = asyncio.create_task(cs.set_presence(pool, "ann", "offline"))
        for _ in range(500):  # until the change is waiting on the counselor's row lock
            waiting = await other.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert waiting == 1 and not change_task.done()
        await claim.commit()
        change = await change_task
    finally:
        await other.close()
    assert change.withdrawn is not None and change.withdrawn.id == offered["id"]
    assert change.counselor.presence == "offline"
    caller = await q.get_waiting(pool, "CA-1")
    assert caller is not None and caller.status == "waiting"
    await consistent(pool)
