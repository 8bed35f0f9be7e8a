"""Time-to-human analysis: prove that every path through a flow reaches a
transfer, and bound how long the slowest one takes to get there. What comes
after the transfer (the tiers of the routing plan) is ivr.routing.reach's.

The model of a call (ivr/flow/runtime.py implements exactly this):

- A call starts at `start`, in `languages[0]`.
- Say costs its prompt's seconds, in the call's current language.
- A menu attempt costs its prompt plus its whole timeout: the worst input is
  silence until the timeout ends, or a wrong key (or an unknown word) at its
  very end; an option chosen at the end of the timeout costs the same.
- Each visit to a menu keeps one failure counter, shared by silence
  (no_input) and wrong input (no_match). On a failure of kind K with
  fallback F: when failures so far < F.retries, F.prompt (if any) is said
  and the menu replays; otherwise the call goes to F.then. So a visit plays
  the menu at most 1 + max(no_input.retries, no_match.retries) times. These
  bounded replays are not loops; any other way back to a node is.
- An option applies its `set`, then goes to its `next`. A spoken word may
  also switch the call to any of the flow's languages (the runtime keeps
  the language the word was heard in), so a listening menu's word options
  lead to every language.
- SetVars of `language` changes the language of every prompt after it.
- SetVars or an option setting `need` changes the need the transfer is
  routed with (a skill such as veteran).
- Branch: every case and the default are possible; nothing is evaluated.
- Goto is free.
- Transfer costs its prompt, then the path ends: the caller is handed to
  the routing plan. Hangup ends the call without a human: always an error.

Reported problems: a referenced prompt missing in one of the flow's
languages, a node never reached from `start`, a reachable hangup, a loop a
caller can go round forever (loops make the time unbounded, so the time is
only computed for loop-free flows), and a worst case over
`max_time_to_human`. The worst case is the longest path through the graph
of (node, language, need, failures so far) states, which is acyclic once
loops are rejected: a memoised depth-first search finds it. It is computed
for a call starting in each of the flow's languages, and the largest is the
flow's worst case. The same graph walked forwards gives, for each transfer
node and each language and need a caller can reach it with, the slowest
way there (`Arrival`): the routing plan's tiers are added to those.
"""

from __future__ import annotations

import difflib
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

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
from ivr.yamlsrc import Problems

_EPSILON = 1e-9  # a path exactly at the limit passes
_T = TypeVar("_T")


@dataclass(frozen=True)
class Step:
    """One node on a path: what happens there and how long it takes."""

    node: str
    language: str
    event: str
    seconds: float

    def __str__(self) -> str:
        return f"{self.node} [{self.language}] {self.event}: {self.seconds:.1f} s"


@dataclass(frozen=True)
class Arrival:
    """The slowest way to reach one transfer node in one language with one need."""

    node: str
    transfer: Transfer
    language: str  # the language the transfer is routed and spoken in
    need: str | None
    # From the call's start to the transfer beginning: the start of the turn that
    # reaches it (the last menu's answer, or the call's answer), when the server
    # begins the transfer and its first tier's clock.
    seconds: float
    # What the caller hears from there before the transfer's conference or
    # <Dial>: the prompts of that turn (a 'says' node after the menu, say), the
    # transfer's own included, in `language`.
    lead_in: float
    steps: tuple[Step, ...]  # the path; the last one is the transfer node

    @property
    def to_transfer(self) -> float:
        """When the transfer's prompt has played."""
        return self.seconds + self.lead_in

    def path_text(self) -> str:
        return " -> ".join(f"{s.node} ({s.event})" for s in self.steps)


