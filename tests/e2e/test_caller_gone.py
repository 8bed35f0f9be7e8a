"""A caller who is gone is gone: a callback carrying a final CallStatus ends the
flow (no next tier, no counselor rung) and the call is recorded as abandoned."""

from __future__ import annotations

import shutil
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from ivr.config import Settings
from ivr.sim import (
    CallScript,
    MediaStreams,
    NoAnswer,
    Silence,
    StreamSettings,
    TwilioWorld,
    simulate_call,
)
from ivr.sim.config import SimConfig
from ivr.sim.script import DialOutcome
from ivr.sim.transcript import Dialed, StreamClosed
from tests.conftest import AUTH_TOKEN
from tests.helpers import call_params, new_sid, parse_twiml, post_signed, staff_all

TX_CALLER = "+15125550123"
GULF_BACKUP = "+15045550112"
TX_ENGLISH = ("+15125550101", "sip:ben@tx-crisis.example.org")


async def call_state(settings: Settings, sid: str) -> dict[str, Any]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM calls WHERE call_sid = $1", sid)
        kinds = [r["kind"] for r in await conn.fetch(
            "SELECT kind FROM call_events WHERE call_sid = $1 ORDER BY id", sid)]
        offers = await conn.fetchval("SELECT count(*) FROM offers WHERE call_sid = $1", sid)
        step = await conn.fetchval(
            "SELECT transfer->'steps'->((transfer->>'index')::int)->>'tier'"
            " FROM calls WHERE call_sid = $1", sid)
        progress = await conn.fetchval(
            "SELECT transfer->>'phase' FROM calls WHERE call_sid = $1", sid)
    finally:
        await conn.close()
    assert row is not None
    return {**dict(row), "kinds": kinds, "offers": offers, "step": step, "progress": progress}


async def test_hanging_up_while_a_dial_step_rings_moves_nowhere(
    settings: Settings, server: TestServer, world: TwilioWorld
) -> None:
    # Nobody staffed: the first step dials the regional backup, which rings on.
    sim = SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                    account_sid=settings.account_sid)
    script = CallScript(from_number=TX_CALLER, inputs=(Silence(),), hangup_after=30.0,
                        dial_outcomes=(DialOutcome("no-answer"),))
    t = await simulate_call(sim, script, world=world)
    [dialed] = t.of_type(Dialed)
    assert dialed.targets == (GULF_BACKUP,) and dialed.outcome == "canceled", t.format()
    state = await call_state(settings, t.call_sid)
    # The Dial action came with CallStatus=completed: no next tier was taken.
    assert "missed" not in state["kinds"] and "dialing" not in state["kinds"], state["kinds"]
    assert state["step"] == "backup"  # still the regional backup, not the national one
    assert state["phase"] == "ended" and state["abandoned"] is True
    assert state["progress"] == "gone"  # the stored progress knows it too
    assert state["answered_at"] is None


@pytest.mark.counselors(counselors={t: NoAnswer() for t in TX_ENGLISH})
async def test_hanging_up_while_holding_rings_nobody_else(
    sim: SimConfig, settings: Settings, world: TwilioWorld
) -> None:
    t = await simulate_call(sim, CallScript(from_number=TX_CALLER, inputs=(Silence(),),
                                            hangup_after=27.0), world=world)
    assert not t.reached_human
    await world.wait_idle(30)
    state = await call_state(settings, t.call_sid)
    assert state["phase"] == "ended" and state["abandoned"] is True
    assert state["progress"] == "gone"
    assert "next_tier" not in state["kinds"]
    assert all(leg.final_status in ("canceled", "no-answer") for leg in world.legs)


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                    reason="espeak-ng and sox (Debian packages) run the media stream's caller")
async def test_hanging_up_mid_stream_starts_no_transfer(
    speech_server: TestServer, settings: Settings, world: TwilioWorld
) -> None:
    await staff_all(speech_server)
    sim = SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                    account_sid=settings.account_sid)
    media = MediaStreams(StreamSettings(speed=10))
    # The menu's stream opens about 15 s in (welcome, menu, a second for a key).
    script = CallScript(from_number=TX_CALLER, inputs=(Silence(),), hangup_after=17.0)
    t = await simulate_call(sim, script, world=world, handlers=world.handlers(media=media))
    [closed] = t.of_type(StreamClosed)
    assert closed.by == "caller", t.format()
    await world.wait_idle(5)
    state = await call_state(settings, t.call_sid)
    # The Connect action after the hang-up is not a silent menu: nobody is put
    # through, no counselor is rung for a caller who is gone.
    assert "transfer" not in state["kinds"], state["kinds"]
    assert state["phase"] == "ended"
    # A counselor offered the caller while the menu played (telephony/preoffer.py)
    # is let go when they hang up: no offer stays open, no leg rings on.
    assert state["progress"] in (None, "gone"), state["progress"]
    conn = await asyncpg.connect(settings.database_url)
    try:
        states = [r["state"] for r in await conn.fetch(
            "SELECT state FROM offers WHERE call_sid = $1", t.call_sid)]
    finally:
        await conn.close()
    assert all(s == "canceled" for s in states), states
    assert len(world.legs) == len(states)
    assert all(leg.final_status in ("canceled", "completed") for leg in world.legs)


@pytest.mark.parametrize(
    "path",
    ["/twilio/gather?seq=1", "/twilio/listen?seq=1", "/twilio/dial?seq=2",
     "/twilio/conference-end?seq=2", "/twilio/resume?seq=3"],
)
async def test_final_status_for_a_call_never_seen_hangs_up_and_changes_nothing(
    server: TestServer, settings: Settings, path: str
) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        async def rows() -> tuple[int, int]:
            return (await conn.fetchval("SELECT count(*) FROM calls"),
                    await conn.fetchval("SELECT count(*) FROM call_events"))

        before = await rows()
        async with aiohttp.ClientSession() as s:
            status, body = await post_signed(
                s, settings.public_url + path,
                call_params(new_sid(), CallStatus="completed", DialCallStatus="no-answer"))
        after = await rows()
    finally:
        await conn.close()
    assert status == 200
    root = parse_twiml(body)
    assert [child.tag for child in root] == ["Hangup"]
    assert after == before
