"""Validate the content an administrator edits: flows, prompts, the time to a human."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ivr.flow.analysis import FlowAnalysis, analyse
from ivr.flow.loader import load_flows
from ivr.flow.model import Flow, FlowSet, PromptCatalog, Targets
from ivr.flow.prompts import load_prompts
from ivr.yamlsrc import Problems


@dataclass(frozen=True)
class Loaded:
    """Whatever loaded, even beside errors, so later checks can still run on it."""

    flows: dict[str, Flow]
    catalog: PromptCatalog
    analyses: dict[str, FlowAnalysis]

    def flow_set(self, problems: Problems) -> FlowSet | None:
        if problems.errors or not self.flows:
            return None
        return FlowSet(self.flows, self.catalog)


def load_and_analyse(
    flows_dir: Path, prompts_dir: Path, targets: Targets | None, problems: Problems
) -> Loaded:
    """Load flows and prompts and analyse every flow that loaded.

    Every flow that loads is analysed even when another file has errors, so
    one run lists every problem.
    """
    flows = load_flows(flows_dir, problems, targets)
    catalog = load_prompts(prompts_dir, problems)
    analyses = {flow_id: analyse(flow, catalog, problems) for flow_id, flow in flows.items()}
    return Loaded(flows, catalog, analyses)


def validate_content(
    flows_dir: Path,
    prompts_dir: Path,
    targets: Targets | None = None,
    problems: Problems | None = None,
) -> tuple[FlowSet | None, Problems, dict[str, FlowAnalysis]]:
    """Load and check flows and prompts; the FlowSet is None when any error was found.

    The whole content (the routing plan, the prompts the server says on its
    own, recordings, speech words) is checked by `ivr.content.check`.
    """
    problems = problems if problems is not None else Problems()
    loaded = load_and_analyse(flows_dir, prompts_dir, targets, problems)
    return loaded.flow_set(problems), problems, loaded.analyses
