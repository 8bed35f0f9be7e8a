"""The call engine against a tiny Twilio voice app that checks every signature."""

from __future__ import annotations

import asyncio
import io
import re
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from twilio.request_validator import RequestValidator

from ivr.sim import CallScript, DialOutcome, Press, Silence, SimConfig, Speak, simulate_call
from ivr.sim.transcript import (
    Dialed,
    FallbackUsed,
    Heard,
    HungUp,
    Played,
    Pressed,
    Silent,
    Transcript,
)

TOKEN = "sim-test-auth-token"
PUBLIC = "https://ivr.example.org"
SID = re.compile(r"^CA[0-9a-f]{32}$")


@dataclass
class Hit:
    method: str
    path: str  # path and query as received
    form: dict[str, str]
    headers: dict[str, str]
    valid: bool


Reply = str | web.StreamResponse
Route = Callable[[Hit], Reply | Awaitable[Reply]]


def twiml(body: str) -> web.Response:
    return web.Response(
        text=f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>',
        content_type="text/xml",
    )


def wav_bytes(seconds: float) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * int(8000 * seconds))
    return buffer.getvalue()


@dataclass
class VoiceApp:
    """A Twilio voice application as the server under test would be: it
    answers 403 to anything not signed for PUBLIC with TOKEN."""

    routes: dict[str, Route]
    hits: list[Hit] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        form = {k: str(v) for k, v in (await request.post()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        valid = RequestValidator(TOKEN).validate(PUBLIC + request.raw_path, form, signature)
        hit = Hit(request.method, request.raw_path, form, dict(request.headers), valid)
        self.hits.append(hit)
        if not valid:
            return web.Response(status=403)
        route = self.routes.get(request.path)
        if route is None:
            return web.Response(status=404)
        reply = route(hit)
        if not isinstance(reply, str | web.StreamResponse):
            reply = await reply
        return twiml(reply) if isinstance(reply, str) else reply

    def to(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path.split("?")[0] == path]


Start = Callable[..., Awaitable[tuple[VoiceApp, SimConfig]]]


@pytest.fixture
def start(aiohttp_server: AiohttpServer) -> Start:
    async def go(routes: dict[str, Route], **overrides: object) -> tuple[VoiceApp, SimConfig]:
        app = VoiceApp(routes)
        web_app = web.Application()
        web_app.router.add_route("*", "/{tail:.*}", app.handle)
        server = await aiohttp_server(web_app)
        settings: dict[str, object] = {
            "server_url": str(server.make_url("/")).rstrip("/"),
            "public_url": PUBLIC,
            "auth_token": TOKEN,
            **overrides,
        }
        return app, SimConfig(**settings)  # type: ignore[arg-type]

    return go


def heard(transcript: Transcript) -> list[str]:
    return [e.text for e in transcript.of_type(Heard)]


def ok(_: Hit) -> web.Response:
    return web.Response(text="")


async def test_gather_press_posts_digits_to_action(start: Start) -> None:
    app, cfg = await start(
        {
            "/twilio/voice": lambda h: (
                '<Gather action="/twilio/menu" numDigits="1">'
                "<Say>Thank you for calling. Press 1 for Spanish, 2 for English.</Say>"
                "</Gather><Say>We did not get your choice.</Say>"
            ),
            "/twilio/menu": lambda h: f"<Say>You pressed {h.form['Digits']}.</Say><Hangup/>",
            "/twilio/status": ok,
        }
    )
    transcript = await simulate_call(cfg, CallScript(inputs=(Press("2"),)))

    assert all(h.valid for h in app.hits)
    assert heard(transcript) == [
        "Thank you for calling. Press 1 for Spanish, 2 for English.",
        "You pressed 2.",
    ]
    assert [e.digits for e in transcript.of_type(Pressed)] == ["2"]
    (voice,) = app.to("/twilio/voice")
    (menu,) = app.to("/twilio/menu")
    assert menu.form["Digits"] == "2"
    assert menu.form["FinishedOnKey"] == ""
    # What Twilio sends on every webhook of an inbound call
    assert SID.match(voice.form["CallSid"]) and menu.form["CallSid"] == voice.form["CallSid"]
    assert voice.form["CallStatus"] == "ringing" and menu.form["CallStatus"] == "in-progress"
    assert voice.form["AccountSid"] == cfg.account_sid
    assert voice.form["Direction"] == "inbound"
    assert voice.form["ApiVersion"] == "2010-04-01"
    assert voice.form["From"] == voice.form["Caller"] == "+15125550142"
    assert voice.form["To"] == voice.form["Called"] == "+18885550988"
    assert (voice.form["FromState"], voice.form["FromCity"], voice.form["FromZip"]) == (
        "TX", "AUSTIN", "78701",
    )
    assert voice.form["CallerState"] == "TX" and voice.form["FromCountry"] == "US"
    assert voice.headers["User-Agent"].startswith("TwilioProxy")
    assert transcript.hung_up_by == "server"
    assert transcript.call_sid == voice.form["CallSid"]


async def test_gather_silence_falls_through_to_next_verb(start: Start) -> None:
    app, cfg = await start(
        {
            "/twilio/voice": lambda h: (
                '<Gather action="/twilio/menu"><Say>Press 1.</Say></Gather>'
                "<Say>Connecting you to a counselor.</Say>"
            ),
            "/twilio/status": ok,
        }
    )
    transcript = await simulate_call(cfg, CallScript(inputs=(Silence(),)))

    assert app.to("/twilio/menu") == []
    assert heard(transcript) == ["Press 1.", "Connecting you to a counselor."]
    (silence,) = transcript.of_type(Silent)
    assert silence.seconds == 5.0  # Twilio's default Gather timeout
    assert transcript.hung_up_by == "server"


async def test_running_out_of_inputs_means_silence(start: Start) -> None:
    _app, cfg = await start(
        {"/twilio/voice": lambda h: '<Gather timeout="3"/><Say>Still there?</Say>'}
    )
    transcript = await simulate_call(cfg, CallScript())
    assert transcript.of_type(Silent)[0].seconds == 3.0
    assert heard(transcript) == ["Still there?"]


@pytest.mark.parametrize(
    ("keys", "attributes", "expected"),
    [
        ("12#", "", {"Digits": "12", "FinishedOnKey": "#"}),
        ("123", 'numDigits="2"', {"Digits": "12", "FinishedOnKey": ""}),
        ("45", "", {"Digits": "45", "FinishedOnKey": ""}),  # submitted after the timeout
        ("9*", 'finishOnKey="*"', {"Digits": "9", "FinishedOnKey": "*"}),
        ("#", "", None),  # only finishOnKey: no input, falls through
    ],
)
async def test_digit_collection(
    start: Start, keys: str, attributes: str, expected: dict[str, str] | None
) -> None:
    app, cfg = await start(
        {
            "/twilio/voice": lambda h: (
                f'<Gather action="/twilio/got" {attributes}/><Say>none</Say>'
            ),
            "/twilio/got": lambda h: "<Say>got it</Say>",
        }
    )
    transcript = await simulate_call(cfg, CallScript(inputs=(Press(keys),)))
    hits = app.to("/twilio/got")
    if expected is None:
        assert hits == [] and heard(transcript) == ["none"]
    else:
        assert len(hits) == 1
        assert {k: hits[0].form[k] for k in expected} == expected
        assert heard(transcript) == ["got it"]


async def test_action_on_empty_result_requests_action_without_digits(start: Start) -> None:
    app, cfg = await start(
        {
            "/twilio/voice": lambda h: (
                '<Gather action="/twilio/menu" actionOnEmptyResult="true"/><Say>unreached</Say>'
            ),
            "/twilio/menu": lambda h: "<Say>No choice, connecting you.</Say>",
        }
    )
    transcript = await simulate_call(cfg, CallScript(inputs=(Silence(),)))
    (menu,) = app.to("/twilio/menu")
    assert "Digits" not in menu.form
    assert heard(transcript) == ["No choice, connecting you."]


async def test_gather_without_action_posts_to_the_current_document(start: Start) -> None:
    def voice(hit: Hit) -> str:
        if "Digits" in hit.form:
            return f"<Say>again with {hit.form['Digits']}</Say>"
        return "<Gather numDigits=\"1\"/>"

    app, cfg = await start({"/twilio/voice": voice})
    transcript = await simulate_call(cfg, CallScript(inputs=(Press("7"),)))
    assert [h.form.get("Digits") for h in app.to("/twilio/voice")] == [None, "7"]
    assert heard(transcript) == ["again with 7"]


async def test_barge_in_cuts_the_prompt(start: Start) -> None:
    _app, cfg = await start(
        {
            "/twilio/voice": lambda h: (
                '<Gather action="/twilio/menu" numDigits="1">'
                "<Say>" + "word " * 50 + "</Say><Say>second prompt</Say></Gather>"
            ),
            "/twilio/menu": lambda h: "<Hangup/>",
        }
    )
    script = CallScript(inputs=(Press("1", delay=2.0, barge_in=True),))
    transcript = await simulate_call(cfg, script)
    first, *rest = transcript.of_type(Heard)
    assert first.interrupted and rest == []
    assert transcript.of_type(Pressed)[0].at == pytest.approx(2.0)


async def test_speech_gather_sends_speech_result(start: Start) -> None:
    app, cfg = await start(
        {
            "/twilio/voice": lambda h: (
                '<Gather input="speech dtmf" action="/twilio/speech" speechTimeout="auto">'
                "<Say>Tell us how we can help.</Say></Gather>"
            ),
            "/twilio/speech": lambda h: "<Hangup/>",
        }
    )
    await simulate_call(cfg, CallScript(inputs=(Speak("I am a veteran"),)))
    (hit,) = app.to("/twilio/speech")
    assert hit.form["SpeechResult"] == "I am a veteran"
    assert float(hit.form["Confidence"]) > 0


async def test_redirect_absolute_public_url_is_mapped_and_signed(start: Start) -> None:
    app, cfg = await start(
        {
            "/twilio/voice": lambda h: f"<Redirect>{PUBLIC}/twilio/step?n=2&amp;x=a%20b</Redirect>",
            "/twilio/step": lambda h: '<Redirect method="GET">/twilio/get-step</Redirect>',
            "/twilio/get-step": lambda h: "<Say>Arrived.</Say>",
        }
    )
    transcript = await simulate_call(cfg, CallScript())
    assert all(h.valid for h in app.hits)
    (step,) = app.to("/twilio/step")
    assert step.path == "/twilio/step?n=2&x=a%20b"
    (get,) = app.to("/twilio/get-step")
    assert get.method == "GET" and "CallSid=CA" in get.path  # parameters go in the query
    assert heard(transcript) == ["Arrived."]
    shown = transcript.format(show_requests=True)
    assert "GET /twilio/get-step -> 200" in shown
    assert "5550142" not in shown  # the caller's number, part of the GET query


@pytest.mark.parametrize(
    ("behaviour", "status", "human"),
    [
        (DialOutcome("answer", ring_seconds=6, talk_seconds=42), "completed", True),
        (DialOutcome("busy"), "busy", False),
        (DialOutcome("no-answer"), "no-answer", False),
        (DialOutcome("failed"), "failed", False),
        (DialOutcome("answer", ring_seconds=25), "no-answer", False),  # rings past timeout
    ],
)
async def test_dial_action_gets_dial_call_status(
    start: Start, behaviour: DialOutcome, status: str, human: bool
) -> None:
    app, cfg = await start(
        {
            "/twilio/voice": lambda h: (
                '<Dial action="/twilio/dial-done" timeout="20">'
                "<Number>+15125550100</Number></Dial><Say>unreachable</Say>"
            ),
            "/twilio/dial-done": lambda h: f"<Say>Dial ended {h.form['DialCallStatus']}.</Say>",
        }
    )
    transcript = await simulate_call(cfg, CallScript(dial_outcomes=(behaviour,)))
    (done,) = app.to("/twilio/dial-done")
    assert done.form["DialCallStatus"] == status
    assert SID.match(done.form["DialCallSid"]) and done.form["DialCallSid"] != done.form["CallSid"]
    assert heard(transcript) == [f"Dial ended {status}."]
    assert transcript.reached_human is human
    (dialed,) = transcript.of_type(Dialed)
    assert dialed.targets == ("+15125550100",)
    if human:
        assert done.form["DialCallDuration"] == "42"
        assert dialed.ring_seconds == 6 and dialed.talk_seconds == 42
    else:
        assert "DialCallDuration" not in done.form
    if status == "no-answer":
        assert dialed.ring_seconds == 20  # rang for the whole Dial timeout


async def test_dial_without_action_continues_with_next_verb(start: Start) -> None:
    _app, cfg = await start(
        {"/twilio/voice": lambda h: "<Dial>+15125550100</Dial><Say>The call has ended.</Say>"}
    )
    transcript = await simulate_call(
        cfg, CallScript(dial_outcomes=(DialOutcome("answer", 3, 10),))
    )
    assert heard(transcript) == ["The call has ended."]
    assert transcript.reached_human
    assert "dialed +15125550100 -> answered" in transcript.format()


async def test_successive_dials_use_successive_outcomes(start: Start) -> None:
    app, cfg = await start(
        {
            "/twilio/voice": lambda h: (
                '<Dial action="/twilio/t2">+15125550100</Dial>'
            ),
            "/twilio/t2": lambda h: '<Dial action="/twilio/t3">+15125550101</Dial>',
            "/twilio/t3": lambda h: "<Hangup/>",
        }
    )
    script = CallScript(dial_outcomes=(DialOutcome("busy"), DialOutcome("answer")))
    transcript = await simulate_call(cfg, script)
    assert [d.outcome for d in transcript.of_type(Dialed)] == ["busy", "answered"]
    assert app.to("/twilio/t2")[0].form["DialCallStatus"] == "busy"
    assert app.to("/twilio/t3")[0].form["DialCallStatus"] == "completed"


async def test_caller_hangs_up_during_dial(start: Start) -> None:
    app, cfg = await start(
        {
            "/twilio/voice": lambda h: '<Dial action="/twilio/dial-done">+15125550100</Dial>',
            "/twilio/dial-done": lambda h: "<Say>never heard</Say>",
            "/twilio/status": ok,
        }
    )
    script = CallScript(hangup_after=30, dial_outcomes=(DialOutcome("answer", 4, 60),))
    transcript = await simulate_call(cfg, script)
    (done,) = app.to("/twilio/dial-done")
    assert done.form["DialCallStatus"] == "completed"
    assert done.form["CallStatus"] == "completed"
    assert heard(transcript) == []  # TwiML returned after the hangup is ignored
    assert transcript.hung_up_by == "caller"
    assert transcript.total_seconds == 30
    (status,) = app.to("/twilio/status")
    assert status.form["CallDuration"] == "30"


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (web.Response(status=500, text="boom"), "11200"),
        (web.Response(text="<Response><Say>oops", content_type="text/xml"), "12100"),
        (web.Response(text="<Response><Sya>x</Sya></Response>", content_type="text/xml"), "12100"),
        (web.json_response({"twiml": False}), "12300"),
    ],
)
async def test_fallback_url_on_failure(start: Start, reply: web.Response, code: str) -> None:
    app, cfg = await start(
        {
            "/twilio/voice": lambda h: reply,
            "/twilio/fallback": lambda h: "<Dial>+18005550199</Dial>",
            "/twilio/status": ok,
        }
    )
    transcript = await simulate_call(cfg, CallScript())
    (voice,) = app.to("/twilio/voice")
    (fallback,) = app.to("/twilio/fallback")
    assert fallback.valid
    assert fallback.form["ErrorCode"] == code
    assert fallback.form["ErrorUrl"] == f"{PUBLIC}/twilio/voice"
    assert fallback.form["CallSid"] == voice.form["CallSid"]
    assert transcript.fallback_used
    assert transcript.reached_human  # the fallback's Dial was answered
    assert transcript.of_type(FallbackUsed)[0].error_code == int(code)


