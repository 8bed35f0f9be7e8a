"""The typed flow model: what a validated flow file becomes.

Everything here is frozen and free of I/O so that the runtime and the
analysis can be pure functions over it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ivr.yamlsrc import Pos

# The state fields a flow may set or branch on; anything else is a flow variable.
BUILTIN_FIELDS = ("language", "need", "caller_state")


@dataclass(frozen=True)
class Say:
    prompt: str
    next: str


@dataclass(frozen=True)
class Option:
    keys: tuple[str, ...]  # each DTMF key alone selects the option
    words: tuple[str, ...]  # what a listening menu hears for it, in any of the flow's languages
    set: tuple[tuple[str, str], ...]
    next: str
    # Words per language when the flow gives them so ({en: [...], es: [...]});
    # empty: every word may be heard in any of the flow's languages.
    words_by_language: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def words_in(self, language: str) -> tuple[str, ...]:
        if not self.words_by_language:
            return self.words
        return self.words_by_language.get(language, ())


@dataclass(frozen=True)
class Fallback:
    """What a menu does on silence (no_input) or a wrong key/word (no_match).

    `retries` counts replays of the menu; the counter is shared by both kinds
    of failure, so a caller alternating silence and wrong keys cannot loop
    longer than the larger of the two budgets.
    """

    retries: int
    then: str
    prompt: str | None = None  # said before a replay ("Sorry, I didn't get that")


@dataclass(frozen=True)
class Menu:
    prompt: str
    timeout: float
    options: tuple[Option, ...]
    no_input: Fallback
    no_match: Fallback
    speech: bool = True  # listen for `words` when the language has a model


@dataclass(frozen=True)
class SetVars:
    values: tuple[tuple[str, str], ...]
    next: str


@dataclass(frozen=True)
class Branch:
    """Go to the first case whose value equals the field's value.

    `on` is a builtin field, a flow variable, or "time": then each case key is
    a local time range "HH:MM-HH:MM" in `tz` (a range may wrap past midnight).
    """

    on: str
    cases: tuple[tuple[str, str], ...]
    default: str
    tz: str | None = None


@dataclass(frozen=True)
class Transfer:
    queue: str | None = None  # a routing queue, resolved by region and language
    line: str | None = None  # a named special line from the routing plan
    prompt: str | None = None  # said before the transfer starts


@dataclass(frozen=True)
class Hangup:
    prompt: str | None = None


@dataclass(frozen=True)
class Goto:
    target: str


NodeBody = Say | Menu | SetVars | Branch | Transfer | Hangup | Goto


@dataclass(frozen=True)
class Targets:
    """The queues and lines a transfer may name (from the routing plan)."""

    queues: frozenset[str]
    lines: frozenset[str]


@dataclass(frozen=True)
class FlowNode:
    id: str
    body: NodeBody
    pos: Pos
    # Where each value came from, by path ("say", "menu.prompt",
    # "menu.options.0.next", ...): lets later checks point at the exact line.
    positions: Mapping[str, Pos] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Flow:
    id: str
    languages: tuple[str, ...]  # the first is the language a call starts in
    start: str
    max_time_to_human: float
    nodes: Mapping[str, FlowNode]
    version: str  # content hash of the source file: a live call keeps its version
    source: str
    numbers: tuple[str, ...] = ()  # called numbers (To) this flow answers; empty: catch-all
    # Seconds from the call's start until the national backup is dialled, at
    # worst, through every tier of the queue or line transferred to; None: no limit.
    max_time_to_backup: float | None = None
    pos: Pos = field(default_factory=lambda: Pos("?", 1, 1))
    # Positions of the top-level values ("id", "max_time_to_human", "languages.1", ...).
    positions: Mapping[str, Pos] = field(default_factory=dict, compare=False)

    def node(self, node_id: str) -> FlowNode:
        return self.nodes[node_id]


@dataclass(frozen=True)
class Prompt:
    id: str
    language: str
    text: str
    seconds: float  # measured from the recording, or estimated from the text
    recording: Path | None = None
    pos: Pos | None = None
    voice: str | None = None  # overrides the language's voice for this prompt
    # A prompt that switches language midway ("... press 1. Para español,
    # oprima 2."): (language, text) in order; empty when it is all `language`.
    segments: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PromptCatalog:
    prompts: Mapping[str, Mapping[str, Prompt]]  # language -> prompt id -> prompt
    voices: Mapping[str, str] = field(default_factory=dict)  # language -> Twilio <Say> voice
    # language -> Twilio <Say language=...> code (en-US, es-US): a Polly voice
    # paired with the wrong language code makes <Say> fail.
    locales: Mapping[str, str] = field(default_factory=dict)

    def get(self, language: str, prompt_id: str) -> Prompt | None:
        return self.prompts.get(language, {}).get(prompt_id)

    def languages(self) -> tuple[str, ...]:
        return tuple(sorted(self.prompts))


@dataclass(frozen=True)
class FlowSet:
    flows: Mapping[str, Flow]
    prompts: PromptCatalog

    def for_number(self, to: str | None) -> Flow:
        """The flow answering a called number; the catch-all flow otherwise.

        A call through a SIP domain is addressed to a SIP URI
        (sip:+18002738255@crisis.sip.twilio.com): its user part is the number.
        """
        called = _called_number(to)
        catch_all: Flow | None = None
        for flow in self.flows.values():
            if called and called in flow.numbers:
                return flow
            if not flow.numbers and catch_all is None:
                catch_all = flow
        if catch_all is None:
            catch_all = next(iter(self.flows.values()))
        return catch_all


def _called_number(to: str | None) -> str | None:
    """The number in a `To`: itself, or the user part of a sip:/sips: URI,
    with a `+` added to bare digits (sip:18002738255@... is that number too)."""
    text = (to or "").strip()
    scheme, sep, rest = text.partition(":")
    if sep and scheme.lower() in ("sip", "sips"):
        text = rest.split("@", 1)[0].split(";", 1)[0]
        if text.isdigit():
            text = "+" + text
    return text or None
