"""The one reader of YAML fields, for flows, prompt catalogs and the routing plan.

Each loader reads its own schema through a `FieldReader`: typed access to a
field (text, names, durations, whole numbers, flags, phone numbers, language
codes, lists and mappings), unknown keys reported with a suggestion, required
keys, keys given twice. A reader never stops at the first problem: it adds
each one to `Problems` at the `file:line:col` of the offending key or value
and returns None (or leaves the item out) for what it could not read, so the
loader goes on and the author gets the whole list at once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import phonenumbers

from ivr.languages import is_known, unknown_language
from ivr.yamlsrc import Node, Pos, Problems, parse_duration

# Upper bounds for what an author writes: past them a value is a mistake
# (9999...s, a million retries), not an OverflowError per call or an
# analysis that never ends.
MAX_SECONDS = 24 * 3600.0  # any duration without a tighter bound of its own
MAX_COUNT = 1000  # any whole number without a tighter bound of its own
IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # flow, node, queue and line names
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass(frozen=True)
class Field:
    key_pos: Pos  # where the key is written: "needs" and "not both" problems point here
    value: Node


def suggest(word: str, choices: Iterable[str], *, listing: bool = False) -> str:
    """A hint to append to a message about a misspelt `word`, or ''."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    if listing and options:
        return " (expected one of: " + ", ".join(options) + ")"
    return ""


def is_e164(number: str) -> bool:
    """A number in E.164 form (+ and up to 15 digits) that can exist."""
    if not _E164.match(number):
        return False
    try:
        return bool(phonenumbers.is_possible_number(phonenumbers.parse(number)))
    except phonenumbers.NumberParseException:
        return False


def twice(key: str, what: str, first: Pos) -> str:
    """The problem of a mapping key written twice."""
    return (
        f"'{key}' appears twice in {what} (first at line {first.line}); "
        "YAML would silently keep only the last one"
    )