@dataclass(frozen=True)
class FlowAnalysis:
    flow_id: str
    limit: float  # max_time_to_human
    worst_seconds: float  # math.inf when a loop leaves the time unbounded
    worst_path: tuple[str, ...]  # node ids of the worst path; a replayed menu repeats
    steps: tuple[Step, ...]  # the worst path with its inputs and times
    start_language: str  # the starting language of the worst path
    per_language: Mapping[str, float] = field(default_factory=dict)  # by starting language
    loops: tuple[tuple[str, ...], ...] = ()  # each loop's nodes, in order
    # The slowest way to each (transfer node, language, need); empty when unbounded.
    arrivals: tuple[Arrival, ...] = ()

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.worst_seconds)

    @property
    def within_limit(self) -> bool:
        return self.worst_seconds <= self.limit + _EPSILON

    def path_text(self) -> str:
        """The worst path on one line: node ids with the caller's input."""
        return " -> ".join(f"{s.node} ({s.event})" for s in self.steps)

    def summary(self) -> str:
        """One line for `ivr validate`: the worst case, the limit and the worst path."""
        if not self.bounded:
            loops = "; ".join(" -> ".join((*loop, loop[0])) for loop in self.loops)
            return f"no bound on the time to the transfer (loop {loops})"
        return (
            f"worst case {self.worst_seconds:.1f} s to the transfer (limit {self.limit:g} s, "
            f"call starting in {self.start_language}): {self.path_text()}"
        )

    def describe(self) -> str:
        """The analysis for `ivr validate`: the worst path, step by step."""
        if not self.bounded:
            return f"flow {self.flow_id}: {self.summary()}"
        verdict = "within" if self.within_limit else "OVER"
        lines = [
            f"flow {self.flow_id}: worst case {self.worst_seconds:.1f} s to the transfer, "
            f"{verdict} the limit of {self.limit:g} s (call starting in {self.start_language})"
        ]
        width = max((len(s.node) for s in self.steps), default=0)
        lines += [
            f"  {s.node:<{width}} [{s.language}] {s.seconds:5.1f} s  {s.event}" for s in self.steps
        ]
        lines.append(
            "  by starting language: "
            + ", ".join(f"{lang} {sec:.1f} s" for lang, sec in self.per_language.items())
        )
        return "\n".join(lines)


class _Edge(NamedTuple):
    label: str
    target: str


# (node, language, need, failures so far at that node's menu visit)
_State = tuple[str, str, str | None, int]


class _Move(NamedTuple):
    event: str
    seconds: float
    to: _State | None  # None: the path ends (transfer or hangup)


def analyse(flow: Flow, prompts: PromptCatalog, problems: Problems) -> FlowAnalysis:
    """Check a loaded flow against the catalog and bound its time to a human."""
    _check_prompts(flow, prompts, problems)
    reachable = _reachable(flow)
    for node in flow.nodes.values():
        if node.id not in reachable:
            problems.add(node.pos, f"node '{node.id}' is never reached from '{flow.start}'")
        elif isinstance(node.body, Hangup):
            problems.add(
                node.pos,
                f"node '{node.id}' hangs up on the caller: a crisis line must never end a call "
                "before a counselor answers; transfer instead",
            )
    loops = _loops(flow, reachable)
    for loop in loops:
        problems.add(
            flow.nodes[loop[0][0]].pos,
            "loop without exit: a caller can go round "
            + _loop_text(loop)
            + " forever and never reach a counselor; send one of these steps to a transfer",
        )
    if loops:
        return FlowAnalysis(
            flow_id=flow.id,
            limit=flow.max_time_to_human,
            worst_seconds=math.inf,
            worst_path=tuple(node for node, _ in loops[0]),
            steps=(),
            start_language=flow.languages[0],
            per_language=dict.fromkeys(flow.languages, math.inf),
            loops=tuple(tuple(node for node, _ in loop) for loop in loops),
        )
    analysis = _Timing(flow, prompts).analysis()
    if not analysis.within_limit:
        problems.add(
            flow.positions.get("max_time_to_human", flow.pos),
            f"a caller can take {analysis.worst_seconds:.1f} s to reach the transfer, over "
            f"max_time_to_human ({flow.max_time_to_human:g} s), in a call starting in "
            f"{analysis.start_language}: {analysis.path_text()}; "
            "shorten prompts or timeouts, or lower retries",
        )
    return analysis


# -- prompts --------------------------------------------------------------------


def prompt_refs(node: FlowNode) -> list[tuple[str, str]]:
    """(prompt id, position path) of every prompt a node says."""
    body = node.body
    refs: list[tuple[str, str | None]] = []
    match body:
        case Say():
            refs.append(("say", body.prompt))
        case Menu():
            refs.append(("menu.prompt", body.prompt))
            refs.append(("menu.no_input.prompt", body.no_input.prompt))
            refs.append(("menu.no_match.prompt", body.no_match.prompt))
        case Transfer():
            refs.append(("transfer.prompt", body.prompt))
        case Hangup():
            refs.append(("hangup.prompt", body.prompt))
    return [(prompt, path) for path, prompt in refs if prompt]


