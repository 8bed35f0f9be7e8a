"""The flow as a picture: what `ivr graph` draws, as plain data, and its DOT text.

Pure: built from a loaded flow, its time-to-human analysis and the prompt
catalog, so tests check the structure without running Graphviz. Running
`dot` is ivr/flow/render.py's business.

Edges with the same ends are drawn as one edge listing every way along it
(silence and a wrong key often lead to the same transfer): a picture with
parallel arrows is hard to read, and it lets the worst path, a list of
nodes, name its edges without doubt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise

from ivr.flow.analysis import FlowAnalysis, worst_seconds_by_node
from ivr.flow.model import (
    Branch,
    Fallback,
    Flow,
    FlowNode,
    Goto,
    Hangup,
    Menu,
    PromptCatalog,
    Say,
    SetVars,
    Transfer,
)
from ivr.routing.model import RoutingPlan

PROMPT_WORDS = 6  # enough to recognise a prompt, short enough for a box

# Graphviz shapes by node kind; the README's legend follows this table.
SHAPES: Mapping[str, str] = {
    "say": "box",
    "menu": "hexagon",
    "set": "parallelogram",
    "branch": "diamond",
    "goto": "circle",
    "transfer": "invhouse",
    "hangup": "octagon",
    "queue": "cylinder",
    "line": "cylinder",
}

_WORST_COLOR = "red"


@dataclass(frozen=True)
class GraphNode:
    id: str  # the flow node's id; "queue:<name>" or "line:<name>" for a transfer target
    kind: str  # a flow node kind, or "queue" / "line"
    lines: tuple[str, ...]  # the label, line by line
    seconds: float | None  # worst case from here to the transfer; None for a target
    worst: bool  # on the analysis's worst path


@dataclass(frozen=True)
class GraphEdge:
    source: str
    target: str
    labels: tuple[str, ...]  # every input or case that goes this way
    worst: bool


@dataclass(frozen=True)
class FlowGraph:
    flow_id: str
    title: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]

    def node(self, node_id: str) -> GraphNode:
        return next(n for n in self.nodes if n.id == node_id)

    def edge(self, source: str, target: str) -> GraphEdge:
        return next(e for e in self.edges if (e.source, e.target) == (source, target))


def build_graph(
    flow: Flow, analysis: FlowAnalysis, prompts: PromptCatalog, plan: RoutingPlan | None = None
) -> FlowGraph:
    """The picture of one flow; prompts are quoted in its first language."""
    seconds = worst_seconds_by_node(flow, prompts)
    language = flow.languages[0]
    # A loop's nodes are no worst path: the time has no bound to highlight.
    path = analysis.worst_path if analysis.bounded else ()
    worst_edges = set(pairwise(path))
    last = flow.nodes.get(path[-1]) if path else None
    if last is not None and isinstance(last.body, Transfer):
        worst_edges.add((last.id, target_id(last.body)))
    worst_nodes = {n for edge in worst_edges for n in edge} | set(path)

    nodes: list[GraphNode] = []
    edges: dict[tuple[str, str], list[str]] = {}
    targets: dict[str, Transfer] = {}
    for node in flow.nodes.values():
        lines = (node.id, *_describe(node, prompts, language))
        figure = seconds.get(node.id)
        if figure is not None:
            lines = (*lines, f"≤ {figure:.1f} s to the transfer")
        nodes.append(GraphNode(node.id, _kind(node), lines, figure, node.id in worst_nodes))
        for label, target in _ways_out(node):
            edges.setdefault((node.id, target), []).append(label)
        if isinstance(node.body, Transfer):
            targets.setdefault(target_id(node.body), node.body)
    for tid, transfer in targets.items():
        kind = "queue" if transfer.queue else "line"
        lines = _target_lines(transfer, plan)
        nodes.append(GraphNode(tid, kind, lines, None, tid in worst_nodes))
    verdict = (
        f"worst case {analysis.worst_seconds:.1f} s to the transfer (limit "
        f"{analysis.limit:g} s, call starting in {analysis.start_language})"
        if analysis.bounded
        else "no bound on the time to the transfer"
    )
    return FlowGraph(
        flow_id=flow.id,
        title=f"flow {flow.id} ({flow.source}): {verdict}",
        nodes=tuple(nodes),
        edges=tuple(
            GraphEdge(source, target, tuple(labels), (source, target) in worst_edges)
            for (source, target), labels in edges.items()
        ),
    )


def target_id(transfer: Transfer) -> str:
    return f"queue:{transfer.queue}" if transfer.queue else f"line:{transfer.line}"


def first_words(text: str, count: int = PROMPT_WORDS) -> str:
    words = text.split()
    return " ".join(words[:count]) + (" …" if len(words) > count else "")


def _kind(node: FlowNode) -> str:
    match node.body:
        case Say():
            return "say"
        case Menu():
            return "menu"
        case SetVars():
            return "set"
        case Branch():
            return "branch"
        case Goto():
            return "goto"
        case Transfer():
            return "transfer"
    return "hangup"


def _describe(node: FlowNode, prompts: PromptCatalog, language: str) -> tuple[str, ...]:
    """The label lines under the node's id: what it says or does."""
    body = node.body
    prompt: str | None = None
    match body:
        case Say() | Menu():
            prompt = body.prompt
        case Transfer() | Hangup():
            prompt = body.prompt
        case SetVars():
            return ("set " + _assignments(body.values),)
        case Branch():
            return (f"on {body.on}" + (f" ({body.tz})" if body.tz else ""),)
    if prompt is None:
        return ()
    found = prompts.get(language, prompt)
    return (f"“{first_words(found.text)}”" if found else f"[{prompt}]",)


