"""Warm transfers in a TwilioWorld, against a tiny crisis-center app in this
file that plays the server's part: it puts the caller in a conference of
their own, places counselor legs through the REST API with the official
`twilio` async client, whispers, and joins the counselor who accepts."""

from __future__ import annotations

import argparse
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from ivr.sim import CallScript, SimConfig, simulate_call
from ivr.sim.counselors import (
    ApiError,
    Behaviour,
    Busy,
    CounselorScript,
    Fails,
    NoAnswer,
    parse_assignment,
    parse_behaviour,
)
from ivr.sim.errors import ScriptError
from ivr.sim.options import add_call_arguments, world_from_args
from ivr.sim.transcript import (
    ConferenceEvent,
    CounselorJoined,
    Dialed,
    Heard,
    HungUp,
    LegEvent,
    Request,
    Transcript,
)
from ivr.sim.world import TwilioWorld

# aiohttp 3.14 deprecates the BasicAuth object twilio's async client still uses.
pytestmark = [
    pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning"),
]

ACCOUNT = "AC" + "7" * 32
TOKEN = "world-test-auth-token"
PUBLIC = "https://ivr.example.org"
LINE = "+18885550988"
BACKUP = "+18005550199"
A, B, C, D, E = (f"+1512555010{i}" for i in range(5))
SCALE = 0.01  # real seconds per simulated second (the default): a 20 s ring lasts 0.2 s


def twiml(body: str) -> web.Response:
    return web.Response(text=f"<Response>{body}</Response>", content_type="text/xml")


@dataclass
class Hit:
    path: str  # path and query, as received
    form: dict[str, str]
    valid: bool


@dataclass
class Center:
    """The server's part: a queue of counselors tried in order, then the backup."""

    world: TwilioWorld
    client: Client
    counselors: list[str]
    counselor_conference: str = 'startConferenceOnEnter="true" endConferenceOnExit="true"'
    hits: list[Hit] = field(default_factory=list)
    offers: list[str] = field(default_factory=list)  # leg sids, in order
    refused: list[tuple[str, int]] = field(default_factory=list)
    answered: set[str] = field(default_factory=set)  # offers whose whisper got an answer
    caller_sid: str = ""
    caller_seen_by_api: str = ""
    give_up: str = "backup"  # or "hangup": end the caller's call instead

    def to(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path.split("?")[0] == path]
    async def place_next(self) -> None:
        while self.counselors:
            target = self.counselors.pop(0)
            offer = len(self.offers)
            try:
                leg = await self.client.calls.create_async(
                    to=target,
                    from_=LINE,
                    url=f"{PUBLIC}/twilio/whisper?offer={offer}",
                    method="POST",
                    status_callback=f"{PUBLIC}/twilio/leg-status?offer={offer}",
                    status_callback_method="POST",
                    status_callback_event=["initiated", "ringing", "answered", "completed"],
                    timeout=20,
                )
            except TwilioRestException as exc:
                self.refused.append((target, exc.code))
                continue  # other API errors: move on to the next counselor
            self.offers.append(leg.sid)
            return
        if self.give_up == "hangup":
            await self.client.calls(self.caller_sid).update_async(status="completed")
            return
        # Nobody left: send the caller to the backup line.
        await self.client.calls(self.caller_sid).update_async(
            twiml=f"<Response><Dial><Number>{BACKUP}</Number></Dial></Response>"
        )

    async def handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        valid = RequestValidator(TOKEN).validate(PUBLIC + request.raw_path, form, signature)
        self.hits.append(Hit(request.raw_path, form, valid))
        if not valid:
            return web.Response(status=403)
        path = request.path
        if path == "/twilio/voice":
            self.caller_sid = form["CallSid"]
            return twiml(
                '<Dial action="/twilio/after-dial"><Conference waitUrl="/twilio/hold" '
                'waitMethod="POST" startConferenceOnEnter="false" endConferenceOnExit="true" '
                'statusCallback="/twilio/conference" statusCallbackEvent="start end join leave">'
                f"call-{form['CallSid']}</Conference></Dial>"
            )
        if path == "/twilio/hold":
            return twiml("<Say>Please stay on the line.</Say><Pause length=\"4\"/>")
        if path == "/twilio/conference":
            event = form["StatusCallbackEvent"]
            if event == "participant-join" and form["CallSid"] == self.caller_sid:
                seen = await self.client.calls(self.caller_sid).fetch_async()
                self.caller_seen_by_api = str(seen.status)
                await self.place_next()
            return web.Response(text="")
        if path == "/twilio/whisper":
            offer = request.query["offer"]
            return twiml(
                f'<Gather numDigits="1" timeout="5" action="/twilio/whisper-answer?offer={offer}">'
                "<Say>Caller in Spanish, needs a veteran line, Texas, waiting. "
                "Press 1 to accept.</Say></Gather><Say>No answer.</Say><Hangup/>"
            )
        if path == "/twilio/whisper-answer":
            self.answered.add(request.query["offer"])
            if form.get("Digits") == "1":
                return twiml(
                    f"<Dial><Conference {self.counselor_conference}>"
                    f"call-{self.caller_sid}</Conference></Dial>"
                )
            await self.place_next()
            return twiml("<Say>Thank you, goodbye.</Say><Hangup/>")
        if path == "/twilio/leg-status":
            missed = form["CallStatus"] in ("busy", "no-answer", "failed")
            hung_up = (
                form["CallStatus"] == "completed" and request.query["offer"] not in self.answered
            )
            if missed or hung_up:
                await self.place_next()
            return web.Response(text="")
        if path == "/twilio/status":
            # The caller is gone: stop every offer still ringing.
            for sid in self.offers:
                leg = await self.client.calls(sid).fetch_async()
                if leg.status in ("queued", "ringing"):
                    await self.client.calls(sid).update_async(status="canceled")
            return web.Response(text="")
        if path == "/twilio/after-dial":
            return twiml("<Say>Thank you for calling.</Say><Hangup/>")
        return web.Response(status=404)