def _catalog_file(prompts: PromptCatalog, language: str) -> str:
    for prompt in prompts.prompts.get(language, {}).values():
        if prompt.pos is not None:
            return prompt.pos.file
    return f"prompts/{language}/catalog.yaml"


def _check_prompts(flow: Flow, prompts: PromptCatalog, problems: Problems) -> None:
    languages = []
    for i, lang in enumerate(flow.languages):
        if lang in prompts.prompts:
            languages.append(lang)
        else:
            problems.add(
                flow.positions.get(f"languages.{i}", flow.pos),
                f"language '{lang}' has no prompts: add {_catalog_file(prompts, lang)}",
            )
    for node in flow.nodes.values():
        for prompt_id, path in prompt_refs(node):
            missing = [lang for lang in languages if prompts.get(lang, prompt_id) is None]
            if not missing:
                continue
            known = prompts.prompts[missing[0]]
            close = difflib.get_close_matches(prompt_id, list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.add(
                node.positions.get(path, node.pos),
                f"prompt '{prompt_id}' is missing in {' and '.join(missing)}{hint}: add it to "
                + ", ".join(_catalog_file(prompts, lang) for lang in missing),
            )


# -- graph ------------------------------------------------------------------------


def _edges(node: FlowNode) -> list[_Edge]:
    """Where a node can go next, labelled by what takes it there."""
    body = node.body
    match body:
        case Say() | SetVars():
            return [_Edge("next", body.next)]
        case Goto():
            return [_Edge("goto", body.target)]
        case Branch():
            cases = [_Edge(f"{body.on} {case}", target) for case, target in body.cases]
            return [*cases, _Edge("default", body.default)]
        case Menu():
            out = []
            for option in body.options:
                label = f"key {option.keys[0]}" if option.keys else f"'{option.words[0]}'"
                out.append(_Edge(label, option.next))
            return [
                *out,
                _Edge("silence", body.no_input.then),
                _Edge("wrong key", body.no_match.then),
            ]
    return []


def _reachable(flow: Flow) -> set[str]:
    seen = {flow.start}
    queue = deque([flow.start])
    while queue:
        for edge in _edges(flow.nodes[queue.popleft()]):
            if edge.target not in seen:
                seen.add(edge.target)
                queue.append(edge.target)
    return seen


def _postorder(roots: Iterable[_T], succ: Callable[[_T], Iterable[_T]]) -> list[_T]:
    """Depth-first post-order without recursion (flows may be deep)."""
    seen: set[_T] = set()
    order: list[_T] = []
    for root in roots:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(succ(root)))]
        while stack:
            vertex, todo = stack[-1]
            for nxt in todo:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, iter(succ(nxt))))
                    break
            else:
                stack.pop()
                order.append(vertex)
    return order


def _loops(flow: Flow, reachable: set[str]) -> list[list[tuple[str, str]]]:
    """Each cycle among reachable nodes, as (node, label of the edge leaving it)."""
    nodes = [n for n in flow.nodes if n in reachable]  # file order
    succ: dict[str, list[_Edge]] = {n: _edges(flow.nodes[n]) for n in nodes}
    pred: dict[str, list[str]] = {n: [] for n in nodes}
    for n in nodes:
        for edge in succ[n]:
            pred[edge.target].append(n)
    # Kosaraju: components of the reversed graph, taken in reverse post-order.
    order = _postorder(nodes, lambda n: (e.target for e in succ[n]))
    component: dict[str, int] = {}
    for root in reversed(order):
        if root in component:
            continue
        number = len(set(component.values()))
        for member in _postorder([root], lambda n: (p for p in pred[n] if p not in component)):
            component[member] = number
    groups: dict[int, list[str]] = {}
    for n in nodes:
        groups.setdefault(component[n], []).append(n)
    loops = []
    for group in groups.values():
        if len(group) > 1 or any(e.target == group[0] for e in succ[group[0]]):
            loops.append(_cycle(group[0], set(group), succ))
    return loops


def _cycle(start: str, members: set[str], succ: Mapping[str, list[_Edge]]) -> list[tuple[str, str]]:
    """A shortest way round from `start` back to itself, inside its component."""
    came: dict[str, tuple[str, str]] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for edge in succ[node]:
            if edge.target == start:
                path = [(node, edge.label)]
                while node != start:
                    node, label = came[node]
                    path.append((node, label))
                return path[::-1]
            if edge.target in members and edge.target not in came:
                came[edge.target] = (node, edge.label)
                queue.append(edge.target)
    raise AssertionError(f"{start} is in a component without a cycle")


