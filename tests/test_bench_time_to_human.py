"""bench/time_to_human.py: one path measured end to end, its figures held to the transcript."""

from __future__ import annotations

import asyncio

import pytest

from bench.time_to_human import (
    load_shipped,
    measure,
    menu_answer,
    path_bound,
    paths,
    run_path,
)
from ivr.flow.model import Menu
from ivr.sim.run import throwaway_settings
from ivr.sim.transcript import (
    CounselorJoined,
    Dialed,
    Entry,
    Heard,
    LegEvent,
    Pressed,
    Silent,
    Transcript,
)

ANA = "+15125550101"  # tx-ana in flows/routing.yaml, the first counselor offered
# The benchmark runs in real time; here the figures are held to the transcript,
# not to the clock, and 50 ms per simulated second keeps the call short.
FAST = 0.05


async def test_the_silent_callers_path_is_measured_from_its_transcript(dsn: str) -> None:
    content = await asyncio.to_thread(load_shipped)
    path = next(p for p in paths(content) if p.name == "silent caller")
    async with throwaway_settings(dsn) as base:
        [run] = await run_path(base, content, path, runs=1, time_scale=FAST)
    t = run.transcript
    assert t.reached_human, t.format()
    rings = [e for e in t.of_type(LegEvent) if e.event == "ringing"]
    [joined] = t.of_type(CounselorJoined)
    assert not t.of_type(Dialed), t.format()  # a counselor, not a <Dial>
    assert run.measured.first_ring == rings[0].at
    assert run.measured.joined == joined.at
    assert run.measured.who == joined.who == rings[0].target == ANA
    assert run.measured.dialled is None
    # The menu's silence, then the transfer prompt once the server has answered.
    [silence] = t.of_type(Silent)
    connecting = next(e for e in t.of_type(Heard) if e.at > silence.at)
    assert run.measured.menu_answer == connecting.at - (silence.at + silence.seconds) >= 0
    # In the call's order: the menu's silence, then the ring, then the counselor.
    assert 0 < run.measured.first_ring < run.measured.joined

    # The bound: the flow analysis's cost of this path (welcome, the menu and
    # its whole timeout) up to the transfer, then the routing bound from there.
    bound = path_bound(content, path)
    prompts = content.flows.prompts
    flow = content.flows.flows["lifeline"]
    menu = flow.nodes["main_menu"].body
    assert isinstance(menu, Menu)
    spoken = [prompts.get("en", p) for p in ("welcome", "main_menu")]
    assert bound.to_transfer == pytest.approx(sum(p.seconds for p in spoken if p) + menu.timeout)
    assert bound.first_ring == bound.to_transfer + bound.transfer.to_first_ring
    assert bound.first_ring < bound.backup


def transcript(*entries: Entry) -> Transcript:
    return Transcript("CA" + "0" * 32, entries, 100.0, "caller", "completed")


def test_a_dial_answered_counts_from_its_start_plus_its_ringing() -> None:
    t = transcript(Dialed(20.0, ("+15045550112",), "no-answer", 20.0),
                   Dialed(51.0, ("+18005550100",), "answered", 4.0, 60.0))
    m = measure(t)
    assert (m.first_ring, m.dialled, m.joined, m.who) == (20.0, 51.0, 55.0, "+18005550100")


def test_nobody_reached_gives_no_figures() -> None:
    t = transcript(LegEvent(25.0, ANA, "called"), Dialed(30.0, ("+18005550100",), "busy", 2.0))
    m = measure(t)
    assert (m.first_ring, m.joined, m.who, m.dialled) == (30.0, None, None, None)


def test_the_menu_answer_is_the_silence_after_the_last_menu_before_the_next_prompt() -> None:
    t = transcript(Heard(0.0, "Welcome.", "en-US", "woman", 2.0),
                   Pressed(3.0, "9"), Heard(3.25, "Sorry.", "en-US", "woman", 1.0),
                   Pressed(4.0, "5", ignored=True), Silent(5.0, 5.0),
                   Heard(10.5, "Connecting.", "en-US", "woman", 1.0))
    assert menu_answer(t) == 0.5
    assert measure(t).menu_answer == 0.5
    assert menu_answer(transcript(Heard(0.0, "Welcome.", "en-US", "woman", 2.0))) is None