Start = Callable[..., Awaitable[tuple[Center, SimConfig]]]


@pytest.fixture
async def start(aiohttp_server: AiohttpServer) -> AsyncIterator[Start]:
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def go(counselors: dict[str, Behaviour | list[Behaviour]]) -> tuple[Center, SimConfig]:
        world = TwilioWorld(counselors=counselors, time_scale=SCALE)
        await world.start()
        http = AsyncTwilioHttpClient()
        client = Client(ACCOUNT, TOKEN, http_client=http)
        client.api.base_url = world.api_url
        cleanups.append(http.close)
        cleanups.append(world.stop)
        center = Center(world, client, list(counselors))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", center.handle)
        server = await aiohttp_server(app)
        cfg = SimConfig(
            server_url=str(server.make_url("/")).rstrip("/"),
            public_url=PUBLIC,
            auth_token=TOKEN,
            account_sid=ACCOUNT,
        )
        return center, cfg

    yield go
    for cleanup in reversed(cleanups):
        await cleanup()


def leg_events(transcript: Transcript, target: str) -> list[str]:
    return [e.event for e in transcript.of_type(LegEvent) if e.target == target]


def statuses(center: Center, offer: int) -> list[str]:
    return [
        h.form["CallStatus"]
        for h in center.to("/twilio/leg-status")
        if h.path.endswith(f"offer={offer}")
    ]


