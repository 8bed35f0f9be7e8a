"""Validate the content an administrator edits: flows, prompts, the time to a human."""

from __future__ import annotations

from pathlib import Path

from ivr.flow.analysis import FlowAnalysis, analyse
from ivr.flow.loader import load_flows
from ivr.flow.model import FlowSet, Targets
from ivr.flow.prompts import load_prompts
from ivr.yamlsrc import Problems


def validate_content(
    flows_dir: Path,
    prompts_dir: Path,
    targets: Targets | None = None,
    problems: Problems | None = None,
) -> tuple[FlowSet | None, Problems, dict[str, FlowAnalysis]]:
    """Load and check everything; the FlowSet is None when any error was found.

    Every flow that loads is analysed even when another file has errors, so
    one run lists every problem.
    """
    problems = problems if problems is not None else Problems()
    flows = load_flows(flows_dir, problems, targets)
    catalog = load_prompts(prompts_dir, problems)
    analyses = {flow_id: analyse(flow, catalog, problems) for flow_id, flow in flows.items()}
    if problems.errors or not flows:
        return None, problems, analyses
    return FlowSet(flows, catalog), problems, analyses
