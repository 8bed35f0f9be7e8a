"""Time to a human from the call's start: a flow's slowest way to each of its
transfers, plus the tiers of the queue or line it transfers to.

The flow's part is ivr.flow.analysis's (`Arrival`: the latest a transfer in
one language with one need begins, which is when the turn reaching it starts,
and the prompts that turn says before it); the routing part is
ivr.routing.bounds' (every caller state, counted from that beginning, the
prompts between tiers included). They join where the transfer begins, so for
each queue or line

    worst case = max over arrivals (seconds to the transfer's beginning + the tiers' bound)

with the language and need the caller arrives with, which choose the
counselors, the centers and the length of the prompts they hear on the way.
`ivr validate` prints these figures and a flow's `max_time_to_backup` holds
each queue and line to its bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from ivr.flow.analysis import Arrival, FlowAnalysis
from ivr.flow.model import Flow, PromptCatalog
from ivr.routing.bounds import DestinationBounds, destination_bounds
from ivr.routing.model import RoutingPlan
from ivr.routing.rules import BACKUP_PROMPT
from ivr.yamlsrc import Problems

_EPSILON: Final = 1e-9  # a path exactly at the limit passes


@dataclass(frozen=True)
class Leg:
    """One arrival at a transfer, and the tiers after it."""

    arrival: Arrival
    tiers: DestinationBounds

    @property
    def to_first_ring(self) -> float:
        return self.arrival.seconds + self.tiers.to_first_ring

    @property
    def to_backup(self) -> float:
        return self.arrival.seconds + self.tiers.to_backup

    def describe(self) -> str:
        """The slowest way to the national backup, flow and tiers, on one line."""
        a, tiers = self.arrival, self.tiers
        need = f", need {a.need}" if a.need else ""
        caller = f"a caller from {tiers.backup_state}" if tiers.backup_state else "the caller"
        return (
            f"{a.path_text()} [{a.language}{need}]; the transfer begins at {a.seconds:.1f} s, "
            f"then for {caller}, counted from there: " + "; ".join(tiers.path)
        )


@dataclass(frozen=True)
class Reach:
    """The worst case of one flow to one queue or line, in seconds from the call's start."""

    kind: Literal["queue", "line"]
    name: str
    to_transfer: float  # the flow's transfer prompt has played
    to_first_ring: float  # a human's phone rings for the caller
    to_backup: float  # the national backup is dialled
    slowest: Leg  # the way `to_backup` is reached

    @property
    def label(self) -> str:
        return f"{self.kind} '{self.name}'"

    def summary(self) -> str:
        return (
            f"{self.label}: {self.to_transfer:.1f} s to the transfer, first counselor ring "
            f"{self.to_first_ring:.1f} s, national backup dialled {self.to_backup:.1f} s"
        )


def reaches(
    analysis: FlowAnalysis, plan: RoutingPlan, catalog: PromptCatalog
) -> tuple[Reach, ...]:
    """Each queue and line the flow transfers to (in the plan), with its worst case."""
    legs: dict[tuple[Literal["queue", "line"], str], list[Leg]] = {}
    for arrival in analysis.arrivals:
        transfer = arrival.transfer
        if transfer.queue is not None and transfer.queue in plan.queues:
            where: tuple[Literal["queue", "line"], str] = ("queue", transfer.queue)
        elif transfer.line is not None and transfer.line in plan.lines:
            where = ("line", transfer.line)
        else:
            continue  # a transfer the plan lacks is reported when the flow loads
        tiers = destination_bounds(
            plan, transfer_prompts(catalog, arrival.language), queue=transfer.queue,
            line=transfer.line, languages=(arrival.language,), needs=(arrival.need,),
            lead_in=arrival.lead_in,
        )
        legs.setdefault(where, []).append(Leg(arrival, tiers))
    # Queues first, then lines, each by name: a stable order to print.
    order = sorted(legs.items(), key=lambda item: (item[0][0] != "queue", item[0][1]))
    return tuple(_reach(kind, name, found) for (kind, name), found in order)


def _reach(kind: Literal["queue", "line"], name: str, legs: Sequence[Leg]) -> Reach:
    slowest = max(legs, key=lambda leg: leg.to_backup)
    return Reach(
        kind, name,
        to_transfer=max(leg.arrival.to_transfer for leg in legs),
        to_first_ring=max(leg.to_first_ring for leg in legs),
        to_backup=slowest.to_backup,
        slowest=slowest,
    )


def transfer_prompts(catalog: PromptCatalog, language: str) -> dict[str, float]:
    """Seconds of the prompts a transfer says on its own, as the caller hears them."""
    prompt = catalog.get(language, BACKUP_PROMPT)
    if prompt is not None:
        return {BACKUP_PROMPT: prompt.seconds}
    # A missing prompt is reported by the catalog check; count the longest translation.
    found = [p[BACKUP_PROMPT].seconds for p in catalog.prompts.values() if BACKUP_PROMPT in p]
    return {BACKUP_PROMPT: max(found, default=0.0)}


def check_backup_limit(flow: Flow, found: Iterable[Reach], problems: Problems) -> None:
    """A queue or line whose national backup can be dialled after the flow's
    `max_time_to_backup` fails, with the way it is reached."""
    limit = flow.max_time_to_backup
    if limit is None:
        return
    where = flow.positions.get("max_time_to_backup", flow.pos)
    for reach in found:
        if reach.to_backup <= limit + _EPSILON:
            continue
        problems.add(
            where,
            f"flow '{flow.id}': a caller transferred to {reach.label} can wait "
            f"{reach.to_backup:.1f} s before the national backup is dialled, over "
            f"max_time_to_backup ({limit:g} s): {reach.slowest.describe()}; lower the ring "
            "timeouts of these tiers in the routing plan, or shorten the way to the transfer",
        )