async def test_fallback_on_timeout(start: Start) -> None:
    async def slow(hit: Hit) -> str:
        await asyncio.sleep(2)
        return "<Say>too late</Say>"

    app, cfg = await start(
        {"/twilio/voice": slow, "/twilio/fallback": lambda h: "<Say>Fallback here.</Say>"},
        request_timeout=0.2,
    )
    transcript = await simulate_call(cfg, CallScript())
    assert app.to("/twilio/fallback")[0].form["ErrorCode"] == "11205"
    assert heard(transcript) == ["Fallback here."]


async def test_fallback_also_used_for_action_urls(start: Start) -> None:
    app, cfg = await start(
        {
            "/twilio/voice": lambda h: '<Gather action="/twilio/broken" numDigits="1"/>',
            "/twilio/broken": lambda h: web.Response(status=503),
            "/twilio/fallback": lambda h: "<Say>Recovered.</Say>",
        }
    )
    transcript = await simulate_call(cfg, CallScript(inputs=(Press("1"),)))
    (fallback,) = app.to("/twilio/fallback")
    assert fallback.form["ErrorUrl"] == f"{PUBLIC}/twilio/broken"
    assert fallback.form["Digits"] == "1"  # same parameters as the failed request
    assert heard(transcript) == ["Recovered."]


