"""Schema-agnostic readers for YAML values, reporting problems at `file:line:col`.

A reader never stops at the first problem: it adds each one to `Problems` and
returns None for a value it could not read, so the caller can go on and the
author gets the whole list at once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ivr.yamlsrc import Node, Pos, Problems, parse_duration

IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # flow, node, queue and line names


@dataclass(frozen=True)
class Field:
    key_pos: Pos
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


class FieldReader:
    def __init__(self, problems: Problems) -> None:
        self.problems = problems

    def error(self, pos: Pos, message: str) -> None:
        self.problems.add(pos, message)

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
        """The keys of a mapping, with unknown, duplicate and missing keys reported."""
        if not node.is_map:
            self.error(node.pos, f"{what} must be {shape or 'a mapping'}, not {node.kind_name}")
            return None
        out: dict[str, Field] = {}
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
                    pos, f"unknown key '{key}' in {what}" + suggest(key, allowed, listing=True)
                )
            else:
                out[key] = Field(pos, value)
        for key in required:
            if key not in seen:
                self.error(at or node.pos, f"{what} needs '{key}'")
        return out

    @staticmethod
    def record(where: dict[str, Pos], path: str, fields: Mapping[str, Field]) -> None:
        """Note where each field's value sits, under `path.key`."""
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
        if text is not None and not IDENT.match(text):
            self.error(node.pos, f"{what} '{text}' may hold only letters, digits, _ and -")
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
