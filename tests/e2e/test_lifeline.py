"""Whole calls through the crisis-line flow, driven by the Twilio simulator."""

from __future__ import annotations

import asyncpg
import pytest

from ivr.config import Settings
from ivr.sim import CallScript, DialOutcome, Press, Silence, simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.transcript import Dialed, Heard, Transcript

TX_CALLER = "+15125550123"
NATIONAL = "+18005550100"
VETERANS = "+18005550111"


def heard(t: Transcript, fragment: str) -> list[Heard]:
    return [e for e in t.of_type(Heard) if fragment in e.text]


def dialed(t: Transcript) -> list[Dialed]:
    return list(t.of_type(Dialed))


async def test_silence_goes_to_the_local_english_counselors(sim: SimConfig) -> None:
    t = await simulate_call(sim, CallScript(from_number=TX_CALLER, inputs=(Silence(),)))
    assert t.reached_human, t.format()
    assert {h.language for h in t.of_type(Heard)} == {"en-US"}
    assert len(heard(t, "press 1")) == 1  # silence never replays the menu
    first = dialed(t)[0]
    # Texas center, English speakers only: Ana (en, es) and Ben (en, SIP), not Carla (es).
    assert set(first.targets) == {"+15125550101", "sip:ben@tx-crisis.example.org"}


async def test_veteran_presses_1_and_reaches_the_veterans_line(sim: SimConfig) -> None:
    t = await simulate_call(sim, CallScript(from_number=TX_CALLER, inputs=(Press("1"),)))
    assert t.reached_human, t.format()
    assert heard(t, "Veterans Crisis Line")
    assert dialed(t)[0].targets == (VETERANS,)


async def test_spanish_presses_2_and_continues_in_spanish(sim: SimConfig) -> None:
    t = await simulate_call(sim, CallScript(from_number=TX_CALLER, inputs=(Press("2"),)))
    assert t.reached_human, t.format()
    after = [h for h in t.of_type(Heard) if h.at >= t.of_type(Heard)[1].at][1:]
    assert after and all(h.language == "es-US" for h in after)
    assert heard(t, "español")
    # Spanish speakers of the Texas center: Ana and Carla, not Ben.
    assert set(dialed(t)[0].targets) == {"+15125550101", "+15125550103"}


async def test_wrong_key_replays_the_menu_once_then_connects(sim: SimConfig) -> None:
    t = await simulate_call(sim, CallScript(from_number=TX_CALLER,
                                            inputs=(Press("9"), Press("7"), Press("5"))))
    assert t.reached_human, t.format()
    assert len(heard(t, "press 1")) == 2  # the first play and one replay, never more
    assert len(heard(t, "Sorry")) == 1
    assert heard(t, "Connecting you with a crisis counselor")


async def test_wrong_key_then_silence_connects(sim: SimConfig) -> None:
    t = await simulate_call(sim, CallScript(from_number=TX_CALLER,
                                            inputs=(Press("9"), Silence())))
    assert t.reached_human, t.format()
    assert len(heard(t, "press 1")) == 2


async def test_wrong_key_then_spanish_on_the_replay(sim: SimConfig) -> None:
    t = await simulate_call(sim, CallScript(from_number=TX_CALLER,
                                            inputs=(Press("9"), Press("2"))))
    assert t.reached_human
    assert heard(t, "Le estamos comunicando")


async def test_unanswered_tiers_fall_back_to_the_national_backup(sim: SimConfig) -> None:
    script = CallScript(from_number=TX_CALLER, inputs=(Silence(),),
                        dial_outcomes=(DialOutcome("busy"), DialOutcome("no-answer"),
                                       DialOutcome("answer")))
    t = await simulate_call(sim, script)
    assert t.reached_human, t.format()
    calls = dialed(t)
    assert [d.outcome for d in calls] == ["busy", "no-answer", "answered"]
    assert calls[-1].targets == (NATIONAL,)
    assert len({d.targets for d in calls}) == 3  # each tier rings someone else
    assert heard(t, "national network")


async def test_nobody_answers_anywhere_ends_without_a_loop(sim: SimConfig) -> None:
    script = CallScript(from_number=TX_CALLER, inputs=(Silence(),),
                        dial_outcomes=tuple(DialOutcome("no-answer") for _ in range(10)))
    t = await simulate_call(sim, script)
    assert not t.reached_human
    assert not t.loop_detected and not t.fallback_used
    calls = dialed(t)
    # The national backup is last and is rung again (it has nowhere to fail over to).
    assert [d.targets for d in calls[-3:]] == [(NATIONAL,)] * 3
    assert t.hung_up_by == "server"


async def test_new_york_spanish_caller_skips_the_english_only_center(sim: SimConfig) -> None:
    t = await simulate_call(sim, CallScript(from_number="+12125550123", from_state="NY",
                                            inputs=(Press("2"),)))
    assert t.reached_human
    targets = dialed(t)[0].targets
    assert not any(n.startswith("+1212") for n in targets)  # NY center speaks English only


async def test_retried_callbacks_do_not_double_step(sim: SimConfig, settings: Settings) -> None:
    script = CallScript(from_number=TX_CALLER, inputs=(Press("9"), Press("2")),
                        duplicate_callbacks=True)
    t = await simulate_call(sim, script)
    assert t.reached_human, t.format()
    assert len(heard(t, "press 1")) == 2
    conn = await asyncpg.connect(settings.database_url)
    try:
        kinds = [r["kind"] for r in await conn.fetch(
            "SELECT kind FROM call_events WHERE call_sid = $1 ORDER BY id", t.call_sid)]
        seq = await conn.fetchval("SELECT seq FROM calls WHERE call_sid = $1", t.call_sid)
    finally:
        await conn.close()
    assert kinds.count("replayed") >= 2  # each duplicate answered from the stored step
    assert kinds.count("transfer") == 1
    # voice (1), wrong key (2), key 2 (3), dial answered (4): one step per real callback.
    assert seq == 4


async def test_caller_number_never_stored_in_clear(
    sim: SimConfig, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    number = "+15125550199"
    caplog.set_level("DEBUG")
    t = await simulate_call(sim, CallScript(from_number=number, inputs=(Press("2"),)))
    assert t.reached_human
    conn = await asyncpg.connect(settings.database_url)
    try:
        dump = await conn.fetchval(
            "SELECT string_agg(t::text, ' ') FROM (SELECT c::text AS t FROM calls c "
            "UNION ALL SELECT e::text FROM call_events e) x")
        row = await conn.fetchrow("SELECT caller_hash, caller_area_code FROM calls")
    finally:
        await conn.close()
    for form in (number, number[1:], number[2:], "5125550199"):
        assert form not in dump
        assert form not in caplog.text
    assert row["caller_area_code"] == "512"
    assert len(row["caller_hash"]) == 64
    assert number not in t.format()
