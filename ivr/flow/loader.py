"""Flow files (`flows/*.yaml`, except the routing plan) -> validated `Flow`s.

A flow file:

    id: lifeline                 # unique across files
    languages: [en, es]          # the first is the language a call starts in
    start: greeting              # the first node
    max_time_to_human: 60s       # the analysis fails any path that can take longer
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

import difflib
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from ivr.flow.model import (
    Branch,
    Fallback,
    Flow,
    FlowNode,
    Goto,
    Hangup,
    Menu,
    NodeBody,
    Option,
    Say,
    SetVars,
    Targets,
    Transfer,
)
from ivr.flow.prompts import PROMPT_ID
from ivr.yamlsrc import Node, Pos, Problems, YamlSyntaxError, parse, parse_duration

ROUTING_FILE = "routing.yaml"
KINDS = ("say", "menu", "set", "branch", "transfer", "hangup", "goto")
DEFAULT_MENU_TIMEOUT = 5.0  # seconds, Twilio's <Gather> default
DTMF_KEYS = "0123456789*#"

_TOP_KEYS = ("id", "languages", "start", "max_time_to_human", "numbers", "nodes")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # flow, node, queue and line names
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # fields set and branched on
_LANG = re.compile(r"^[a-z]{2,3}$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_TIME_RANGE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$")

# Why a key that belongs to other node kinds is wrong in this one.
_NO_NEXT = {
    "menu": "its options, no_input and no_match say where to go",
    "branch": "its cases and default say where to go",
    "transfer": "the call leaves the flow for a counselor there",
    "hangup": "the call ends there",
    "goto": "the value of 'goto' is where it goes",
}


@dataclass(frozen=True)
class _Field:
    key_pos: Pos
    value: Node


@dataclass(frozen=True)
class _Ref:
    target: str
    pos: Pos
    what: str


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


def load_flow_file(
    path: Path, problems: Problems, targets: Targets | None = None
) -> Flow | None:
    """One flow file; None (with the problems added) when it has any error."""
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(Pos(str(path), 1, 1), f"cannot read the flow file: {exc}")
        return None
    try:
        root = parse(text, str(path))
    except YamlSyntaxError as exc:
        problems.add(exc.problem.pos, exc.problem.message)
        return None
    errors_before = len(problems.errors)
    version = hashlib.sha256(data).hexdigest()[:12]
    flow = _FlowReader(problems, str(path), targets).read(root, version)
    if len(problems.errors) > errors_before:
        return None
    return flow


def _suggest(word: str, choices: Iterable[str], *, listing: bool = False) -> str:
    options = sorted(set(choices))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    if listing and options:
        return " (expected one of: " + ", ".join(options) + ")"
    return ""


class _FlowReader:
    def __init__(self, problems: Problems, source: str, targets: Targets | None = None) -> None:
        self.problems = problems
        self.source = source
        self.targets = targets
        self.languages: tuple[str, ...] = ()
        self.refs: list[_Ref] = []

    def error(self, pos: Pos, message: str) -> None:
        self.problems.add(pos, message)

    # -- the file ---------------------------------------------------------------

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
            limit = self.duration(top["max_time_to_human"].value, "max_time_to_human")
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
            pos=positions.get("id", root.pos),
            positions=positions,
        )

    def language_list(self, node: Node, positions: dict[str, Pos]) -> tuple[str, ...]:
        out: list[str] = []
        for i, (lang, pos) in enumerate(self.text_list(node, "languages")):
            positions[f"languages.{i}"] = pos
            if not _LANG.match(lang):
                self.error(pos, f"'{lang}' is not a language code: write e.g. en or es")
            elif lang in out:
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
            if not _E164.match(number):
                self.error(pos, f"'{number}' is not a phone number in E.164 form like +18002738255")
            elif number in out:
                self.error(pos, f"number {number} is listed twice")
            else:
                out.append(number)
        return tuple(out)

    def nodes(self, node: Node) -> dict[str, FlowNode | None]:
        if not node.is_map:
            self.error(
                node.pos, f"nodes must be a mapping of node ids to nodes, not {node.kind_name}"
            )
            return {}
        out: dict[str, FlowNode | None] = {}
        first_pos: dict[str, Pos] = {}
        for node_id, id_pos, value in node.entries():
            if node_id in first_pos:
                self.error(
                    id_pos,
                    f"node '{node_id}' is defined twice (first at line {first_pos[node_id].line}); "
                    "YAML would silently keep only the last one",
                )
                continue
            first_pos[node_id] = id_pos
            if not _ID.match(node_id):
                self.error(id_pos, f"node id '{node_id}' may hold only letters, digits, _ and -")
            out[node_id] = self.flow_node(node_id, id_pos, value)
        if not first_pos:
            self.error(node.pos, "a flow needs at least one node")
        return out

    def check_refs(self, nodes: Mapping[str, FlowNode | None]) -> None:
        for ref in self.refs:
            if ref.target not in nodes:
                self.error(
                    ref.pos,
                    f"{ref.what} goes to '{ref.target}', which is not a node of this flow"
                    + _suggest(ref.target, nodes),
                )

    # -- nodes ------------------------------------------------------------------

    def flow_node(self, node_id: str, id_pos: Pos, value: Node) -> FlowNode | None:
        if not value.is_map:
            self.error(
                value.pos,
                f"node '{node_id}' must be a mapping such as {{say: welcome, next: menu}}, "
                f"not {value.kind_name}",
            )
            return None
        entries = list(value.entries())
        kinds = [(key, pos) for key, pos, _ in entries if key in KINDS]
        if not kinds:
            self.error(id_pos, f"node '{node_id}' does nothing: give it one of " + ", ".join(KINDS))
            for key, pos, _ in entries:
                if key != "next":
                    self.error(pos, f"unknown key '{key}' in a node" + _suggest(key, KINDS))
            return None
        if len(kinds) > 1:
            (first, _), (second, pos) = kinds[0], kinds[1]
            self.error(
                pos,
                f"node '{node_id}' is both a {first} and a {second} node: "
                "a node does one thing, so split it in two",
            )
            return None
        kind = kinds[0][0]
        takes_next = kind in ("say", "set")
        fields = self.fields(
            value,
            f"a {kind} node",
            (kind, "next") if takes_next else (kind,),
            required=("next",) if takes_next else (),
            at=id_pos,
            explain={"next": _NO_NEXT[kind]} if not takes_next else {},
        )
        if fields is None:
            return None
        where: dict[str, Pos] = {key: f.value.pos for key, f in fields.items()}
        body = self.body(kind, node_id, fields, where)
        return None if body is None else FlowNode(node_id, body, id_pos, where)

    def body(
        self, kind: str, node_id: str, fields: Mapping[str, _Field], where: dict[str, Pos]
    ) -> NodeBody | None:
        value, at = fields[kind].value, fields[kind].key_pos
        nxt = (
            self.ref(fields["next"].value, f"'next' of node '{node_id}'")
            if "next" in fields
            else None
        )
        match kind:
            case "say":
                prompt = self.prompt_id(value, "a say node")
                return Say(prompt, nxt) if prompt and nxt else None
            case "set":
                values = self.set_values(value, "set", where)
                return SetVars(values, nxt) if values is not None and nxt else None
            case "goto":
                target = self.ref(value, f"goto of node '{node_id}'")
                return Goto(target) if target else None
            case "transfer":
                return self.transfer(value, at, where)
            case "hangup":
                return self.hangup(value, where)
            case "menu":
                return self.menu(node_id, value, at, where)
            case _:
                return self.branch(node_id, value, at, where)

    def transfer(self, node: Node, at: Pos, where: dict[str, Pos]) -> Transfer | None:
        fields = self.fields(
            node, "a transfer", ("queue", "line", "prompt"), shape="a mapping like {queue: crisis}"
        )
        if fields is None:
            return None
        self.record(where, "transfer", fields)
        if "queue" in fields and "line" in fields:
            self.error(
                fields["line"].key_pos,
                "a transfer goes to a queue or to a line, not both",
            )
            return None
        if "queue" not in fields and "line" not in fields:
            self.error(
                at,
                "a transfer needs 'queue' (a routing queue, e.g. crisis) "
                "or 'line' (a special line, e.g. veterans)",
            )
            return None
        queue = self.ident(fields["queue"].value, "queue") if "queue" in fields else None
        line = self.ident(fields["line"].value, "line") if "line" in fields else None
        prompt = (
            self.prompt_id(fields["prompt"].value, "a transfer") if "prompt" in fields else None
        )
        if queue is None and line is None:
            return None
        if self.targets is not None:
            self.check_target(fields, "queue", queue, self.targets.queues)
            self.check_target(fields, "line", line, self.targets.lines)
        return Transfer(queue=queue, line=line, prompt=prompt)

    def check_target(
        self, fields: dict[str, _Field], kind: str, name: str | None, known: frozenset[str]
    ) -> None:
        """A transfer to a queue or line the routing plan lacks would be a dead end."""
        if name is None or name in known:
            return
        self.error(
            fields[kind].value.pos,
            f"transfer to {kind} '{name}', which the routing plan does not define"
            + _suggest(name, known, listing=True),
        )

    def hangup(self, node: Node, where: dict[str, Pos]) -> Hangup | None:
        if node.is_null:
            return Hangup()
        fields = self.fields(
            node, "a hangup", ("prompt",), shape="empty or a mapping like {prompt: goodbye}"
        )
        if fields is None:
            return None
        self.record(where, "hangup", fields)
        if "prompt" not in fields:
            return Hangup()
        prompt = self.prompt_id(fields["prompt"].value, "a hangup")
        return Hangup(prompt) if prompt else None

    def menu(self, node_id: str, node: Node, at: Pos, where: dict[str, Pos]) -> Menu | None:
        fields = self.fields(
            node,
            "a menu",
            ("prompt", "timeout", "speech", "options", "no_input", "no_match"),
            required=("prompt", "options", "no_input", "no_match"),
            at=at,
        )
        if fields is None:
            return None
        self.record(where, "menu", fields)
        prompt = self.prompt_id(fields["prompt"].value, "a menu") if "prompt" in fields else None
        timeout: float | None = DEFAULT_MENU_TIMEOUT
        if "timeout" in fields:
            timeout = self.duration(fields["timeout"].value, "the menu timeout")
        speech = self.boolean(fields["speech"].value, "speech") if "speech" in fields else True
        options = None
        if "options" in fields:
            options = self.options(node_id, fields["options"].value, speech is not False, where)
        fallbacks = {
            kind: self.fallback(node_id, kind, fields[kind], where)
            for kind in ("no_input", "no_match")
            if kind in fields
        }
        no_input, no_match = fallbacks.get("no_input"), fallbacks.get("no_match")
        if (
            prompt is None
            or timeout is None
            or speech is None
            or options is None
            or no_input is None
            or no_match is None
        ):
            return None
        return Menu(prompt, timeout, options, no_input, no_match, speech)

    def options(
        self, node_id: str, node: Node, listening: bool, where: dict[str, Pos]
    ) -> tuple[Option, ...] | None:
        if not node.is_list:
            self.error(node.pos, f"options must be a list of options, not {node.kind_name}")
            return None
        items = list(node.items())
        if not items:
            self.error(node.pos, "a menu needs at least one option")
            return None
        key_owner: dict[str, int] = {}  # key or word -> line of the option that has it
        word_owner: dict[str, int] = {}
        out: list[Option] = []
        ok = True
        for i, item in enumerate(items, start=1):
            option = self.option(node_id, i, item, listening, key_owner, word_owner, where)
            if option is None:
                ok = False
            else:
                out.append(option)
        return tuple(out) if ok else None

    def option(
        self,
        node_id: str,
        number: int,
        node: Node,
        listening: bool,
        key_owner: dict[str, int],
        word_owner: dict[str, int],
        where: dict[str, Pos],
    ) -> Option | None:
        fields = self.fields(
            node, f"option {number}", ("keys", "words", "set", "next"), required=("next",)
        )
        if fields is None:
            return None
        path = f"menu.options.{number - 1}"
        where[path] = node.pos
        self.record(where, path, fields)
        errors_before = len(self.problems.errors)
        keys: list[str] = []
        if "keys" in fields:
            value = fields["keys"].value
            text = self.text(value, "keys")
            for key in text or "":
                if key not in DTMF_KEYS:
                    self.error(value.pos, f"'{key}' is not a phone key: keys are 0-9, * and #")
                elif key in key_owner:
                    self.error(
                        value.pos,
                        f"key {key} already selects the option at line {key_owner[key]} "
                        "of this menu",
                    )
                else:
                    key_owner[key] = node.pos.line
                    keys.append(key)
        words: list[str] = []
        by_language: dict[str, tuple[str, ...]] = {}
        if "words" in fields:
            for language, entries in self.words_field(fields["words"].value):
                mine: list[str] = []
                for word, pos in entries:
                    normal = " ".join(word.casefold().split())
                    if normal in word_owner:
                        self.error(
                            pos,
                            f"word '{word}' already selects the option at line "
                            f"{word_owner[normal]} of this menu",
                        )
                        continue
                    word_owner[normal] = node.pos.line
                    where[f"{path}.words.{len(words)}"] = pos
                    words.append(normal)
                    mine.append(normal)
                if language is not None:
                    by_language[language] = tuple(mine)
        values: tuple[tuple[str, str], ...] | None = ()
        if "set" in fields:
            values = self.set_values(fields["set"].value, f"{path}.set", where)
        nxt = None
        if "next" in fields:
            nxt = self.ref(fields["next"].value, f"option {number} of menu '{node_id}'")
        if "keys" not in fields and "words" not in fields:
            self.error(node.pos, "an option needs keys, words or both, or no caller can choose it")
        elif not listening and not keys and len(self.problems.errors) == errors_before:
            self.error(
                node.pos,
                "this option has only words but the menu does not listen (speech: false): "
                "give it keys",
            )
        if len(self.problems.errors) > errors_before or values is None or nxt is None:
            return None
        return Option(tuple(keys), tuple(words), values, nxt, by_language)

    def fallback(
        self, node_id: str, kind: str, field: _Field, where: dict[str, Pos]
    ) -> Fallback | None:
        node = field.value
        what = f"{kind} of menu '{node_id}'"
        if node.is_scalar and not node.is_null:
            where[f"menu.{kind}.then"] = node.pos
            then = self.ref(node, what)
            return Fallback(0, then) if then else None
        errors_before = len(self.problems.errors)
        fields = self.fields(
            node,
            kind,
            ("retries", "then", "prompt"),
            required=("then",),
            at=field.key_pos,
            shape="a node id or a mapping like {retries: 1, then: connect, prompt: sorry}",
        )
        if fields is None:
            return None
        self.record(where, f"menu.{kind}", fields)
        retries = self.integer(fields["retries"].value, "retries") if "retries" in fields else 0
        prompt = self.prompt_id(fields["prompt"].value, kind) if "prompt" in fields else None
        then = self.ref(fields["then"].value, what) if "then" in fields else None
        if prompt and retries == 0 and len(self.problems.errors) == errors_before:
            self.problems.warn(
                fields["prompt"].value.pos,
                f"prompt '{prompt}' is never said: it plays before a replay, and retries is 0",
            )
        if retries is None or then is None or ("prompt" in fields and prompt is None):
            return None
        return Fallback(retries, then, prompt)

    def branch(self, node_id: str, node: Node, at: Pos, where: dict[str, Pos]) -> Branch | None:
        fields = self.fields(
            node,
            "a branch",
            ("on", "cases", "default", "tz"),
            required=("on", "cases", "default"),
            at=at,
        )
        if fields is None:
            return None
        self.record(where, "branch", fields)
        errors_before = len(self.problems.errors)
        on = self.text(fields["on"].value, "on") if "on" in fields else None
        if on is not None and on != "time" and not _VAR.match(on):
            self.error(fields["on"].value.pos, f"cannot branch on '{on}': name a field or 'time'")
        tz = None
        if on == "time":
            if "tz" not in fields:
                self.error(
                    fields["on"].key_pos,
                    "a branch on time needs 'tz', the time zone of its hours "
                    "(e.g. tz: America/New_York)",
                )
            else:
                tz = self.time_zone(fields["tz"].value)
        elif "tz" in fields:
            self.error(fields["tz"].key_pos, "'tz' only applies to a branch on time")
        cases: list[tuple[str, str]] = []
        if "cases" in fields:
            cases = self.cases(node_id, on, fields["cases"].value, where)
        default = None
        if "default" in fields:
            default = self.ref(fields["default"].value, f"default of branch '{node_id}'")
        if len(self.problems.errors) > errors_before or on is None or default is None:
            return None
        return Branch(on, tuple(cases), default, tz)

    def cases(
        self, node_id: str, on: str | None, node: Node, where: dict[str, Pos]
    ) -> list[tuple[str, str]]:
        if not node.is_map:
            self.error(
                node.pos, f"cases must be a mapping of values to nodes, not {node.kind_name}"
            )
            return []
        out: list[tuple[str, str]] = []
        seen: dict[str, int] = {}
        for case, pos, value in node.entries():
            if case.casefold() in seen:
                self.error(
                    pos, f"case '{case}' appears twice (first at line {seen[case.casefold()]})"
                )
                continue
            seen[case.casefold()] = pos.line
            if on == "time":
                if not _TIME_RANGE.match(case):
                    self.error(
                        pos,
                        f"'{case}' is not a time range: write HH:MM-HH:MM in 24-hour time, "
                        'e.g. "08:00-20:00" (a range may wrap past midnight)',
                    )
                elif case[:5] == case[6:]:
                    self.error(pos, f"time range '{case}' is empty: it starts where it ends")
            elif on == "language" and self.languages and case not in self.languages:
                self.error(
                    pos,
                    f"case '{case}' can never match: this flow's languages are "
                    + ", ".join(self.languages),
                )
            where[f"branch.cases.{case}"] = value.pos
            target = self.ref(value, f"case '{case}' of branch '{node_id}'")
            if target:
                out.append((case, target))
        if not seen:
            self.error(node.pos, "a branch needs at least one case")
        return out

    def time_zone(self, node: Node) -> str | None:
        tz = self.text(node, "tz")
        if tz is None:
            return None
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            self.error(
                node.pos,
                f"unknown time zone '{tz}'"
                + (
                    _suggest(tz, available_timezones())
                    or " (use an IANA name like America/Chicago)"
                ),
            )
            return None
        return tz

    def set_values(
        self, node: Node, path: str, where: dict[str, Pos]
    ) -> tuple[tuple[str, str], ...] | None:
        if not node.is_map:
            self.error(
                node.pos, f"set must be a mapping like {{need: veteran}}, not {node.kind_name}"
            )
            return None
        out: list[tuple[str, str]] = []
        seen: dict[str, int] = {}
        ok = True
        for key, pos, value in node.entries():
            if key in seen:
                self.error(pos, f"'{key}' is set twice (first at line {seen[key]})")
                ok = False
                continue
            seen[key] = pos.line
            where[f"{path}.{key}"] = value.pos
            if not _VAR.match(key) or key == "time":
                self.error(pos, f"cannot set '{key}': name a field with letters, digits and _")
                ok = False
                continue
            text = self.text(value, f"the value of {key}")
            if text is None:
                ok = False
                continue
            if key == "language" and self.languages and text not in self.languages:
                self.error(
                    value.pos,
                    f"language '{text}' is not one of this flow's languages ("
                    + ", ".join(self.languages)
                    + ")",
                )
                ok = False
                continue
            out.append((key, text))
        if not seen:
            self.error(node.pos, "set needs at least one value")
            ok = False
        return tuple(out) if ok else None

    # -- values -----------------------------------------------------------------

    def fields(
        self,
        node: Node,
        what: str,
        allowed: Sequence[str],
        *,
        required: Sequence[str] = (),
        at: Pos | None = None,
        explain: Mapping[str, str] | None = None,
        shape: str | None = None,
    ) -> dict[str, _Field] | None:
        """The keys of a mapping, with unknown, duplicate and missing keys reported."""
        if not node.is_map:
            self.error(node.pos, f"{what} must be {shape or 'a mapping'}, not {node.kind_name}")
            return None
        out: dict[str, _Field] = {}
        seen: dict[str, int] = {}
        for key, pos, value in node.entries():
            if key in seen:
                self.error(
                    pos,
                    f"'{key}' appears twice in {what} (first at line {seen[key]}); "
                    "YAML would silently keep only the last one",
                )
                continue
            seen[key] = pos.line
            if explain and key in explain:
                self.error(pos, f"{what} takes no '{key}': {explain[key]}")
            elif key not in allowed:
                self.error(
                    pos, f"unknown key '{key}' in {what}" + _suggest(key, allowed, listing=True)
                )
            else:
                out[key] = _Field(pos, value)
        for key in required:
            if key not in seen:
                self.error(at or node.pos, f"{what} needs '{key}'")
        return out

    @staticmethod
    def record(where: dict[str, Pos], path: str, fields: Mapping[str, _Field]) -> None:
        for key, f in fields.items():
            where[f"{path}.{key}"] = f.value.pos

    def text(self, node: Node, what: str) -> str | None:
        if not node.is_scalar or node.is_null:
            self.error(node.pos, f"{what} must be a value, not {node.kind_name}")
            return None
        text = node.text.strip()
        if not text:
            self.error(node.pos, f"{what} is empty")
            return None
        return text

    def words_field(self, node: Node) -> list[tuple[str | None, list[tuple[str, Pos]]]]:
        """`words: [a, b]` (heard in any language) or `words: {en: [a], es: [b]}`."""
        if not node.is_map:
            return [(None, self.text_list(node, "words"))]
        out: list[tuple[str | None, list[tuple[str, Pos]]]] = []
        for language, key_pos, value in node.entries():
            if self.languages and language not in self.languages:
                self.error(
                    key_pos,
                    f"words for language '{language}', which is not one of the flow's "
                    f"languages ({', '.join(self.languages)})",
                )
                continue
            out.append((language, self.text_list(value, f"words in {language}")))
        return out

    def text_list(self, node: Node, what: str) -> list[tuple[str, Pos]]:
        if not node.is_list:
            self.error(node.pos, f"{what} must be a list like [a, b], not {node.kind_name}")
            return []
        out: list[tuple[str, Pos]] = []
        for item in node.items():
            text = self.text(item, f"an entry of {what}")
            if text is not None:
                out.append((text, item.pos))
        return out

    def ident(self, node: Node, what: str) -> str | None:
        text = self.text(node, what)
        if text is not None and not _ID.match(text):
            self.error(node.pos, f"{what} '{text}' may hold only letters, digits, _ and -")
            return None
        return text

    def ref(self, node: Node, what: str) -> str | None:
        target = self.ident(node, what)
        if target is not None:
            self.refs.append(_Ref(target, node.pos, what))
        return target

    def prompt_id(self, node: Node, what: str) -> str | None:
        text = self.text(node, f"the prompt of {what}")
        if text is not None and not PROMPT_ID.match(text):
            self.error(
                node.pos,
                f"prompt id '{text}' may hold only letters, digits, _ and - "
                "(it also names the recording file)",
            )
            return None
        return text

    def duration(self, node: Node, what: str) -> float | None:
        text = self.text(node, what)
        if text is None:
            return None
        seconds = parse_duration(text)
        if seconds is None:
            self.error(
                node.pos, f"{what} '{text}' is not a duration: write e.g. 6s, 1.5s, 500ms or 2m"
            )
            return None
        if seconds <= 0:
            self.error(node.pos, f"{what} must be longer than zero")
            return None
        return seconds

    def integer(self, node: Node, what: str) -> int | None:
        if not node.is_scalar or node.tag != "tag:yaml.org,2002:int" or not node.text.isdigit():
            self.error(
                node.pos, f"{what} must be a whole number (0, 1, 2...), not {node.kind_name}"
            )
            return None
        return int(node.text)

    def boolean(self, node: Node, what: str) -> bool | None:
        if not node.is_scalar or node.tag != "tag:yaml.org,2002:bool":
            self.error(node.pos, f"{what} must be true or false, not {node.kind_name}")
            return None
        return node.text.casefold() in ("true", "yes", "on")