async def test_fallback_failing_too_plays_application_error(start: Start) -> None:
    app, cfg = await start(
        {
            "/twilio/voice": lambda h: web.Response(status=500),
            "/twilio/fallback": lambda h: web.Response(status=500),
        }
    )
    transcript = await simulate_call(cfg, CallScript())
    assert len(app.to("/twilio/fallback")) == 1
    assert heard(transcript) == ["We are sorry, an application error has occurred. Goodbye."]
    assert transcript.hung_up_by == "twilio"
    assert not transcript.reached_human


async def test_wrong_token_is_rejected_by_the_server(start: Start) -> None:
    app, cfg = await start({"/twilio/voice": lambda h: "<Say>hi</Say>"}, auth_token="wrong")
    transcript = await simulate_call(cfg, CallScript())
    assert [h.valid for h in app.hits] == [False, False, False]  # voice, fallback, status
    assert [r.status for r in transcript.requests] == [403, 403, 403]
    assert transcript.hung_up_by == "twilio"


async def test_loop_guard_stops_endless_redirects(start: Start) -> None:
    app, cfg = await start(
        {"/twilio/voice": lambda h: "<Redirect>/twilio/voice</Redirect>", "/twilio/status": ok}
    )
    transcript = await simulate_call(cfg, CallScript())
    assert len(app.to("/twilio/voice")) == 100
    assert transcript.loop_detected
    assert transcript.hung_up_by == "simulator"
    assert len(app.to("/twilio/status")) == 1  # the call still closes normally


