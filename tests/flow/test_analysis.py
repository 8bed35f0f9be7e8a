from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from ivr.flow.analysis import FlowAnalysis, analyse
from ivr.flow.loader import load_flows
from ivr.flow.model import Transfer
from ivr.flow.prompts import load_prompts
from ivr.flow.validate import validate_content
from ivr.yamlsrc import Problems

from .conftest import Write

ROOT = Path(__file__).parents[2]

# Prompt lengths by the documented estimate: words / 2.5 + 0.3 s.
EN = """
    hello: Hello there.
    menu: Press one for a counselor.
    sorry: Sorry.
    info: Short.
    bye: Bye now.
    """
HELLO, MENU, SORRY, INFO, BYE = 1.1, 2.3, 0.7, 0.7, 1.1
ES = """
    hello: Hola a todos.
    menu: Uno dos tres cuatro cinco seis.
    sorry: Perdón.
    info: Uno dos tres cuatro cinco seis siete ocho nueve diez.
    bye: Adiós.
    """
MENU_ES, INFO_ES, BYE_ES = 2.7, 4.3, 0.7


def run(
    write: Write, flow: str, en: str = EN, es: str | None = ES
) -> tuple[FlowAnalysis, list[tuple[int, int, str]]]:
    """Write the flow and catalogs, load them (cleanly), analyse; problems as (line, col, text)."""
    path = write("flows/f.yaml", flow)
    write("prompts/en/catalog.yaml", en)
    if es is not None:
        write("prompts/es/catalog.yaml", es)
    problems = Problems()
    flows = load_flows(path.parent, problems)
    catalog = load_prompts(path.parent.parent / "prompts", problems)
    assert problems.items == [], "the fixture itself must load cleanly"
    analysis = analyse(flows["t"], catalog, problems)
    return analysis, [(p.pos.line, p.pos.col, p.message) for p in problems.sorted()]


SIMPLE = """
    id: t
    languages: [en]
    start: hello
    max_time_to_human: 60s
    nodes:
      hello: {say: hello, next: menu}
      menu:
        menu:
          prompt: menu
          timeout: 5s
          options: [{keys: "1", next: connect}]
          no_input: {retries: 1, then: connect}
          no_match: {retries: 1, then: connect, prompt: sorry}
      connect: {transfer: {queue: crisis}}
    """


def test_say_menu_with_one_retry_then_transfer(write: Write) -> None:
    analysis, problems = run(write, SIMPLE, es=None)
    assert problems == []
    # hello, then the menu twice (prompt + the whole 5 s timeout), "sorry" between.
    expected = HELLO + (MENU + 5) + SORRY + (MENU + 5)
    assert expected == pytest.approx(16.4)
    assert analysis.worst_seconds == pytest.approx(expected)
    assert analysis.worst_path == ("hello", "menu", "menu", "connect")
    assert analysis.steps[1].event == "plays 'menu', wrong key, replay 1 after 'sorry'"
    assert analysis.steps[1].seconds == pytest.approx(MENU + 5 + SORRY)
    assert analysis.steps[-1].event == "transfers to queue crisis"
    assert analysis.bounded and analysis.within_limit
    assert analysis.per_language == {"en": pytest.approx(expected)}
    assert "worst case 16.4 s to the transfer, within the limit of 60 s" in analysis.describe()
    assert analysis.summary() == (
        "worst case 16.4 s to the transfer (limit 60 s, call starting in en): "
        "hello (says 'hello') -> menu (plays 'menu', wrong key, replay 1 after 'sorry') "
        "-> menu (plays 'menu', silence, then connect) -> connect (transfers to queue crisis)"
    )


def test_silence_and_wrong_keys_share_one_failure_counter(write: Write) -> None:
    flow = SIMPLE.replace("no_input: {retries: 1,", "no_input: {retries: 2,")
    analysis, _ = run(write, flow, es=None)
    # Plays at most 1 + max(2, 1) = 3 times, not 1 + 2 + 1: the worst is a wrong key
    # first (it adds "sorry"), then silence, then anything.
    assert analysis.worst_path.count("menu") == 3
    assert analysis.worst_seconds == pytest.approx(HELLO + 3 * (MENU + 5) + SORRY)


def test_an_option_chosen_late_costs_the_whole_timeout(write: Write) -> None:
    flow = SIMPLE.replace("{retries: 1, then: connect}", "connect").replace(
        "{retries: 1, then: connect, prompt: sorry}", "connect"
    )
    flow = flow.replace("next: connect}]", "next: info}]").replace(
        "connect: {transfer", "info: {say: info, next: connect}\n      connect: {transfer"
    )
    analysis, _ = run(write, flow, es=None)
    assert analysis.worst_path == ("hello", "menu", "info", "connect")
    assert analysis.worst_seconds == pytest.approx(HELLO + MENU + 5 + INFO)


