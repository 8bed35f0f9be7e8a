"""Time to a human through the tiers: the worst case of a transfer, proven.

Seconds are counted from the moment the flow hands the caller over, which is
when the server answers the turn that reaches the transfer (the caller's
last menu answer, or the call itself): the progression starts the first
tier's clock then, while that turn's prompts play (`lead_in` seconds of
them, the transfer's own last), and a dial step entered straight from the
flow rings once they have played.

The worst case follows ivr.routing.rules, the rules the progression
runs by, with counselors who never answer, every <Dial> ringing out its
timeout, and every move out of the conference landing at once. Two things
vary: whether the REST API is degraded when the transfer begins (then every
warm step is passed over), and at each warm step whether a counselor is
free (then one rings at once, and the tier runs to its deadline) or not
(then a tier that waits for its counselors runs to its deadline without a
ring, and one that does not is passed over). Every combination is walked;
the largest figures are the bounds. A degradation later on, or a counselor
who answers, declines or fails, only ends a tier sooner.

`to_first_ring` is the first phone of a human ringing for the caller: a
counselor's leg, or a <Dial> (an external center, a line, the backup).
`to_backup` is the national backup's first <Dial> ringing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ivr.flow.runtime import TransferTo
from ivr.routing.model import RoutingPlan
from ivr.routing.rules import next_index, prompt_before, tier_seconds, worth_entering
from ivr.routing.states import STATES
from ivr.routing.steps import Step, WarmStep, transfer_steps


@dataclass(frozen=True)
class TransferBounds:
    to_first_ring: float
    to_backup: float
    path: tuple[str, ...]  # the worst way to the backup, one line per step

    def describe(self) -> str:
        return "; ".join(self.path)


@dataclass(frozen=True)
class Scenario:
    degraded_at_begin: bool
    free: frozenset[int]  # warm steps (by index) where a counselor is free on entry


def transfer_bounds(
    steps: Sequence[Step], prompts: Mapping[str, float], lead_in: float = 0.0
) -> TransferBounds:
    """The worst case of a transfer along these steps.

    `prompts`: seconds of each prompt said between steps (rules.prompt_before,
    e.g. the backup prompt); `lead_in`: seconds of the flow's transfer prompt.
    """
    warm = [i for i, s in enumerate(steps) if isinstance(s, WarmStep)]
    runs = [
        walk(steps, Scenario(degraded, frozenset(free)), prompts, lead_in)
        for degraded in (False, True)
        for n in range(len(warm) + 1)
        for free in itertools.combinations(warm, n)
    ]
    first = max(r.to_first_ring for r in runs)
    worst = max(runs, key=lambda r: r.to_backup)
    return TransferBounds(first, worst.to_backup, worst.path)


def walk(
    steps: Sequence[Step], scenario: Scenario, prompts: Mapping[str, float], lead_in: float
) -> TransferBounds:
    """The times of one scenario: when the first phone rings, when the backup does."""

    t = 0.0
    first: float | None = None
    path: list[str] = []
    index = next_index(steps, 0, _worth(steps, scenario, scenario.degraded_at_begin))
    from_flow = True
    while True:
        step = steps[index]
        if isinstance(step, WarmStep):
            seconds = tier_seconds(step)
            rings = index in scenario.free
            if rings and first is None:
                first = t
            path.append(f"{step.tier} tier {step.name}: {seconds} s "
                        + ("ringing counselors, nobody answers" if rings
                           else "waiting, nobody free"))
            t += seconds
        else:
            said = prompt_before(step, from_flow)
            start = t + (lead_in if from_flow else 0.0) + (prompts[said] if said else 0.0)
            first = start if first is None else first
            before = f" after '{said}'" if said else ""
            if step.last:
                path.append(f"dials the national backup {step.name}{before} at {start:.1f} s")
                return TransferBounds(first, start, tuple(path))
            path.append(f"{step.tier} {step.name}{before}: dials for {step.timeout} s, "
                        "no answer")
            t = start + step.timeout
        from_flow = False
        index = next_index(steps, index + 1, _worth(steps, scenario, False))


def _worth(steps: Sequence[Step], scenario: Scenario, degraded: bool) -> Callable[[int], bool]:
    """rules.worth_entering in one scenario: a warm step's counselors are free or not."""

    def worth(index: int) -> bool:
        step = steps[index]
        free = step.counselors if isinstance(step, WarmStep) and index in scenario.free else ()
        return worth_entering(step, free, degraded)

    return worth


@dataclass(frozen=True)
class DestinationBounds:
    """The worst case of a queue or line over every caller state, language and need."""

    to_first_ring: float
    first_ring_state: str | None  # a caller from there meets the worst first ring
    to_backup: float
    backup_state: str | None
    path: tuple[str, ...]


def destination_bounds(
    plan: RoutingPlan,
    prompts: Mapping[str, float],
    *,
    queue: str | None = None,
    line: str | None = None,
    languages: Sequence[str] = ("en",),
    needs: Sequence[str | None] = (None,),
    lead_in: float = 0.0,
    backup: str | None = None,
) -> DestinationBounds:
    """`ivr validate`'s figures for one queue (or line) a flow transfers to."""
    number = backup or plan.national_backup.number
    states: tuple[str | None, ...] = (None, *sorted(STATES)) if queue is not None else (None,)
    found: list[tuple[TransferBounds, str | None]] = []
    for language, need, state in itertools.product(languages, needs, states):
        transfer = TransferTo("transfer", queue, line, language, need)
        steps = transfer_steps(plan, transfer, state, number)
        found.append((transfer_bounds(steps, prompts, lead_in), state))
    first, first_state = max(found, key=lambda f: f[0].to_first_ring)
    worst, worst_state = max(found, key=lambda f: f[0].to_backup)
    return DestinationBounds(first.to_first_ring, first_state, worst.to_backup, worst_state,
                             worst.path)

