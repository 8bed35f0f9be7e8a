from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ivr.flow.loader import load_flows
from ivr.flow.model import (
    Branch,
    Fallback,
    Flow,
    Goto,
    Hangup,
    Menu,
    Option,
    Say,
    SetVars,
    Transfer,
)
from ivr.yamlsrc import Problems

from .conftest import Write

VALID = """
    id: t
    languages: [en, es]
    start: a
    max_time_to_human: 60s
    nodes:
      a:
        say: hello
        next: b
      b:
        transfer: {queue: crisis}
    """


def errors(problems: Problems) -> list[tuple[str, int, int, str]]:
    return [
        (Path(p.pos.file).name, p.pos.line, p.pos.col, p.message)
        for p in problems.sorted()
        if not p.warning
    ]


def load(write: Write, text: str, name: str = "f.yaml") -> tuple[Path, Problems, dict[str, Flow]]:
    path = write(f"flows/{name}", text)
    problems = Problems()
    flows = load_flows(path.parent, problems)
    return path, problems, dict(flows)


# Each case: a flow file, and every error it must produce as (line, col, words in the message).
CASES = {
    "unknown key with a suggestion, and the missing key it meant": (
        """
        id: t
        languages: [en]
        start: a
        max_time_to_human: 60s
        nodes:
          a:
            say: hello
            nxt: b
        """,
        [
            (6, 3, "a say node needs 'next'"),
            (8, 5, "unknown key 'nxt' in a say node (did you mean 'next'?)"),
        ],
    ),
    "missing top-level key": (
        """
        id: t
        languages: [en]
        max_time_to_human: 60s
        nodes:
          a: {transfer: {queue: crisis}}
        """,
        [(1, 1, "a flow file needs 'start'")],
    ),
    "unknown top-level key lists the known ones": (
        """
        id: t
        languages: [en]
        start: a
        max_time_to_human: 60s
        colour: blue
        nodes:
          a: {transfer: {queue: crisis}}
        """,
        [(5, 1, "unknown key 'colour' in a flow file (expected one of: id, languages")],
    ),
    "wrong type": (
        """
        id: t
        languages: en
        start: a
        max_time_to_human: 60s
        nodes:
          a: {transfer: {queue: crisis}}
        """,
        [(2, 12, "languages must be a list like [a, b], not 'en'")],
    ),
    "bad duration": (
        """
        id: t
        languages: [en]
        start: a
        max_time_to_human: soon
        nodes:
          a: {transfer: {queue: crisis}}
        """,
        [(4, 20, "max_time_to_human 'soon' is not a duration")],
    ),
    "a node of no kind": (
        """
        id: t
        languages: [en]
        start: a
        max_time_to_human: 60s
        nodes:
          a:
            next: b
          b: {transfer: {queue: crisis}}
        """,
        [(6, 3, "node 'a' does nothing: give it one of say, menu, set")],
    ),
    "a node of two kinds": (
        """
        id: t
        languages: [en]
        start: a
        max_time_to_human: 60s
        nodes:
          a:
            say: hello
            goto: b
          b: {transfer: {queue: crisis}}
        """,
        [(8, 5, "node 'a' is both a say and a goto node")],
    ),
    "reference to a missing node, with a suggestion": (
        """
        id: t
        languages: [en]
        start: a
        max_time_to_human: 60s
        nodes:
          a:
            say: hello
            next: conect
          connect: {transfer: {queue: crisis}}
        """,
        [
            (
                8,
                11,
                "'next' of node 'a' goes to 'conect', which is not a node of this flow "
                "(did you mean 'connect'?)",
            )
        ],
    ),
    "start is not a node": (
        """
        id: t
        languages: [en]
        start: nowhere
        max_time_to_human: 60s
        nodes:
          a: {transfer: {queue: crisis}}
        """,
        [(3, 8, "start goes to 'nowhere', which is not a node")],
    ),
    "duplicate node id": (
        """
        id: t
        languages: [en]
        start: a
        max_time_to_human: 60s
        nodes:
          a: {say: hello, next: b}
          b: {transfer: {queue: crisis}}
          a: {goto: b}
        """,
        [(8, 3, "'a' appears twice in nodes (first at line 6)")],
    ),
    "setting a language the flow does not speak": (
        """
        id: t
        languages: [en, es]
        start: a
        max_time_to_human: 60s
        nodes:
          a:
            set: {language: fr}
            next: b
          b: {transfer: {queue: crisis}}
        """,
        [(7, 21, "language 'fr' is not one of this flow's languages (en, es)")],
    ),
    "branch on time without tz": (
        """
        id: t
        languages: [en]
        start: a
        max_time_to_human: 60s
        nodes:
          a:
            branch: {on: time, cases: {"08:00-20:00": b}, default: b}
          b: {transfer: {queue: crisis}}
        """,
        [(7, 14, "a branch on time needs 'tz'")],
    ),
    "branch on time with an unknown tz": (
        """
        id: t
        languages: [en]
        start: a
        max_time_to_human: 60s
        nodes:
          a:
            branch:
              on: time
              tz: America/NewYork
              cases: {"08:00-20:00": b}
              default: b
          b: {transfer: {queue: crisis}}
        """,
        [(9, 11, "unknown time zone 'America/NewYork' (did you mean 'America/New_York'?)")],
    ),
    "malformed and empty time ranges": (
        """
        id: t
        languages: [en]
        start: a
        max_time_to_human: 60s
        nodes:
          a:
            branch:
              on: time
              tz: America/Chicago
              cases:
                "8-20": b
                "25:00-08:00": b
                "09:00-09:00": b
              default: b
          b: {transfer: {queue: crisis}}
        """,
        [
            (11, 9, "'8-20' is not a time range: write HH:MM-HH:MM"),
            (12, 9, "'25:00-08:00' is not a time range"),
            (13, 9, "time range '09:00-09:00' is empty"),
        ],
    ),
    "tz on a branch that is not on time, and a language case never matching": (
        """
        id: t
        languages: [en, es]
        start: a
        max_time_to_human: 60s
        nodes:
          a:
            branch: {on: language, tz: UTC, cases: {fr: b}, default: b}
          b: {transfer: {queue: crisis}}
        """,
        [
            (7, 28, "'tz' only applies to a branch on time"),
            (7, 45, "case 'fr' can never match: this flow's languages are en, es"),
        ],
    ),
    "menu: bad keys, a key and a word used twice, an option nobody can choose": (
        """
        id: t
        languages: [en]
        start: m
        max_time_to_human: 60s
        nodes:
          m:
            menu:
              prompt: menu
              options:
                - {keys: "1A", words: [Help], next: b}
                - {keys: "1", words: [help], next: b}
                - {next: b}
              no_input: b
              no_match: b
          b: {transfer: {queue: crisis}}
        """,
        [
            (10, 18, "'A' is not a phone key: keys are 0-9, * and #"),
            (11, 18, "key 1 already selects the option at line 10 of this menu"),
            (11, 31, "word 'help' already selects the option at line 10 of this menu"),
            (12, 11, "an option needs keys, words or both"),
        ],
    ),
    "menu: missing fallback, bad timeout, speech and retries, misspelt key": (
        """
        id: t
        languages: [en]
        start: m
        max_time_to_human: 60s
        nodes:
          m:
            menu:
              prompt: menu
              timeout: 0s
              speech: maybe
              options:
                - {keys: "1", next: b}
              no_match: {retry: 1, retries: lots, then: b}
          b: {transfer: {queue: crisis}}
        """,
        [
            (7, 5, "a menu needs 'no_input'"),
            (9, 16, "the menu timeout must be a duration from 1s to 60s, not '0s'"),
            (10, 15, "speech must be true or false, not 'maybe'"),
            (13, 18, "unknown key 'retry' in no_match (did you mean 'retries'?)"),
            (13, 37, "retries must be a whole number"),
        ],
    ),
    "words only, in a menu that does not listen": (
        """
        id: t
        languages: [en]
        start: m
        max_time_to_human: 60s
        nodes:
          m:
            menu:
              prompt: menu
              speech: false
              options:
                - {words: [help], next: b}
              no_input: b
              no_match: b
          b: {transfer: {queue: crisis}}
        """,
        [(11, 11, "this option has only words but the menu does not listen (speech: false)")],
    ),
    "duplicate key inside an option": (
        """
        id: t
        languages: [en]
        start: m
        max_time_to_human: 60s
        nodes:
          m:
            menu:
              prompt: menu
              options:
                - keys: "1"
                  next: b
                  next: m
              no_input: b
              no_match: b
          b: {transfer: {queue: crisis}}
        """,
        [(12, 11, "'next' appears twice in option 1 (first at line 11)")],
    ),
    "transfers to both or neither, a hangup with a bare prompt, next on a goto": (
        """
        id: t
        languages: [en]
        start: a
        max_time_to_human: 60s
        nodes:
          a: {transfer: {queue: crisis, line: veterans}}
          b: {transfer: {prompt: connecting}}
          c: {hangup: goodbye}
          d: {goto: a, next: b}
        """,
        [
            (6, 33, "a transfer goes to a queue or to a line, not both"),
            (7, 7, "a transfer needs 'queue' (a routing queue, e.g. crisis) or 'line'"),
            (8, 15, "a hangup must be empty or a mapping like {prompt: goodbye}, not 'goodbye'"),
            (9, 16, "a goto node takes no 'next'"),
        ],
    ),
    "bad numbers and languages": (
        """
        id: t
        languages: [en, EN, en]
        numbers: ["+18002738255", "988", "+18002738255"]
        start: a
        max_time_to_human: 60s
        nodes:
          a: {transfer: {queue: crisis}}
        """,
        [
            (2, 17, "'EN' is not a language code"),
            (2, 21, "language 'en' is listed twice"),
            (3, 27, "number '988' is not an E.164 number"),
            (3, 34, "number +18002738255 is listed twice"),
        ],
    ),
    "YAML syntax error": (
        """
        id: t
        languages: [en
        start: a
        """,
        [(3, 6, "YAML syntax:")],
    ),
}