async def test_counselor_accepts_and_talks_with_the_caller(start: Start) -> None:
    center, cfg = await start({A: CounselorScript(answer_after=2, talk_seconds=30)})
    transcript = await simulate_call(cfg, CallScript(), world=center.world)

    assert all(h.valid for h in center.hits)
    assert transcript.reached_human
    (joined,) = transcript.of_type(CounselorJoined)
    assert joined.who == A
    # The caller waited on hold, then talked for the counselor's 30 s.
    assert "Please stay on the line." in [e.text for e in transcript.of_type(Heard)]
    assert transcript.total_seconds > 30
    assert center.caller_seen_by_api == "in-progress"

    (leg,) = center.world.legs
    assert leg.final_status == "completed"
    assert statuses(center, 0) == ["initiated", "ringing", "in-progress", "completed"]
    final = center.to("/twilio/leg-status")[-1].form
    assert final["CallSid"] == leg.sid and final["Direction"] == "outbound-api"
    assert int(final["CallDuration"]) >= 30
    assert "ParentCallSid" not in final
    (whisper,) = center.to("/twilio/whisper")
    assert whisper.form["CallStatus"] == "in-progress"
    assert (whisper.form["To"], whisper.form["From"]) == (A, LINE)
    assert whisper.form["Direction"] == "outbound-api"
    (answer,) = center.to("/twilio/whisper-answer")
    assert answer.form["Digits"] == "1" and answer.form["CallSid"] == leg.sid

    events = [(h.form["StatusCallbackEvent"], h.form.get("CallSid")) for h in
              center.to("/twilio/conference")]
    assert events[:3] == [
        ("participant-join", center.caller_sid),
        ("participant-join", leg.sid),
        ("conference-start", None),
    ]
    assert events[-1] == ("conference-end", None)
    end = center.to("/twilio/conference")[-1].form
    assert end["ReasonConferenceEnded"] == "participant-with-end-conference-on-exit-left"
    assert end["CallSidEndingConference"] == leg.sid
    assert [e.event for e in transcript.of_type(ConferenceEvent)] == ["started", "ended"]

    # The counselor ended the conference: the caller's <Dial> action goes on.
    (after,) = center.to("/twilio/after-dial")
    assert after.form["DialCallStatus"] == "answered"  # after a conference
    assert "DialCallDuration" not in after.form
    assert transcript.of_type(Heard)[-1].text == "Thank you for calling."
    assert transcript.hung_up_by == "server"

    whisper_heard = [e.detail for e in transcript.of_type(LegEvent) if e.event == "heard"]
    assert whisper_heard and "Press 1 to accept." in whisper_heard[0]
    assert leg_events(transcript, A)[:3] == ["called", "ringing", "answered"]
    # Events appear in the caller's transcript in time order (requests are
    # stamped when sent and recorded when answered, so they are left out).
    times = [e.at for e in transcript.entries if not isinstance(e, Request)]
    assert times == sorted(times), transcript.format(show_requests=True)
    assert "+15125550142" not in transcript.format(show_requests=True)


async def test_declined_offer_moves_to_the_next_counselor(start: Start) -> None:
    center, cfg = await start(
        {A: CounselorScript(then="decline"), B: CounselorScript(talk_seconds=5)}
    )
    transcript = await simulate_call(cfg, CallScript(), world=center.world)

    assert [j.who for j in transcript.of_type(CounselorJoined)] == [B]
    first, second = center.world.legs
    assert (first.who, second.who) == (A, B)
    assert first.final_status == "completed" and "Hangup" in first.end_reason
    answers = center.to("/twilio/whisper-answer")
    assert [h.form["Digits"] for h in answers] == ["2", "1"]
    assert "pressed" in leg_events(transcript, A)
    assert statuses(center, 0)[-1] == "completed"
    assert second.final_status == "completed"


async def test_misses_and_api_errors_move_on_until_someone_accepts(start: Start) -> None:
    center, cfg = await start(
        {
            A: NoAnswer(),
            B: Busy(),
            C: Fails(),
            D: ApiError(),
            E: CounselorScript(talk_seconds=5),
        }
    )
    transcript = await simulate_call(cfg, CallScript(), world=center.world)

    assert [j.who for j in transcript.of_type(CounselorJoined)] == [E]
    assert [(leg.who, leg.final_status) for leg in center.world.legs] == [
        (A, "no-answer"), (B, "busy"), (C, "failed"), (E, "completed"),
    ]
    assert center.refused == [(D, 21215)]
    assert "refused by the API" in leg_events(transcript, D)
    assert statuses(center, 0) == ["initiated", "ringing", "no-answer"]
    assert statuses(center, 1) == ["initiated", "busy"]
    # The caller waited through a 20 s ring timeout before anyone answered.
    joined = transcript.of_type(CounselorJoined)[0]
    assert joined.at > 20


