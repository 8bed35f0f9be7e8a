"""Flow files (`flows/*.yaml`, except the routing plan) -> validated `Flow`s.

A flow file:

    id: lifeline                 # unique across files
    languages: [en, es]          # the first is the language a call starts in
    start: greeting              # the first node
    max_time_to_human: 60s       # the analysis fails any path to a transfer that takes longer
    max_time_to_backup: 120s     # optional: so does one to the national backup, through the tiers
    numbers: ["+18002738255"]    # called numbers it answers; none: the catch-all flow
    nodes:
      greeting:  {say: welcome, next: main_menu}
      main_menu:
        menu:
          prompt: main_menu
          timeout: 5s            # optional: 5s, as Twilio's <Gather>
          speech: true           # optional: listen for `words` too
          options:
            - {keys: "1", words: [veteran], set: {need: veteran}, next: to_vcl}
          no_input: connect                          # = {retries: 0, then: connect}
          no_match: {retries: 1, then: connect, prompt: sorry}
      tag:       {set: {need: general}, next: by_lang}
      by_lang:   {branch: {on: language, cases: {es: connect}, default: connect}}
      by_time:   {branch: {on: time, tz: America/New_York,
                           cases: {"08:00-20:00": connect}, default: connect}}
      jump:      {goto: connect}
      to_vcl:    {transfer: {line: veterans, prompt: connecting}}
      connect:   {transfer: {queue: crisis}}
      bye:       {hangup: {prompt: goodbye}}   # the analysis refuses reachable hangups

Reading is strict and exhaustive: every problem is reported with the
`file:line:col` of the offending key or value, and reading goes on so the
author gets the whole list at once. A file with any error yields no flow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from ivr.flow.model import Flow, FlowNode, Targets
from ivr.flow.nodes import read_node
from ivr.flow.scope import FlowScope
from ivr.yamlfields import IDENT, is_e164, suggest
from ivr.yamlsrc import Node, Pos, Problems, YamlSyntaxError, decode, parse

ROUTING_FILE = "routing.yaml"

_TOP_KEYS = (
    "id", "languages", "start", "max_time_to_human", "max_time_to_backup", "numbers", "nodes"
)


def load_flows(
    flows_dir: Path, problems: Problems, targets: Targets | None = None
) -> dict[str, Flow]:
    """Every flow file in `flows_dir` that reads without error, by flow id."""
    if not flows_dir.is_dir():
        problems.add(Pos(str(flows_dir), 1, 1), "the flows directory does not exist")
        return {}
    flows: dict[str, Flow] = {}
    owners: dict[str, Flow] = {}  # called number -> the flow answering it
    catch_all: Flow | None = None
    files = [p for p in sorted(flows_dir.glob("*.yaml")) if p.name != ROUTING_FILE]
    for path in files:
        flow = load_flow_file(path, problems, targets)
        if flow is None:
            continue
        id_pos = flow.positions.get("id", flow.pos)
        if flow.id in flows:
            other = flows[flow.id].source
            problems.add(id_pos, f"flow id '{flow.id}' is already used by {other}")
            continue
        clash = False
        for i, number in enumerate(flow.numbers):
            if number in owners:
                other_flow = owners[number]
                problems.add(
                    flow.positions.get(f"numbers.{i}", id_pos),
                    f"number {number} is already answered by flow '{other_flow.id}' "
                    f"({other_flow.source}): a called number belongs to one flow",
                )
                clash = True
        if not flow.numbers:
            if catch_all is not None:
                problems.add(
                    id_pos,
                    f"flow '{flow.id}' lists no numbers, and neither does flow "
                    f"'{catch_all.id}' ({catch_all.source}): only one flow may answer "
                    "every other number; give one of them 'numbers'",
                )
                clash = True
            else:
                catch_all = flow
        if clash:
            continue
        for number in flow.numbers:
            owners[number] = flow
        flows[flow.id] = flow
    for path in sorted(flows_dir.glob("*.yml")):
        problems.warn(Pos(str(path), 1, 1), "ignored: flow files must end in .yaml")
    if not files:
        problems.add(Pos(str(flows_dir), 1, 1), "no flow files (*.yaml) in the flows directory")
    return flows


def load_flow_file(path: Path, problems: Problems, targets: Targets | None = None) -> Flow | None:
    """One flow file; None (with the problems added) when it has any error."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.add(Pos(str(path), 1, 1), f"cannot read the flow file: {exc}")
        return None
    try:
        root = parse(decode(data, str(path)), str(path))
    except YamlSyntaxError as exc:
        problems.add(exc.problem.pos, exc.problem.message)
        return None
    errors_before = len(problems.errors)
    version = hashlib.sha256(data).hexdigest()[:12]
    flow = _FlowReader(problems, str(path), targets).read(root, version)
    if len(problems.errors) > errors_before:
        return None
    return flow


