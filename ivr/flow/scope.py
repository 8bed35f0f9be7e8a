"""What reading one flow file shares across its nodes.

The flow's languages (cases, `set: {language: ...}` and menu words must name
one), the routing plan's queues and lines (when known), and every reference to
a node, checked once all nodes are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ivr.flow.model import Targets
from ivr.flow.prompts import PROMPT_ID
from ivr.yamlfields import FieldReader
from ivr.yamlsrc import Node, Pos, Problems

VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # fields set and branched on


@dataclass(frozen=True)
class Ref:
    target: str
    pos: Pos
    what: str


class FlowScope(FieldReader):
    def __init__(self, problems: Problems, source: str, targets: Targets | None = None) -> None:
        super().__init__(problems)
        self.source = source
        self.targets = targets
        self.languages: tuple[str, ...] = ()
        self.refs: list[Ref] = []

    def ref(self, node: Node, what: str) -> str | None:
        """A node id, remembered so it can be checked against the flow's nodes."""
        target = self.ident(node, what)
        if target is not None:
            self.refs.append(Ref(target, node.pos, what))
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

    def set_values(
        self, node: Node, path: str, where: dict[str, Pos]
    ) -> tuple[tuple[str, str], ...] | None:
        """The `set:` of a set node or of a menu option."""
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
            if not VAR.match(key) or key == "time":
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