async def test_caller_hangs_up_while_a_counselor_rings(start: Start) -> None:
    center, cfg = await start({A: NoAnswer()})
    transcript = await simulate_call(cfg, CallScript(hangup_after=12), world=center.world)

    assert not transcript.reached_human
    assert transcript.hung_up_by == "caller"
    assert transcript.total_seconds == pytest.approx(12)
    (leg,) = center.world.legs
    assert leg.final_status == "canceled"
    assert statuses(center, 0) == ["initiated", "ringing", "canceled"]
    # The world ended the conference and requested the dial action as Twilio does.
    conference = [h.form["StatusCallbackEvent"] for h in center.to("/twilio/conference")]
    assert conference == ["participant-join", "participant-leave", "conference-end"]
    (after,) = center.to("/twilio/after-dial")
    assert after.form["DialCallStatus"] == "answered"  # after a conference
    status = center.to("/twilio/status")[0]
    assert status.form["CallStatus"] == "completed"
    # The cancel came after the hang-up, and the caller's transcript shows it.
    assert leg_events(transcript, A)[-1] == "canceled"
    canceled = next(e for e in transcript.of_type(LegEvent) if e.event == "canceled")
    assert canceled.at >= 12
    assert "server canceled" in canceled.detail


async def test_caller_hangs_up_while_talking(start: Start) -> None:
    center, cfg = await start({A: CounselorScript(talk_seconds=600)})
    transcript = await simulate_call(cfg, CallScript(hangup_after=40), world=center.world)

    assert transcript.reached_human
    assert transcript.hung_up_by == "caller"
    (leg,) = center.world.legs
    # The conference ended with the caller; the counselor's <Dial> is over.
    assert leg.final_status == "completed"
    assert leg.end_reason == "end of TwiML document"
    end = center.to("/twilio/conference")[-1].form
    assert end["StatusCallbackEvent"] == "conference-end"
    assert end["CallSidEndingConference"] == center.caller_sid
    assert int(center.to("/twilio/leg-status")[-1].form["CallDuration"]) < 600


async def test_server_sends_the_caller_to_the_backup_line(start: Start) -> None:
    center, cfg = await start({A: Busy(), B: ApiError(status=500, code=20500)})
    transcript = await simulate_call(cfg, CallScript(), world=center.world)

    assert center.refused == [(B, 20500)]
    (dialed,) = transcript.of_type(Dialed)
    assert dialed.targets == (BACKUP,)
    assert transcript.reached_human
    leave = next(h.form for h in center.to("/twilio/conference")
             if h.form["StatusCallbackEvent"] == "participant-leave")
    assert leave["ReasonParticipantLeft"] == "participant_updated_via_api"
    # A redirected call does not request its <Dial> action.
    assert center.to("/twilio/after-dial") == []
    # Once the call is over the API refuses to redirect it.
    with pytest.raises(TwilioRestException) as info:
        await center.client.calls(center.caller_sid).update_async(url=f"{PUBLIC}/twilio/x")
    assert (info.value.status, info.value.code) == (400, 21220)


async def test_counselor_hangs_up_mid_whisper(start: Start) -> None:
    center, cfg = await start({A: CounselorScript(then="hangup", press_delay=1)})
    transcript = await simulate_call(cfg, CallScript(), world=center.world)

    (leg,) = center.world.legs
    assert leg.final_status == "completed"
    assert "during the whisper" in leg.end_reason
    assert center.to("/twilio/whisper-answer") == []
    assert not transcript.of_type(CounselorJoined)
    # Nobody else to offer the call to: the server sent the caller to the backup.
    assert [d.targets for d in transcript.of_type(Dialed)] == [(BACKUP,)]


