"""Counselor legs: the outbound calls the server places through the REST API.

A leg lives in world time (ivr.sim.clock) the way Twilio runs an outbound
call: queued, initiated, ringing, then what its target's behaviour says
(answered, busy, no-answer, failed), unless the server cancels it first.
Answered, it requests its Url (CallStatus=in-progress,
Direction=outbound-api) and executes the TwiML for the counselor: prompts
are heard (the whisper), `<Gather>` gets the counselor's key,
`<Dial><Conference>` puts the counselor in the caller's conference, where
they talk until one side hangs up. Status callbacks go to StatusCallback
for the events asked for, signed like every Twilio request.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC
from email.utils import format_datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import aiohttp

from ivr.sim.callers import ApiRedirect, CallerCall, redirect_from
from ivr.sim.conference import Participant
from ivr.sim.config import SimConfig
from ivr.sim.counselors import Behaviour, Busy, CounselorScript, Fails
from ivr.sim.geo import place_for_number
from ivr.sim.hold import (
    CONFERENCE_DIAL_ACTION,
    CONFERENCE_FAILED_ACTION,
    CONFERENCE_WAIT_VERBS,
    MIN_WAIT_PASS,
    invalid_wait_verb,
)
from ivr.sim.prompts import render
from ivr.sim.rest import API_VERSION, CallRequest, CallUpdate, call_resource, not_in_progress
from ivr.sim.script import CallScript
from ivr.sim.session import CONTINUE, END, CallSession, Document, Step, goto
from ivr.sim.transcript import LegEvent, Pressed, Silent, TwimlWarning
from ivr.sim.twiml import (
    Conference,
    Dial,
    Gather,
    Hangup,
    Pause,
    Play,
    Redirect,
    Reject,
    Say,
    Twiml,
    Verb,
)
from ivr.sim.verbs import KEY_INTERVAL, collect_digits
from ivr.sim.webhook import WebhookClient

if TYPE_CHECKING:
    from ivr.sim.world import TwilioWorld

INITIATED_AFTER = 0.2  # seconds from the API request to Twilio dialing out
RINGING_AFTER = 1.0  # ... to the phone ringing
ALONE_PATIENCE = 15.0  # a counselor alone in a conference hangs up after this
SIP_RESPONSE_CODES = {
    "completed": "200",
    "busy": "486",
    "no-answer": "487",
    "canceled": "487",
    "failed": "404",
}


class LegSession(CallSession):
    """The webhooks of an outbound call: Direction outbound-api, From the
    number the server called from, To the counselor."""

    def __init__(
        self, cfg: SimConfig, webhooks: WebhookClient, to: str, from_: str
    ) -> None:
        self._to = to
        self._from = from_
        super().__init__(cfg, CallScript(), webhooks)
        self.status = "queued"

    def _build_base_params(self) -> dict[str, str]:
        params = {
            "AccountSid": self.cfg.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": self.call_sid,
            "Direction": "outbound-api",
            "From": self._from,
            "Caller": self._from,
            "To": self._to,
            "Called": self._to,
        }
        for prefixes, number in ((("From", "Caller"), self._from), (("To", "Called"), self._to)):
            place = place_for_number(number)
            for prefix in prefixes:
                for name, value in (
                    ("City", place.city),
                    ("State", place.state),
                    ("Zip", place.zip),
                    ("Country", place.country),
                ):
                    if value:
                        params[prefix + name] = value
        return params


def _fallback_path(cfg: SimConfig, fallback_url: str | None) -> str | None:
    """FallbackUrl as a path of the server (None when it points elsewhere)."""
    if fallback_url is None or not fallback_url.startswith(cfg.signed_base + "/"):
        return None
    parts = urlsplit(fallback_url[len(cfg.signed_base):])
    return parts.path + (f"?{parts.query}" if parts.query else "")


class LegCall:
    is_counselor = True

    def __init__(
        self,
        world: TwilioWorld,
        request: CallRequest,
        behaviour: Behaviour,
        cfg: SimConfig,
        http: aiohttp.ClientSession,
        twiml: Twiml | None,
    ) -> None:
        self.world = world
        self.request = request
        self.behaviour = behaviour
        self.who = request.to
        leg_cfg = replace(
            cfg,
            fallback_path=_fallback_path(cfg, request.fallback_url),
            fallback_url=None,  # a placed call has only the FallbackUrl it was given
            status_callback_path=None,
        )
        self.session = LegSession(leg_cfg, WebhookClient(http, leg_cfg), request.to, request.from_)
        self.sid = self.session.call_sid
        self.caller: CallerCall | None = None
        self.wake = asyncio.Event()
        self.done = asyncio.Event()
        self.pending: ApiRedirect | None = None
        self.url = request.url
        self.method = request.method
        self.twiml = twiml
        self.created_at = world.clock.now()
        self.session.now = self.created_at
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.end_reason = ""
        self.hangup_at = math.inf
        self._sequence = 0

    # -- state ---------------------------------------------------------------

    @property
    def status(self) -> str:
        return self.session.status

    @property
    def final_status(self) -> str | None:
        """completed, canceled, busy, no-answer or failed once the leg is over."""
        return self.session.final_status if self.session.ended else None

    def poke(self) -> None:
        self.wake.set()

    def _touch(self) -> None:
        self.session.now = max(self.session.now, self.world.clock.now())

    def _end(self, by: str, reason: str, status: str) -> None:
        if self.session.ended:
            return
        self._touch()
        self.session.end(by, reason, status)
        self.ended_at = self.session.now
        self.end_reason = reason
        self.poke()

    def mirror(self, event: str, detail: str = "") -> None:
        """Record a world event of this leg: in its own transcript, the
        world's log and the transcript of the caller it is for."""
        self._touch()
        entry = LegEvent(self.session.now, self.who, event, detail, self.sid)
        self.session.record(entry)
        self.world.log(entry)
        if self.caller is not None:
            self.caller.record(lambda at: LegEvent(at, self.who, event, detail, self.sid))

    # -- REST ----------------------------------------------------------------

    def resource(self) -> dict[str, object]:
        world = self.world
        ended = self.ended_at
        answered = self.answered_at
        duration = None
        if ended is not None:
            duration = 0.0 if answered is None else ended - answered
        return call_resource(
            account_sid=self.session.cfg.account_sid,
            sid=self.sid,
            to=self.request.to,
            from_=self.request.from_,
            status=self.session.status,
            direction="outbound-api",
            created=world.wall(self.created_at),
            updated=world.wall(world.clock.now()),
            started=None if answered is None else world.wall(answered),
            ended=None if ended is None else world.wall(ended),
            duration=duration,
        )

    def update(self, update: CallUpdate) -> None:
        if self.session.ended:
            raise not_in_progress()
        if update.status is not None:
            if self.session.status in ("queued", "ringing"):
                # Either status stops a call that was not answered yet.
                self._end("server", "server canceled the call while it rang", "canceled")
            elif update.status == "completed":
                self._end("server", "server ended the call through the REST API", "completed")
            return
        redirect = redirect_from(update)
        if self.answered_at is None:
            # Not answered yet: these become the instructions used on answer.
            self.url, self.method, self.twiml = redirect.url, redirect.method, redirect.twiml
            return
        self.pending = redirect
        self.poke()

    # -- running -------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._progress()
            await self._finish()
        finally:
            self.done.set()

    async def _pause_until(self, moment: float, stop: Callable[[], bool] = lambda: False) -> bool:
        """Wait for world time `moment`; False when the leg ended or `stop()`
        came first (the counselor hanging up mid-whisper included)."""
        clock = self.world.clock
        while True:
            self.wake.clear()
            if self.session.ended or stop():
                return False
            woke = await clock.wait(self.wake, min(moment, self.hangup_at))
            self._touch()
            if self.session.ended:
                return False
            if clock.now() >= self.hangup_at:
                self._end("counselor", "counselor hung up during the whisper", "completed")
                return False
            if not woke:
                return True

    async def _pause(self, seconds: float) -> bool:
        return await self._pause_until(
            self.world.clock.now() + seconds, lambda: self.pending is not None
        )

    async def _progress(self) -> None:
        behaviour = self.behaviour
        start = self.created_at
        if not await self._pause_until(start + INITIATED_AFTER):
            return
        await self._callback("initiated", "initiated")
        if isinstance(behaviour, Fails):
            if await self._pause_until(start + max(INITIATED_AFTER, behaviour.after)):
                self._end("twilio", "could not be connected", "failed")
            return
        if isinstance(behaviour, Busy):
            if await self._pause_until(start + max(INITIATED_AFTER, behaviour.after)):
                self._end("counselor", "line busy", "busy")
            return
        if not await self._pause_until(start + RINGING_AFTER):
            return
        self.session.status = "ringing"
        self.mirror("ringing")
        await self._callback("ringing", "ringing")
        ring_start = start + RINGING_AFTER
        timeout = self.request.timeout
        if isinstance(behaviour, CounselorScript) and behaviour.answer_after < timeout:
            if await self._pause_until(ring_start + behaviour.answer_after):
                await self._answer(behaviour)
            return
        if await self._pause_until(ring_start + timeout):
            self._end("twilio", f"rang {timeout}s with no answer", "no-answer")

    async def _answer(self, behaviour: CounselorScript) -> None:
        session = self.session
        self._touch()
        session.answer()
        self.answered_at = session.now
        if behaviour.then == "hangup":
            self.hangup_at = session.now + behaviour.press_delay
        self.mirror("answered")
        await self._callback("answered", "in-progress")
        if session.ended:
            return
        document: Document | None
        if self.twiml is not None:
            document = Document(url=session.cfg.public("/"), twiml=self.twiml)
        else:
            assert self.url is not None
            document = await session.fetch_document(self.url, self.method, "answer url")
        while document is not None and not session.ended:
            step = await self._run_document(document)
            document = step.document if step.kind == "goto" else None
        if not session.ended:
            self._end("twilio", "end of TwiML document", "completed")

    async def _finish(self) -> None:
        session = self.session
        if not session.ended:
            self._end("twilio", "call over", "completed")
        status = session.final_status
        duration = 0.0
        if self.answered_at is not None and self.ended_at is not None:
            duration = self.ended_at - self.answered_at
        self.mirror(status, self.end_reason)
        await self._callback(
            "completed",
            status,
            {
                "CallDuration": str(round(duration)),
                "SipResponseCode": SIP_RESPONSE_CODES.get(status, "200"),
            },
        )

    async def _callback(
        self, event: str, status: str, extra: dict[str, str] | None = None
    ) -> None:
        request = self.request
        if request.status_callback is None or event not in request.status_callback_events:
            return
        self._touch()
        moment = self.world.wall(self.session.now).astimezone(UTC)
        params = {
            "CallStatus": status,
            "Timestamp": format_datetime(moment),
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(self._sequence),
            **(extra or {}),
        }
        self._sequence += 1
        await self.session.notify(
            request.status_callback,
            request.status_callback_method,
            f"status callback ({status})",
            params,
            callback=True,
        )

    # -- the counselor's TwiML ---------------------------------------------------

    async def _take_redirect(self) -> Step:
        redirect, self.pending = self.pending, None
        if redirect is None:
            return CONTINUE
        if redirect.twiml is not None:
            self.mirror("redirected by the server", "new TwiML")
            return goto(Document(url=self.session.cfg.public("/"), twiml=redirect.twiml))
        assert redirect.url is not None
        self.mirror("redirected by the server", urlsplit(redirect.url).path)
        return await self.session.follow(redirect.url, redirect.method, "REST API redirect")

    async def _run_document(self, document: Document) -> Step:
        for verb in document.twiml.verbs:
            if self.session.ended:
                return END
            if self.pending is not None:
                return await self._take_redirect()
            step = await self._verb(document, verb)
            if step.kind != "continue":
                return step
        if self.pending is not None:
            return await self._take_redirect()
        return END

    async def _verb(self, document: Document, verb: Verb) -> Step:
        session = self.session
        if isinstance(verb, Say | Play | Pause):
            await self._prompt(document, verb)
            return CONTINUE
        if isinstance(verb, Gather):
            return await self._gather(document, verb)
        if isinstance(verb, Redirect):
            url = session.resolve(document, verb.url)
            return await session.follow(url, verb.method, "redirect")
        if isinstance(verb, Hangup | Reject):
            self._end("server", f"server's TwiML hung up (<{type(verb).__name__}>)", "completed")
            return END
        if isinstance(verb, Dial):
            conference = verb.conference
            if conference is not None:
                return await self._conference(document, verb, conference)
        self._touch()
        name = type(verb).__name__
        session.record(TwimlWarning(session.now, f"<{name}> is not simulated on a counselor leg"))
        return CONTINUE

    async def _prompt(self, document: Document, verb: Say | Play | Pause) -> None:
        audio = await render(self.session, document, verb)
        self._touch()
        self.session.record(audio.entry(self.session.now))
        if isinstance(verb, Say):
            self.mirror("heard", f'"{verb.text}"')
        elif isinstance(verb, Play) and not verb.digits:
            self.mirror("heard", audio.shown or audio.url)
        await self._pause(audio.seconds)

    async def _gather(self, document: Document, gather: Gather) -> Step:
        session = self.session
        for child in gather.children:
            await self._prompt(document, child)
            if session.ended or self.pending is not None:
                return CONTINUE
        action = session.resolve(document, gather.action) if gather.action else document.url
        behaviour = self.behaviour
        keys = behaviour.keys() if isinstance(behaviour, CounselorScript) else None
        delay = behaviour.press_delay if isinstance(behaviour, CounselorScript) else 0.0
        if keys is None or not gather.accepts_dtmf or delay > gather.timeout:
            self._touch()
            session.record(Silent(session.now, float(gather.timeout)))
            self.mirror("pressed nothing")
            if not await self._pause(gather.timeout):
                return CONTINUE
            if gather.action_on_empty_result:
                extra = {"msg": "Gather End"}
                return await session.follow(action, gather.method, "gather action", extra,
                                            callback=True)
            return CONTINUE
        if not await self._pause(delay):
            return CONTINUE
        digits, finished_on, complete, used = collect_digits(
            keys, gather.finish_on_key, gather.num_digits
        )
        self._touch()
        session.record(Pressed(session.now, keys[:used]))
        self.mirror("pressed", keys[:used])
        if not await self._pause(KEY_INTERVAL * (used - 1)):
            return CONTINUE
        if not complete and not await self._pause(gather.timeout):
            return CONTINUE
        if not digits:
            return CONTINUE  # only the finishOnKey: no input, next verb
        extra = {"msg": "Gather End", "Digits": digits, "FinishedOnKey": finished_on}
        return await session.follow(action, gather.method, "gather action", extra, callback=True)

    async def _conference(self, document: Document, dial: Dial, conference: Conference) -> Step:
        session = self.session
        world = self.world
        room = world.room_for(conference, document.url)
        me = Participant(self, conference)
        if self.caller is None and room.callers():
            self.caller = room.callers()[0]
        self.mirror("joined conference", conference.name)
        await room.join(me)
        behaviour = self.behaviour
        talk = behaviour.talk_seconds if isinstance(behaviour, CounselorScript) else 60.0
        talk_until: float | None = None
        alone_until: float | None = None
        failed = False
        while not session.ended and self.pending is None and room.has(me) and not failed:
            version = room.version

            def changed(version: int = version) -> bool:
                return room.version != version or self.pending is not None

            if room.started and room.others(me):
                alone_until = None
                if talk_until is None:
                    talk_until = world.clock.now() + talk
                if await self._pause_until(talk_until, changed):
                    self._end("counselor", f"counselor hung up after talking {talk:g}s",
                              "completed")
                continue
            if alone_until is None:
                alone_until = world.clock.now() + ALONE_PATIENCE
                self.mirror("waiting alone in conference", conference.name)
            if room.started:
                waited = await self._pause_until(alone_until, changed)
                outcome = "patience" if waited else "changed"
            else:
                outcome = await self._wait_alone(document, conference, alone_until, changed)
            if outcome == "patience":
                self._end("counselor", "counselor hung up, nobody else in the conference",
                          "completed")
            failed = outcome == "failed"
        if room.has(me):
            reason = "participant_updated_via_api" if self.pending else "participant_hung_up"
            await room.leave(me, reason)
        self.mirror("left conference", conference.name)
        if session.ended:
            return END
        if self.pending is not None:
            return await self._take_redirect()
        # The conference ended around the counselor, or never started (its wait
        # URL failed): the <Dial> is over.
        if dial.action:
            extra = CONFERENCE_FAILED_ACTION if failed else CONFERENCE_DIAL_ACTION
            url = session.resolve(document, dial.action)
            return await session.follow(url, dial.method, "dial action", extra, callback=True)
        return CONTINUE

    async def _wait_alone(
        self, document: Document, conference: Conference, until: float,
        changed: Callable[[], bool],
    ) -> Literal["changed", "patience", "failed"]:
        """Alone in a conference that has not started: TwiML Voice <Conference>
        ("Conferences do not start until at least two participants join. While
        waiting, customizable background music is played"): the waitUrl, or
        Twilio's hold music when none is given, in a loop, until someone joins,
        the server moves the leg, the counselor gives up (`until`) or the wait
        URL fails (the conference is then not established)."""
        session = self.session
        clock = self.world.clock
        wait_url = conference.wait_url
        url = session.resolve(document, wait_url) if wait_url else ""
        if not wait_url or not session.is_ours(url):
            what = f"hold music from {url}" if wait_url else "silence"
            self.mirror("heard hold music" if wait_url else "heard silence", what)
            return "patience" if await self._pause_until(until, changed) else "changed"
        method: str = conference.wait_method
        while True:
            self._touch()
            wait_document = await session.fetch_document(url, method, "wait url", fallback=False)
            if session.ended or changed():
                return "changed"
            if wait_document is None:
                return "failed"
            pass_started = clock.now()
            redirected = False
            for verb in wait_document.twiml.verbs:
                if not isinstance(verb, CONFERENCE_WAIT_VERBS):
                    self._touch()
                    invalid_wait_verb(session, verb)
                    return "failed"
                if isinstance(verb, Redirect):
                    url, method = session.resolve(wait_document, verb.url), verb.method
                    redirected = True
                    break
                audio = await render(session, wait_document, verb)
                self._touch()
                session.record(audio.entry(session.now))
                if isinstance(verb, Say):
                    self.mirror("heard", f'"{verb.text}"')
                elif isinstance(verb, Play) and not verb.digits:
                    self.mirror("heard hold music", audio.shown or audio.url)
                if not await self._pause_until(min(clock.now() + audio.seconds, until), changed):
                    return "changed"
                if clock.now() >= until:
                    return "patience"
            if not redirected and clock.now() - pass_started < MIN_WAIT_PASS:
                return "patience" if await self._pause_until(until, changed) else "changed"
