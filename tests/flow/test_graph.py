"""The flow as a picture: the graph's structure, and one real rendering by `dot`."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from itertools import pairwise
from pathlib import Path

import pytest

from ivr.content import Content, check
from ivr.flow.analysis import analyse, worst_seconds_by_node
from ivr.flow.graph import SHAPES, FlowGraph, build_graph, dot_source, first_words
from ivr.flow.loader import load_flows
from ivr.flow.prompts import load_prompts
from ivr.flow.render import render
from ivr.yamlsrc import Problems
from tests.conftest import ROOT

from .conftest import Write

# The shipped flow's worst path (ivr validate prints it): greeting, a wrong
# key and the replay, key 2 to Spanish, the transfer to the crisis queue.
LIFELINE_WORST = {
    ("greeting", "main_menu"),
    ("main_menu", "main_menu"),
    ("main_menu", "spanish"),
    ("spanish", "connect"),
    ("connect", "queue:crisis"),
}

HOURS = """
    id: hours
    languages: [en]
    numbers: ["+18005550123"]
    start: greeting
    max_time_to_human: 60s
    nodes:
      greeting: {say: welcome, next: open}
      open:
        branch:
          on: time
          tz: America/New_York
          cases: {"08:00-20:00": connect}
          default: night
      night: {set: {need: veteran}, next: late}
      late: {say: hold_reassurance, next: veterans}
      veterans: {transfer: {line: veterans, prompt: connecting_veterans}}
      connect: {transfer: {queue: crisis, prompt: connecting}}
    """


def load(flows_dir: Path, prompts_dir: Path) -> Content:
    content, problems = check(flows_dir, prompts_dir)
    assert content is not None, [str(p) for p in problems.errors]
    return content


def graph_of(content: Content, flow_id: str) -> FlowGraph:
    flow = content.flows.flows[flow_id]
    return build_graph(flow, content.analyses[flow_id], content.flows.prompts, content.plan)


@pytest.fixture
def lifeline() -> FlowGraph:
    return graph_of(load(ROOT / "flows", ROOT / "prompts"), "lifeline")


def test_every_node_of_the_shipped_flow_with_its_kind_and_first_words(
    lifeline: FlowGraph,
) -> None:
    ids = {n.id for n in lifeline.nodes}
    assert ids == {"greeting", "main_menu", "spanish", "to_veterans", "connect",
                   "queue:crisis", "line:veterans"}
    assert lifeline.node("main_menu").kind == "menu"
    assert lifeline.node("greeting").kind == "say"
    assert lifeline.node("connect").kind == "transfer"
    # The first words of the English prompt, cut short.
    assert "“You've reached the 988 Suicide and …”" in lifeline.node("greeting").lines
    assert "“You chose Spanish.”" in lifeline.node("spanish").lines
    source = dot_source(lifeline)
    assert '"main_menu" [shape="hexagon"' in source
    assert '"greeting" [shape="box"' in source


def test_every_way_out_is_labelled(lifeline: FlowGraph) -> None:
    def labels(source: str, target: str) -> str:
        return "\n".join(lifeline.edge(source, target).labels)

    assert labels("greeting", "main_menu") == "next"
    assert labels("main_menu", "to_veterans").startswith("key 1 or “veteran” / “military”")
    assert labels("main_menu", "spanish").startswith("key 2 or “spanish” / “español”")
    assert "set language=es" in labels("main_menu", "spanish")
    # Silence goes straight through; a wrong key replays once after "sorry".
    assert lifeline.edge("main_menu", "connect").labels == (
        "silence", "wrong input after 1 replay")
    assert labels("main_menu", "main_menu") == "wrong input: replay once after “sorry”"
    assert labels("connect", "queue:crisis") == "transfer"
    assert labels("to_veterans", "line:veterans") == "transfer"
    assert len(lifeline.edges) == 8


def test_the_transfer_targets_are_terminal_nodes(lifeline: FlowGraph) -> None:
    queue, line = lifeline.node("queue:crisis"), lifeline.node("line:veterans")
    assert (queue.kind, line.kind) == ("queue", "line")
    assert queue.lines == ("queue crisis", "local → backup → national")
    assert line.lines == ("line veterans", "Veterans Crisis Line")
    assert not [e for e in lifeline.edges if e.source in ("queue:crisis", "line:veterans")]


def test_the_worst_path_and_only_it_is_highlighted(lifeline: FlowGraph) -> None:
    content = load(ROOT / "flows", ROOT / "prompts")
    path = content.analyses["lifeline"].worst_path
    assert set(pairwise(path)) | {("connect", "queue:crisis")} == LIFELINE_WORST
    assert {(e.source, e.target) for e in lifeline.edges if e.worst} == LIFELINE_WORST
    assert {n.id for n in lifeline.nodes if n.worst} == {
        "greeting", "main_menu", "spanish", "connect", "queue:crisis"}
    source = dot_source(lifeline)
    assert source.count(', color="red"') == len(LIFELINE_WORST) + 5


def test_each_node_shows_its_worst_case_to_a_counselor(lifeline: FlowGraph) -> None:
    content = load(ROOT / "flows", ROOT / "prompts")
    analysis = content.analyses["lifeline"]
    flow = content.flows.flows["lifeline"]
    seconds = worst_seconds_by_node(flow, content.flows.prompts)
    assert set(seconds) == set(flow.nodes)
    # The start's figure is the flow's worst case; a transfer's is its prompt.
    assert seconds["greeting"] == pytest.approx(analysis.worst_seconds)
    spoken = [content.flows.prompts.get(lang, "connecting") for lang in flow.languages]
    assert seconds["connect"] == pytest.approx(max(p.seconds for p in spoken if p))
    assert seconds["spanish"] > seconds["connect"]
    for node_id, figure in seconds.items():
        assert lifeline.node(node_id).seconds == figure
        assert f"≤ {figure:.1f} s to the transfer" in lifeline.node(node_id).lines
    assert lifeline.node("queue:crisis").seconds is None


def test_a_flow_with_a_branch(write: Write, tmp_path: Path) -> None:
    write("flows/hours.yaml", HOURS)
    shutil.copy(ROOT / "flows" / "routing.yaml", tmp_path / "flows" / "routing.yaml")
    graph = graph_of(load(tmp_path / "flows", ROOT / "prompts"), "hours")
    assert graph.node("open").kind == "branch"
    assert graph.node("open").lines[1] == "on time (America/New_York)"
    assert graph.node("night").kind == "set"
    assert graph.node("night").lines[1] == "set need=veteran"
    assert graph.edge("open", "connect").labels == ("time = 08:00-20:00",)
    assert graph.edge("open", "night").labels == ("default",)
    assert graph.edge("night", "late").labels == ("next",)
    # The night says one more prompt: it is the worst path.
    assert {(e.source, e.target) for e in graph.edges if e.worst} == {
        ("greeting", "open"), ("open", "night"), ("night", "late"), ("late", "veterans"),
        ("veterans", "line:veterans")}
    assert '"open" [shape="diamond"' in dot_source(graph)


def test_labels_are_quoted_for_dot() -> None:
    graph = FlowGraph("q", 'say "hi"\\', (), ())
    assert 'label="say \\"hi\\"\\\\"' in dot_source(graph)
    assert first_words("one two three", 2) == "one two …"
    assert set(SHAPES) >= {"say", "menu", "set", "branch", "goto", "transfer", "hangup"}


SVG = "{http://www.w3.org/2000/svg}"
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz's dot is not installed (Debian package graphviz)"
)


@needs_dot
def test_dot_draws_the_shipped_flow(lifeline: FlowGraph, tmp_path: Path) -> None:
    out = tmp_path / "lifeline.svg"
    render(dot_source(lifeline), out)
    root = ET.parse(out).getroot()
    assert root.tag == f"{SVG}svg"
    groups: dict[str | None, list[ET.Element]] = {}
    for g in root.iter(f"{SVG}g"):
        groups.setdefault(g.get("class"), []).append(g)

    def title(g: ET.Element) -> str:
        found = g.find(f"{SVG}title")
        assert found is not None and found.text is not None
        return found.text

    assert {title(g) for g in groups["node"]} == {n.id for n in lifeline.nodes}
    drawn = {tuple(title(g).split("->")): g for g in groups["edge"]}
    assert set(drawn) == {(e.source, e.target) for e in lifeline.edges}
    red = {edge for edge, g in drawn.items()
           if any(p.get("stroke") == "red" for p in g.iter(f"{SVG}path"))}
    assert red == LIFELINE_WORST
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert {"silence", "wrong input after 1 replay", "queue crisis"} <= texts


def test_the_readme_picture_is_the_shipped_flow_of_today(lifeline: FlowGraph) -> None:
    """docs/flow-988.svg is drawn by `ivr graph flows/988.yaml -o docs/flow-988.svg`:
    redraw it when this fails."""
    root = ET.parse(ROOT / "docs" / "flow-988.svg").getroot()
    texts = {t.text for t in root.iter(f"{SVG}text")}
    labels = {line for n in lifeline.nodes for line in n.lines}
    labels |= {line for e in lifeline.edges for label in e.labels for line in label.split("\n")}
    assert texts - {lifeline.title.replace(str(ROOT) + "/", "")} == labels


def test_a_flow_with_a_loop_has_no_figures_and_no_worst_path(write: Write) -> None:
    path = write("flows/loop.yaml", """
        id: loop
        languages: [en]
        start: a
        max_time_to_human: 60s
        nodes:
          a: {say: welcome, next: b}
          b: {goto: a}
        """)
    problems = Problems()
    flow = load_flows(path.parent, problems)["loop"]
    catalog = load_prompts(ROOT / "prompts", problems)
    analysis = analyse(flow, catalog, problems)
    assert not analysis.bounded
    assert worst_seconds_by_node(flow, catalog) == {}
    graph = build_graph(flow, analysis, catalog)
    assert not [n for n in graph.nodes if n.worst or n.seconds is not None]
    assert not [e for e in graph.edges if e.worst]
    assert graph.edge("b", "a").labels == ("goto",)
    assert graph.node("b").kind == "goto"
    assert "no bound" in graph.title