SWITCH = """
    id: t
    languages: [en, es]
    start: menu
    max_time_to_human: 60s
    nodes:
      menu:
        menu:
          prompt: menu
          timeout: 2s
          speech: false
          options: [{keys: "2", set: {language: es}, next: info}]
          no_input: connect
          no_match: connect
      info: {say: info, next: connect}
      connect: {transfer: {queue: crisis, prompt: bye}}
    """


def test_setting_the_language_prices_later_prompts_in_it(write: Write) -> None:
    analysis, problems = run(write, SWITCH)
    assert problems == []
    # From English, pressing 2 makes the rest Spanish; silence stays English (shorter).
    assert analysis.per_language["en"] == pytest.approx(MENU + 2 + INFO_ES + BYE_ES)
    assert analysis.per_language["es"] == pytest.approx(MENU_ES + 2 + INFO_ES + BYE_ES)
    assert analysis.worst_seconds == analysis.per_language["es"]
    assert analysis.start_language == "es"
    assert [s.language for s in analysis.steps] == ["es", "es", "es"]


def test_a_spoken_word_may_switch_to_any_language(write: Write) -> None:
    flow = SWITCH.replace("speech: false", "speech: true").replace(
        '{keys: "2", set: {language: es}, next: info}', "{words: [help], next: info}"
    )
    analysis, _ = run(write, flow)
    # The runtime keeps the language a word was heard in, so "help" heard as
    # Spanish leads to the Spanish info prompt even in an English call.
    assert analysis.per_language["en"] == pytest.approx(MENU + 2 + INFO_ES + BYE_ES)
    keys_only = SWITCH.replace("{language: es}", "{need: info}")
    by_keys, _ = run(write, keys_only)
    assert by_keys.per_language["en"] == pytest.approx(MENU + 2 + INFO + BYE)


def test_every_branch_arm_is_possible(write: Write) -> None:
    analysis, problems = run(
        write,
        """
        id: t
        languages: [en]
        start: pick
        max_time_to_human: 60s
        nodes:
          pick: {branch: {on: need, cases: {veteran: long}, default: connect}}
          long: {say: menu, next: connect}
          connect: {transfer: {queue: crisis}}
        """,
        es=None,
    )
    assert problems == []
    assert analysis.worst_path == ("pick", "long", "connect")
    assert analysis.steps[0].event == "need is veteran"
    assert analysis.worst_seconds == pytest.approx(MENU)


HEAD = """
    id: t
    languages: [en]
    start: hello
    max_time_to_human: 60s
    nodes:
      hello: {say: hello, next: menu}
    """


def menu_to(option: str, no_input: str = "connect") -> str:
    return f"""
      menu:
        menu:
          prompt: menu
          options: [{option}]
          no_input: {no_input}
          no_match: connect
    """


CONNECT = """
      connect: {transfer: {queue: crisis}}
    """


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        pytest.param(
            [menu_to('{keys: "1", next: hello}'), CONNECT],
            (6, "hello -(next)-> menu -(key 1)-> hello"),
            id="an option back to an earlier node",
        ),
        pytest.param(
            [menu_to('{keys: "1", next: connect}', no_input="menu"), CONNECT],
            (7, "menu -(silence)-> menu"),
            id="a fallback back to its own menu restarts the retry count",
        ),
        pytest.param(
            [menu_to('{keys: "1", next: spin}'), "  spin: {goto: spin}\n", CONNECT],
            (13, "spin -(goto)-> spin"),
            id="a goto to itself",
        ),
        pytest.param(
            [
                menu_to("{words: [more], next: tag}"),
                """
                  tag: {set: {need: info}, next: why}
                  why: {branch: {on: need, cases: {info: more}, default: connect}}
                  more: {say: info, next: tag}
                """,
                CONNECT,
            ],
            (13, "tag -(next)-> why -(need info)-> more -(next)-> tag"),
            id="say, set and branch round and round",
        ),
    ],
)
def test_loops_without_exit(write: Write, nodes: list[str], expected: tuple[int, str]) -> None:
    text = textwrap.dedent(HEAD) + "".join(
        textwrap.indent(textwrap.dedent(n).strip("\n") + "\n", "  ") for n in nodes
    )
    analysis, problems = run(write, text, es=None)
    line, cycle = expected
    assert problems == [
        (
            line,
            3,
            f"loop without exit: a caller can go round {cycle} forever and never reach a "
            "counselor; send one of these steps to a transfer",
        )
    ]
    assert not analysis.bounded
    assert math.isinf(analysis.worst_seconds)
    assert "no bound on the time to the transfer" in analysis.describe()
    assert analysis.summary().startswith("no bound on the time to the transfer (loop ")


