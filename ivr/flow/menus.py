"""Menu nodes: a prompt, the options a caller picks by key or word, and what
happens on silence (no_input) or an unknown choice (no_match)."""

from __future__ import annotations

from ivr.flow.model import Fallback, Menu, Option
from ivr.flow.scope import FlowScope
from ivr.yamlfields import Field
from ivr.yamlsrc import Node, Pos

DEFAULT_MENU_TIMEOUT = 5.0  # seconds, Twilio's <Gather> default
# <Gather timeout> is whole seconds; a caller left a minute in silence is
# already a flow that lost them.
MIN_MENU_TIMEOUT, MAX_MENU_TIMEOUT = 1.0, 60.0
MAX_RETRIES = 10  # replays of a menu: each multiplies what the analysis walks
DTMF_KEYS = "0123456789*#"


def read_menu(
    scope: FlowScope, node_id: str, node: Node, at: Pos, where: dict[str, Pos]
) -> Menu | None:
    fields = scope.fields(
        node,
        "a menu",
        ("prompt", "timeout", "speech", "options", "no_input", "no_match"),
        required=("prompt", "options", "no_input", "no_match"),
        at=at,
    )
    if fields is None:
        return None
    scope.record(where, "menu", fields)
    prompt = scope.prompt_id(fields["prompt"].value, "a menu") if "prompt" in fields else None
    timeout: float | None = DEFAULT_MENU_TIMEOUT
    if "timeout" in fields:
        timeout = scope.seconds(fields["timeout"].value, "the menu timeout",
                                low=MIN_MENU_TIMEOUT, high=MAX_MENU_TIMEOUT)
    speech = scope.flag(fields["speech"].value, "speech") if "speech" in fields else True
    options = None
    if "options" in fields:
        options = _options(scope, node_id, fields["options"].value, speech is not False, where)
    fallbacks = {
        kind: _fallback(scope, node_id, kind, fields[kind], where)
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


def _options(
    scope: FlowScope, node_id: str, node: Node, listening: bool, where: dict[str, Pos]
) -> tuple[Option, ...] | None:
    if not node.is_list:
        scope.error(node.pos, f"options must be a list of options, not {node.kind_name}")
        return None
    items = list(node.items())
    if not items:
        scope.error(node.pos, "a menu needs at least one option")
        return None
    key_owner: dict[str, int] = {}  # key or word -> line of the option that has it
    word_owner: dict[str, int] = {}
    out: list[Option] = []
    ok = True
    for i, item in enumerate(items, start=1):
        option = _option(scope, node_id, i, item, listening, key_owner, word_owner, where)
        if option is None:
            ok = False
        else:
            out.append(option)
    return tuple(out) if ok else None


def _option(
    scope: FlowScope,
    node_id: str,
    number: int,
    node: Node,
    listening: bool,
    key_owner: dict[str, int],
    word_owner: dict[str, int],
    where: dict[str, Pos],
) -> Option | None:
    fields = scope.fields(
        node, f"option {number}", ("keys", "words", "set", "next"), required=("next",)
    )
    if fields is None:
        return None
    path = f"menu.options.{number - 1}"
    where[path] = node.pos
    scope.record(where, path, fields)
    errors_before = len(scope.problems.errors)
    keys: list[str] = []
    if "keys" in fields:
        value = fields["keys"].value
        text = scope.text(value, "keys")
        for key in text or "":
            if key not in DTMF_KEYS:
                scope.error(value.pos, f"'{key}' is not a phone key: keys are 0-9, * and #")
            elif key in key_owner:
                scope.error(
                    value.pos,
                    f"key {key} already selects the option at line {key_owner[key]} of this menu",
                )
            else:
                key_owner[key] = node.pos.line
                keys.append(key)
    words: list[str] = []
    by_language: dict[str, tuple[str, ...]] = {}
    if "words" in fields:
        for language, entries in _words_field(scope, fields["words"].value):
            mine: list[str] = []
            for word, pos in entries:
                normal = " ".join(word.casefold().split())
                if normal in word_owner:
                    scope.error(
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
        values = scope.set_values(fields["set"].value, f"{path}.set", where)
    nxt = None
    if "next" in fields:
        nxt = scope.ref(fields["next"].value, f"option {number} of menu '{node_id}'")
    if "keys" not in fields and "words" not in fields:
        scope.error(node.pos, "an option needs keys, words or both, or no caller can choose it")
    elif not listening and not keys and len(scope.problems.errors) == errors_before:
        scope.error(
            node.pos,
            "this option has only words but the menu does not listen (speech: false): give it keys",
        )
    if len(scope.problems.errors) > errors_before or values is None or nxt is None:
        return None
    return Option(tuple(keys), tuple(words), values, nxt, by_language)


def _fallback(
    scope: FlowScope, node_id: str, kind: str, field: Field, where: dict[str, Pos]
) -> Fallback | None:
    node = field.value
    what = f"{kind} of menu '{node_id}'"
    if node.is_scalar and not node.is_null:
        where[f"menu.{kind}.then"] = node.pos
        then = scope.ref(node, what)
        return Fallback(0, then) if then else None
    errors_before = len(scope.problems.errors)
    fields = scope.fields(
        node,
        kind,
        ("retries", "then", "prompt"),
        required=("then",),
        at=field.key_pos,
        shape="a node id or a mapping like {retries: 1, then: connect, prompt: sorry}",
    )
    if fields is None:
        return None
    scope.record(where, f"menu.{kind}", fields)
    retries = (scope.integer(fields["retries"].value, "retries", high=MAX_RETRIES)
               if "retries" in fields else 0)
    prompt = scope.prompt_id(fields["prompt"].value, kind) if "prompt" in fields else None
    then = scope.ref(fields["then"].value, what) if "then" in fields else None
    if prompt and retries == 0 and len(scope.problems.errors) == errors_before:
        scope.problems.warn(
            fields["prompt"].value.pos,
            f"prompt '{prompt}' is never said: it plays before a replay, and retries is 0",
        )
    if retries is None or then is None or ("prompt" in fields and prompt is None):
        return None
    return Fallback(retries, then, prompt)


def _words_field(scope: FlowScope, node: Node) -> list[tuple[str | None, list[tuple[str, Pos]]]]:
    """`words: [a, b]` (heard in any language) or `words: {en: [a], es: [b]}`."""
    if not node.is_map:
        return [(None, scope.text_list(node, "words"))]
    out: list[tuple[str | None, list[tuple[str, Pos]]]] = []
    for language, key_pos, value in node.entries():
        if scope.languages and language not in scope.languages:
            scope.error(
                key_pos,
                f"words for language '{language}', which is not one of the flow's "
                f"languages ({', '.join(scope.languages)})",
            )
            continue
        out.append((language, scope.text_list(value, f"words in {language}")))
    return out
