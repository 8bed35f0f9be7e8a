"""`ivr report` figures from real call outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestServer

from ivr import keys
from ivr.report import parse_since, table
from ivr.sim import CallScript, CounselorScript, NoAnswer, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.script import DialOutcome
from ivr.storage.reports import figures_by_state

ANA, BEN = "+15125550101", "sip:ben@tx-crisis.example.org"


@pytest.mark.counselors(counselors={ANA: [CounselorScript(), NoAnswer()],
                                    BEN: [NoAnswer()]})
async def test_report_counts_in_state_rollover_and_abandoned(
    sim: SimConfig, world: TwilioWorld, server: TestServer
) -> None:
    tx = CallScript(from_number="+15125550123", inputs=(Silence(),),
                    dial_outcomes=(DialOutcome("answer"),))
    answered_locally = await simulate_call(sim, tx, world=world)  # Ana answers
    rolled_over = await simulate_call(sim, tx, world=world)  # nobody local: gulf backup
    abandoned = await simulate_call(
        sim, CallScript(from_number="+14055550123", from_state="OK", inputs=(Silence(),),
                        hangup_after=21.0),
        world=world)
    assert answered_locally.reached_human and rolled_over.reached_human
    assert not abandoned.reached_human

    rows = {r.state: r for r in await figures_by_state(server.app[keys.pool],
                                                        datetime.now(UTC) - timedelta(hours=1))}
    assert set(rows) == {"OK", "TX", "all"}
    tx_row = rows["TX"]
    assert (tx_row.calls, tx_row.answered, tx_row.answered_in_state) == (2, 2, 1)
    assert (tx_row.rolled_over, tx_row.abandoned) == (1, 0)
    assert tx_row.average_answer_seconds is not None and tx_row.p90_answer_seconds is not None
    assert (rows["OK"].calls, rows["OK"].abandoned, rows["OK"].answered) == (1, 1, 0)
    assert (rows["all"].calls, rows["all"].answered) == (3, 2)
    outcomes = {r["call_sid"]: r for r in await server.app[keys.pool].fetch(
        "SELECT * FROM call_outcomes")}
    local, rolled, left = (outcomes[t.call_sid] for t in (answered_locally, rolled_over,
                                                          abandoned))
    assert (local["answered_tier"], local["counselors_tried"], local["answered_in_state"]) == (
        "local", 1, True)
    assert (rolled["answered_tier"], rolled["counselors_tried"]) == ("backup", 2)
    assert rolled["seconds_to_first_ring"] <= rolled["seconds_to_answer"]
    assert (left["abandoned"], left["seconds_to_answer"], left["location_source"]) == (
        True, None, "from_state")
    lines = table(list(rows.values())).splitlines()
    assert lines[0].split()[:2] == ["state", "calls"]
    assert lines[2].split()[:3] == ["TX", "2", "50%"]  # in-state answer rate
    assert lines[1].split()[-2:] == ["100%", "0%"]  # OK: abandoned, no rollover


def test_since_parsing() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday", now)
