"""One handler per TwiML verb, executing it the way Twilio does.

A handler gets the call, the document being executed and the verb, and
returns what happens next: the next verb (CONTINUE), another document
(an action or Redirect answered), or the end of the call. Replace entries
of `default_handlers()` to change how a verb behaves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from ivr.sim.callerid import refused_caller_id
from ivr.sim.hold import (
    ConferenceDriver,
    LonelyConference,
    MediaStreamDriver,
    hold,
)
from ivr.sim.media import MediaStreams
from ivr.sim.prompts import Audio, play, render, say_or_play
from ivr.sim.script import DialOutcome, Press, Silence, Speak, SpeakAudio
from ivr.sim.session import CONTINUE, END, CallSession, Document, Step, new_sid
from ivr.sim.transcript import Dialed, Pressed, Silent, Spoke, Streamed
from ivr.sim.twiml import (
    Connect,
    Dial,
    Enqueue,
    Gather,
    Hangup,
    Leave,
    Pause,
    Play,
    Redirect,
    Reject,
    Say,
    Start,
    Stop,
    Verb,
)

VerbHandler = Callable[[CallSession, Document, Any], Awaitable[Step]]

KEY_INTERVAL = 0.3  # seconds between two keys pressed in a row
AUTO_SPEECH_END = 1.0  # silence after which speechTimeout="auto" ends the utterance
BUSY_SECONDS = 2.0  # until a busy signal comes back
FAILED_SECONDS = 1.0  # until a dial to a dead number fails
SPEECH_CONFIDENCE = "0.92"


async def handle_prompt(session: CallSession, document: Document, verb: Say | Play | Pause) -> Step:
    session.doing = f"a <{type(verb).__name__}> outside any <Gather>"
    if session.timed_press() is not None and _leads_into_stream(document, verb):
        # A listening menu whose prompt is said before its media stream: the
        # menu starts with the prompts leading into the stream.
        session.start_menu()
    return CONTINUE if await say_or_play(session, document, verb) else END


def _after(document: Document, verb: Verb) -> tuple[Verb, ...]:
    verbs = document.twiml.verbs
    index = next((i for i, v in enumerate(verbs) if v is verb), len(verbs))
    return verbs[index + 1 :]


def _leads_into_stream(document: Document, verb: Verb) -> bool:
    """Whether only prompts stand between `verb` and a `<Connect>` of its document."""
    for later in _after(document, verb):
        if not isinstance(later, Say | Play | Pause):
            return isinstance(later, Connect)
    return False


async def handle_redirect(session: CallSession, document: Document, verb: Redirect) -> Step:
    return await session.follow(session.resolve(document, verb.url), verb.method, "redirect")


async def handle_hangup(session: CallSession, document: Document, verb: Hangup) -> Step:
    session.end("server", "<Hangup>")
    return END


async def handle_reject(session: CallSession, document: Document, verb: Reject) -> Step:
    # Only a first verb can leave the call unanswered (see call.py); here the
    # call is already answered, so <Reject> just ends it.
    session.end("server", f"<Reject reason={verb.reason}> after the call was answered")
    return END


# -- Gather ------------------------------------------------------------------


def collect_digits(
    keys: str, finish_on_key: str, num_digits: int | None
) -> tuple[str, str, bool, int]:
    """(digits collected, finishing key, gather complete, keys used) for keys
    pressed in a row."""
    collected = ""
    for used, key in enumerate(keys, start=1):
        if finish_on_key and key == finish_on_key:
            return collected, key, True, used
        collected += key
        if num_digits is not None and len(collected) >= num_digits:
            return collected, "", True, used
    return collected, "", False, len(keys)


async def handle_gather(session: CallSession, document: Document, gather: Gather) -> Step:
    if session.timed_press() is not None:
        return await _gather_timed(session, document, gather)
    caller = session.peek_input()
    listened = (isinstance(caller, Press) and gather.accepts_dtmf) or (
        isinstance(caller, Speak) and gather.accepts_speech
    )
    late = isinstance(caller, Press | Speak) and not caller.barge_in and (
        caller.delay > gather.timeout
    )
    if _falls_through_to_stream(document, gather) and (not listened or late):
        # TwiML Voice <Gather>: with no input the call flow goes on with the
        # next verb, here a <Connect><Stream> that keeps listening: what this
        # <Gather> cannot hear (speech at a dtmf-only one, keys after its
        # timeout) is the caller's answer to the stream.
        for child in gather.children:
            if not await play(session, await render(session, document, child)):
                return END
        await _gather_nothing(session, gather)
        return END if session.ended else CONTINUE
    caller = session.next_input()
    barge_in = (
        isinstance(caller, Press | Speak) and caller.barge_in and listened and gather.barge_in
    )
    prompts = [await render(session, document, child) for child in gather.children]

    # The prompts play; the caller's first key or word stops them (barge-in).
    elapsed = 0.0
    for audio in prompts:
        if barge_in and isinstance(caller, Press | Speak):
            limit = caller.delay - elapsed
            if audio.seconds > limit:
                if not await play(session, audio, limit=limit):
                    return END
                elapsed = caller.delay
                break
        if not await play(session, audio):
            return END
        elapsed += audio.seconds

    result: dict[str, str] | None
    if isinstance(caller, Press):
        wait = max(0.0, caller.delay - elapsed) if barge_in else caller.delay
        result = await _gather_keys(session, gather, caller, wait)
    elif isinstance(caller, Speak):
        wait = max(0.0, caller.delay - elapsed) if barge_in else caller.delay
        result = await _gather_speech(session, gather, caller, wait)
    else:
        if isinstance(caller, SpeakAudio):
            session.note(f"recorded speech {caller.path.name} is only heard over media streams")
        elif not isinstance(caller, Silence):
            session.note(f"{type(caller).__name__} input is not understood by <Gather>")
        await _gather_nothing(session, gather)
        result = None
    return await _gather_end(session, document, gather, result)


def _falls_through_to_stream(document: Document, gather: Gather) -> bool:
    following = _after(document, gather)
    return (
        not gather.action_on_empty_result
        and bool(following)
        and isinstance(following[0], Connect)
    )


async def _gather_end(
    session: CallSession, document: Document, gather: Gather, result: dict[str, str] | None
) -> Step:
    if session.ended:
        return END
    action = session.resolve(document, gather.action) if gather.action else document.url
    if result is not None:
        extra = {"msg": "Gather End", **result}
        return await session.follow(action, gather.method, "gather action", extra, callback=True)
    if gather.action_on_empty_result:
        extra = {"msg": "Gather End"}
        return await session.follow(action, gather.method, "gather action", extra, callback=True)
    return CONTINUE


async def _gather_timed(session: CallSession, document: Document, gather: Gather) -> Step:
    """A `<Gather>` while the caller's keys are timed into the menu (Press.at).

    TwiML Voice <Gather>, "Nest other verbs": input is accepted while the
    nested <Say>/<Play> play, and the first key stops them; the timeout
    begins once they are over (or at the first key). Keys that come after
    the timeout are left to whatever the call does next."""
    prompts = [await render(session, document, child) for child in gather.children]
    session.start_menu()  # the menu starts with this <Gather>'s first prompt
    if not gather.accepts_dtmf:
        session.doing = "a <Gather> that listens for speech only"
        for audio in prompts:
            if not await play(session, audio):
                return END
        await _gather_nothing(session, gather)
        return await _gather_end(session, document, gather, None)
    session.hears_keys = True
    try:
        result = await _gather_timed_keys(session, gather, prompts)
    finally:
        session.hears_keys = False
    return END if result == "ended" else await _gather_end(session, document, gather, result)


async def _gather_timed_keys(
    session: CallSession, gather: Gather, prompts: list[Audio]
) -> dict[str, str] | Literal["ended"] | None:
    moment = session.press_moment()
    assert moment is not None
    for audio in prompts:
        left = moment - session.now
        if gather.barge_in and audio.seconds > left:
            if not await play(session, audio, limit=max(0.0, left)):
                return "ended"
            break
        if not await play(session, audio):
            return "ended"
    if moment > session.now + gather.timeout:
        await _gather_nothing(session, gather)  # the keys come later, elsewhere
        return None
    if not session.advance(max(0.0, moment - session.now)):
        return "ended"
    press = session.next_input()
    assert isinstance(press, Press)
    return await _collect(session, gather, press)


async def _gather_nothing(session: CallSession, gather: Gather) -> None:
    session.record(Silent(session.now, float(gather.timeout)))
    session.advance(gather.timeout)


async def _gather_keys(
    session: CallSession, gather: Gather, press: Press, wait: float
) -> dict[str, str] | None:
    if wait > gather.timeout:
        # The caller took longer than the timeout: <Gather> gave up first.
        await _gather_nothing(session, gather)
        session.note(f"keys {press.digits} came after the gather timed out")
        return None
    if not session.advance(wait):
        return None
    if not gather.accepts_dtmf:
        session.record(Pressed(session.now, press.digits, ignored=True))
        await _gather_nothing(session, gather)
        return None
    return await _collect(session, gather, press)


async def _collect(session: CallSession, gather: Gather, press: Press) -> dict[str, str] | None:
    """The caller presses `press.digits` now, into `gather`."""
    digits, finished_on, complete, used = collect_digits(
        press.digits, gather.finish_on_key, gather.num_digits
    )
    session.record(Pressed(session.now, press.digits[:used]))
    if not session.advance(KEY_INTERVAL * (used - 1)):
        return None
    if used < len(press.digits):
        session.note(f"keys {press.digits[used:]} came after the gather ended")
    if not complete and not session.advance(gather.timeout):
        return None
    if not digits:
        return None  # only the finishOnKey: Twilio treats it as no input
    return {"Digits": digits, "FinishedOnKey": finished_on}


async def _gather_speech(
    session: CallSession, gather: Gather, speak: Speak, wait: float
) -> dict[str, str] | None:
    if wait > gather.timeout:
        await _gather_nothing(session, gather)
        session.note(f'"{speak.text}" came after the gather timed out')
        return None
    if not session.advance(wait):
        return None
    speaking = len(speak.text.split()) / session.cfg.speaking_rate
    if not gather.accepts_speech:
        session.record(Spoke(session.now, speak.text, recognized=False))
        if session.advance(speaking):
            await _gather_nothing(session, gather)
        return None
    session.record(Spoke(session.now, speak.text, recognized=True))
    if gather.speech_timeout == "auto":
        end_of_speech = AUTO_SPEECH_END
    elif gather.speech_timeout is not None:
        end_of_speech = float(gather.speech_timeout)
    else:
        end_of_speech = float(gather.timeout)
    if not session.advance(speaking + end_of_speech):
        return None
    return {"SpeechResult": speak.text, "Confidence": SPEECH_CONFIDENCE}


# -- Dial --------------------------------------------------------------------


class DialHandler:
    def __init__(self, conference: ConferenceDriver) -> None:
        self.conference = conference

    async def __call__(self, session: CallSession, document: Document, dial: Dial) -> Step:
        conference = dial.conference
        if conference is not None:
            session.doing = "a <Dial><Conference>"
            return await self.conference.join(session, document, dial, conference)
        session.doing = "a <Dial>"
        return await dial_parties(session, document, dial)


async def dial_parties(session: CallSession, document: Document, dial: Dial) -> Step:
    """Ring numbers / SIP / clients; the script says what the other party does."""
    targets = tuple(target.label for target in dial.targets)
    refused = refused_caller_id(dial, session.caller_address, session.called_address,
                                session.cfg)
    # A refused dial rings nobody: the scripted party waits for the next one.
    behaviour = DialOutcome("failed") if refused else session.next_dial_outcome()
    if refused:
        session.note(refused)
    ring: float
    talk = 0.0
    if behaviour.kind == "answer" and behaviour.ring_seconds < dial.timeout:
        outcome, ring = "answered", behaviour.ring_seconds
        talk = min(behaviour.talk_seconds, float(dial.time_limit))
    elif behaviour.kind in ("answer", "no-answer"):
        outcome, ring = "no-answer", float(dial.timeout)
    elif behaviour.kind == "busy":
        outcome, ring = "busy", BUSY_SECONDS
    else:
        outcome, ring = "failed", FAILED_SECONDS

    # Entries are recorded before the clock moves, so that a hangup during
    # the dial comes after it in the transcript.
    started = session.now
    left = session.time_left()
    if left <= ring:
        # The caller hangs up while it rings: the outgoing leg is canceled.
        session.record(Dialed(started, targets, "canceled", left))
        session.advance(ring)
        return await _dial_action_after_hangup(session, document, dial, "canceled", 0.0)
    if outcome == "answered":
        talk = min(talk, left - ring)
        session.record(Dialed(started, targets, "answered", ring, talk))
        if not session.advance(ring + talk):
            return await _dial_action_after_hangup(session, document, dial, "completed", talk)
    else:
        session.record(Dialed(started, targets, outcome, ring))
        session.advance(ring)

    if not dial.action:
        return CONTINUE
    extra = _dial_params("completed" if outcome == "answered" else outcome, talk)
    url = session.resolve(document, dial.action)
    return await session.follow(url, dial.method, "dial action", extra, callback=True)


def _dial_params(status: str, talk: float) -> dict[str, str]:
    params = {"DialCallStatus": status, "DialCallSid": new_sid("CA")}
    if status == "completed":
        params["DialCallDuration"] = str(round(talk))
    return params


async def _dial_action_after_hangup(
    session: CallSession, document: Document, dial: Dial, status: str, talk: float
) -> Step:
    # Twilio still requests the action when the caller hangs up, and ignores
    # the TwiML it gets back.
    if dial.action:
        url = session.resolve(document, dial.action)
        extra = _dial_params(status, talk)
        await session.notify(url, dial.method, "dial action", extra, callback=True)
    return END


# -- Connect / Start / Stop ----------------------------------------------------


class ConnectHandler:
    def __init__(self, media: MediaStreamDriver) -> None:
        self.media = media

    async def __call__(self, session: CallSession, document: Document, connect: Connect) -> Step:
        await self.media.connect(session, document, connect)
        if not connect.action:
            return END if session.ended else CONTINUE
        url = session.resolve(document, connect.action)
        if session.ended:
            # TwiML Voice <Connect>, action: "When the <Connect> verb ends,
            # Twilio sends an HTTP request to this URL": a caller hanging up
            # mid-stream ends it too (CallStatus completed); the answer is
            # ignored, there is no call left to run it.
            await session.notify(url, connect.method, "connect action", callback=True)
            return END
        return await session.follow(url, connect.method, "connect action", callback=True)


async def handle_start(session: CallSession, document: Document, start: Start) -> Step:
    for stream in start.streams:
        session.record(Streamed(session.now, stream.url, "unidirectional, not simulated"))
    return CONTINUE


async def handle_stop(session: CallSession, document: Document, stop: Stop) -> Step:
    return CONTINUE


# -- Enqueue / Leave -------------------------------------------------------------


async def handle_enqueue(session: CallSession, document: Document, enqueue: Enqueue) -> Step:
    session.note(f"enqueued in {enqueue.name or enqueue.workflow_sid}")
    entered = session.now
    result = await hold(
        session, document, enqueue.wait_url, enqueue.wait_url_method,
        session.script.hold_patience, allow_leave=True,
    )
    if result == "patience":
        session.end("caller", "gave up waiting in the queue")
    queue_result = "leave" if result == "left" else "hangup"
    extra = {"QueueResult": queue_result, "QueueTime": str(round(session.now - entered))}
    if not enqueue.action:
        return END if session.ended else CONTINUE
    url = session.resolve(document, enqueue.action)
    if session.ended:
        await session.notify(url, enqueue.method, "enqueue action", extra, callback=True)
        return END
    return await session.follow(url, enqueue.method, "enqueue action", extra, callback=True)


async def handle_leave(session: CallSession, document: Document, leave: Leave) -> Step:
    # Outside a queue's wait URL there is nothing to leave.
    return CONTINUE


def default_handlers(
    *,
    conference: ConferenceDriver | None = None,
    media: MediaStreamDriver | None = None,
) -> dict[type[Verb], VerbHandler]:
    return {
        Say: handle_prompt,
        Play: handle_prompt,
        Pause: handle_prompt,
        Gather: handle_gather,
        Redirect: handle_redirect,
        Dial: DialHandler(conference or LonelyConference()),
        Hangup: handle_hangup,
        Reject: handle_reject,
        Connect: ConnectHandler(media or MediaStreams()),
        Start: handle_start,
        Stop: handle_stop,
        Enqueue: handle_enqueue,
        Leave: handle_leave,
    }