async def test_duplicate_callbacks_send_each_action_twice(start: Start) -> None:
    counter = {"n": 0}

    def menu(hit: Hit) -> str:
        counter["n"] += 1
        return f"<Say>Answer number {counter['n']}.</Say>"

    app, cfg = await start(
        {
            "/twilio/voice": lambda h: '<Gather action="/twilio/menu" numDigits="1"/>',
            "/twilio/menu": menu,
            "/twilio/status": ok,
        }
    )
    script = CallScript(inputs=(Press("1"),), duplicate_callbacks=True)
    transcript = await simulate_call(cfg, script)
    first, second = app.to("/twilio/menu")
    assert first.form == second.form
    token = "I-Twilio-Idempotency-Token"
    assert first.headers[token] == second.headers[token]
    assert len(app.to("/twilio/voice")) == 1  # the voice webhook is not a callback
    assert len(app.to("/twilio/status")) == 2
    # Twilio goes on with the answer to the retry; a non-idempotent server shows up
    assert heard(transcript) == ["Answer number 2."]
    assert "duplicate gather action was answered differently" in transcript.format()


async def test_status_callback_closes_the_call(start: Start) -> None:
    app, cfg = await start(
        {
            "/twilio/voice": lambda h: '<Say>Hello.</Say><Pause length="4"/><Hangup/>',
            "/twilio/status": ok,
        }
    )
    transcript = await simulate_call(cfg, CallScript())
    (status,) = app.to("/twilio/status")
    assert status.valid
    assert status.form["CallStatus"] == "completed"
    assert status.form["CallSid"] == transcript.call_sid
    assert int(status.form["CallDuration"]) == round(transcript.total_seconds)
    assert transcript.total_seconds > 4
    assert transcript.final_status == "completed"