async def test_caller_lingers_then_hangs_up_when_the_counselor_leaves(start: Start) -> None:
    center, cfg = await start({A: CounselorScript(talk_seconds=20)})
    center.counselor_conference = 'startConferenceOnEnter="true"'  # the room outlives them
    transcript = await simulate_call(cfg, CallScript(), world=center.world)

    assert transcript.reached_human
    assert transcript.hung_up_by == "caller"
    assert "nobody left on the line" in transcript.of_type(HungUp)[-1].reason
    events = [h.form["StatusCallbackEvent"] for h in center.to("/twilio/conference")]
    assert events[-3:] == ["participant-leave", "participant-leave", "conference-end"]
    end = center.to("/twilio/conference")[-1].form
    assert end["ReasonConferenceEnded"] == "participant-with-end-conference-on-exit-left"
    assert end["CallSidEndingConference"] == center.caller_sid
    # The caller hung up: the action is requested, its TwiML ignored.
    assert len(center.to("/twilio/after-dial")) == 1
    assert "Thank you for calling." not in [e.text for e in transcript.of_type(Heard)]


async def test_server_hangs_up_the_caller_through_the_api(start: Start) -> None:
    center, cfg = await start({A: Busy()})
    center.give_up = "hangup"
    transcript = await simulate_call(cfg, CallScript(), world=center.world)

    assert transcript.hung_up_by == "server"
    assert transcript.final_status == "completed"
    assert center.to("/twilio/after-dial") == []
    assert center.to("/twilio/status")[0].form["CallStatus"] == "completed"
    leave = next(h.form for h in center.to("/twilio/conference")
                 if h.form["StatusCallbackEvent"] == "participant-leave")
    assert leave["CallSid"] == center.caller_sid


# -- options ---------------------------------------------------------------------------


def test_behaviours_parse() -> None:
    assert parse_behaviour("accept") == CounselorScript()
    assert parse_behaviour("accept:5") == CounselorScript(answer_after=5)
    assert parse_behaviour("accept:5:120") == CounselorScript(answer_after=5, talk_seconds=120)
    assert parse_behaviour("decline:2") == CounselorScript(answer_after=2, then="decline")
    assert parse_behaviour("silence") == CounselorScript(then="silence")
    assert parse_behaviour("hangup") == CounselorScript(then="hangup")
    assert parse_behaviour("no-answer") == NoAnswer()
    assert parse_behaviour("busy") == Busy()
    assert parse_behaviour("fail") == Fails()
    assert parse_behaviour("api-error") == ApiError()
    assert parse_behaviour("api-error:21216") == ApiError(code=21216)
    assert parse_behaviour("api-error:500") == ApiError(status=500, code=20500)
    assert parse_assignment("SIP:desk@center.example=busy") == ("sip:desk@center.example", Busy())
    for bad in ("maybe", "accept:x", "busy:3", "decline:1:2", "accept:-1", "api-error:x"):
        with pytest.raises(ScriptError):
            parse_behaviour(bad)
    with pytest.raises(ScriptError):
        parse_assignment("accept")


def test_world_from_command_line_options() -> None:
    parser = argparse.ArgumentParser()
    add_call_arguments(parser)
    ns = parser.parse_args(
        [
            "--counselor", f"{A}=decline", "--counselor", f"{A}=accept:5",
            "--counselor", "sip:desk@center.example=no-answer",
            "--counselors-default", "busy", "--time-scale", "2", "--hangup-after", "30",
        ]
    )
    world = world_from_args(ns)
    assert world.clock.scale == pytest.approx(0.002)
    # A target's behaviours are used one call after the other; the last repeats.
    assert world.book.next_for(A) == CounselorScript(then="decline")
    assert world.book.next_for(A) == CounselorScript(answer_after=5)
    assert world.book.next_for(A) == CounselorScript(answer_after=5)
    assert world.book.next_for("sip:desk@center.example") == NoAnswer()
    assert world.book.next_for(B) == Busy()
    default = world_from_args(parser.parse_args([]))
    assert default.book.next_for(B) == CounselorScript(answer_after=3)
    with pytest.raises(SystemExit):
        parser.parse_args(["--counselor", f"{A}=sometimes"])


def test_leg_event_lines_name_the_counselor() -> None:
    line = LegEvent(12.0, A, "heard", '"Press 1."').describe()
    assert re.fullmatch(r'counselor \+15125550100 heard: "Press 1\."', line)