@pytest.mark.parametrize(("text", "expected"), CASES.values(), ids=CASES.keys())
def test_each_error_is_reported_at_its_line(
    write: Write, text: str, expected: list[tuple[int, int, str]]
) -> None:
    path, problems, flows = load(write, text)
    found = errors(problems)
    assert [(line, col) for _, line, col, _ in found] == [(line, col) for line, col, _ in expected]
    for (name, _, _, message), (_, _, words) in zip(found, expected, strict=True):
        assert name == path.name
        assert words in message
    assert flows == {}


def test_problem_text_is_file_line_col_then_the_sentence(write: Write) -> None:
    path, problems, _ = load(write, VALID.replace("next: b", "nxt: b"))
    assert str(problems.sorted()[1]) == (
        f"{path}:8:5: unknown key 'nxt' in a say node (did you mean 'next'?)"
    )


def test_every_problem_of_a_file_is_reported_at_once(write: Write) -> None:
    _, problems, _ = load(
        write,
        """
        id: t
        languages: [en]
        start: a
        max_time_to_human: 1 minute
        nodes:
          a: {say: hello, next: nowhere}
          b: {sya: hello}
          c: {set: {language: fr}, next: a}
        """,
    )
    assert [(line, col) for _, line, col, _ in errors(problems)] == [
        (4, 20),
        (6, 25),
        (7, 3),
        (7, 7),
        (8, 23),
    ]
    assert "did you mean 'say'?" in errors(problems)[3][3]


