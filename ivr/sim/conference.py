"""Conferences: rooms where a caller waits and a counselor joins them.

Rooms follow Twilio's rules. A room starts once it holds at least two
participants and one of them entered with startConferenceOnEnter; until
then participants wait (the caller hearing the waitUrl in a loop). It ends
when a participant with endConferenceOnExit leaves, or the last one does;
everyone still in it is then out of their `<Dial>`. A name can be used
again once its room has ended. The room's status callback is the one of
its first participant, for the events its statusCallbackEvent lists
(start end join leave), posted like Twilio's conference events.

`WorldConference` is the caller's side: the ConferenceDriver that
`TwilioWorld.handlers()` installs for `<Dial><Conference>`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from email.utils import format_datetime
from functools import partial
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urljoin

from ivr.sim.callers import CallerCall
from ivr.sim.hold import (
    CONFERENCE_DIAL_ACTION,
    CONFERENCE_FAILED_ACTION,
    CONFERENCE_WAIT_VERBS,
    MIN_WAIT_PASS,
    LonelyConference,
    conference_over,
    invalid_wait_verb,
)
from ivr.sim.prompts import render
from ivr.sim.session import END, CallSession, Document, Step, new_sid
from ivr.sim.transcript import (
    ConferenceEvent,
    CounselorJoined,
    JoinedConference,
    OnHold,
)
from ivr.sim.twiml import Conference, Dial, Pause, Play, Redirect, Say

if TYPE_CHECKING:
    from ivr.sim.world import TwilioWorld

# A caller left alone once the conversation is over hangs up after this.
LINGER_SECONDS = 3.0

_EVENTS = {
    "start": "conference-start",
    "end": "conference-end",
    "join": "participant-join",
    "leave": "participant-leave",
}


class Member(Protocol):
    """A call that can be in a room (a caller's call or a counselor's leg)."""

    sid: str
    who: str
    is_counselor: bool

    @property
    def status(self) -> str: ...

    def poke(self) -> None: ...


@dataclass(eq=False)
class Participant:
    member: Member
    noun: Conference


def _flag(value: bool) -> str:
    return "true" if value else "false"


class Room:
    def __init__(self, world: TwilioWorld, noun: Conference, document_url: str) -> None:
        self.world = world
        self.name = noun.name
        self.sid = new_sid("CF")
        self.participants: list[Participant] = []
        self.started = False
        self.ended = False
        self.version = 0  # bumped on every change, to wake whoever waits on the room
        self._sequence = 0
        callback = noun.status_callback
        self._callback = urljoin(document_url, callback) if callback else None
        self._callback_method = noun.status_callback_method
        self._events = frozenset(
            _EVENTS[e] for e in (noun.status_callback_event or "").split() if e in _EVENTS
        )

    def has(self, participant: Participant) -> bool:
        return participant in self.participants

    def others(self, participant: Participant) -> list[Participant]:
        return [p for p in self.participants if p is not participant]

    def callers(self) -> list[CallerCall]:
        return [p.member for p in self.participants if isinstance(p.member, CallerCall)]

    def _changed(self, also: Sequence[Participant] = ()) -> None:
        self.version += 1
        for p in [*self.participants, *also]:
            p.member.poke()

    async def join(self, participant: Participant) -> None:
        self.participants.append(participant)
        starts = (
            not self.started
            and len(self.participants) >= 2
            and any(p.noun.start_conference_on_enter for p in self.participants)
        )
        if starts:
            self.started = True
        self._changed()
        await self._post("participant-join", participant)
        if starts:
            self._tell_callers(self.callers(), "started")
            await self._post("conference-start")

    async def leave(self, participant: Participant, reason: str) -> None:
        """`participant` leaves (`reason`: participant_hung_up,
        participant_updated_via_api); the room ends if it must."""
        if participant not in self.participants:
            return
        callers = self.callers()
        self.participants.remove(participant)
        ending = participant.noun.end_conference_on_exit or not self.participants
        kicked: list[Participant] = []
        if ending:
            self.ended = True
            kicked, self.participants = self.participants, []
            self.world.forget_room(self)
        self._changed(kicked)
        await self._post(
            "participant-leave",
            participant,
            {"ReasonParticipantLeft": reason, "ParticipantCallStatus": participant.member.status},
            callers=callers,
        )
        if not ending:
            return
        for other in kicked:
            await self._post(
                "participant-leave",
                other,
                {"ReasonParticipantLeft": "conference_ended",
                 "ParticipantCallStatus": other.member.status},
                callers=callers,
            )
        why = (
            "participant-with-end-conference-on-exit-left"
            if participant.noun.end_conference_on_exit
            else "last-participant-left"
        )
        self._tell_callers(callers, "ended", why)
        await self._post(
            "conference-end",
            None,
            {"ReasonConferenceEnded": why, "CallSidEndingConference": participant.member.sid},
            callers=callers,
        )

    def _tell_callers(self, callers: list[CallerCall], event: str, reason: str = "") -> None:
        for caller in callers:
            caller.record(lambda at: ConferenceEvent(at, self.name, event, reason))

    async def _post(
        self,
        event: str,
        participant: Participant | None = None,
        extra: dict[str, str] | None = None,
        *,
        callers: list[CallerCall] | None = None,
    ) -> None:
        if self._callback is None or event not in self._events:
            return
        params = {
            "AccountSid": self.world.account_sid,
            "ConferenceSid": self.sid,
            "FriendlyName": self.name,
            "StatusCallbackEvent": event,
            "SequenceNumber": str(self._sequence),
            "Timestamp": format_datetime(self.world.wall(self.world.clock.now()).astimezone(UTC)),
        }
        self._sequence += 1
        if participant is not None:
            noun = participant.noun
            params.update(
                {
                    "CallSid": participant.member.sid,
                    "Muted": _flag(noun.muted),
                    "Hold": "false",
                    "Coaching": "false",
                    "StartConferenceOnEnter": _flag(noun.start_conference_on_enter),
                    "EndConferenceOnExit": _flag(noun.end_conference_on_exit),
                }
            )
            if noun.participant_label:
                params["ParticipantLabel"] = noun.participant_label
        params.update(extra or {})
        await self.world.post_conference_event(
            self._callback, self._callback_method, params,
            self.callers() if callers is None else callers,
        )


class WorldConference:
    """The caller's `<Dial><Conference>` in a world: the caller waits, hearing
    the wait URL, until a counselor joins (then they talk), the server
    redirects or ends the call through the REST API, or the caller hangs up
    (script.hangup_after, or hold patience used up)."""

    def __init__(self, world: TwilioWorld) -> None:
        self.world = world

    async def join(
        self, session: CallSession, document: Document, dial: Dial, conference: Conference
    ) -> Step:
        caller = self.world.caller_of(session)
        if caller is None:
            return await LonelyConference().join(session, document, dial, conference)
        caller.begin_paced()
        room = self.world.room_for(conference, document.url)
        me = Participant(caller, conference)
        session.record(JoinedConference(session.now, conference.name))
        await room.join(me)
        caller.sync()
        stay = _Stay(caller, room, me, document, conference)
        await stay.run()
        if room.has(me):
            reason = "participant_updated_via_api" if caller.pending else "participant_hung_up"
            await room.leave(me, reason)
        caller.end_paced()
        if caller.pending is not None and not session.ended:
            return await caller.apply_update() or END
        if session.ended and caller.ended_via_api:
            return END
        extra = CONFERENCE_FAILED_ACTION if stay.failed else CONFERENCE_DIAL_ACTION
        return await conference_over(session, document, dial, extra)


class _Stay:
    """One stay of a caller in a room."""

    def __init__(
        self,
        caller: CallerCall,
        room: Room,
        me: Participant,
        document: Document,
        conference: Conference,
    ) -> None:
        self.caller = caller
        self.session = caller.session
        self.room = room
        self.me = me
        self.document = document
        self.conference = conference
        self.deadline = self.session.now + self.session.script.hold_patience
        self.announced: set[str] = set()
        self.failed = False  # the wait URL failed: the conference was not established

    def over(self) -> bool:
        return (
            self.session.ended or self.caller.pending is not None
            or not self.room.has(self.me) or self.failed
        )

    async def run(self) -> None:
        session = self.session
        while not self.over():
            if not self.room.started:
                await self._hold()
                if not self.over() and not self.room.started and session.now >= self.deadline:
                    session.end("caller", "gave up waiting in the conference")
                continue
            self._announce()
            version = self.room.version
            if self.room.others(self.me):
                await self.caller.pause(None, self._changed_since(version))
                continue
            # Everyone else left: the conversation is over.
            if await self.caller.pause(LINGER_SECONDS, self._changed_since(version)):
                session.end("caller", "hung up, nobody left on the line")

    def _changed_since(self, version: int) -> Callable[[], bool]:
        return lambda: self.room.version != version or self.over()

    def _announce(self) -> None:
        for p in self.room.others(self.me):
            if p.member.is_counselor and p.member.sid not in self.announced:
                self.announced.add(p.member.sid)
                self.caller.record(partial(CounselorJoined, who=p.member.who))

    def _waiting_over(self) -> bool:
        return self.room.started or self.over()

    async def _silence(self, reason: str) -> None:
        session = self.session
        seconds = max(0.0, self.deadline - session.now)
        session.record(OnHold(session.now, seconds, reason))
        await self.caller.pause(seconds, self._waiting_over)

    async def _hold(self) -> None:
        """The wait URL's TwiML in a loop until the room starts, the stay is
        over or the caller's patience is used up."""
        session = self.session
        wait_url = self.conference.wait_url
        if not wait_url:
            await self._silence("silence")
            return
        url = session.resolve(self.document, wait_url)
        if not session.is_ours(url):
            await self._silence(f"hold music from {url}")
            return
        method: str = self.conference.wait_method
        while session.now < self.deadline and not self._waiting_over():
            self.caller.sync()
            wait_document = await session.fetch_document(url, method, "wait url", fallback=False)
            self.caller.sync()
            if self._waiting_over():
                return
            if wait_document is None:
                self.failed = True  # see CONFERENCE_FAILED_ACTION
                return
            pass_started = session.now
            redirected = False
            for verb in wait_document.twiml.verbs:
                remaining = self.deadline - session.now
                if remaining <= 0 or self._waiting_over():
                    return
                if not isinstance(verb, CONFERENCE_WAIT_VERBS):
                    invalid_wait_verb(session, verb)
                    self.failed = True
                    return
                if isinstance(verb, Say | Play | Pause):
                    audio = await render(session, wait_document, verb)
                    self.caller.sync()
                    session.record(audio.entry(session.now, interrupted=audio.seconds > remaining))
                    played = min(audio.seconds, remaining)
                    if not await self.caller.pause(played, self._waiting_over):
                        return
                elif isinstance(verb, Redirect):
                    url, method = session.resolve(wait_document, verb.url), verb.method
                    redirected = True
                    break
            if not redirected and session.now - pass_started < MIN_WAIT_PASS:
                await self._silence("wait url document too short to repeat")
                return