async def test_first_reject_leaves_the_call_unanswered(start: Start) -> None:
    app, cfg = await start(
        {"/twilio/voice": lambda h: '<Reject reason="busy"/>', "/twilio/status": ok}
    )
    transcript = await simulate_call(cfg, CallScript())
    (status,) = app.to("/twilio/status")
    assert status.form["CallStatus"] == "busy"
    assert status.form["CallDuration"] == "0"
    assert transcript.final_status == "busy"


async def test_play_measures_wav_fetched_from_the_server(start: Start) -> None:
    app, cfg = await start(
        {
            "/twilio/voice": lambda h: (
                '<Play loop="2">/prompts/en/welcome.wav</Play>'
                "<Play>/prompts/en/missing.wav</Play><Say>After the prompts.</Say>"
            ),
            "/prompts/en/welcome.wav": lambda h: web.Response(
                body=wav_bytes(1.5), content_type="audio/wav"
            ),
        }
    )
    transcript = await simulate_call(cfg, CallScript())
    played, missing = transcript.of_type(Played)
    assert played.seconds == pytest.approx(1.5) and played.repeat == 2
    assert played.url == f"{PUBLIC}/prompts/en/welcome.wav"
    assert missing.error == "HTTP 404" and missing.seconds is None
    assert heard(transcript) == ["After the prompts."]  # a failed Play does not stop the call
    assert transcript.of_type(Heard)[0].at == pytest.approx(3.0)
    assert len(app.to("/prompts/en/welcome.wav")) == 1  # fetched once, played twice
    assert app.to("/prompts/en/welcome.wav")[0].valid


