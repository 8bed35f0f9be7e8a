"""Branch nodes: go to the case matching a field's value, or the time of day."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from ivr.flow.model import Branch
from ivr.flow.scope import VAR, FlowScope
from ivr.yamlfields import suggest
from ivr.yamlsrc import Node, Pos

_TIME_RANGE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$")


def read_branch(
    scope: FlowScope, node_id: str, node: Node, at: Pos, where: dict[str, Pos]
) -> Branch | None:
    fields = scope.fields(
        node,
        "a branch",
        ("on", "cases", "default", "tz"),
        required=("on", "cases", "default"),
        at=at,
    )
    if fields is None:
        return None
    scope.record(where, "branch", fields)
    errors_before = len(scope.problems.errors)
    on = scope.text(fields["on"].value, "on") if "on" in fields else None
    if on is not None and on != "time" and not VAR.match(on):
        scope.error(fields["on"].value.pos, f"cannot branch on '{on}': name a field or 'time'")
    tz = None
    if on == "time":
        if "tz" not in fields:
            scope.error(
                fields["on"].key_pos,
                "a branch on time needs 'tz', the time zone of its hours "
                "(e.g. tz: America/New_York)",
            )
        else:
            tz = _time_zone(scope, fields["tz"].value)
    elif "tz" in fields:
        scope.error(fields["tz"].key_pos, "'tz' only applies to a branch on time")
    cases: list[tuple[str, str]] = []
    if "cases" in fields:
        cases = _cases(scope, node_id, on, fields["cases"].value, where)
    default = None
    if "default" in fields:
        default = scope.ref(fields["default"].value, f"default of branch '{node_id}'")
    if len(scope.problems.errors) > errors_before or on is None or default is None:
        return None
    return Branch(on, tuple(cases), default, tz)


def _cases(
    scope: FlowScope, node_id: str, on: str | None, node: Node, where: dict[str, Pos]
) -> list[tuple[str, str]]:
    if not node.is_map:
        scope.error(node.pos, f"cases must be a mapping of values to nodes, not {node.kind_name}")
        return []
    out: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for case, pos, value in node.entries():
        if case.casefold() in seen:
            scope.error(pos, f"case '{case}' appears twice (first at line {seen[case.casefold()]})")
            continue
        seen[case.casefold()] = pos.line
        if on == "time":
            if not _TIME_RANGE.match(case):
                scope.error(
                    pos,
                    f"'{case}' is not a time range: write HH:MM-HH:MM in 24-hour time, "
                    'e.g. "08:00-20:00" (a range may wrap past midnight)',
                )
            elif case[:5] == case[6:]:
                scope.error(pos, f"time range '{case}' is empty: it starts where it ends")
        elif on == "language" and scope.languages and case not in scope.languages:
            scope.error(
                pos,
                f"case '{case}' can never match: this flow's languages are "
                + ", ".join(scope.languages),
            )
        where[f"branch.cases.{case}"] = value.pos
        target = scope.ref(value, f"case '{case}' of branch '{node_id}'")
        if target:
            out.append((case, target))
    if not seen:
        scope.error(node.pos, "a branch needs at least one case")
    return out


def _time_zone(scope: FlowScope, node: Node) -> str | None:
    tz = scope.text(node, "tz")
    if tz is None:
        return None
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        scope.error(
            node.pos,
            f"unknown time zone '{tz}'"
            + (suggest(tz, available_timezones()) or " (use an IANA name like America/Chicago)"),
        )
        return None
    return tz
