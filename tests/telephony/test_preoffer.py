"""The early offer's per-turn work: where a menu leads is found once per place
in the flow, never for a flow whose way depends on the clock."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ivr.content import load_content
from ivr.flow.loader import load_flow_file
from ivr.flow.runtime import Answer, Start, likely_transfer, new_call, step
from ivr.telephony.preoffer import LikelyTransfers
from ivr.yamlsrc import Problems

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NOON_UTC = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)  # 12:00 in New York
NIGHT_UTC = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)  # 00:00 in New York

TIMED = """
id: timed
languages: [en]
start: menu
max_time_to_human: 300s
nodes:
  menu:
    menu:
      prompt: main_menu
      timeout: 5s
      options:
        - {keys: "1", next: by_time}
      no_input: {retries: 0, then: by_time}
      no_match: {retries: 0, then: by_time}
  by_time:
    branch: {on: time, tz: America/New_York, cases: {"08:00-20:00": day}, default: night}
  day:
    transfer: {queue: crisis}
  night:
    transfer: {queue: night}
"""


def test_callers_at_the_same_menu_share_one_search() -> None:
    flow = load_content(ROOT / "flows", ROOT / "prompts").flows.flows["lifeline"]
    likely = LikelyTransfers()
    first = step(flow, new_call(flow, "TX"), Start(T0))
    found = likely(flow, first.state, T0)
    assert found is not None and found == likely_transfer(flow, first.state, T0)
    later = T0 + timedelta(minutes=10)
    second = step(flow, new_call(flow, "TX"), Start(later))
    assert likely(flow, second.state, later) == found
    assert len(likely) == 1  # the second caller reused the first one's search
    assert likely(flow, replace(first.state, seq=9), T0) == found  # a replay's seq: same place
    assert len(likely) == 1
    # Any other field is another place, vars included.
    for other in (replace(first.state, need="veteran"), replace(first.state, vars={"a": "b"})):
        assert likely(flow, other, T0) == likely_transfer(flow, other, T0)
    assert len(likely) == 3
    # A wrong key is another place (one failure counted): searched, not reused.
    wrong = step(flow, first.state, Answer(T0, digits="9"))
    assert likely(flow, wrong.state, T0) == likely_transfer(flow, wrong.state, T0)
    assert len(likely) == 4


def test_a_flow_that_follows_the_clock_is_searched_every_time(tmp_path: Path) -> None:
    path = tmp_path / "timed.yaml"
    path.write_text(textwrap.dedent(TIMED).lstrip())
    problems = Problems()
    flow = load_flow_file(path, problems)
    assert flow is not None, problems.sorted()
    likely = LikelyTransfers()
    state = step(flow, new_call(flow, "NY"), Start(NOON_UTC)).state
    day, night = likely(flow, state, NOON_UTC), likely(flow, state, NIGHT_UTC)
    assert day is not None and day.transfer.queue == "crisis"
    assert night is not None and night.transfer.queue == "night"
    assert len(likely) == 0


@pytest.mark.parametrize("size", [1, 3])
def test_the_remembered_searches_are_bounded(size: int) -> None:
    flow = load_content(ROOT / "flows", ROOT / "prompts").flows.flows["lifeline"]
    likely = LikelyTransfers(size)
    for state in ("TX", "CA", "NY", "FL", None):
        likely(flow, step(flow, new_call(flow, state), Start(T0)).state, T0)
    assert len(likely) == size