async def test_carrier_location(start: Start) -> None:
    app, cfg = await start({"/twilio/voice": lambda h: "<Hangup/>"})
    script = CallScript(
        from_number="+12065550123",
        from_state="OR",
        stir_verstat="TN-Validation-Passed-A",
    )
    await simulate_call(cfg, script)
    (voice,) = app.to("/twilio/voice")
    assert voice.form["FromState"] == "OR" and voice.form["CallerState"] == "OR"
    assert voice.form["StirVerstat"] == "TN-Validation-Passed-A"
    assert not any(name.startswith("Sip") for name in voice.form)


async def test_a_call_through_a_sip_domain(start: Start) -> None:
    app, cfg = await start({"/twilio/voice": lambda h: "<Hangup/>"})
    script = CallScript(
        from_number="+12065550123",
        sip_domain="crisis.sip.twilio.com",
        sip_headers={"X-Geo-State": "OR"},
    )
    await simulate_call(cfg, script)
    (voice,) = app.to("/twilio/voice")
    assert voice.valid
    assert voice.form["To"] == "sip:+18885550988@crisis.sip.twilio.com"
    assert voice.form["From"] == "sip:+12065550123@crisis.sip.twilio.com"
    assert voice.form["SipDomain"] == "crisis.sip.twilio.com"
    assert voice.form["SipDomainSid"].startswith("SD") and voice.form["SipCallId"]
    assert voice.form["SipHeader_X-Geo-State"] == "OR"
    # Twilio derives geographic data from phone numbers: none for SIP URIs.
    assert not any(name.startswith(("FromState", "FromCity", "ToState")) for name in voice.form)


