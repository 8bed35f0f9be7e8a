"""Calls through a Twilio SIP domain, end to end: SIP URIs in To and From, the
carrier's georouting header, warm transfer and dial steps with our caller ID."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from ivr.config import Settings
from ivr.sim import CallScript, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.transcript import CounselorJoined, Dialed, Note, Transcript
from tests.conftest import AUTH_TOKEN

DOMAIN = "crisis.sip.twilio.com"
TX_CALLER = "+15125550123"  # an Austin number: its area code alone would say Texas
NY_COUNSELORS = {"+12125550104", "+12125550105"}
GULF_BACKUP = "+15045550112"


async def call_record(settings: Settings, sid: str) -> dict[str, Any]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM calls WHERE call_sid = $1", sid)
        twimls = await conn.fetch(
            "SELECT detail->>'xml' AS xml FROM call_events "
            "WHERE call_sid = $1 AND kind = 'twiml' ORDER BY id", sid)
    finally:
        await conn.close()
    assert row is not None
    return {**dict(row), "twimls": [t["xml"] for t in twimls]}


def number_dials(twimls: list[str]) -> list[ET.Element]:
    """Every <Dial> of the call that rings a phone number."""
    dials = [d for xml in twimls for d in ET.fromstring(xml).iter("Dial")]
    return [d for d in dials if (d.text or "").strip() or d.find("Number") is not None]


def sip_call(**script: Any) -> CallScript:
    return CallScript(**{"from_number": TX_CALLER, "sip_domain": DOMAIN,
                         "inputs": (Silence(),), **script})


@pytest.mark.parametrize("header", ["X-Georoute-State", "x-georoute-state"])
async def test_the_georouting_header_of_a_sip_call_reaches_that_state(
    sim: SimConfig, world: TwilioWorld, settings: Settings, header: str
) -> None:
    t = await simulate_call(sim, sip_call(sip_headers={header: "US-NY"}), world=world)
    joined = t.of_type(CounselorJoined)
    assert len(joined) == 1 and joined[0].who in NY_COUNSELORS, t.format()
    row = await call_record(settings, t.call_sid)
    assert (row["location_state"], row["location_source"]) == ("NY", "georoute")
    assert row["caller_area_code"] == "512"
    assert row["called"] == f"sip:+18885550988@{DOMAIN}"
    assert row["answered_tier"] == "local" and row["answered_in_state"] is True
    # Every counselor leg came from our own number, never the caller's SIP URI.
    assert world.legs and {leg.request.from_ for leg in world.legs} == {settings.caller_id}


async def test_a_sip_call_falls_back_to_a_dial_step_with_our_caller_id(
    settings: Settings, server: TestServer, world: TwilioWorld
) -> None:
    # Nobody staffed: the caller goes straight to the backup centre's number.
    sim = SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                    account_sid=settings.account_sid, caller_ids=(settings.caller_id,))
    t = await simulate_call(sim, sip_call(), world=world)
    assert _reached_by_dial(t) == (GULF_BACKUP,), t.format()
    row = await call_record(settings, t.call_sid)
    dials = number_dials(row["twimls"])
    assert dials and all(d.get("callerId") == settings.caller_id for d in dials)
    # The progress says the caller's own number may not pass (so every later
    # <Dial> uses ours); the steps themselves no longer carry a callerId.
    assert json.loads(row["transfer"])["pass_caller_id"] is False
    assert row["answered_tier"] == "backup"


async def test_a_phone_caller_keeps_their_own_caller_id_on_a_dial_step(
    settings: Settings, server: TestServer, world: TwilioWorld
) -> None:
    sim = SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                    account_sid=settings.account_sid, caller_ids=(settings.caller_id,))
    t = await simulate_call(sim, CallScript(from_number=TX_CALLER, inputs=(Silence(),)),
                            world=world)
    assert _reached_by_dial(t) == (GULF_BACKUP,), t.format()
    dials = number_dials((await call_record(settings, t.call_sid))["twimls"])
    assert dials and all(d.get("callerId") is None for d in dials)


def _reached_by_dial(t: Transcript) -> tuple[str, ...]:
    """Targets of the first <Dial> answered; none refused for its caller ID."""
    assert not any("13214" in note.text for note in t.of_type(Note)), t.format()
    answered = [d for d in t.of_type(Dialed) if d.outcome == "answered"]
    assert t.reached_human and answered, t.format()
    return answered[0].targets