def _ways_out(node: FlowNode) -> list[tuple[str, str]]:
    """(label, target) of each way out of a node, in the order the flow gives them."""
    body = node.body
    match body:
        case Say() | SetVars():
            return [("next", body.next)]
        case Goto():
            return [("goto", body.target)]
        case Branch():
            cases = [(f"{body.on} = {case}", target) for case, target in body.cases]
            return [*cases, ("default", body.default)]
        case Transfer():
            return [("transfer", target_id(body))]
        case Menu():
            out = []
            for option in body.options:
                heard = ["key " + ", ".join(option.keys)] if option.keys else []
                if option.words and body.speech:
                    heard.append(" / ".join(f"“{w}”" for w in option.words))
                label = " or ".join(heard)
                if option.set:
                    label += f"\nset {_assignments(option.set)}"
                out.append((label, option.next))
            out += _failure(node.id, "silence", body.no_input)
            out += _failure(node.id, "wrong input", body.no_match)
            return out
    return []


def _failure(node_id: str, kind: str, fallback: Fallback) -> list[tuple[str, str]]:
    """A menu's silence or wrong input: replays of the menu, then where it goes."""
    if fallback.retries == 0:
        return [(kind, fallback.then)]
    times = "once" if fallback.retries == 1 else f"up to {fallback.retries} times"
    said = f" after “{fallback.prompt}”" if fallback.prompt else ""
    return [
        (f"{kind}: replay {times}{said}", node_id),
        (f"{kind} after {fallback.retries} {_plural('replay', fallback.retries)}", fallback.then),
    ]


def _target_lines(transfer: Transfer, plan: RoutingPlan | None) -> tuple[str, ...]:
    if transfer.queue:
        queue = plan.queues.get(transfer.queue) if plan else None
        tiers = (" → ".join(t.kind for t in queue.tiers),) if queue else ()
        return (f"queue {transfer.queue}", *tiers)
    line = plan.lines.get(transfer.line or "") if plan else None
    return (f"line {transfer.line}", *((line.name,) if line else ()))


def _assignments(values: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{key}={value}" for key, value in values)


def _plural(word: str, count: int) -> str:
    return word if count == 1 else word + "s"


# -- DOT --------------------------------------------------------------------------


def dot_source(graph: FlowGraph) -> str:
    """The graph in Graphviz's DOT language; the worst path bold and red."""
    out = [
        f"digraph {_quote(graph.flow_id)} {{",
        f"  graph [label={_quote(graph.title)}, labelloc=t, fontname=Helvetica, fontsize=12];",
        "  node [fontname=Helvetica, fontsize=10, style=rounded];",
        "  edge [fontname=Helvetica, fontsize=9];",
    ]
    for node in graph.nodes:
        attrs = {"shape": SHAPES[node.kind], "label": "\n".join(node.lines)}
        if node.kind in ("queue", "line"):
            attrs["style"] = "filled"
            attrs["fillcolor"] = "#e8f0fe"
        if node.worst:
            attrs |= {"color": _WORST_COLOR, "fontcolor": _WORST_COLOR, "penwidth": "2.5"}
            attrs["style"] = attrs.get("style", "rounded") + ",bold"
        out.append(f"  {_quote(node.id)} [{_attributes(attrs)}];")
    for edge in graph.edges:
        attrs = {"label": "\n".join(edge.labels)}
        if edge.worst:
            attrs |= {"color": _WORST_COLOR, "fontcolor": _WORST_COLOR, "penwidth": "2.5",
                      "style": "bold"}
        out.append(f"  {_quote(edge.source)} -> {_quote(edge.target)} [{_attributes(attrs)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _attributes(attrs: Mapping[str, str]) -> str:
    return ", ".join(f"{key}={_quote(value)}" for key, value in attrs.items())


def _quote(text: str) -> str:
    """A DOT double-quoted string; a newline becomes a centred line break."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n") + '"'
