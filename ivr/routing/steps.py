"""From a flow's transfer to the ordered steps that reach a human.

A tier with counselors becomes a warm step: the caller waits in a conference
of their own while counselors of the tier are offered the call one at a
time. A tier of external centers, a special line and the national backup
become dial steps: one <Dial> ringing every number of the step at once. The
national backup is always the last step, whatever the plan resolved.

Pure: the steps are plain frozen values, stored in the transfer's progress
(`step_to_json`/`step_from_json`) so any server instance can continue it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from ivr.flow.runtime import TransferTo
from ivr.routing.model import RoutingPlan
from ivr.routing.tiers import resolve

# How long the national backup (and a special line) rings before we redial it.
BACKUP_RING_SECONDS: Final = 60


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
    """Offer the caller to the tier's counselors, best first, within `timeout` seconds."""

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
    return dict(_step_json(step))  # a copy: the kept one is shared


# Every write of a transfer's progress encodes its steps again, and a version
# has few distinct ones: asdict was a tenth of the status webhook's CPU.
@functools.lru_cache(maxsize=1024)
def _step_json(step: Step) -> dict[str, Any]:
    return {"mode": "warm" if isinstance(step, WarmStep) else "dial", **asdict(step)}


def step_from_json(data: Mapping[str, Any]) -> Step:
    """The inverse of step_to_json. Keys it does not know are ignored, so a record
    written by a newer or older server still decodes."""
    tier, name, timeout = str(data["tier"]), str(data["name"]), int(data["timeout"])
    centers = tuple(str(c) for c in data.get("centers", ()))
    if data.get("mode") == "warm":
        # A step stored before ranks existed has none: everyone ranks alike.
        return WarmStep(tier, name, tuple(str(c) for c in data["counselors"]), timeout,
                        bool(data.get("skip_when_unavailable", False)), centers,
                        tuple(int(r) for r in data.get("ranks", ())))
    caller_id = data.get("caller_id")
    return DialStep(tier, name, tuple(str(t) for t in data["targets"]), timeout,
                    bool(data.get("last", False)), centers,
                    None if caller_id is None else str(caller_id))