def test_a_valid_flow_becomes_the_typed_model(write: Write) -> None:
    path, problems, flows = load(
        write,
        """
        id: lifeline
        languages: [en, es]
        start: greeting
        max_time_to_human: 2m
        numbers: ["+18002738255"]
        nodes:
          greeting: {say: welcome, next: main_menu}
          main_menu:
            menu:
              prompt: main_menu
              timeout: 6s
              options:
                - {keys: "1*", words: [Veteran, " army  vet "], set: {need: veteran}, next: vcl}
                - {keys: "2", words: [spanish, "español"], set: {language: es}, next: by_lang}
              no_input: connect
              no_match: {retries: 1, then: connect, prompt: sorry}
          by_lang:
            branch: {on: language, cases: {es: spanish_q}, default: by_time}
          by_time:
            branch: {on: time, tz: America/Denver, cases: {"20:00-08:00": night}, default: connect}
          night: {set: {shift: night}, next: connect}
          spanish_q: {goto: connect}
          vcl: {transfer: {line: veterans, prompt: connecting}}
          connect: {transfer: {queue: crisis}}
          bye: {hangup: {}}
          bye2:
            hangup:
        """,
    )
    assert problems.items == []
    flow = flows["lifeline"]
    assert flow.languages == ("en", "es")
    assert flow.max_time_to_human == 120.0
    assert flow.numbers == ("+18002738255",)
    assert flow.version == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    body = {k: n.body for k, n in flow.nodes.items()}
    assert body["greeting"] == Say("welcome", "main_menu")
    assert body["main_menu"] == Menu(
        prompt="main_menu",
        timeout=6.0,
        options=(
            Option(("1", "*"), ("veteran", "army vet"), (("need", "veteran"),), "vcl"),
            Option(("2",), ("spanish", "español"), (("language", "es"),), "by_lang"),
        ),
        no_input=Fallback(0, "connect"),
        no_match=Fallback(1, "connect", "sorry"),
        speech=True,
    )
    assert body["by_lang"] == Branch("language", (("es", "spanish_q"),), "by_time")
    assert body["by_time"] == Branch(
        "time", (("20:00-08:00", "night"),), "connect", "America/Denver"
    )
    assert body["night"] == SetVars((("shift", "night"),), "connect")
    assert body["spanish_q"] == Goto("connect")
    assert body["vcl"] == Transfer(line="veterans", prompt="connecting")
    assert body["connect"] == Transfer(queue="crisis")
    assert body["bye"] == Hangup() == body["bye2"]
    # Positions of referenced values are kept for later checks.
    menu = flow.nodes["main_menu"]
    assert menu.pos.line == 8
    assert menu.positions["menu.no_match.prompt"].line == 16
    assert flow.positions["max_time_to_human"].line == 4


