"""The one YAML field reader: each typed read, and each problem at its file:line:col."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ivr.yamlfields import FieldReader, is_e164, suggest
from ivr.yamlsrc import Node, Problems, parse

FILE = "f.yaml"


def read(text: str, how: Callable[[FieldReader, Node], Any]) -> tuple[Any, list[str]]:
    """What `how` reads from the value of `v:` in `text`, and the problems it reported."""
    problems = Problems()
    reader = FieldReader(problems)
    root = parse(text, FILE)
    (_, _, value), *_ = root.entries()
    return how(reader, value), [str(p) for p in problems.sorted()]


# Each case: the YAML, the read, what it returns, the problems (file:line:col: sentence).
CASES: dict[str, tuple[str, Callable[[FieldReader, Node], Any], Any, list[str]]] = {
    "text": ("v: ' hello '\n", lambda r, n: r.text(n, "the greeting"), "hello", []),
    "a number is text": ("v: 42\n", lambda r, n: r.text(n, "name"), "42", []),
    "text, not a list": (
        "v: [a]\n", lambda r, n: r.text(n, "name"), None,
        ["f.yaml:1:4: name must be text, not a list"],
    ),
    "text, not nothing": (
        "v:\n", lambda r, n: r.text(n, "name"), None, ["f.yaml:1:3: name must be text, not nothing"]
    ),
    "empty text": ("v: ''\n", lambda r, n: r.text(n, "name"), None, ["f.yaml:1:4: name is empty"]),
    "ident": (
        "v: a b\n", lambda r, n: r.ident(n, "queue"), None,
        ["f.yaml:1:4: queue 'a b' may hold only letters, digits, _ and -"],
    ),
    "seconds": ("v: 1.5s\n", lambda r, n: r.seconds(n, "timeout"), 1.5, []),
    "milliseconds": ("v: 500ms\n", lambda r, n: r.seconds(n, "timeout"), 0.5, []),
    "minutes": ("v: 2m\n", lambda r, n: r.seconds(n, "timeout"), 120.0, []),
    "not a duration": (
        "v: soon\n", lambda r, n: r.seconds(n, "timeout"), None,
        ["f.yaml:1:4: timeout 'soon' is not a duration: write e.g. 6s, 1.5s, 500ms or 2m"],
    ),
    "zero seconds": (
        "v: 0s\n", lambda r, n: r.seconds(n, "timeout"), None,
        ["f.yaml:1:4: timeout must be longer than zero"],
    ),
    "seconds within bounds": (
        "v: 20s\n", lambda r, n: r.seconds(n, "ring", low=5, high=600), 20.0, []
    ),
    "seconds out of bounds": (
        "v: 2s\n", lambda r, n: r.seconds(n, "ring", low=5, high=600), None,
        ["f.yaml:1:4: ring must be a duration from 5s to 600s, not '2s'"],
    ),
    "integer": ("v: 3\n", lambda r, n: r.integer(n, "retries"), 3, []),
    "negative integer": (
        "v: -1\n", lambda r, n: r.integer(n, "retries"), None,
        ["f.yaml:1:4: retries must be a whole number (0, 1, 2...), not '-1'"],
    ),
    "flag": ("v: yes\n", lambda r, n: r.flag(n, "speech"), True, []),
    "quoted flag": (
        "v: 'true'\n", lambda r, n: r.flag(n, "speech"), None,
        ["f.yaml:1:4: speech must be true or false, not 'true'"],
    ),
    "phone": ("v: '+15125550100'\n", lambda r, n: r.phone(n, "number"), "+15125550100", []),
    "phone too short": (
        "v: '+1512555'\n", lambda r, n: r.phone(n, "number"), None,
        ["f.yaml:1:4: number '+1512555' is not an E.164 number like +15125550100"],
    ),
    "list": ("v: [a, b]\n", lambda r, n: [t for t, _ in r.text_list(n, "xs")], ["a", "b"], []),
    "a lone text is not a list": (
        "v: a\n", lambda r, n: r.text_list(n, "xs"), [],
        ["f.yaml:1:4: xs must be a list like [a, b], not 'a'"],
    ),
    "a lone text as a list of one": (
        "v: a\n", lambda r, n: [t for t, _ in r.text_list(n, "xs", one=True)], ["a"], []
    ),
    "a bad entry of a list": (
        "v: [a, {b: c}]\n", lambda r, n: [t for t, _ in r.text_list(n, "xs")], ["a"],
        ["f.yaml:1:8: an entry of xs must be text, not a mapping"],
    ),
    "languages": (
        "v: [en, EN, xx]\n",
        lambda r, n: [c for c, _ in r.known_languages(n, "languages")],
        ["en"],
        [
            "f.yaml:1:9: 'EN' is not a language code the IVR knows (did you mean 'en'?)",
            "f.yaml:1:13: 'xx' is not a language code the IVR knows (known: de, en, es, fr, it,"
            " ja, ko, pl, pt, ru)",
        ],
    ),
}


@pytest.mark.parametrize(("text", "how", "value", "problems"), CASES.values(), ids=CASES.keys())
def test_each_read(
    text: str, how: Callable[[FieldReader, Node], Any], value: Any, problems: list[str]
) -> None:
    assert read(text, how) == (value, problems)


RECORD = """\
v:
  name: Ana
  colour: red
  nmae: Ben
  name: Eve
  next: x
