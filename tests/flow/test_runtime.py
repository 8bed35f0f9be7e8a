"""The pure flow runtime: one table of inputs and what the caller gets."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr.flow.loader import load_flow_file
from ivr.flow.model import Flow
from ivr.flow.runtime import (
    Answer,
    Ask,
    CallState,
    FlowRuntimeError,
    HangUp,
    Speak,
    Start,
    TransferTo,
    in_time_range,
    new_call,
    step,
)
from ivr.yamlsrc import Problems

NOON_UTC = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)  # 12:00 in New York
NIGHT_UTC = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)  # 00:00 in New York

FLOW = """
id: t
languages: [en, es]
start: hello
max_time_to_human: 300s
nodes:
  hello:
    say: welcome
    next: menu
  menu:
    menu:
      prompt: main_menu
      timeout: 5s
      options:
        - {keys: "1", words: [veteran], set: {need: veteran}, next: vets}
        - {keys: "2", words: [spanish], set: {language: es}, next: by_lang}
        - {keys: "3", set: {topic: grief}, next: by_topic}
      no_input: {retries: 2, then: by_time}
      no_match: {retries: 1, then: by_time, prompt: sorry}
  by_lang:
    branch: {on: language, cases: {es: es_q}, default: by_time}
  by_topic:
    branch: {on: topic, cases: {grief: hop}, default: by_time}
  hop:
    goto: by_time
  by_time:
    branch: {on: time, tz: America/New_York, cases: {"08:00-20:00": day}, default: night}
  day:
    transfer: {queue: crisis, prompt: connecting}
  night:
    transfer: {queue: night}
  es_q:
    transfer: {queue: crisis}
  vets:
    transfer: {line: veterans}
"""


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    path: Path = tmp_path_factory.mktemp("flow") / "t.yaml"
    path.write_text(textwrap.dedent(FLOW).lstrip())
    problems = Problems()
    loaded = load_flow_file(path, problems)
    assert loaded is not None, problems.sorted()
    return loaded


def run(flow: Flow, answers: list[str | None], now: datetime = NOON_UTC) -> list[object]:
    """Start a call and answer each menu; returns every action in order."""
    turn = step(flow, new_call(flow), Start(now))
    actions: list[object] = list(turn.actions)
    for answer in answers:
        assert isinstance(turn.wait, Ask), actions
        event = (Answer(now) if answer is None
                 else Answer(now, word=answer[5:]) if answer.startswith("word:")
                 else Answer(now, digits=answer))
        turn = step(flow, turn.state, event)
        actions.extend(turn.actions)
    return actions


def last_transfer(actions: list[object]) -> TransferTo:
    assert isinstance(actions[-1], TransferTo), actions
    return actions[-1]


@pytest.mark.parametrize(
    ("answers", "now", "queue", "line", "language", "need"),
    [
        (["1"], NOON_UTC, None, "veterans", "en", "veteran"),
        (["word:Veteran"], NOON_UTC, None, "veterans", "en", "veteran"),
        (["2"], NOON_UTC, "crisis", None, "es", None),
        (["3"], NOON_UTC, "crisis", None, "en", None),
        (["3"], NIGHT_UTC, "night", None, "en", None),
        ([None, None, None], NOON_UTC, "crisis", None, "en", None),
        ([None, None, "2"], NOON_UTC, "crisis", None, "es", None),
        (["9", "9"], NOON_UTC, "crisis", None, "en", None),
        (["9", None, None], NIGHT_UTC, "night", None, "en", None),
    ],
)
def test_where_each_answer_leads(
    flow: Flow, answers: list[str | None], now: datetime,
    queue: str | None, line: str | None, language: str, need: str | None,
) -> None:
    transfer = last_transfer(run(flow, answers, now))
    assert (transfer.queue, transfer.line, transfer.language, transfer.need) == (
        queue, line, language, need)


def test_failures_share_one_counter(flow: Flow) -> None:
    # no_input allows 2 replays, no_match 1: wrong key then silence uses both up.
    actions = run(flow, ["9", None, None])
    asks = [a for a in actions if isinstance(a, Ask)]
    assert len(asks) == 3
    assert [a.prompt for a in actions if isinstance(a, Speak)] == ["welcome", "sorry", "connecting"]


def test_wrong_key_at_the_limit_leaves_the_menu(flow: Flow) -> None:
    actions = run(flow, ["9", "8"])
    assert len([a for a in actions if isinstance(a, Ask)]) == 2
    assert isinstance(actions[-1], TransferTo)


def test_ask_lists_keys_and_words(flow: Flow) -> None:
    turn = step(flow, new_call(flow), Start(NOON_UTC))
    ask = turn.wait
    assert isinstance(ask, Ask)
    assert (ask.keys, ask.words) == ("123", ("veteran", "spanish"))
    assert (ask.timeout, ask.language) == (5, "en")
    assert turn.state.seq == 1


def test_word_heard_in_another_language_switches_it(flow: Flow) -> None:
    turn = step(flow, new_call(flow), Start(NOON_UTC))
    turn = step(flow, turn.state, Answer(NOON_UTC, word="veteran", word_language="es"))
    assert last_transfer(list(turn.actions)).language == "es"


def test_state_round_trips_through_json(flow: Flow) -> None:
    turn = step(flow, new_call(flow, "TX", "from_state"), Start(NOON_UTC))
    turn = step(flow, turn.state, Answer(NOON_UTC, digits="9"))
    again = CallState.from_json(turn.state.to_json())
    assert again == turn.state
    assert again.failures == 1 and again.caller_state == "TX"


def test_a_finished_call_cannot_step(flow: Flow) -> None:
    turn = step(flow, new_call(flow), Start(NOON_UTC))
    turn = step(flow, turn.state, Answer(NOON_UTC, digits="1"))
    with pytest.raises(FlowRuntimeError):
        step(flow, turn.state, Answer(NOON_UTC, digits="1"))


@pytest.mark.parametrize(
    ("span", "hour", "inside"),
    [("08:00-20:00", 8, True), ("08:00-20:00", 20, False), ("20:00-08:00", 23, True),
     ("20:00-08:00", 3, True), ("20:00-08:00", 12, False)],
)
def test_time_ranges(span: str, hour: int, inside: bool) -> None:
    assert in_time_range(span, datetime(2026, 1, 1, hour).time()) is inside


def test_hangup_ends_the_turn(tmp_path: Path) -> None:
    path = tmp_path / "h.yaml"
    path.write_text("id: h\nlanguages: [en]\nstart: bye\nmax_time_to_human: 9s\n"
                    "nodes:\n  bye:\n    hangup: {prompt: sorry}\n")
    flow = load_flow_file(path, Problems())
    assert flow is not None
    turn = step(flow, new_call(flow), Start(NOON_UTC))
    assert turn.actions == (Speak("sorry", "en"), HangUp("bye"))
    assert turn.state.finished
