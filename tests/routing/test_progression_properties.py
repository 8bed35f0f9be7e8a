"""The transfer progression's invariants over every ordering of events.

Two searches over the same world (transfer_world.py, which checks the
invariants after every delivery): an exhaustive breadth-first walk of every
ordering of happenings up to a depth, for two callers sharing two
counselors; and a stateful hypothesis test taking long random walks in
larger worlds (three callers, three counselors, four plans, counselors
offline at the start, time passing between timers), where callers may
also be offered early while still in the flow's menu.
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from ivr.routing import progress
from ivr.routing.steps import DialStep, Step, WarmStep
from tests.routing.transfer_happenings import apply, choices, next_timer
from tests.routing.transfer_world import World, start

NATIONAL = DialStep("national", "national", ("+18005550100",), 60, last=True)
GULF = DialStep("backup", "gulf", ("+15045550112",), 20, centers=("gulf",))
LOCAL_SKIP = (WarmStep("local", "tx", ("a", "b"), 20, True), NATIONAL)
LOCAL_WAIT = (WarmStep("local", "ny", ("b",), 20, False), GULF, NATIONAL)
PLANS: tuple[tuple[Step, ...], ...] = (
    (WarmStep("local", "tx", ("a", "b"), 20, True), GULF,
     WarmStep("backup", "fl", ("b", "c"), 25, False), NATIONAL),
    (WarmStep("local", "ny", ("c",), 15, False), NATIONAL),
    (DialStep("line", "veterans", ("+18005550111",), 60), NATIONAL),
    (WarmStep("local", "short", ("a",), 5, False),
     WarmStep("backup", "ca", ("b", "c"), 20, True), NATIONAL),
)
EXHAUSTIVE_DEPTH = 7
ENDINGS = ("hangup", "accept", "answered")


def walk(world: World, depth: int) -> tuple[int, int]:
    """Every state reachable in `depth` happenings: (states, happenings applied)."""
    seen = {world}
    frontier = [world]
    applied = 0
    for _ in range(depth):
        following = []
        for state in frontier:
            for choice in choices(state):
                applied += 1
                after = apply(state, choice)
                if after not in seen:
                    seen.add(after)
                    following.append(after)
        frontier = following
    return len(seen), applied


def test_every_ordering_of_two_callers_sharing_two_counselors() -> None:
    states, applied = walk(start(("a", "b"), (LOCAL_SKIP, LOCAL_WAIT)), EXHAUSTIVE_DEPTH)
    print(f"exhaustive walk, depth {EXHAUSTIVE_DEPTH}: {states} states, {applied} happenings")
    assert states > 10_000  # the walk really branches (the checks run inside apply)


def test_every_ordering_with_a_caller_offered_early() -> None:
    """The first caller is still in the menu, offered early to the counselors of
    their first tier; the second holds. The early one may arrive, go elsewhere,
    hang up, or see their counselor accept early and give up waiting."""
    world = start(("a", "b"), (LOCAL_SKIP, LOCAL_WAIT), early=frozenset({0}))
    assert world.callers[0].progress.phase is progress.Phase.EARLY
    states, applied = walk(world, EXHAUSTIVE_DEPTH)
    print(f"exhaustive walk with an early caller, depth {EXHAUSTIVE_DEPTH}: {states} states, "
          f"{applied} happenings")
    assert states > 10_000
    ends: set[progress.Phase] = set()
    frontier = [world]
    for _ in range(4):
        frontier = [apply(w, c) for w in frontier for c in choices(w)][:3000]
        ends.update(w.callers[0].progress.phase for w in frontier)
    P = progress.Phase
    assert {P.EARLY, P.WITHDRAWN, P.HOLDING, P.CONNECTED, P.GONE} <= ends


def test_the_walk_reaches_every_end() -> None:
    """The exhaustive world is not too small to matter: within the depth, callers
    get connected, leave, and reach the national backup."""
    ends: set[progress.Phase] = set()
    backup = False
    frontier = [start(("a", "b"), (LOCAL_SKIP, LOCAL_WAIT))]
    for _ in range(5):
        frontier = [apply(w, c) for w in frontier for c in choices(w)][:2000]
        for w in frontier:
            ends.update(c.progress.phase for c in w.callers)
            backup = backup or any(c.backup_at is not None for c in w.callers)
    P = progress.Phase
    assert {P.CONNECTED, P.GONE, P.HOLDING, P.DIALING} <= ends
    assert backup


class TransferWorld(RuleBasedStateMachine):
    world: World

    @initialize(
        plans=st.lists(st.sampled_from(PLANS), min_size=1, max_size=3),
        offline=st.frozensets(st.sampled_from(("a", "b", "c"))),
        early=st.frozensets(st.integers(0, 2)),
    )
    def begin(self, plans: list[tuple[Step, ...]], offline: frozenset[str],
              early: frozenset[int]) -> None:
        self.world = start(("a", "b", "c"), tuple(plans), offline, early)

    @rule(data=st.data())
    def happen(self, data: st.DataObject) -> None:
        options = choices(self.world)
        due = next_timer(self.world)
        # Time may also pass between timers, so events arrive at any moment.
        options += [("wait", d) for d in (1, 3, 7) if due is None or self.world.now + d < due]
        # Endings are rarer than the rest, so that walks get far into the tiers.
        endings = [o for o in options if o[0] in ENDINGS]
        if endings and data.draw(st.integers(0, 9)) == 0:
            options = endings
        else:
            options = [o for o in options if o[0] not in ENDINGS] or options
        self.world = apply(self.world, data.draw(st.sampled_from(options)))


TransferWorld.TestCase.settings = settings(
    max_examples=250, stateful_step_count=100, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)
test_random_walks_in_larger_worlds = TransferWorld.TestCase

