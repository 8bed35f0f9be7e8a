"""YAML read as a tree that remembers where every value came from.

Flow authors fix problems by line number, so every value we read out of a
YAML file keeps its `file:line:col`. Loaders walk `Node`s (through `ivr.yamlfields`, the one
field reader) and report into a `Problems` list instead of raising on the
first mistake: an author wants the whole list at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ivr.errors import ContentError


@dataclass(frozen=True)
class Pos:
    file: str
    line: int  # 1-based, as editors count
    col: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    pos: Pos
    message: str
    warning: bool = False

    def __str__(self) -> str:
        kind = "warning: " if self.warning else ""
        return f"{self.pos}: {kind}{self.message}"


@dataclass
class Problems:
    items: list[Problem] = field(default_factory=list)

    def add(self, pos: Pos, message: str) -> None:
        self.items.append(Problem(pos, message))

    def warn(self, pos: Pos, message: str) -> None:
        self.items.append(Problem(pos, message, warning=True))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.items if not p.warning]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.items if p.warning]

    def sorted(self) -> list[Problem]:
        return sorted(self.items, key=lambda p: (p.pos.file, p.pos.line, p.pos.col, p.message))


class Node:
    """One YAML value with its position; maps keep their keys' positions too."""

    __slots__ = ("_raw", "file", "pos")

    def __init__(self, raw: yaml.Node, file: str) -> None:
        self._raw = raw
        self.file = file
        mark = raw.start_mark
        self.pos = Pos(file, mark.line + 1, mark.column + 1)

    @property
    def is_map(self) -> bool:
        return isinstance(self._raw, yaml.MappingNode)

    @property
    def is_list(self) -> bool:
        return isinstance(self._raw, yaml.SequenceNode)

    @property
    def is_scalar(self) -> bool:
        return isinstance(self._raw, yaml.ScalarNode)

    @property
    def is_null(self) -> bool:
        return self.is_scalar and self._raw.tag == "tag:yaml.org,2002:null"

    @property
    def text(self) -> str:
        """The scalar as written (numbers too), for loaders that parse it themselves."""
        value = self._raw.value
        return value if isinstance(value, str) else ""

    @property
    def kind_name(self) -> str:
        if self.is_map:
            return "a mapping"
        if self.is_list:
            return "a list"
        return f"'{self.text}'" if not self.is_null else "nothing"

    @property
    def tag(self) -> str:
        return str(self._raw.tag)

    def entries(self) -> Iterator[tuple[str, Pos, Node]]:
        for key, value in self._raw.value:
            k = Node(key, self.file)
            yield k.text, k.pos, Node(value, self.file)

    def items(self) -> Iterator[Node]:
        for value in self._raw.value:
            yield Node(value, self.file)


class YamlSyntaxError(ContentError):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


# Values a document may hold once its aliases are followed. Content files
# hold a few thousand; a "billion laughs" document (aliases of aliases)
# composes small but would make a loader walk billions of values.
MAX_VALUES = 200_000
# Deeper than this is no flow, prompt catalog or plan: PyYAML's composer
# recurses per level and would die of a RecursionError a few hundred in.
MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")


def _at(mark: Any, file: str) -> Pos:  # yaml.Mark, from the C or the Python parser
    return Pos(file, mark.line + 1, mark.column + 1) if mark else Pos(file, 1, 1)


