"""The flow runtime: step(flow, state, event) -> Turn, pure and synchronous.

A call is a `CallState` (stored between webhooks) and an event (the call
started, the caller answered a menu or gave nothing). The runtime walks the
flow from the current node until it must wait for the caller or hands the
call to a human, and returns the new state with the actions that say what
the caller hears. Adapters turn actions into TwiML or media-stream messages.

Menu semantics (the time-to-human analysis assumes exactly these): each
menu visit keeps one failure counter shared by silence and wrong input; a
failure of kind K with fallback F replays the menu while failures so far
< F.retries, and otherwise goes to F.then.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from ivr.errors import ContentError
from ivr.evolve import evolve
from ivr.flow.model import (
    BUILTIN_FIELDS,
    Branch,
    Fallback,
    Flow,
    Goto,
    Hangup,
    Menu,
    Option,
    Say,
    SetVars,
    Transfer,
)

# A flow that never stops stepping is a bug the analysis should have caught;
# this bound keeps a broken deploy from spinning a webhook forever.
MAX_STEPS_PER_TURN = 200


class FlowRuntimeError(ContentError):
    """The flow cannot continue (the caller is then sent to the backup line)."""


@dataclass(frozen=True)
class CallState:
    flow_id: str
    flow_version: str
    node: str
    language: str
    need: str | None = None
    caller_state: str | None = None
    state_source: str | None = None
    vars: Mapping[str, str] = field(default_factory=dict)
    failures: int = 0  # at the current menu, shared by no-input and no-match
    # Until the caller picks a language (a key, a word, a `set`), a listening
    # menu may hear them in any of the flow's languages.
    language_chosen: bool = False
    seq: int = 0  # bumped on every turn: callbacks carrying an older seq are replays
    finished: bool = False  # handed over to a transfer or hung up

    def to_json(self) -> dict[str, Any]:
        return {
            "flow_id": self.flow_id,
            "flow_version": self.flow_version,
            "node": self.node,
            "language": self.language,
            "need": self.need,
            "caller_state": self.caller_state,
            "state_source": self.state_source,
            "vars": dict(self.vars),
            "failures": self.failures,
            "language_chosen": self.language_chosen,
            "seq": self.seq,
            "finished": self.finished,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallState:
        return cls(
            flow_id=str(data["flow_id"]),
            flow_version=str(data["flow_version"]),
            node=str(data["node"]),
            language=str(data["language"]),
            need=data.get("need"),
            caller_state=data.get("caller_state"),
            state_source=data.get("state_source"),
            vars={str(k): str(v) for k, v in dict(data.get("vars") or {}).items()},
            failures=int(data.get("failures", 0)),
            language_chosen=bool(data.get("language_chosen", False)),
            seq=int(data.get("seq", 0)),
            finished=bool(data.get("finished", False)),
        )

    def place(self) -> tuple[object, ...]:
        """Where the caller is in the flow: every field but `seq`, which each turn
        bumps. Two callers at the same place go the same ways from there."""
        return (tuple(sorted(self.vars.items())), *(getattr(self, n) for n in _PLACE_FIELDS))


_PLACE_FIELDS = tuple(f.name for f in fields(CallState) if f.name not in ("seq", "vars"))


# Events -------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    now: datetime


@dataclass(frozen=True)
class Answer:
    """The caller's answer at the current menu: keys, a recognised word, or nothing.

    `unrecognised` is speech that matched no option (or not confidently):
    a wrong answer, not silence.
    """

    now: datetime
    digits: str = ""
    word: str | None = None
    word_language: str | None = None  # a listening menu may pick the language from speech
    unrecognised: bool = False


Event = Start | Answer


# Actions ------------------------------------------------------------------


@dataclass(frozen=True)
class Speak:
    prompt: str
    language: str


@dataclass(frozen=True)
class Ask:
    """Wait point: play the menu prompt and wait for keys or words."""

    node: str
    prompt: str
    language: str
    timeout: float
    keys: str  # every key that selects an option
    words: tuple[str, ...]
    speech: bool
    # What to listen for in each of the flow's languages.
    grammars: tuple[tuple[str, tuple[str, ...]], ...] = ()
    language_open: bool = False  # the caller has not chosen a language yet


@dataclass(frozen=True)
class TransferTo:
    """Wait point: hand the caller to a queue or line (the routing layer decides how)."""

    node: str
    queue: str | None
    line: str | None
    language: str
    need: str | None


@dataclass(frozen=True)
class HangUp:
    node: str


Action = Speak | Ask | TransferTo | HangUp


@dataclass(frozen=True)
class Visit:
    """A node entered during a turn: kept for the call's event trail."""

    node: str
    detail: str = ""