class FieldReader:
    def __init__(self, problems: Problems) -> None:
        self.problems = problems

    def error(self, pos: Pos, message: str) -> None:
        self.problems.add(pos, message)

    def warn(self, pos: Pos, message: str) -> None:
        self.problems.warn(pos, message)

    @property
    def error_count(self) -> int:
        """Errors so far, to tell whether reading a part added any."""
        return len(self.problems.errors)

    # mappings

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
    ) -> dict[str, Field] | None:
        """The keys of a record, with unknown, repeated and missing keys reported.

        `at` is where a missing key is reported (the key naming the record,
        rather than its first line); `explain` says why a key that belongs
        elsewhere is wrong here; `shape` describes the mapping in the problem
        when the node is not one.
        """
        if not node.is_map:
            self.error(node.pos, f"{what} must be {shape or 'a mapping'}, not {node.kind_name}")
            return None
        out: dict[str, Field] = {}
        seen: dict[str, Pos] = {}
        for key, pos, value in node.entries():
            if key in seen:
                self.error(pos, twice(key, what, seen[key]))
                continue
            seen[key] = pos
            if explain and key in explain:
                self.error(pos, f"{what} takes no '{key}': {explain[key]}")
            elif key not in allowed:
                self.error(
                    pos, f"unknown key '{key}' in {what}" + suggest(key, allowed, listing=True)
                )
            else:
                out[key] = Field(pos, value)
        for key in required:
            if key not in seen:
                self.error(at or node.pos, f"{what} needs '{key}'")
        return out

    def names(
        self, node: Node, what: str, *, shape: str | None = None, optional: bool = False
    ) -> list[tuple[str, Pos, Node]]:
        """The entries of a mapping keyed by names the author chooses (node ids, centers).

        A name given twice is reported and its second entry dropped. With
        `optional`, a section left empty (`lines:` and nothing) has no entries.
        """
        if optional and node.is_null:
            return []
        if not node.is_map:
            self.error(node.pos, f"{what} must be {shape or 'a mapping'}, not {node.kind_name}")
            return []
        out: list[tuple[str, Pos, Node]] = []
        seen: dict[str, Pos] = {}
        for key, pos, value in node.entries():
            if key in seen:
                self.error(pos, twice(key, what, seen[key]))
                continue
            seen[key] = pos
            out.append((key, pos, value))
        return out

    @staticmethod
    def record(where: dict[str, Pos], path: str, fields: Mapping[str, Field]) -> None:
        """Note where each field's value sits, under `path.key`."""
        for key, f in fields.items():
            where[f"{path}.{key}"] = f.value.pos

    # scalars

    def text(self, node: Node, what: str) -> str | None:
        """A scalar as text, stripped; numbers are text too (`name: 42`)."""
        if not node.is_scalar or node.is_null:
            self.error(node.pos, f"{what} must be text, not {node.kind_name}")
            return None
        text = node.text.strip()
        if not text:
            self.error(node.pos, f"{what} is empty")
            return None
        return text

    def ident(self, node: Node, what: str) -> str | None:
        text = self.text(node, what)
        if text is not None and not IDENT.match(text):
            self.error(node.pos, f"{what} '{text}' may hold only letters, digits, _ and -")
            return None
        return text

    def seconds(
        self, node: Node, what: str, *, low: float | None = None, high: float | None = None
    ) -> float | None:
        """A duration ('6s', '1.5s', '500ms', '2m') in seconds, over zero and within bounds."""
        text = self.text(node, what)
        if text is None:
            return None
        seconds = parse_duration(text)
        if low is not None and high is not None:
            if seconds is None or not low <= seconds <= high:
                self.error(
                    node.pos,
                    f"{what} must be a duration from {low:g}s to {high:g}s, not '{_short(text)}'",
                )
                return None
            return seconds
        if seconds is None:
            self.error(
                node.pos,
                f"{what} '{_short(text)}' is not a duration: write e.g. 6s, 1.5s, 500ms or 2m",
            )
            return None
        if seconds <= 0:
            self.error(node.pos, f"{what} must be longer than zero")
            return None
        if seconds > MAX_SECONDS:
            self.error(node.pos, f"{what} must be at most {MAX_SECONDS:g}s (a day), "
                                 f"not '{_short(text)}'")
            return None
        return seconds

    def integer(self, node: Node, what: str, *, high: int = MAX_COUNT) -> int | None:
        """A whole number from zero to `high`."""
        text = node.text if node.is_scalar else ""
        if not node.is_scalar or node.tag != "tag:yaml.org,2002:int" or not (
            text.isascii() and text.isdigit()
        ):
            self.error(
                node.pos, f"{what} must be a whole number (0, 1, 2...), not {node.kind_name}"
            )
            return None
        # Compared as text first: int() of thousands of digits raises.
        if len(text.lstrip("0")) > len(str(high)) or int(text) > high:
            self.error(node.pos, f"{what} must be at most {high}, not {_short(text)}")
            return None
        return int(text)

    def flag(self, node: Node, what: str) -> bool | None:
        """true or false (YAML's yes/no and on/off too), unquoted."""
        if not node.is_scalar or node.tag != "tag:yaml.org,2002:bool":
            self.error(node.pos, f"{what} must be true or false, not {node.kind_name}")
            return None
        return node.text.casefold() in ("true", "yes", "on")

    def phone(self, node: Node, what: str) -> str | None:
        """A phone number in E.164 form, such as +15125550100."""
        text = self.text(node, what)
        if text is not None and not is_e164(text):
            self.error(node.pos, f"{what} '{text}' is not an E.164 number like +15125550100")
            return None
        return text

    def language(self, code: str, pos: Pos) -> str | None:
        """A language code of the registry (`ivr.languages`)."""
        if not is_known(code):
            self.error(pos, unknown_language(code))
            return None
        return code

    # lists

    def text_list(
        self, node: Node, what: str, *, one: bool = False
    ) -> list[tuple[str, Pos]]:
        """A list of texts with their positions; with `one`, a lone text is a list of one."""
        if one and not node.is_list:
            items = [node]
        elif not node.is_list:
            self.error(node.pos, f"{what} must be a list like [a, b], not {node.kind_name}")
            return []
        else:
            items = list(node.items())
        out: list[tuple[str, Pos]] = []
        for item in items:
            text = self.text(item, f"an entry of {what}")
            if text is not None:
                out.append((text, item.pos))
        return out

    def known_languages(
        self, node: Node, what: str, *, one: bool = False
    ) -> list[tuple[str, Pos]]:
        """The known language codes of a list, in order; unknown ones are reported."""
        out: list[tuple[str, Pos]] = []
        for code, pos in self.text_list(node, what, one=one):
            if self.language(code, pos) is not None:
                out.append((code, pos))
        return out


def _short(text: str, limit: int = 24) -> str:
    """A value as it can be quoted in a problem (not 5,000 digits of it)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
