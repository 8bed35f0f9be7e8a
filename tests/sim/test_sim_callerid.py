"""A <Dial> to a phone number needs a caller ID the network accepts (Twilio error 13214)."""

from __future__ import annotations

import pytest

from ivr.sim import CallScript, DialOutcome, simulate_call
from ivr.sim.transcript import Dialed, Note
from tests.sim import test_sim_call
from tests.sim.test_sim_call import Start

start = test_sim_call.start  # the signature-checking voice app of the call engine's tests

SIP_DOMAIN = "crisis.sip.twilio.com"
OURS = "+15125550199"  # a number of the simulated account


def dial(
    attributes: str = "", noun: str = "<Number>+18005550100</Number>", action: str = "/twilio/dial"
) -> str:
    return f'<Dial action="{action}" {attributes}>{noun}</Dial>'


@pytest.mark.parametrize(
    ("script", "attributes", "outcome"),
    [
        # A caller with a phone number: it passes through, no callerId needed.
        (CallScript(), "", "completed"),
        # Over a SIP domain the From is a SIP URI: refused without a callerId...
        (CallScript(sip_domain=SIP_DOMAIN), "", "failed"),
        # ...accepted with one of the account's numbers.
        (CallScript(sip_domain=SIP_DOMAIN), f'callerId="{OURS}"', "completed"),
        (CallScript(from_number="anonymous"), "", "failed"),
        (CallScript(from_number="anonymous"), f'callerId="{OURS}"', "completed"),
        # The called number is a valid callerId too; a stranger's number is not.
        (CallScript(from_number="anonymous"), 'callerId="+18885550988"', "completed"),
        (CallScript(from_number="anonymous"), 'callerId="+12125550123"', "failed"),
        (CallScript(), 'callerId="sip:me@example.org"', "failed"),
    ],
)
async def test_dialing_a_number_needs_a_valid_caller_id(
    start: Start, script: CallScript, attributes: str, outcome: str
) -> None:
    app, cfg = await start({"/twilio/voice": lambda h: dial(attributes),
                            "/twilio/dial": lambda h: "<Hangup/>"}, caller_ids=(OURS,))
    transcript = await simulate_call(cfg, script)
    [action] = app.to("/twilio/dial")
    assert action.form["DialCallStatus"] == outcome
    (dialed,) = transcript.of_type(Dialed)
    assert dialed.outcome == ("answered" if outcome == "completed" else "failed")
    assert transcript.reached_human is (outcome == "completed")
    if outcome == "failed":
        assert any("13214" in note.text for note in transcript.of_type(Note))
    # The reason given never shows the caller's address.
    assert "+15125550142" not in transcript.format()


async def test_a_sip_endpoint_takes_any_caller_id(start: Start) -> None:
    app, cfg = await start({
        "/twilio/voice": lambda h: dial(noun="<Sip>sip:ben@tx-crisis.example.org</Sip>"),
        "/twilio/dial": lambda h: "<Hangup/>",
    })
    transcript = await simulate_call(cfg, CallScript(sip_domain=SIP_DOMAIN))
    assert app.to("/twilio/dial")[0].form["DialCallStatus"] == "completed"
    assert transcript.reached_human


async def test_a_refused_dial_leaves_the_scripted_party_for_the_next_one(start: Start) -> None:
    app, cfg = await start({
        "/twilio/voice": lambda h: dial(),
        "/twilio/dial": lambda h: dial(f'callerId="{OURS}"', action="/twilio/again"),
        "/twilio/again": lambda h: "<Hangup/>",
    }, caller_ids=(OURS,))
    script = CallScript(from_number="anonymous", dial_outcomes=(DialOutcome("busy"),))
    await simulate_call(cfg, script)
    statuses = [h.form["DialCallStatus"] for h in app.to("/twilio/dial") + app.to("/twilio/again")]
    assert statuses == ["failed", "busy"]