@dataclass(frozen=True)
class Turn:
    state: CallState
    actions: tuple[Action, ...]
    visited: tuple[Visit, ...]

    @property
    def wait(self) -> Action:
        return self.actions[-1]


def new_call(flow: Flow, caller_state: str | None = None, source: str | None = None) -> CallState:
    return CallState(
        flow_id=flow.id,
        flow_version=flow.version,
        node=flow.start,
        language=flow.languages[0],
        caller_state=caller_state,
        state_source=source,
    )


def step(flow: Flow, state: CallState, event: Event) -> Turn:
    if state.finished:
        raise FlowRuntimeError(f"call already left the flow at {state.node!r}")
    actions: list[Action] = []
    visited: list[Visit] = []
    if isinstance(event, Answer):
        state, node_id = _answer(flow, state, event, actions, visited)
    else:
        node_id = state.node
    return _run(flow, state, node_id, event.now, actions, visited)


def _answer(
    flow: Flow, state: CallState, event: Answer, actions: list[Action], visited: list[Visit]
) -> tuple[CallState, str]:
    node = flow.node(state.node).body
    if not isinstance(node, Menu):
        raise FlowRuntimeError(f"answer received while at non-menu node {state.node!r}")
    option = _choose(node, event)
    if option is not None:
        how = f"key {event.digits}" if event.digits else f"word {event.word!r}"
        visited.append(Visit(state.node, f"chose {how}"))
        # Answering the menu at all shows which language the caller follows.
        heard = event.word_language
        language = heard if heard and heard in flow.languages else state.language
        state = evolve(state, language=language, failures=0, language_chosen=True)
        state = _apply_set(flow, state, option.set)
        return state, option.next
    fallback, kind = (
        (node.no_input, "no input")
        if not event.digits and not event.word and not event.unrecognised
        else (node.no_match, "no match")
    )
    return _fail(state, fallback, kind, actions, visited)


def _choose(menu: Menu, event: Answer) -> Option | None:
    for option in menu.options:
        if event.digits and event.digits[:1] in option.keys:
            return option
        if event.word and event.word.casefold() in (w.casefold() for w in option.words):
            return option
    return None


def _fail(
    state: CallState, fallback: Fallback, kind: str, actions: list[Action], visited: list[Visit]
) -> tuple[CallState, str]:
    if state.failures < fallback.retries:
        visited.append(Visit(state.node, f"{kind}: replay {state.failures + 1}"))
        if fallback.prompt:
            actions.append(Speak(fallback.prompt, state.language))
        return replace(state, failures=state.failures + 1), state.node
    visited.append(Visit(state.node, f"{kind}: go to {fallback.then}"))
    return replace(state, failures=0), fallback.then


def _apply_set(flow: Flow, state: CallState, values: tuple[tuple[str, str], ...]) -> CallState:
    for key, value in values:
        if key == "language":
            if value not in flow.languages:
                raise FlowRuntimeError(f"language {value!r} is not one of the flow's")
            state = replace(state, language=value, language_chosen=True)
        elif key == "need":
            state = replace(state, need=value)
        elif key == "caller_state":
            state = replace(state, caller_state=value)
        else:
            state = replace(state, vars={**state.vars, key: value})
    return state


def _run(
    flow: Flow,
    state: CallState,
    node_id: str,
    now: datetime,
    actions: list[Action],
    visited: list[Visit],
) -> Turn:
    for _ in range(MAX_STEPS_PER_TURN):
        node = flow.node(node_id).body
        entering = not visited or visited[-1].node != node_id
        if entering:
            visited.append(Visit(node_id))
        # No node reads `state.node`: it is set once, where the turn ends.
        match node:
            case Say(prompt=prompt, next=nxt):
                actions.append(Speak(prompt, state.language))
                node_id = nxt
            case SetVars(values=values, next=nxt):
                state = _apply_set(flow, state, values)
                node_id = nxt
            case Goto(target=target):
                node_id = target
            case Branch():
                node_id = _branch(node, state, now)
            case Menu():
                actions.append(_ask(flow, node_id, node, state))
                return _turn(state, node_id, actions, visited)
            case Transfer(queue=queue, line=line, prompt=prompt):
                if prompt:
                    actions.append(Speak(prompt, state.language))
                actions.append(TransferTo(node_id, queue, line, state.language, state.need))
                return _turn(state, node_id, actions, visited, finished=True)
            case Hangup(prompt=prompt):
                if prompt:
                    actions.append(Speak(prompt, state.language))
                actions.append(HangUp(node_id))
                return _turn(state, node_id, actions, visited, finished=True)
    raise FlowRuntimeError(f"flow {flow.id!r} did not reach a wait point near {node_id!r}")


