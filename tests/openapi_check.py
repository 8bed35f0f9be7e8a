"""Check a REST request against Twilio's OpenAPI description of the operations we use.

The description (tests/twilio_openapi/calls.json, extracted from Twilio's
published twilio_api_v2010.json) gives the paths, the parameter names, types,
formats, enums and required fields. Twilio ignores a form field it does not
know, so a misspelt name would silently do nothing: an unknown name is an
error here. Some rules are stated only in the descriptions' prose; each
one below quotes the sentence it comes from, and `prose_rules_still_stated`
tells when a new description no longer says it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SPEC_FILE = Path(__file__).resolve().parent / "twilio_openapi" / "calls.json"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")


@dataclass(frozen=True)
class ProseRule:
    operation: str  # operationId
    field: str  # whose description states it
    sentence: str  # quoted from that description


PROSE = {
    "from_number": ProseRule(
        "CreateCall", "From",
        "If the `to` parameter is a phone number, `From` must also be a phone number."),
    "timeout_max": ProseRule("CreateCall", "Timeout", "the maximum is `600` seconds"),
    "callback_events": ProseRule(
        "CreateCall", "StatusCallbackEvent",
        "Can be: `initiated`, `ringing`, `answered`, and `completed`."),
    "url_xor_twiml": ProseRule(
        "UpdateCall", "Twiml", "Twiml and url parameters are mutually exclusive"),
}
MAX_TIMEOUT = 600
CALLBACK_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})


@dataclass(frozen=True)
class Operation:
    id: str
    method: str
    path: str
    pattern: re.Pattern[str]
    path_parameters: dict[str, dict[str, Any]]
    query_parameters: frozenset[str]
    form: dict[str, dict[str, Any]]
    required: tuple[str, ...]
    conditional: tuple[tuple[str, ...], ...]


def _compile(path: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", path)
    regex = "".join(
        f"(?P<{part}>[^/]+?)" if i % 2 else re.escape(part) for i, part in enumerate(parts))
    return re.compile(f"^{regex}$")


def load(spec_file: Path = SPEC_FILE) -> tuple[Operation, ...]:
    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    return tuple(
        Operation(
            id=op["operationId"], method=op["method"], path=op["path"],
            pattern=_compile(op["path"]), path_parameters=op["path_parameters"],
            query_parameters=frozenset(op["query_parameters"]), form=op["form"],
            required=tuple(op["required"]),
            conditional=tuple(tuple(group) for group in op["conditional"]),
        )
        for op in spec["operations"]
    )


OPERATIONS = load()


def _form_name(operation: Operation, snake: str) -> str:
    """`application_sid` -> `ApplicationSid`: conditional groups use snake case."""
    wanted = snake.replace("_", "").lower()
    return next((name for name in operation.form if name.lower() == wanted), snake)


def _check_value(name: str, value: str, schema: dict[str, Any]) -> list[str]:
    problems = []
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        problems.append(f"{name}={value!r} is not one of {enum}")
    kind = schema.get("type")
    if kind == "integer" and not re.fullmatch(r"-?\d+", value):
        problems.append(f"{name}={value!r} is not an integer")
    if kind == "boolean" and value not in ("true", "false"):
        problems.append(f"{name}={value!r} is not true or false")
    if schema.get("format") == "uri":
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"{name}={value!r} is not an absolute http(s) URL")
    pattern = schema.get("pattern")
    if pattern is not None and not re.search(pattern, value):
        problems.append(f"{name}={value!r} does not match {pattern}")
    for bound, ok in (("minLength", len(value) >= schema.get("minLength", 0)),
                      ("maxLength", len(value) <= schema.get("maxLength", len(value)))):
        if not ok:
            problems.append(f"{name}={value!r} breaks {bound} {schema[bound]}")
    return problems


def check_request(
    method: str,
    path: str,
    form: Sequence[tuple[str, str]] = (),
    query: Sequence[tuple[str, str]] = (),
    operations: Iterable[Operation] = OPERATIONS,
) -> list[str]:
    """Every way the request departs from the description (empty when it conforms)."""
    for operation in operations:
        found = operation.pattern.match(path)
        if found and operation.method == method.upper():
            break
    else:
        return [f"{method} {path} is none of the operations described"]
    problems: list[str] = []
    for name, value in found.groupdict().items():
        problems += _check_value(name, value, operation.path_parameters.get(name, {}))
    problems += [f"unknown query parameter {name}" for name, _ in query
                 if name not in operation.query_parameters]
    values: dict[str, list[str]] = {}
    for name, value in form:
        values.setdefault(name, []).append(value)
    for name, given in values.items():
        schema = operation.form.get(name)
        if schema is None:
            problems.append(f"unknown parameter {name} (Twilio would ignore it silently)")
            continue
        if len(given) > 1 and schema.get("type") != "array":
            problems.append(f"{name} given {len(given)} times")
        item = schema.get("items", {}) if schema.get("type") == "array" else schema
        for value in given:
            problems += _check_value(name, value, item)
    problems += [f"required parameter {name} is missing" for name in operation.required
                 if name not in values]
    for group in operation.conditional:
        names = [_form_name(operation, n) for n in group]
        if not any(n in values for n in names):
            problems.append(f"one of {', '.join(names)} is required")
    problems += _prose(operation, values)
    return problems


def _prose(operation: Operation, values: dict[str, list[str]]) -> list[str]:
    problems = []
    if operation.id == "CreateCall":
        to, from_ = values.get("To", [""])[0], values.get("From", [""])[0]
        if E164.match(to) and from_ and not E164.match(from_):
            problems.append(f"From {from_!r} must be a phone number when To is one "
                            f"({PROSE['from_number'].sentence})")
        for timeout in values.get("Timeout", []):
            if re.fullmatch(r"-?\d+", timeout) and not 0 < int(timeout) <= MAX_TIMEOUT:
                problems.append(f"Timeout {timeout} is outside 1..{MAX_TIMEOUT} "
                                f"({PROSE['timeout_max'].sentence})")
        for event in values.get("StatusCallbackEvent", []):
            if event not in CALLBACK_EVENTS:
                problems.append(f"StatusCallbackEvent {event!r} is not one Twilio sends "
                                f"({PROSE['callback_events'].sentence})")
    if operation.id == "UpdateCall" and "Url" in values and "Twiml" in values:
        problems.append(f"Url and Twiml together ({PROSE['url_xor_twiml'].sentence})")
    return problems


def prose_rules_still_stated(operations: Iterable[Operation] = OPERATIONS) -> list[str]:
    """The prose rules whose sentence the description no longer contains."""
    by_id = {op.id: op for op in operations}
    missing = []
    for key, rule in PROSE.items():
        text = by_id[rule.operation].form.get(rule.field, {}).get("description", "")
        if rule.sentence not in text:
            missing.append(key)
    return missing
