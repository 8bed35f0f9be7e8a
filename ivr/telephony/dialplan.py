"""From a flow's transfer to the ordered steps that reach a human.

A tier with counselors becomes a warm step: the caller waits in a conference
of their own while counselors of the tier are offered the call one at a
time. A tier of external centers, a special line and the national backup
become dial steps: one <Dial> ringing every number of the step at once. The
national backup is always the last step, whatever the plan resolved.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ivr.flow.runtime import TransferTo
from ivr.routing.model import RoutingPlan
from ivr.routing.tiers import resolve

# How long the national backup rings before we redial it.
BACKUP_RING_SECONDS = 60


@dataclass(frozen=True)
class DialStep:
    """Ring every target at once for `timeout` seconds."""

    tier: str
    name: str
    targets: tuple[str, ...]  # E.164 numbers or sip: URIs
    timeout: int
    last: bool = False  # the national backup: nothing after it
    centers: tuple[str, ...] = ()
    # The callerId of the <Dial>: our own number when the caller's could be
    # refused (SIP, withheld); None lets the caller's number pass through.
    caller_id: str | None = None


@dataclass(frozen=True)
class WarmStep:
    """Offer the caller to the tier's counselors, one at a time, within `timeout` seconds."""

    tier: str
    name: str
    counselors: tuple[str, ...]  # ids, listed by rank
    timeout: int
    skip_when_unavailable: bool
    centers: tuple[str, ...] = ()
    # tiers.rank of each counselor, which the database orders offers by;
    # empty when all rank alike.
    ranks: tuple[int, ...] = ()


Step = DialStep | WarmStep


def transfer_steps(
    plan: RoutingPlan, transfer: TransferTo, caller_state: str | None, backup: str
) -> list[Step]:
    steps: list[Step] = []
    if transfer.line is not None:
        line = plan.lines[transfer.line]
        steps.append(DialStep("line", line.id, (line.number,), BACKUP_RING_SECONDS))
    elif transfer.queue is not None:
        targets = resolve(plan, transfer.queue, caller_state, transfer.language, transfer.need)
        for target in targets:
            if target.kind == "national":
                continue  # added below, once, as the last step
            name = ",".join(c.id for c in target.centers)
            centers = tuple(c.id for c in target.centers)
            timeout = round(target.ring_timeout)
            # Resolved counselors are already filtered by language and ranked.
            if target.counselors:
                ids = tuple(c.id for c in target.counselors)
                steps.append(WarmStep(target.kind, name, ids, timeout,
                                      target.skip_when_unavailable, centers, target.ranks))
            if target.external_numbers:
                steps.append(DialStep(target.kind, name, tuple(target.external_numbers),
                                      timeout, centers=centers))
    national = plan.national_backup
    steps.append(DialStep("national", national.id, (backup,), BACKUP_RING_SECONDS, last=True))
    return steps


def step_to_json(step: Step) -> dict[str, Any]:
    return {"mode": "warm" if isinstance(step, WarmStep) else "dial", **asdict(step)}


def step_from_json(data: dict[str, Any]) -> Step:
    fields = {k: v for k, v in data.items() if k != "mode"}
    if data.get("mode") == "warm":
        # A step stored before ranks existed has none: everyone ranks alike.
        return WarmStep(**{**fields, "counselors": tuple(fields["counselors"]),
                           "centers": tuple(fields.get("centers", ())),
                           "ranks": tuple(fields.get("ranks", ()))})
    return DialStep(**{**fields, "targets": tuple(fields["targets"]),
                       "centers": tuple(fields.get("centers", ()))})
