"""From a flow's transfer to the ordered dial steps that reach a human.

Each routing tier becomes one <Dial> ringing every target of the tier at
once (counselors' phones or SIP URIs, or a center's external number). The
national backup is always the last step, whatever the plan resolved.
"""

from __future__ import annotations

from ivr.flow.runtime import TransferTo
from ivr.routing.plan import RoutingPlan
from ivr.routing.tiers import resolve
from ivr.telephony.twiml import DialStep

# How long the national backup rings before we redial it.
BACKUP_RING_SECONDS = 60


def dial_steps(
    plan: RoutingPlan, transfer: TransferTo, caller_state: str | None, backup: str
) -> list[DialStep]:
    steps: list[DialStep] = []
    if transfer.line is not None:
        line = plan.lines[transfer.line]
        steps.append(DialStep("line", line.id, (line.number,), BACKUP_RING_SECONDS))
    elif transfer.queue is not None:
        for target in resolve(plan, transfer.queue, caller_state, transfer.language, transfer.need):
            if target.kind == "national":
                continue  # added below, once, as the last step
            # The resolved counselors are already filtered by language and skill.
            numbers = [*target.external_numbers, *(c.address for c in target.counselors)]
            if numbers:
                name = ",".join(c.id for c in target.centers)
                steps.append(
                    DialStep(target.kind, name, tuple(numbers), round(target.ring_timeout))
                )
    national = plan.national_backup
    steps.append(
        DialStep("national", national.id, (backup,), BACKUP_RING_SECONDS, last=True)
    )
    return steps