def _loop_text(loop: list[tuple[str, str]]) -> str:
    return "".join(f"{node} -({label})-> " for node, label in loop) + loop[0][0]


# -- timing -----------------------------------------------------------------------


class _Timing:
    def __init__(self, flow: Flow, prompts: PromptCatalog) -> None:
        self.flow = flow
        self.prompts = prompts
        self.best: dict[_State, tuple[float, _Move]] = {}

    def roots(self) -> list[_State]:
        """A call starts at `start` in any of the flow's languages, with no need."""
        return [(self.flow.start, lang, None, 0) for lang in self.flow.languages]

    def analysis(self) -> FlowAnalysis:
        per_language = {root[1]: self.longest(root) for root in self.roots()}
        start_language = max(per_language, key=lambda lang: per_language[lang])
        steps = []
        state: _State | None = (self.flow.start, start_language, None, 0)
        while state is not None:
            _, move = self.best[state]
            steps.append(Step(state[0], state[1], move.event, move.seconds))
            state = move.to
        return FlowAnalysis(
            flow_id=self.flow.id,
            limit=self.flow.max_time_to_human,
            worst_seconds=per_language[start_language],
            worst_path=tuple(step.node for step in steps),
            steps=tuple(steps),
            start_language=start_language,
            per_language=per_language,
            arrivals=self.arrivals(),
        )

    def longest(self, root: _State) -> float:
        """Seconds of the slowest path from `root`; fills `best` on the way."""
        stack = [root]
        moves: dict[_State, list[_Move]] = {}
        while stack:
            state = stack[-1]
            if state in self.best:
                stack.pop()
                continue
            if state not in moves:
                moves[state] = self.moves(state)
            pending = [m.to for m in moves[state] if m.to is not None and m.to not in self.best]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            self.best[state] = max(
                ((m.seconds + (self.best[m.to][0] if m.to else 0.0), m) for m in moves[state]),
                key=lambda candidate: candidate[0],
            )
        return self.best[root][0]

    def arrivals(self) -> tuple[Arrival, ...]:
        """The slowest way from the start to each transfer state: the longest
        path to each vertex of the (acyclic) state graph, relaxed in
        topological order."""
        moves: dict[_State, list[_Move]] = {}

        def successors(state: _State) -> list[_State]:
            if state not in moves:
                moves[state] = self.moves(state)
            return [m.to for m in moves[state] if m.to is not None]

        order = _postorder(self.roots(), successors)[::-1]
        latest: dict[_State, float] = dict.fromkeys(self.roots(), 0.0)
        # The latest start of the turn a state is reached in: the server answers
        # a menu's answer (or the call) with every node up to the next menu or
        # the transfer, so a transfer begins when that turn starts, while the
        # prompts said on the way to it still play.
        turn: dict[_State, float] = dict.fromkeys(self.roots(), 0.0)
        came: dict[_State, tuple[_State, _Move]] = {}
        for state in order:
            node = self.flow.nodes[state[0]].body
            answered = (latest[state] + self.cost(state[1], node.prompt) + node.timeout
                        if isinstance(node, Menu) else None)
            for move in moves[state]:
                if move.to is None:
                    continue
                seconds = latest[state] + move.seconds
                if move.to not in latest or seconds > latest[move.to]:
                    latest[move.to] = seconds
                    came[move.to] = (state, move)
                began = turn[state] if answered is None else answered
                turn[move.to] = max(turn.get(move.to, 0.0), began)
        found = []
        for state in order:
            node_id, lang, need, _ = state
            body = self.flow.nodes[node_id].body
            if not isinstance(body, Transfer):
                continue
            (end,) = moves[state]
            steps = [Step(node_id, lang, end.event, end.seconds)]
            back = state
            while back in came:
                back, move = came[back]
                steps.append(Step(back[0], back[1], move.event, move.seconds))
            # Every path's figures are its turn's start plus the tiers' bound with
            # what it says before the transfer as lead-in: the largest start and
            # the largest arrival give the largest figures of any one path.
            handed = turn[state]
            found.append(Arrival(node_id, body, lang, need, handed,
                                 latest[state] + end.seconds - handed, tuple(reversed(steps))))
        return tuple(found)

    def cost(self, language: str, prompt_id: str | None) -> float:
        if prompt_id is None:
            return 0.0
        prompt = self.prompts.get(language, prompt_id)
        if prompt is not None:
            return prompt.seconds
        # Missing prompts are reported elsewhere; count the longest translation.
        found = [p[prompt_id].seconds for p in self.prompts.prompts.values() if prompt_id in p]
        return max(found, default=0.0)

    def moves(self, state: _State) -> list[_Move]:
        node_id, lang, need, _ = state
        body = self.flow.nodes[node_id].body
        match body:
            case Say():
                to = (body.next, lang, need, 0)
                return [_Move(f"says '{body.prompt}'", self.cost(lang, body.prompt), to)]
            case SetVars():
                values = ", ".join(f"{k}={v}" for k, v in body.values)
                return [_Move(f"sets {values}", 0.0, _after(body.next, lang, need, body.values))]
            case Goto():
                return [_Move("goto", 0.0, (body.target, lang, need, 0))]
            case Branch():
                out = [_Move(f"{body.on} is {case}", 0.0, (to, lang, need, 0))
                       for case, to in body.cases]
                default = (body.default, lang, need, 0)
                return [*out, _Move(f"{body.on} matches no case", 0.0, default)]
            case Menu():
                return self.menu_moves(node_id, body, state)
            case Transfer():
                where = f"queue {body.queue}" if body.queue else f"line {body.line}"
                said = f"says '{body.prompt}', " if body.prompt else ""
                return [_Move(f"{said}transfers to {where}", self.cost(lang, body.prompt), None)]
            case Hangup():
                return [_Move("hangs up", self.cost(lang, body.prompt), None)]
        raise AssertionError(f"unknown node kind {body!r}")

    def menu_moves(self, node_id: str, menu: Menu, state: _State) -> list[_Move]:
        _, lang, need, _ = state
        attempt = self.cost(lang, menu.prompt) + menu.timeout
        heard = f"plays '{menu.prompt}', "
        # Failures first: on a tie the reported worst path shows silence or a wrong key.
        out = [
            self.failure(kind, fallback, state, attempt, heard)
            for kind, fallback in (("silence", menu.no_input), ("wrong key", menu.no_match))
        ]
        for option in menu.options:
            if option.keys:
                event = f"{heard}key {option.keys[0]} at the end of the {menu.timeout:g} s timeout"
                out.append(_Move(event, attempt, _after(option.next, lang, need, option.set)))
            if option.words and menu.speech:
                for heard_in in self.flow.languages:
                    event = f"{heard}'{option.words[0]}' heard in {heard_in} at the end"
                    to = _after(option.next, heard_in, need, option.set)
                    out.append(_Move(event, attempt, to))
        return out

    def failure(
        self, kind: str, fallback: Fallback, state: _State, attempt: float, heard: str
    ) -> _Move:
        node_id, lang, need, failures = state
        if failures < fallback.retries:
            said = f" after '{fallback.prompt}'" if fallback.prompt else ""
            event = f"{heard}{kind}, replay {failures + 1}{said}"
            seconds = attempt + self.cost(lang, fallback.prompt)
            return _Move(event, seconds, (node_id, lang, need, failures + 1))
        return _Move(f"{heard}{kind}, then {fallback.then}", attempt,
                     (fallback.then, lang, need, 0))


def _after(
    node: str, language: str, need: str | None, values: Iterable[tuple[str, str]]
) -> _State:
    """The state entering `node` once `values` are set (as runtime._apply_set does)."""
    for key, value in values:
        if key == "language":
            language = value
        elif key == "need":
            need = value
    return (node, language, need, 0)


def worst_seconds_by_node(flow: Flow, prompts: PromptCatalog) -> dict[str, float]:
    """Each reachable node's worst case to the transfer: its slowest path onwards,
    over every language, need and failure count a call can arrive there with.

    The start node's figure is the flow's worst case. Empty for a flow with a
    loop, whose time has no bound.
    """
    if _loops(flow, _reachable(flow)):
        return {}
    timing = _Timing(flow, prompts)
    for root in timing.roots():
        timing.longest(root)
    # Every state the timing visited is reachable from a start; a menu replay
    # (more failures) never outlasts the fresh visit it replays.
    out: dict[str, float] = {}
    for (node, _, _, _), (seconds, _) in timing.best.items():
        out[node] = max(seconds, out.get(node, 0.0))
    return out
