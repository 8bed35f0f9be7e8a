"""One node of a flow: which kind it is, and the reading of each kind.

Menus and branches, the two kinds with most to say, have modules of their own.
"""

from __future__ import annotations

from collections.abc import Mapping

from ivr.flow.branches import read_branch
from ivr.flow.menus import read_menu
from ivr.flow.model import FlowNode, Goto, Hangup, NodeBody, Say, SetVars, Transfer
from ivr.flow.scope import FlowScope
from ivr.yamlfields import Field, suggest
from ivr.yamlsrc import Node, Pos

KINDS = ("say", "menu", "set", "branch", "transfer", "hangup", "goto")

# Why a key that belongs to other node kinds is wrong in this one.
_NO_NEXT = {
    "menu": "its options, no_input and no_match say where to go",
    "branch": "its cases and default say where to go",
    "transfer": "the call leaves the flow for a counselor there",
    "hangup": "the call ends there",
    "goto": "the value of 'goto' is where it goes",
}


def read_node(scope: FlowScope, node_id: str, id_pos: Pos, value: Node) -> FlowNode | None:
    if not value.is_map:
        scope.error(
            value.pos,
            f"node '{node_id}' must be a mapping such as {{say: welcome, next: menu}}, "
            f"not {value.kind_name}",
        )
        return None
    entries = list(value.entries())
    kinds = [(key, pos) for key, pos, _ in entries if key in KINDS]
    if not kinds:
        scope.error(id_pos, f"node '{node_id}' does nothing: give it one of " + ", ".join(KINDS))
        for key, pos, _ in entries:
            if key != "next":
                scope.error(pos, f"unknown key '{key}' in a node" + suggest(key, KINDS))
        return None
    if len(kinds) > 1:
        (first, _), (second, pos) = kinds[0], kinds[1]
        scope.error(
            pos,
            f"node '{node_id}' is both a {first} and a {second} node: "
            "a node does one thing, so split it in two",
        )
        return None
    kind = kinds[0][0]
    takes_next = kind in ("say", "set")
    fields = scope.fields(
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
    body = _body(scope, kind, node_id, fields, where)
    return None if body is None else FlowNode(node_id, body, id_pos, where)


def _body(
    scope: FlowScope, kind: str, node_id: str, fields: Mapping[str, Field], where: dict[str, Pos]
) -> NodeBody | None:
    value, at = fields[kind].value, fields[kind].key_pos
    nxt = (
        scope.ref(fields["next"].value, f"'next' of node '{node_id}'") if "next" in fields else None
    )
    match kind:
        case "say":
            prompt = scope.prompt_id(value, "a say node")
            return Say(prompt, nxt) if prompt and nxt else None
        case "set":
            values = scope.set_values(value, "set", where)
            return SetVars(values, nxt) if values is not None and nxt else None
        case "goto":
            target = scope.ref(value, f"goto of node '{node_id}'")
            return Goto(target) if target else None
        case "transfer":
            return _transfer(scope, value, at, where)
        case "hangup":
            return _hangup(scope, value, where)
        case "menu":
            return read_menu(scope, node_id, value, at, where)
        case _:
            return read_branch(scope, node_id, value, at, where)


def _transfer(scope: FlowScope, node: Node, at: Pos, where: dict[str, Pos]) -> Transfer | None:
    fields = scope.fields(
        node, "a transfer", ("queue", "line", "prompt"), shape="a mapping like {queue: crisis}"
    )
    if fields is None:
        return None
    scope.record(where, "transfer", fields)
    if "queue" in fields and "line" in fields:
        scope.error(
            fields["line"].key_pos,
            "a transfer goes to a queue or to a line, not both",
        )
        return None
    if "queue" not in fields and "line" not in fields:
        scope.error(
            at,
            "a transfer needs 'queue' (a routing queue, e.g. crisis) "
            "or 'line' (a special line, e.g. veterans)",
        )
        return None
    queue = scope.ident(fields["queue"].value, "queue") if "queue" in fields else None
    line = scope.ident(fields["line"].value, "line") if "line" in fields else None
    prompt = scope.prompt_id(fields["prompt"].value, "a transfer") if "prompt" in fields else None
    if queue is None and line is None:
        return None
    if scope.targets is not None:
        _check_target(scope, fields, "queue", queue, scope.targets.queues)
        _check_target(scope, fields, "line", line, scope.targets.lines)
    return Transfer(queue=queue, line=line, prompt=prompt)


def _check_target(
    scope: FlowScope, fields: dict[str, Field], kind: str, name: str | None, known: frozenset[str]
) -> None:
    """A transfer to a queue or line the routing plan lacks would be a dead end."""
    if name is None or name in known:
        return
    scope.error(
        fields[kind].value.pos,
        f"transfer to {kind} '{name}', which the routing plan does not define"
        + suggest(name, known, listing=True),
    )


def _hangup(scope: FlowScope, node: Node, where: dict[str, Pos]) -> Hangup | None:
    if node.is_null:
        return Hangup()
    fields = scope.fields(
        node, "a hangup", ("prompt",), shape="empty or a mapping like {prompt: goodbye}"
    )
    if fields is None:
        return None
    scope.record(where, "hangup", fields)
    if "prompt" not in fields:
        return Hangup()
    prompt = scope.prompt_id(fields["prompt"].value, "a hangup")
    return Hangup(prompt) if prompt else None
