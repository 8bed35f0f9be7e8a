"""Whole calls through the crisis-line flow, driven by the Twilio simulator."""

from __future__ import annotations

import io
import json

import asyncpg
import pytest

from ivr.config import Settings
from ivr.sim import CallScript, NoAnswer, Press, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.script import DialOutcome
from ivr.sim.transcript import CounselorJoined, Dialed, Heard, Transcript

TX_CALLER = "+15125550123"
NATIONAL = "+18005550100"
VETERANS = "+18005550111"
TX_ENGLISH = {"+15125550101", "sip:ben@tx-crisis.example.org"}  # Ana (en, es), Ben (en)
TX_SPANISH = {"+15125550101", "+15125550103"}  # Ana, Carla (es)


def heard(t: Transcript, fragment: str) -> list[Heard]:
    return [e for e in t.of_type(Heard) if fragment in e.text]


def dialed(t: Transcript) -> list[Dialed]:
    return list(t.of_type(Dialed))


def joined(t: Transcript) -> str:
    """Who picked the caller up."""
    people = t.of_type(CounselorJoined)
    assert len(people) == 1, t.format()
    return people[0].who


async def test_silence_goes_to_a_local_english_counselor(
    sim: SimConfig, world: TwilioWorld
) -> None:
    t = await simulate_call(sim, CallScript(from_number=TX_CALLER, inputs=(Silence(),)),
                            world=world)
    assert t.reached_human, t.format()
    # English throughout, but for the menu's Spanish line, said by the Spanish voice.
    assert [h.language for h in heard(t, "Para español")] == ["es-US"]
    assert {h.language for h in t.of_type(Heard) if "español" not in h.text} == {"en-US"}
    assert len(heard(t, "press 1")) == 1  # silence never replays the menu
    assert heard(t, "If you are in immediate danger, call 911")  # hold reassurance
    assert joined(t) in TX_ENGLISH
    assert not dialed(t)  # a warm transfer: the caller never left their conference


async def test_veteran_presses_1_and_reaches_the_veterans_line(
    sim: SimConfig, world: TwilioWorld
) -> None:
    t = await simulate_call(sim, CallScript(from_number=TX_CALLER, inputs=(Press("1"),)),
                            world=world)
    assert t.reached_human, t.format()
    assert heard(t, "Veterans Crisis Line")
    assert dialed(t)[0].targets == (VETERANS,)


async def test_spanish_presses_2_and_continues_in_spanish(
    sim: SimConfig, world: TwilioWorld
) -> None:
    t = await simulate_call(sim, CallScript(from_number=TX_CALLER, inputs=(Press("2"),)),
                            world=world)
    assert t.reached_human, t.format()
    pressed_at = next(e.at for e in t.entries if type(e).__name__ == "Pressed")
    after = [h for h in t.of_type(Heard) if h.at > pressed_at]
    assert after and all(h.language == "es-US" for h in after)
    assert heard(t, "Si está en peligro inmediato")  # reassurance on hold, in Spanish
    assert joined(t) in TX_SPANISH


async def test_wrong_key_replays_the_menu_once_then_connects(
    sim: SimConfig, world: TwilioWorld
) -> None:
    t = await simulate_call(sim, CallScript(from_number=TX_CALLER,
                                            inputs=(Press("9"), Press("7"), Press("5"))),
                            world=world)
    assert t.reached_human, t.format()
    assert len(heard(t, "press 1")) == 2  # the first play and one replay, never more
    assert len(heard(t, "Sorry")) == 1
    assert heard(t, "Connecting you with a crisis counselor")


async def test_wrong_key_then_silence_connects(sim: SimConfig, world: TwilioWorld) -> None:
    t = await simulate_call(sim, CallScript(from_number=TX_CALLER,
                                            inputs=(Press("9"), Silence())), world=world)
    assert t.reached_human, t.format()
    assert len(heard(t, "press 1")) == 2


async def test_wrong_key_then_spanish_on_the_replay(
    sim: SimConfig, world: TwilioWorld
) -> None:
    t = await simulate_call(sim, CallScript(from_number=TX_CALLER,
                                            inputs=(Press("9"), Press("2"))), world=world)
    assert t.reached_human
    assert heard(t, "Le estamos comunicando")


NOBODY_LOCAL = {t: NoAnswer() for t in TX_ENGLISH | TX_SPANISH}


@pytest.mark.counselors(counselors=NOBODY_LOCAL)
async def test_unanswered_tiers_fall_back_to_the_national_backup(
    sim: SimConfig, world: TwilioWorld
) -> None:
    script = CallScript(from_number=TX_CALLER, inputs=(Silence(),),
                        dial_outcomes=(DialOutcome("busy"), DialOutcome("answer")))
    t = await simulate_call(sim, script, world=world)
    assert t.reached_human, t.format()
    rung = {leg.who for leg in world.legs}
    assert rung == TX_ENGLISH  # both local English counselors were offered the call
    calls = dialed(t)
    assert [d.outcome for d in calls] == ["busy", "answered"]
    assert calls[0].targets != (NATIONAL,)  # the regional backup first
    assert calls[-1].targets == (NATIONAL,)
    assert heard(t, "national network")


@pytest.mark.counselors(counselors=NOBODY_LOCAL)
async def test_nobody_answers_anywhere_ends_without_a_loop(
    sim: SimConfig, world: TwilioWorld
) -> None:
    script = CallScript(from_number=TX_CALLER, inputs=(Silence(),),
                        dial_outcomes=tuple(DialOutcome("no-answer") for _ in range(10)))
    t = await simulate_call(sim, script, world=world)
    assert not t.reached_human
    assert not t.loop_detected and not t.fallback_used
    calls = dialed(t)
    # The national backup is last and is rung again (it has nowhere to fail over to).
    assert [d.targets for d in calls[-3:]] == [(NATIONAL,)] * 3
    assert t.hung_up_by == "server"


async def test_new_york_spanish_caller_skips_the_english_only_center(
    sim: SimConfig, world: TwilioWorld
) -> None:
    t = await simulate_call(sim, CallScript(from_number="+12125550123", from_state="NY",
                                            inputs=(Press("2"),)), world=world)
    assert t.reached_human, t.format()
    # The NY center speaks English only: nobody there is rung; a Spanish-speaking
    # regional backup answers instead.
    assert not any(leg.who.startswith("+1212") for leg in world.legs)
    assert dialed(t)[0].outcome == "answered"
    assert not dialed(t)[0].targets[0].startswith("+1212")


async def test_retried_callbacks_do_not_double_step(
    sim: SimConfig, settings: Settings, world: TwilioWorld
) -> None:
    script = CallScript(from_number=TX_CALLER, inputs=(Press("9"), Press("2")),
                        duplicate_callbacks=True)
    t = await simulate_call(sim, script, world=world)
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
    # voice (1), wrong key (2), key 2 (3): one step per real callback.
    assert seq == 3


async def test_caller_number_never_stored_in_clear(
    sim: SimConfig, settings: Settings, world: TwilioWorld, caplog: pytest.LogCaptureFixture,
    json_logs: io.StringIO,
) -> None:
    number = "+15125550199"
    caplog.set_level("DEBUG")
    t = await simulate_call(sim, CallScript(from_number=number, inputs=(Press("2"),)),
                            world=world)
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
        assert form not in json_logs.getvalue()
    assert all(json.loads(line) for line in json_logs.getvalue().splitlines())
    assert row["caller_area_code"] == "512"
    assert len(row["caller_hash"]) == 64
    assert number not in t.format()