class _ContentLoader(yaml.SafeLoader):
    """SafeLoader refusing, as it composes, what PyYAML reads but cannot be
    content: nesting deeper than MAX_DEPTH (refused long before the
    composer's recursion per level would die of a RecursionError) and lone
    surrogates (a double-quoted "\\udc80" is no character). One pass: the
    checks ride on the composition instead of a parse of their own."""

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self.file = file
        self.depth = 0

    def compose_scalar_node(self, anchor: Any) -> yaml.ScalarNode:
        node: yaml.ScalarNode = super().compose_scalar_node(anchor)
        if _SURROGATE.search(node.value):
            raise YamlSyntaxError(Problem(
                _at(node.start_mark, self.file),
                "a lone surrogate (\\ud800 to \\udfff) is not a character: write the "
                "character itself"))
        return node

    def compose_sequence_node(self, anchor: Any) -> yaml.SequenceNode:
        self._deeper()
        try:
            node: yaml.SequenceNode = super().compose_sequence_node(anchor)
            return node
        finally:
            self.depth -= 1

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        self._deeper()
        try:
            node: yaml.MappingNode = super().compose_mapping_node(anchor)
            return node
        finally:
            self.depth -= 1

    def _deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            event = self.peek_event()  # type: ignore[no-untyped-call]  # the collection's start
            raise YamlSyntaxError(Problem(_at(event.start_mark, self.file),
                                          f"nested more than {MAX_DEPTH} deep"))


def _compose(text: str, file: str) -> yaml.Node | None:
    loader = _ContentLoader(text, file)
    try:
        node: yaml.Node | None = loader.get_single_node()
        return node
    finally:
        loader.dispose()


def _offset_pos(text: str, index: int, file: str) -> Pos:
    line_start = text.rfind("\n", 0, index) + 1
    return Pos(file, text.count("\n", 0, index) + 1, index - line_start + 1)


def decode(data: bytes, file: str) -> str:
    """UTF-8 text of a file; bytes that are not UTF-8 are a Problem at their position."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        pos = Pos(file, data.count(b"\n", 0, exc.start) + 1, exc.start - line_start + 1)
        bad = data[exc.start:exc.end].hex(" ")
        raise YamlSyntaxError(Problem(pos, f"not UTF-8 text: bytes {bad} ({exc.reason})")) \
            from None


def parse(text: str, file: str) -> Node:
    """Parse one YAML document; a syntax error becomes one positioned Problem."""
    try:
        raw = _compose(text, file)
    except yaml.reader.ReaderError as exc:
        # The reader refuses a character (a control character, say): it knows
        # the offset, not the line; the author needs the line.
        what = f"character {exc.character!r} is not allowed in YAML"
        raise YamlSyntaxError(Problem(_offset_pos(text, exc.position, file), what)) from None
    except RecursionError:
        raise YamlSyntaxError(Problem(Pos(file, 1, 1), "nested too deep")) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or "not valid YAML"
        raise YamlSyntaxError(Problem(Pos(file, line, col), f"YAML syntax: {what}")) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(Problem(Pos(file, 1, 1), f"YAML syntax: {exc}")) from None
    if raw is None:
        raise YamlSyntaxError(Problem(Pos(file, 1, 1), "the file is empty"))
    if expanded_size(raw) > MAX_VALUES:
        raise YamlSyntaxError(Problem(Pos(file, 1, 1), (
            f"the document holds more than {MAX_VALUES} values once its aliases are "
            "followed (a YAML alias bomb?): write the values out instead of aliasing aliases")))
    return Node(raw, file)


def expanded_size(root: yaml.Node) -> int:
    """How many values a composed document holds with every alias followed.

    Each distinct node is sized once (aliases share node objects), children
    before parents, without recursion: cheap on a document however it nests.
    """
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if children_done or not children:
            sizes[id(node)] = 1 + sum(sizes.get(id(c), 0) for c in children)
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load(path: Path) -> Node:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise YamlSyntaxError(Problem(Pos(str(path), 1, 1), f"cannot read: {exc}")) from None
    return parse(decode(data, str(path)), str(path))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min)?\s*$")


def parse_duration(text: str) -> float | None:
    """'6s', '1.5s', '500ms', '2m', or a bare number of seconds; None if not one."""
    m = _DURATION.match(text)
    if not m:
        return None
    value = float(m.group(1))
    unit = m.group(2) or "s"
    return value / 1000 if unit == "ms" else value * 60 if unit in ("m", "min") else value
