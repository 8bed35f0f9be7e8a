"""Where the simulator follows Twilio's documents: a conference's wait URL that
fails or uses a verb it may not, the <Dial> action after a conference, and
ws:// stream URLs."""

from __future__ import annotations

import pytest
from aiohttp import web

from ivr.sim import CallScript, MediaStreams, default_handlers, simulate_call
from ivr.sim.media import refused_stream_url
from ivr.sim.transcript import Heard, HungUp, OnHold, StreamFailed, TwimlWarning
from tests.sim import test_sim_call
from tests.sim.test_sim_call import Hit, Start, heard, ok

CONFERENCE = ('<Dial action="/twilio/after-conf"><Conference waitUrl="/twilio/hold" '
              'startConferenceOnEnter="false">room-1</Conference></Dial>')

voice_app = test_sim_call.start  # the fixture, under this module's name


def after_conf(h: Hit) -> str:
    return f"<Say>Out of the conference: {h.form['DialCallStatus']}.</Say><Hangup/>"


async def test_a_failing_wait_url_ends_the_dial_instead_of_holding_in_silence(
    voice_app: Start,
) -> None:
    app, cfg = await voice_app({
        "/twilio/voice": lambda h: CONFERENCE,
        "/twilio/hold": lambda h: web.Response(status=500),
        "/twilio/after-conf": after_conf,
        "/twilio/status": ok,
    })
    t = await simulate_call(cfg, CallScript(hold_patience=120))
    # The conference is not established: the caller leaves the <Dial> at once,
    # and the action decides what happens next.
    [after] = app.to("/twilio/after-conf")
    assert after.form["DialCallStatus"] == "failed"
    assert after.form["CallStatus"] == "in-progress"
    assert heard(t) == ["Out of the conference: failed."]
    assert not t.of_type(OnHold)
    assert t.total_seconds < 10


async def test_hangup_in_a_wait_document_is_error_13238(voice_app: Start) -> None:
    app, cfg = await voice_app({
        "/twilio/voice": lambda h: CONFERENCE,
        "/twilio/hold": lambda h: "<Say>Goodbye.</Say><Hangup/>",
        "/twilio/after-conf": after_conf,
        "/twilio/status": ok,
    })
    t = await simulate_call(cfg, CallScript(hold_patience=120))
    [warning] = [w for w in t.of_type(TwimlWarning) if w.message.startswith("13238")]
    assert "<Hangup> is not allowed" in warning.message
    # Not a hang-up by the server: the <Dial> failed and its action took over.
    assert app.to("/twilio/after-conf")[0].form["DialCallStatus"] == "failed"
    assert t.of_type(HungUp)[-1].reason == "<Hangup>"
    assert [h.text for h in t.of_type(Heard)][-1] == "Out of the conference: failed."


async def test_the_dial_action_after_a_conference_says_answered(voice_app: Start) -> None:
    app, cfg = await voice_app({
        "/twilio/voice": lambda h: CONFERENCE,
        "/twilio/hold": lambda h: '<Pause length="10"/>',
        "/twilio/after-conf": after_conf,
        "/twilio/status": ok,
    })
    await simulate_call(cfg, CallScript(hold_patience=30))
    [after] = app.to("/twilio/after-conf")
    assert after.form["DialCallStatus"] == "answered"
    assert "DialCallSid" not in after.form and "DialCallDuration" not in after.form


async def test_a_ws_stream_url_is_refused(voice_app: Start) -> None:
    app, cfg = await voice_app({
        "/twilio/voice": lambda h: (
            '<Connect action="/twilio/connected"><Stream url="ws://ivr.example.org/'
            'twilio/media"/></Connect>'
        ),
        "/twilio/connected": lambda h: "<Say>After the stream.</Say>",
        "/twilio/status": ok,
    })
    t = await simulate_call(cfg, CallScript(), handlers=default_handlers(media=MediaStreams()))
    [failed] = t.of_type(StreamFailed)
    assert "31922" in failed.reason and failed.status is None
    assert len(app.to("/twilio/connected")) == 1  # the <Connect> is over: its action


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("wss://ivr.example.org/twilio/media", False),
        ("ws://ivr.example.org/twilio/media", True),
        ("ws://10.0.0.7:8080/twilio/media", True),
        ("https://ivr.example.org/twilio/media", True),
        # The documented concession: local development servers on loopback.
        ("ws://127.0.0.1:8080/twilio/media", False),
        ("ws://127.8.0.1/twilio/media", False),
        ("ws://localhost:8080/twilio/media", False),
        ("ws://[::1]:8080/twilio/media", False),
    ],
)
def test_only_wss_streams_but_on_loopback(url: str, refused: bool) -> None:
    assert (refused_stream_url(url) is not None) == refused
