"""The one order in which counselors are offered a caller (see ivr.routing.tiers.rank):
lowest rank (the needed skill), then longest idle, then id; language required.

Each row goes the server's way: the plan resolved into the warm step of the
caller's tier (stored as JSON in the call row's progress and read back), the
caller enqueued with that step's counselors and ranks, then dispatcher passes
on a real PostgreSQL (the progression picks: progression.best_free). Every
counselor offered declines (the leg's end fed to the progress), so the next
pass offers the next one: the sequence is the whole ring order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from ivr.flow.runtime import TransferTo
from ivr.routing.model import Counselor
from ivr.routing.signals import LegDeclined
from ivr.routing.steps import DialStep, WarmStep, step_from_json, step_to_json, transfer_steps
from ivr.storage import counselors as cs
from ivr.storage import queue as q
from ivr.storage.database import open_pool
from ivr.telephony.transfer import Transfers
from tests.storage.dispatching import holding
from tests.storage.test_queue import person, plan_of

VETERAN = ("veteran",)
BILINGUAL = ("en", "es")


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await open_pool(dsn)
    yield p
    await p.close()


async def rung_in_turn(pool: asyncpg.Pool, transfers: Transfers) -> list[str]:
    """Dispatcher passes until nobody is rung, each counselor rung declining."""
    rung: list[str] = []
    while True:
        await transfers.dispatch_once()
        offers = await q.open_offers_of(pool, "CA-1")
        if not offers:
            return rung
        (offer,) = offers
        assert offer.number is not None
        rung.append(offer.counselor_id)
        await transfers.leg_ended(offer, "declined", LegDeclined(offer.number))


async def ring_order(
    pool: asyncpg.Pool, transfers: Transfers, people: list[Counselor], idle: dict[str, float],
    language: str, need: str | None,
) -> list[str]:
    """Whom a caller's tier rings, in order; `idle`: seconds each available one has been free."""
    plan = plan_of(people)
    await cs.sync_counselors(pool, plan)
    for pid, seconds in idle.items():
        await cs.set_presence(pool, pid, "available")
        await pool.execute(
            "UPDATE counselors SET idle_since = timestamptz '2026-01-01 12:00:00Z'"
            " - make_interval(secs => $2) WHERE id = $1",
            pid, seconds,
        )
    steps = transfer_steps(plan, TransferTo("n", "crisis", None, language, need), "TX",
                           "+18005550100")
    step = step_from_json(step_to_json(steps[0]))  # as the call row keeps it
    assert isinstance(step, WarmStep)
    await holding(pool, "CA-1", (step, *steps[1:]), need=need, language=language)
    return await rung_in_turn(pool, transfers)


@pytest.mark.parametrize(
    ("people", "idle", "language", "need", "expected"),
    [
        pytest.param(
            [person("ann"), person("bob"), person("cat")],
            {"ann": 10, "bob": 30, "cat": 20}, "en", None, ["bob", "cat", "ann"],
            id="longest idle first",
        ),
        pytest.param(
            [person("ann"), person("vet", skills=VETERAN)],
            {"ann": 30, "vet": 10}, "en", "veteran", ["vet", "ann"],
            id="the needed skill before idle time",
        ),
        pytest.param(
            [person("ann"), person("bob"), person("vet1", skills=VETERAN),
             person("vet2", skills=VETERAN)],
            {"ann": 40, "bob": 30, "vet1": 10, "vet2": 20}, "en", "veteran",
            ["vet2", "vet1", "ann", "bob"],
            id="the skilled by idle time, then the others by idle time",
        ),
        pytest.param(
            [person("ann"), person("bob")],
            {"ann": 10, "bob": 20}, "en", "veteran", ["bob", "ann"],
            id="a need nobody has: idle time alone",
        ),
        pytest.param(
            [person("ann"), person("vet", skills=VETERAN)],
            {"ann": 20, "vet": 10}, "en", None, ["ann", "vet"],
            id="a skill the caller does not need counts for nothing",
        ),
        pytest.param(
            [person("cat"), person("bob"), person("ann")],
            {"ann": 20, "bob": 20, "cat": 20}, "en", None, ["ann", "bob", "cat"],
            id="equally idle: by id",
        ),
        pytest.param(
            [person("ana", languages=BILINGUAL), person("ben"),
             person("eva", languages=("es",))],
            {"ana": 10, "ben": 30, "eva": 20}, "es", None, ["eva", "ana"],
            id="language is required, not ranked",
        ),
        pytest.param(
            [person("ann"), person("bob")],
            {"ann": 10}, "en", None, ["ann"],
            id="only the available are offered",
        ),
        pytest.param(
            [person("amy", center="c1"), person("zed", center="c2")],
            {"amy": 10, "zed": 30}, "en", None, ["zed", "amy"],
            id="the centers of a tier are one line",
        ),
        pytest.param(
            [person("ann", center="c1"), person("vet", center="c2", skills=VETERAN)],
            {"ann": 30, "vet": 5}, "en", "veteran", ["vet", "ann"],
            id="the needed skill in another center still comes first",
        ),
    ],
)
async def test_ring_order(
    pool: asyncpg.Pool, transfers_on: Callable[[asyncpg.Pool], Transfers],
    people: list[Counselor], idle: dict[str, float], language: str, need: str | None,
    expected: list[str],
) -> None:
    transfers = transfers_on(pool)
    assert await ring_order(pool, transfers, people, idle, language, need) == expected


async def test_a_step_stored_before_ranks_ranks_everyone_alike(
    pool: asyncpg.Pool, transfers_on: Callable[[asyncpg.Pool], Transfers]
) -> None:
    people = [person("ann"), person("vet", skills=VETERAN)]
    await cs.sync_counselors(pool, plan_of(people))
    for pid in ("ann", "vet"):  # ann is the longest idle
        await cs.set_presence(pool, pid, "available")
    stored = {"mode": "warm", "tier": "local", "name": "c1", "counselors": ["vet", "ann"],
              "timeout": 20, "skip_when_unavailable": False, "centers": ["c1"]}
    step = step_from_json(stored)
    assert isinstance(step, WarmStep) and step.ranks == ()
    national = DialStep("national", "National", ("+18005550100",), 30, last=True)
    await holding(pool, "CA-1", (step, national), need="veteran")
    # The skill the caller needs is not known to rank by: idle time alone.
    assert await rung_in_turn(pool, transfers_on(pool)) == ["ann", "vet"]


async def test_ranks_must_match_the_counselors(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError, match="1 ranks for 2 eligible counselors"):
        await q.enqueue(pool, "CA-1", "crisis", "en", None, "TX", 0, "local",
                        ["ann", "bob"], [0])
    with pytest.raises(asyncpg.CheckViolationError):  # the table holds it too
        await pool.execute(
            "INSERT INTO waiting (call_sid, queue, language, tier_index, tier_kind,"
            " eligible, ranks) VALUES ('CA-2', 'crisis', 'en', 0, 'local', '{ann,bob}', '{0}')"
        )