"""


def test_a_record_reports_unknown_repeated_misplaced_and_missing_keys() -> None:
    fields, problems = read(
        RECORD,
        lambda r, n: r.fields(
            n,
            "a counselor",
            ("name", "phone"),
            required=("name", "phone"),
            explain={"next": "a counselor goes nowhere"},
        ),
    )
    assert set(fields) == {"name"}
    assert fields["name"].value.text == "Ana" and fields["name"].key_pos.line == 2
    assert problems == [
        "f.yaml:2:3: a counselor needs 'phone'",
        "f.yaml:3:3: unknown key 'colour' in a counselor (expected one of: name, phone)",
        "f.yaml:4:3: unknown key 'nmae' in a counselor (did you mean 'name'?)",
        "f.yaml:5:3: 'name' appears twice in a counselor (first at line 2); "
        "YAML would silently keep only the last one",
        "f.yaml:6:3: a counselor takes no 'next': a counselor goes nowhere",
    ]


def test_a_missing_key_is_reported_where_the_caller_says() -> None:
    problems = Problems()
    root = parse("c:\n  x: 1\n", FILE)
    (_, key_pos, value), *_ = root.entries()
    FieldReader(problems).fields(value, "center 'c'", ("x", "name"), required=("name",), at=key_pos)
    assert [str(p) for p in problems.items] == ["f.yaml:1:1: center 'c' needs 'name'"]


def test_a_record_must_be_a_mapping_of_the_shape_given() -> None:
    _, problems = read(
        "v: goodbye\n", lambda r, n: r.fields(n, "a hangup", ("prompt",), shape="empty or a map")
    )
    assert problems == ["f.yaml:1:4: a hangup must be empty or a map, not 'goodbye'"]


def test_names_keep_the_first_of_a_repeated_name_and_an_empty_optional_section() -> None:
    names, problems = read(
        "v:\n  a: 1\n  b: 2\n  a: 3\n", lambda r, n: [(k, v.text) for k, _, v in r.names(n, "xs")]
    )
    assert names == [("a", "1"), ("b", "2")]
    assert problems == [
        "f.yaml:4:3: 'a' appears twice in xs (first at line 2); "
        "YAML would silently keep only the last one"
    ]
    assert read("v:\n", lambda r, n: r.names(n, "lines", optional=True)) == ([], [])
    assert read("v:\n", lambda r, n: r.names(n, "lines")) == (
        [], ["f.yaml:1:3: lines must be a mapping, not nothing"]
    )


def test_suggestions_and_phone_numbers() -> None:
    assert suggest("nxt", ["next", "say"]) == " (did you mean 'next'?)"
    assert suggest("zzz", ["next", "say"]) == ""
    assert suggest("zzz", ["say", "next"], listing=True) == " (expected one of: next, say)"
    assert is_e164("+18002738255") and not is_e164("18002738255") and not is_e164("+1800")