def test_unreachable_nodes_and_reachable_hangups(write: Write) -> None:
    analysis, problems = run(
        write,
        """
        id: t
        languages: [en]
        start: menu
        max_time_to_human: 60s
        nodes:
          menu:
            menu:
              prompt: menu
              options: [{keys: "1", next: connect}]
              no_input: bye
              no_match: connect
          bye: {hangup: {prompt: bye}}
          orphan: {say: info, next: quiet_bye}
          quiet_bye: {hangup: {}}
          connect: {transfer: {queue: crisis}}
        """,
        es=None,
    )
    assert problems == [
        (
            12,
            3,
            "node 'bye' hangs up on the caller: a crisis line must never end a call before a "
            "counselor answers; transfer instead",
        ),
        (13, 3, "node 'orphan' is never reached from 'menu'"),
        (14, 3, "node 'quiet_bye' is never reached from 'menu'"),
    ]
    assert analysis.bounded  # a hangup ends the path; it is an error, not a loop


def test_a_path_over_the_limit_is_reported_with_its_inputs(write: Write, tmp_path: Path) -> None:
    analysis, problems = run(write, SIMPLE.replace("60s", "15s"), es=None)
    assert problems == [
        (
            4,
            20,
            "a caller can take 16.4 s to reach the transfer, over max_time_to_human (15 s), in a "
            "call starting in en: hello (says 'hello') -> menu (plays 'menu', wrong key, replay 1 "
            "after 'sorry') -> menu (plays 'menu', silence, then connect) -> connect (transfers "
            "to queue crisis); shorten prompts or timeouts, or lower retries",
        )
    ]
    assert not analysis.within_limit
    assert "OVER the limit of 15 s" in analysis.describe()


def test_a_path_exactly_at_the_limit_passes(write: Write) -> None:
    analysis, problems = run(write, SIMPLE.replace("60s", "16.4s"), es=None)
    assert problems == []
    assert analysis.within_limit


def test_prompts_missing_in_a_language(write: Write, tmp_path: Path) -> None:
    analysis, problems = run(
        write,
        """
        id: t
        languages: [en, es]
        start: hello
        max_time_to_human: 60s
        nodes:
          hello: {say: hello, next: menu}
          menu:
            menu:
              prompt: menu
              options: [{keys: "1", next: connect}]
              no_input: connect
              no_match: {retries: 1, then: connect, prompt: sory}
          connect: {transfer: {queue: crisis, prompt: bye}}
        """,
        es="""
        hello: Hola.
        menu: Oprima uno.
        sorry: Perdón.
        """,
    )
    es_catalog = tmp_path / "prompts" / "es" / "catalog.yaml"
    en_catalog = tmp_path / "prompts" / "en" / "catalog.yaml"
    assert problems == [
        (
            12,
            53,
            "prompt 'sory' is missing in en and es (did you mean 'sorry'?): add it to "
            f"{en_catalog}, {es_catalog}",
        ),
        (13, 47, f"prompt 'bye' is missing in es: add it to {es_catalog}"),
    ]
    # The analysis still runs, pricing a missing prompt by its longest translation.
    assert analysis.steps[-1].seconds == pytest.approx(BYE)


def test_a_language_without_any_catalog(write: Write, tmp_path: Path) -> None:
    _, problems = run(write, SIMPLE.replace("[en]", "[en, fr]"), es=None)
    assert problems == [
        (2, 17, "language 'fr' has no prompts: add prompts/fr/catalog.yaml"),
    ]


def test_the_real_lifeline_validates_within_its_limit() -> None:
    flowset, problems, analyses = validate_content(ROOT / "flows", ROOT / "prompts")
    assert [str(p) for p in problems.items] == []
    assert flowset is not None
    analysis = analyses["lifeline"]
    print(analysis.describe())
    assert analysis.bounded and analysis.within_limit
    assert analysis.worst_seconds < flowset.flows["lifeline"].max_time_to_human
    assert set(analysis.per_language) == {"en", "es"}
    last = flowset.flows["lifeline"].nodes[analysis.worst_path[-1]].body
    assert isinstance(last, Transfer)
    assert flowset.for_number(None).id == "lifeline"


def test_validate_content_collects_every_problem(write: Write, tmp_path: Path) -> None:
    write("flows/good.yaml", SIMPLE.replace("id: t", "id: good"))
    write("flows/bad.yaml", SIMPLE.replace("id: t", "id: bad").replace("next: menu", "next: manu"))
    over = SIMPLE.replace("id: t", 'id: over\n    numbers: ["+18005550100"]')
    write("flows/over.yaml", over.replace("60s", "5s"))
    write("prompts/en/catalog.yaml", EN)
    flowset, problems, analyses = validate_content(tmp_path / "flows", tmp_path / "prompts")
    assert flowset is None
    assert [(Path(p.pos.file).name, p.pos.line) for p in problems.sorted()] == [
        ("bad.yaml", 6),
        ("over.yaml", 5),
    ]
    assert sorted(analyses) == ["good", "over"]