class _FlowReader(FlowScope):
    """The top of a flow file, its node table, and the checks that span nodes."""

    def read(self, root: Node, version: str) -> Flow | None:
        top = self.fields(
            root,
            "a flow file",
            _TOP_KEYS,
            required=("id", "languages", "start", "max_time_to_human", "nodes"),
        )
        if top is None:
            return None
        positions: dict[str, Pos] = {key: f.value.pos for key, f in top.items()}
        flow_id = self.ident(top["id"].value, "the flow id") if "id" in top else None
        if "languages" in top:
            self.languages = self.language_list(top["languages"].value, positions)
        numbers = self.number_list(top["numbers"].value, positions) if "numbers" in top else ()
        limit = None
        if "max_time_to_human" in top:
            limit = self.seconds(top["max_time_to_human"].value, "max_time_to_human")
        backup_limit = None
        if "max_time_to_backup" in top:
            backup_limit = self.seconds(top["max_time_to_backup"].value, "max_time_to_backup")
        start = self.ref(top["start"].value, "start") if "start" in top else None
        nodes = self.nodes(top["nodes"].value) if "nodes" in top else {}
        self.check_refs(nodes)
        if flow_id is None or start is None or limit is None or not self.languages:
            return None
        return Flow(
            id=flow_id,
            languages=self.languages,
            start=start,
            max_time_to_human=limit,
            nodes={k: v for k, v in nodes.items() if v is not None},
            version=version,
            source=self.source,
            numbers=numbers,
            max_time_to_backup=backup_limit,
            pos=positions.get("id", root.pos),
            positions=positions,
        )

    def language_list(self, node: Node, positions: dict[str, Pos]) -> tuple[str, ...]:
        out: list[str] = []
        for i, (lang, pos) in enumerate(self.text_list(node, "languages")):
            positions[f"languages.{i}"] = pos
            if self.language(lang, pos) is None:
                continue
            if lang in out:
                self.error(pos, f"language '{lang}' is listed twice")
            else:
                out.append(lang)
        if not out and node.is_list:
            self.error(node.pos, "a flow needs at least one language; the first is the default")
        return tuple(out)

    def number_list(self, node: Node, positions: dict[str, Pos]) -> tuple[str, ...]:
        out: list[str] = []
        for i, (number, pos) in enumerate(self.text_list(node, "numbers")):
            positions[f"numbers.{i}"] = pos
            if not is_e164(number):
                self.error(pos, f"number '{number}' is not an E.164 number like +18002738255")
            elif number in out:
                self.error(pos, f"number {number} is listed twice")
            else:
                out.append(number)
        return tuple(out)

    def nodes(self, node: Node) -> dict[str, FlowNode | None]:
        entries = self.names(node, "nodes", shape="a mapping of node ids to nodes")
        out: dict[str, FlowNode | None] = {}
        for node_id, id_pos, value in entries:
            if not IDENT.match(node_id):
                self.error(id_pos, f"node id '{node_id}' may hold only letters, digits, _ and -")
            out[node_id] = read_node(self, node_id, id_pos, value)
        if node.is_map and not list(node.entries()):
            self.error(node.pos, "a flow needs at least one node")
        return out

    def check_refs(self, nodes: Mapping[str, FlowNode | None]) -> None:
        for ref in self.refs:
            if ref.target not in nodes:
                self.error(
                    ref.pos,
                    f"{ref.what} goes to '{ref.target}', which is not a node of this flow"
                    + suggest(ref.target, nodes),
                )
