"""Everything an administrator edits, loaded and cross-checked as one unit.

`ivr validate` and `ivr serve` run the same checks: flows, prompts,
time-to-human analysis, the routing plan, and the references between them
(a transfer to a queue or line the plan does not have would be a dead end).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ivr.flow.analysis import FlowAnalysis
from ivr.flow.model import FlowSet, Targets
from ivr.flow.validate import validate_content
from ivr.routing.plan import RoutingPlan, load_plan
from ivr.yamlsrc import Pos, Problems

ROUTING_FILE = "routing.yaml"


@dataclass(frozen=True)
class Content:
    flows: FlowSet
    plan: RoutingPlan
    analyses: dict[str, FlowAnalysis]


class InvalidContent(Exception):
    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        lines = [str(p) for p in problems.sorted()]
        super().__init__("\n".join(lines))


def check(flows_dir: Path, prompts_dir: Path) -> tuple[Content | None, Problems]:
    problems = Problems()
    routing_path = flows_dir / ROUTING_FILE
    plan: RoutingPlan | None = None
    if routing_path.exists():
        plan = load_plan(routing_path, problems)
    else:
        problems.add(Pos(str(routing_path), 1, 1), "the routing plan is missing")
    # Transfers are checked against the plan's queues and lines while the
    # flows load, so a typo in a queue name is reported with the others.
    targets = (
        Targets(frozenset(plan.queues), frozenset(plan.lines)) if plan is not None else None
    )
    flowset, problems, analyses = validate_content(flows_dir, prompts_dir, targets, problems)
    if problems.errors or flowset is None or plan is None:
        return None, problems
    return Content(flowset, plan, analyses), problems


def load_content(flows_dir: Path, prompts_dir: Path) -> Content:
    content, problems = check(flows_dir, prompts_dir)
    if content is None:
        raise InvalidContent(problems)
    return content
