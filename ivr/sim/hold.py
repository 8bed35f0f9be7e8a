"""Waiting: conference and queue hold (wait URLs), and the drivers that
decide what happens while a caller waits or streams.

The defaults model a world where nobody else exists: no counselor ever
joins a conference and no media stream is spoken to. The REST API
emulation (counselor legs) and the Media Streams emulation replace them
through `ConferenceDriver` and `MediaStreamDriver`.
"""

from __future__ import annotations

from typing import Literal, Protocol

from ivr.sim.prompts import play, render
from ivr.sim.session import CONTINUE, END, CallSession, Document, Step
from ivr.sim.transcript import JoinedConference, OnHold, Streamed, TwimlWarning
from ivr.sim.twiml import (
    Conference,
    Connect,
    Dial,
    Hangup,
    Leave,
    Pause,
    Play,
    Redirect,
    Say,
)

HoldResult = Literal["patience", "left", "ended", "failed"]

# A wait document shorter than this is not re-requested in a tight loop:
# the caller then waits in silence.
MIN_WAIT_PASS = 1.0

# Error 13238 (Dial->Conference: Invalid Verb used in waitUrl, holdUrl, or
# announceUrl TwiML): such a document "can only contain Say, Play, Pause,
# and Redirect verbs".
INVALID_WAIT_VERB = 13238
CONFERENCE_WAIT_VERBS = (Say, Play, Pause, Redirect)

# TwiML Voice <Dial>, DialCallStatus: "answered: When calling a conference,
# the called party answered the call and was connected to the caller";
# DialCallSid and DialCallDuration are "not sent after dialing a conference".
CONFERENCE_DIAL_ACTION = {"DialCallStatus": "answered"}
# TwiML Voice <Conference>, waitUrl: "if the request to your waitUrl fails,
# the Conference will not be fully established. To avoid the call being
# disconnected, you can either add additional TwiML after the initial
# <Dial><Conference>, or programmatically provide fallback behavior via the
# action callback." The caller is out of the <Dial>, not left holding in
# silence. The page names no DialCallStatus for it: failed ("Twilio was
# unable to route") is the one that says what happened.
CONFERENCE_FAILED_ACTION = {"DialCallStatus": "failed"}


def invalid_wait_verb(session: CallSession, verb: object) -> None:
    """Record Twilio's error 13238 for a verb a conference wait URL may not use."""
    name = type(verb).__name__
    session.record(TwimlWarning(
        session.now,
        f"{INVALID_WAIT_VERB} <Conference waitUrl>: <{name}> is not allowed "
        "(only Say, Play, Pause and Redirect): the conference is not established",
    ))


class ConferenceDriver(Protocol):
    async def join(
        self, session: CallSession, document: Document, dial: Dial, conference: Conference
    ) -> Step:
        """Run the caller's stay in `conference`; return how the call goes on."""
        ...


class MediaStreamDriver(Protocol):
    async def connect(self, session: CallSession, document: Document, connect: Connect) -> None:
        """Run a `<Connect><Stream>` until the stream ends (or the call does)."""
        ...


async def hold(
    session: CallSession,
    document: Document,
    wait_url: str | None,
    wait_method: str,
    patience: float,
    *,
    allow_leave: bool = False,
    conference: bool = False,
) -> HoldResult:
    """Keep the caller waiting, executing the wait URL's TwiML in a loop,
    until the caller's patience runs out, a `<Leave>` (queues only) or the
    call ends. A conference's wait URL that fails, or uses a verb it may
    not, ends the wait ("failed": the conference was not established)."""
    deadline = session.now + patience
    if not wait_url:
        return _silent_until(session, deadline, "silence")
    url = session.resolve(document, wait_url)
    if not session.is_ours(url):
        return _silent_until(session, deadline, f"hold music from {url}")
    method = wait_method
    while session.now < deadline:
        wait_document = await session.fetch_document(url, method, "wait url", fallback=False)
        if session.ended:
            return "ended"
        if wait_document is None:
            if conference:
                return "failed"
            return _silent_until(session, deadline, "wait url failed")
        pass_started = session.now
        redirected = False
        for verb in wait_document.twiml.verbs:
            remaining = deadline - session.now
            if remaining <= 0:
                break
            if conference and not isinstance(verb, CONFERENCE_WAIT_VERBS):
                invalid_wait_verb(session, verb)
                return "failed"
            if isinstance(verb, Say | Play | Pause):
                audio = await render(session, wait_document, verb)
                if not await play(session, audio, limit=remaining):
                    return "ended"
            elif isinstance(verb, Redirect):
                url, method = session.resolve(wait_document, verb.url), verb.method
                redirected = True
                break
            elif isinstance(verb, Leave) and allow_leave:
                return "left"
            elif isinstance(verb, Hangup):
                session.end("server", "<Hangup> in a wait URL document")
                return "ended"
            else:
                name = type(verb).__name__
                session.record(TwimlWarning(session.now, f"<{name}> is ignored in a wait URL"))
        if not redirected and session.now - pass_started < MIN_WAIT_PASS:
            return _silent_until(session, deadline, "wait url document too short to repeat")
    return "patience" if not session.ended else "ended"


def _silent_until(session: CallSession, deadline: float, reason: str) -> HoldResult:
    seconds = max(0.0, deadline - session.now)
    session.record(OnHold(session.now, seconds, reason))
    return "patience" if session.advance(seconds) else "ended"


class LonelyConference:
    """Nobody else ever joins: the caller waits on hold (hearing the wait
    URL) until their patience runs out, then hangs up."""

    async def join(
        self, session: CallSession, document: Document, dial: Dial, conference: Conference
    ) -> Step:
        session.record(JoinedConference(session.now, conference.name))
        result = await hold(
            session, document, conference.wait_url, conference.wait_method,
            session.script.hold_patience, conference=True,
        )
        if result == "patience":
            session.end("caller", "gave up waiting in the conference")
        extra = CONFERENCE_FAILED_ACTION if result == "failed" else CONFERENCE_DIAL_ACTION
        return await conference_over(session, document, dial, extra)


async def conference_over(
    session: CallSession, document: Document, dial: Dial, extra: dict[str, str]
) -> Step:
    """The caller is out of their `<Dial><Conference>`: its action, or the next verb."""
    if not dial.action:
        return END if session.ended else CONTINUE
    url = session.resolve(document, dial.action)
    if session.ended:
        # Twilio still requests the action when the caller hangs up, and
        # ignores the TwiML it gets back.
        await session.notify(url, dial.method, "dial action", extra, callback=True)
        return END
    return await session.follow(url, dial.method, "dial action", extra, callback=True)


class NoMediaStreams:
    """Media Streams are not emulated: the stream ends at once, unheard."""

    async def connect(self, session: CallSession, document: Document, connect: Connect) -> None:
        session.record(Streamed(session.now, connect.stream.url, "not simulated, ended at once"))