def _turn(state: CallState, node_id: str, actions: list[Action], visited: list[Visit],
          *, finished: bool = False) -> Turn:
    # One copy of the state per turn: a copy is the turn's costliest call.
    ended = evolve(state, node=node_id, seq=state.seq + 1, finished=finished)
    return Turn(ended, tuple(actions), tuple(visited))


def _ask(flow: Flow, node_id: str, menu: Menu, state: CallState) -> Ask:
    keys = "".join(k for option in menu.options for k in option.keys)
    words = tuple(w for option in menu.options for w in option.words)
    grammars = tuple(
        (lang, tuple(w for option in menu.options for w in option.words_in(lang)))
        for lang in flow.languages
    )
    return Ask(node_id, menu.prompt, state.language, menu.timeout, keys, words, menu.speech,
               grammars, language_open=not state.language_chosen)


def _branch(node: Branch, state: CallState, now: datetime) -> str:
    if node.on == "time":
        local = now.astimezone(ZoneInfo(node.tz)) if node.tz else now
        for span, target in node.cases:
            if in_time_range(span, local.time()):
                return target
        return node.default
    value = field_value(state, node.on)
    for case, target in node.cases:
        if value is not None and case.casefold() == value.casefold():
            return target
    return node.default


def field_value(state: CallState, name: str) -> str | None:
    if name in BUILTIN_FIELDS:
        value: str | None = getattr(state, name)
        return value
    return state.vars.get(name)


def parse_time_range(span: str) -> tuple[time, time]:
    """'08:00-20:00' -> (08:00, 20:00); raises ValueError when malformed."""
    start, _, end = span.partition("-")
    return time.fromisoformat(start.strip()), time.fromisoformat(end.strip())


def in_time_range(span: str, at: time) -> bool:
    start, end = parse_time_range(span)
    at = at.replace(tzinfo=None)
    if start <= end:
        return start <= at < end
    return at >= start or at < end  # wraps past midnight, e.g. 20:00-08:00


# Where a caller at a menu is likely going ------------------------------------

# Turns explored from a menu looking for every way to its silent transfer; a
# flow with more is too branchy to offer anyone early.
LIKELY_SEARCH = 400


@dataclass(frozen=True)
class LikelyTransfer:
    """Where a caller waiting at a menu goes if they give no answer at all, and
    every language in which any answer of theirs reaches that same transfer
    (the same queue or line, with the same need). An offer made for it early
    fits them as long as a counselor speaks all of `languages`."""

    transfer: TransferTo
    languages: tuple[str, ...]


def likely_transfer(flow: Flow, state: CallState, now: datetime) -> LikelyTransfer | None:
    """For a caller waiting at a menu (the state a turn ended with): the transfer
    their silence leads to, found by stepping the flow with the same rules as
    the call itself, or None (silence leads to no transfer, or the flow is too
    branchy to tell within LIKELY_SEARCH turns)."""
    if state.finished or not isinstance(flow.node(state.node).body, Menu):
        return None
    silent = _silence_leads_to(flow, state, now)
    if silent is None:
        return None
    languages: set[str] = set()
    seen = {state.place()}
    todo = [state]
    explored = 0
    while todo:
        current = todo.pop()
        for answer in _answers(flow, current, now):
            explored += 1
            if explored > LIKELY_SEARCH:
                return None
            try:
                turn = step(flow, current, answer)
            except FlowRuntimeError:
                continue
            wait = turn.wait
            if isinstance(wait, TransferTo) and (wait.queue, wait.line, wait.need) == (
                    silent.queue, silent.line, silent.need):
                languages.add(wait.language)
            elif isinstance(wait, Ask) and turn.state.place() not in seen:
                seen.add(turn.state.place())
                todo.append(turn.state)
    return LikelyTransfer(silent, tuple(lang for lang in flow.languages if lang in languages))


def _silence_leads_to(flow: Flow, state: CallState, now: datetime) -> TransferTo | None:
    for _ in range(LIKELY_SEARCH):
        try:
            turn = step(flow, state, Answer(now))
        except FlowRuntimeError:
            return None
        wait = turn.wait
        if isinstance(wait, TransferTo):
            return wait
        if not isinstance(wait, Ask):
            return None
        state = turn.state
    return None


def _answers(flow: Flow, state: CallState, now: datetime) -> Iterator[Answer]:
    """Every kind of answer a caller can give at this menu: nothing, a wrong one,
    each option's key, and each option's word in each language it may be heard in."""
    menu = flow.node(state.node).body
    assert isinstance(menu, Menu)
    yield Answer(now)
    yield Answer(now, unrecognised=True)
    for option in menu.options:
        if option.keys:
            yield Answer(now, digits=option.keys[0])
        if not menu.speech:
            continue
        for lang in flow.languages:
            if lang != state.language and state.language_chosen:
                continue
            for word in option.words_in(lang)[:1]:
                yield Answer(now, word=word, word_language=lang)