def test_menu_defaults(write: Write) -> None:
    _, problems, flows = load(
        write,
        """
        id: t
        languages: [en]
        start: m
        max_time_to_human: 60s
        nodes:
          m:
            menu: {prompt: menu, options: [{keys: "1", next: b}], no_input: b, no_match: b}
          b: {transfer: {queue: crisis}}
        """,
    )
    assert problems.items == []
    menu = flows["t"].nodes["m"].body
    assert isinstance(menu, Menu)
    assert (menu.timeout, menu.speech) == (5.0, True)


def test_routing_plan_and_yml_files_are_not_flows(write: Write) -> None:
    write("flows/routing.yaml", "centers: {}\n")
    write("flows/old.yml", "id: old\n")
    _, problems, flows = load(write, VALID)
    assert list(flows) == ["t"]
    assert problems.errors == []
    assert [(Path(w.pos.file).name, w.message) for w in problems.warnings] == [
        ("old.yml", "ignored: flow files must end in .yaml")
    ]


def test_an_unsaid_fallback_prompt_is_a_warning(write: Write) -> None:
    _, problems, flows = load(
        write,
        """
        id: t
        languages: [en]
        start: m
        max_time_to_human: 60s
        nodes:
          m:
            menu:
              prompt: menu
              options: [{keys: "1", next: b}]
              no_input: b
              no_match: {then: b, prompt: sorry}
          b: {transfer: {queue: crisis}}
        """,
    )
    assert "t" in flows
    assert [(w.pos.line, w.message) for w in problems.warnings] == [
        (11, "prompt 'sorry' is never said: it plays before a replay, and retries is 0")
    ]


def flow_text(flow_id: str, numbers: str = "") -> str:
    return (
        f"id: {flow_id}\nlanguages: [en]\nstart: a\nmax_time_to_human: 60s\n"
        f"{numbers}nodes:\n  a: {{transfer: {{queue: crisis}}}}\n"
    )


def test_cross_file_conflicts(write: Write) -> None:
    write("flows/a.yaml", flow_text("one"))
    write("flows/b.yaml", flow_text("one", 'numbers: ["+18005550100"]\n'))
    write("flows/c.yaml", flow_text("two"))
    write("flows/d.yaml", flow_text("three", 'numbers: ["+18005550100"]\n'))
    write("flows/e.yaml", flow_text("four", 'numbers: ["+18005550101", "+18005550100"]\n'))
    path = write("flows/z.yaml", flow_text("five", 'numbers: ["+18005550101"]\n'))
    problems = Problems()
    flows = load_flows(path.parent, problems)
    a_yaml = path.parent / "a.yaml"
    assert [(Path(f).name, line, msg) for f, line, _, msg in errors(problems)] == [
        ("b.yaml", 1, f"flow id 'one' is already used by {a_yaml}"),
        (
            "c.yaml",
            1,
            f"flow 'two' lists no numbers, and neither does flow 'one' ({a_yaml}): only one "
            "flow may answer every other number; give one of them 'numbers'",
        ),
        (
            "e.yaml",
            5,
            "number +18005550100 is already answered by flow 'three' "
            f"({path.parent / 'd.yaml'}): a called number belongs to one flow",
        ),
    ]
    assert sorted(flows) == ["five", "one", "three"]
    assert flows["five"].numbers == ("+18005550101",)


def test_an_empty_flows_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    problems = Problems()
    assert load_flows(tmp_path / "flows", problems) == {}
    assert [p.message for p in problems.errors] == ["no flow files (*.yaml) in the flows directory"]


def test_the_real_lifeline_flow_loads(tmp_path: Path) -> None:
    problems = Problems()
    flows = load_flows(Path(__file__).parents[2] / "flows", problems)
    assert problems.items == []
    flow = flows["lifeline"]
    assert flow.languages == ("en", "es")
    assert flow.start == "greeting"
    menu = flow.nodes["main_menu"].body
    assert isinstance(menu, Menu)
    assert [o.keys for o in menu.options] == [("1",), ("2",)]
    assert menu.no_match == Fallback(1, "connect", "sorry")
