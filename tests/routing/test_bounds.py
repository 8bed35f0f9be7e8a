"""Time to a human through the tiers: the bounds, and the progression held to them."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ivr.routing.bounds import Scenario, destination_bounds, transfer_bounds, walk
from ivr.routing.loader import load_plan
from ivr.routing.model import RoutingPlan
from ivr.routing.progression import Availability, advance, begin
from ivr.routing.rules import BACKUP_PROMPT
from ivr.routing.signals import (
    DialEnded,
    DialLine,
    Event,
    LegMissed,
    Ring,
    ScheduleDeadline,
    TierDeadline,
)
from ivr.routing.steps import DialStep, Step, WarmStep
from ivr.yamlsrc import Problems

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PROMPTS = {BACKUP_PROMPT: 7.0}
LEAD_IN = 4.0
LOCAL = WarmStep("local", "tx", ("ana", "ben"), 20, True)
GULF = DialStep("backup", "gulf", ("+15045550112",), 20)
REGION = WarmStep("backup", "fl", ("cy",), 25, False)
SHORT = WarmStep("local", "short", ("dee",), 5, False)  # a tier shorter than one ring
LINE = DialStep("line", "veterans", ("+18005550111",), 60)
NATIONAL = DialStep("national", "national", ("+18005550100",), 60, last=True)

# (steps, worst seconds to the first ring, worst seconds to the national backup)
TABLE: list[tuple[tuple[Step, ...], float, float]] = [
    ((NATIONAL,), 4, 4),  # straight from the flow: after its transfer prompt
    ((LOCAL, NATIONAL), 4, 27),  # nobody free: skipped at once; else 20 s, then the prompt
    ((REGION, NATIONAL), 32, 32),  # waits for its counselors without a ring
    ((SHORT, NATIONAL), 19, 19),  # a tier lasts at least one full ring and a claim (12 s)
    ((LOCAL, GULF, REGION, NATIONAL), 4, 72),
    ((REGION, GULF, NATIONAL), 25, 52),
    ((LINE, NATIONAL), 4, 71),
    ((LOCAL, REGION, NATIONAL), 32, 52),  # nobody free: no ring until the backup
]


@pytest.mark.parametrize(("steps", "first", "backup"), TABLE)
def test_bounds(steps: tuple[Step, ...], first: float, backup: float) -> None:
    bounds = transfer_bounds(steps, PROMPTS, LEAD_IN)
    assert (bounds.to_first_ring, bounds.to_backup) == (first, backup)


def scenarios(steps: tuple[Step, ...]) -> list[Scenario]:
    warm = [i for i, s in enumerate(steps) if isinstance(s, WarmStep)]
    return [Scenario(degraded, frozenset(free)) for degraded in (False, True)
            for n in range(len(warm) + 1) for free in itertools.combinations(warm, n)]


def drive(
    steps: tuple[Step, ...],
    scenario: Scenario,
    lead_in: float = LEAD_IN,
    prompts: Mapping[str, float] = PROMPTS,
) -> tuple[float, float]:
    """Run the progression with counselors who never answer; (first ring, backup dialled)."""
    offered: set[str] = set()

    staffed = [s.counselors for i, s in enumerate(steps)
               if isinstance(s, WarmStep) and i in scenario.free]

    def free() -> tuple[str, ...]:
        return tuple(c for ids in staffed for c in ids if c not in offered)

    first: float | None = None
    timers: list[tuple[float, int, Event]] = []
    progress, actions = begin(steps, T0, Availability(free(), scenario.degraded_at_begin),
                              language="en")
    now, from_flow = 0.0, True
    while True:
        for action in actions:
            match action:
                case Ring():
                    offered.add(action.counselor)
                    first = now if first is None else first
                    timers.append((now + action.ring_seconds, len(timers),
                                   LegMissed(action.offer)))
                case ScheduleDeadline():
                    due = (action.at - T0).total_seconds()
                    timers.append((due, len(timers), TierDeadline(action.stage)))
                case DialLine():
                    said = prompts[action.prompt] if action.prompt else 0.0
                    rings = now + (lead_in if from_flow else 0.0) + said
                    first = rings if first is None else first
                    if action.step.last:
                        return first, rings
                    timers.append((rings + action.step.timeout, len(timers),
                                   DialEnded(action.stage, False)))
        from_flow = False
        timers.sort()
        now, _, event = timers.pop(0)
        progress, actions = advance(progress, event, T0 + timedelta(seconds=now),
                                    Availability(free()))


@pytest.mark.parametrize("steps", [steps for steps, _, _ in TABLE])
def test_the_progression_takes_exactly_the_bounds_times(steps: tuple[Step, ...]) -> None:
    """Every scenario the bounds walk, run through `advance`: the same seconds,
    and the largest are the bounds."""
    runs = {scenario: drive(steps, scenario) for scenario in scenarios(steps)}
    for scenario, (first, backup) in runs.items():
        expected = walk(steps, scenario, PROMPTS, LEAD_IN)
        assert (first, backup) == (expected.to_first_ring, expected.to_backup), scenario
    bounds = transfer_bounds(steps, PROMPTS, LEAD_IN)
    assert max(b for _, b in runs.values()) == bounds.to_backup
    assert max(f for f, _ in runs.values()) == bounds.to_first_ring


def test_a_transfer_prompt_longer_than_the_tiers() -> None:
    """The REST API degraded as the transfer begins: the national backup rings after
    the flow's whole transfer prompt, later than after the tier would have."""
    steps, lead_in = (REGION, NATIONAL), 40.0
    bounds = transfer_bounds(steps, PROMPTS, lead_in)
    assert (bounds.to_first_ring, bounds.to_backup) == (40.0, 40.0)
    assert max(drive(steps, s, lead_in)[1] for s in scenarios(steps)) == 40.0
    assert drive(steps, Scenario(False, frozenset({0})), lead_in) == (0.0, 32.0)


@pytest.fixture(scope="module")
def plan() -> RoutingPlan:
    problems = Problems()
    loaded = load_plan(ROOT / "flows" / "routing.yaml", problems)
    assert loaded is not None, problems.sorted()
    return loaded


@pytest.mark.parametrize(
    ("where", "first", "backup", "state"),
    [
        # The worst caller of the crisis queue: a warm local or backup tier that
        # rings out (20 s), the Gulf Coast backup's 20 s, the backup prompt.
        ({"queue": "crisis"}, 4.0, 47.0, "AL"),
        # The veterans line rings 60 s, then the national backup after its prompt.
        ({"line": "veterans"}, 4.0, 71.0, None),
    ],
)
def test_the_shipped_plan(
    plan: RoutingPlan, where: dict[str, str], first: float, backup: float, state: str | None
) -> None:
    found = destination_bounds(plan, PROMPTS, languages=("en", "es"), needs=(None, "veteran"),
                               lead_in=LEAD_IN, **where)
    assert (found.to_first_ring, found.to_backup, found.backup_state) == (first, backup, state)
    assert found.path[-1] == f"dials the national backup national after '{BACKUP_PROMPT}' " \
        f"at {backup:.1f} s"


def test_an_unknown_state_goes_straight_to_the_national_backup(plan: RoutingPlan) -> None:
    found = destination_bounds(plan, PROMPTS, queue="no-such-queue", lead_in=LEAD_IN)
    assert (found.to_first_ring, found.to_backup) == (LEAD_IN, LEAD_IN)