async def test_conference_without_counselors_holds_until_the_caller_gives_up(
    start: Start,
) -> None:
    app, cfg = await start(
        {
            "/twilio/voice": lambda h: (
                '<Dial action="/twilio/after-conf"><Conference waitUrl="/twilio/hold">'
                "room-1</Conference></Dial>"
            ),
            "/twilio/hold": lambda h: "<Say>Please stay on the line.</Say><Pause length=\"20\"/>",
            "/twilio/after-conf": lambda h: "<Say>ignored</Say>",
        }
    )
    transcript = await simulate_call(cfg, CallScript(hold_patience=90))
    assert len(app.to("/twilio/hold")) == 5  # a 21 s wait document, repeated for 90 s
    # TwiML Voice <Dial>: "answered" after a conference, without DialCallSid or
    # DialCallDuration ("not sent after dialing a conference").
    after = app.to("/twilio/after-conf")[0].form
    assert after["DialCallStatus"] == "answered"
    assert "DialCallSid" not in after and "DialCallDuration" not in after
    assert not transcript.reached_human
    assert transcript.hung_up_by == "caller"
    assert transcript.total_seconds == pytest.approx(90)


async def test_transcript_format(start: Start) -> None:
    _app, cfg = await start(
        {
            "/twilio/voice": lambda h: (
                '<Gather action="/twilio/menu" numDigits="1"><Say>Thank you for calling.</Say>'
                "</Gather>"
            ),
            "/twilio/menu": lambda h: "<Dial>+15125550100</Dial>",
        }
    )
    transcript = await simulate_call(cfg, CallScript(inputs=(Press("2"),)))
    text = transcript.format()
    lines = text.splitlines()
    assert lines[0] == '   0.0s  heard [en-US] "Thank you for calling."'
    assert re.match(r"^\s+\d+\.\ds  pressed 2$", lines[1])
    assert "dialed +15125550100 -> answered" in lines[2]
    assert "reached a human: yes" in lines[-1]
    assert "+15125550142" not in text  # never the caller's number
    assert "POST /twilio/menu -> 200" in transcript.format(show_requests=True)
    assert transcript.of_type(HungUp)[-1].by == "server"


async def test_connect_stream_ends_at_once_then_requests_its_action(start: Start) -> None:
    app, cfg = await start(
        {
            "/twilio/voice": lambda h: (
                '<Connect action="/twilio/connected"><Stream url="wss://ivr.example.org/'
                'twilio/media"><Parameter name="token" value="t1"/></Stream></Connect>'
                "<Say>unreached</Say>"
            ),
            "/twilio/connected": lambda h: "<Say>After the stream.</Say>",
        }
    )
    transcript = await simulate_call(cfg, CallScript())
    assert len(app.to("/twilio/connected")) == 1
    assert heard(transcript) == ["After the stream."]
    assert "media stream wss://ivr.example.org/twilio/media" in transcript.format()


async def test_enqueue_wait_url_leave_requests_action(start: Start) -> None:
    _app, cfg = await start(
        {
            "/twilio/voice": lambda h: (
                '<Enqueue action="/twilio/dequeued" waitUrl="/twilio/queue-wait">crisis</Enqueue>'
            ),
            "/twilio/queue-wait": lambda h: "<Say>You are next.</Say><Leave/>",
            "/twilio/dequeued": lambda h: f"<Say>Queue result {h.form['QueueResult']}.</Say>",
        }
    )
    transcript = await simulate_call(cfg, CallScript())
    assert heard(transcript) == ["You are next.", "Queue result leave."]


async def test_caller_hanging_up_during_gather_requests_no_action(start: Start) -> None:
    app, cfg = await start(
        {
            "/twilio/voice": lambda h: (
                '<Gather action="/twilio/menu" timeout="10"><Say>Press 1.</Say></Gather>'
            ),
            "/twilio/menu": lambda h: "<Hangup/>",
            "/twilio/status": ok,
        }
    )
    transcript = await simulate_call(cfg, CallScript(inputs=(Press("1", delay=8),), hangup_after=4))
    assert app.to("/twilio/menu") == []
    assert transcript.hung_up_by == "caller" and transcript.total_seconds == 4
    assert app.to("/twilio/status")[0].form["CallDuration"] == "4"
