"""What happened on a simulated call, in simulated time.

Entries never carry the caller's number: transcripts end up in test output
and terminals, and a caller's number must not appear in clear there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar


def _seconds(value: float) -> str:
    return f"{value:.1f}s"


@dataclass(frozen=True)
class Entry:
    at: float  # simulated seconds since the call reached Twilio

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Heard(Entry):
    text: str
    language: str
    voice: str
    seconds: float
    repeat: int = 1
    interrupted: bool = False

    def describe(self) -> str:
        extra = f" (x{self.repeat})" if self.repeat > 1 else ""
        extra += " (interrupted)" if self.interrupted else ""
        return f'heard [{self.language}] "{self.text}"{extra}'


@dataclass(frozen=True)
class Played(Entry):
    url: str
    seconds: float | None  # None: the audio could not be fetched or measured
    repeat: int = 1
    interrupted: bool = False
    error: str | None = None
    shown: str = ""  # how to show the URL (a path for the server's own files)

    def describe(self) -> str:
        where = self.shown or self.url
        if self.error is not None:
            return f"play failed {where}: {self.error}"
        length = "?" if self.seconds is None else _seconds(self.seconds)
        extra = f" x{self.repeat}" if self.repeat > 1 else ""
        extra += " (interrupted)" if self.interrupted else ""
        return f"played {where} ({length}){extra}"


@dataclass(frozen=True)
class Tones(Entry):
    digits: str

    def describe(self) -> str:
        return f"heard tones {self.digits}"


@dataclass(frozen=True)
class Paused(Entry):
    seconds: float

    def describe(self) -> str:
        return f"pause ({_seconds(self.seconds)})"


@dataclass(frozen=True)
class Pressed(Entry):
    digits: str
    ignored: bool = False

    def describe(self) -> str:
        return f"pressed {self.digits}" + (" (not listened to)" if self.ignored else "")


@dataclass(frozen=True)
class Spoke(Entry):
    text: str
    recognized: bool

    def describe(self) -> str:
        return f'said "{self.text}"' + ("" if self.recognized else " (not listened to)")


@dataclass(frozen=True)
class Silent(Entry):
    seconds: float

    def describe(self) -> str:
        return f"silence ({_seconds(self.seconds)})"


@dataclass(frozen=True)
class Request(Entry):
    method: str
    path: str
    status: int | None  # None: no HTTP answer (timeout, connection refused)
    purpose: str
    error: str | None = None
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        result = str(self.status) if self.status is not None else "no answer"
        if self.error:
            result += f" ({self.error})"
        again = " [duplicate]" if self.duplicate else ""
        return f"{self.method} {self.path} -> {result} [{self.purpose}]{again}"


@dataclass(frozen=True)
class Dialed(Entry):
    targets: tuple[str, ...]
    outcome: str  # answered, busy, no-answer, failed, canceled
    ring_seconds: float
    talk_seconds: float = 0.0

    def describe(self) -> str:
        talk = f" (talked {_seconds(self.talk_seconds)})" if self.outcome == "answered" else ""
        return f"dialed {', '.join(self.targets)} -> {self.outcome}{talk}"


@dataclass(frozen=True)
class JoinedConference(Entry):
    name: str

    def describe(self) -> str:
        return f"joined conference {self.name}"


@dataclass(frozen=True)
class CounselorJoined(Entry):
    """A human (counselor leg) joined the caller: the call reached a person."""

    who: str

    def describe(self) -> str:
        return f"counselor {self.who} joined"


@dataclass(frozen=True)
class LegEvent(Entry):
    """Something that happened on a call the server placed through the REST
    API (a counselor's leg): called, refused by the API, ringing, answered,
    heard, pressed, pressed nothing, joined conference, waiting alone in
    conference (then heard hold music / heard silence, or the wait URL's
    prompts), left conference, redirected by the server, then its final
    status (completed, canceled, busy, no-answer, failed) with the reason as
    detail."""

    target: str
    event: str
    detail: str = ""
    sid: str = ""

    def describe(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        return f"counselor {self.target} {self.event}{detail}"


@dataclass(frozen=True)
class ConferenceEvent(Entry):
    """A conference the caller is in started or ended."""

    name: str
    event: str  # started, ended
    reason: str = ""

    def describe(self) -> str:
        reason = f" ({self.reason})" if self.reason else ""
        return f"conference {self.name} {self.event}{reason}"


@dataclass(frozen=True)
class OnHold(Entry):
    seconds: float
    reason: str

    def describe(self) -> str:
        return f"on hold {_seconds(self.seconds)} ({self.reason})"


@dataclass(frozen=True)
class Streamed(Entry):
    url: str
    note: str

    def describe(self) -> str:
        return f"media stream {self.url}: {self.note}"


# -- bidirectional media streams (<Connect><Stream>, ivr.sim.media) ------------


@dataclass(frozen=True)
class StreamOpened(Entry):
    url: str
    stream_sid: str
    parameters: tuple[tuple[str, str], ...]  # the <Parameter>s, in TwiML order

    def describe(self) -> str:
        # Names only: parameter values are tokens and have no place in output.
        names = ", ".join(name for name, _ in self.parameters) or "none"
        return f"media stream {self.url} opened (parameters: {names})"


@dataclass(frozen=True)
class StreamFailed(Entry):
    url: str
    status: int | None  # HTTP status of a refused upgrade; None: no HTTP answer
    reason: str

    def describe(self) -> str:
        return f"media stream {self.url}: {self.reason}"


@dataclass(frozen=True)
class StreamAudio(Entry):
    """Audio the server played over the stream; `at` is when it stopped."""

    started: float
    seconds: float  # played to the caller
    ending: str  # finished, cleared, stream closed, caller hung up, stream stopped
    unplayed: float = 0.0  # buffered seconds dropped by the ending

    @property
    def interrupted(self) -> bool:
        return self.ending == "cleared"

    def describe(self) -> str:
        text = f"heard {_seconds(self.seconds)} of stream audio from {_seconds(self.started)}"
        if self.ending == "finished":
            return text
        dropped = f", {_seconds(self.unplayed)} unplayed" if self.unplayed else ""
        return f"{text} ({self.ending}{dropped})"


@dataclass(frozen=True)
class MarkEchoed(Entry):
    name: str
    cleared: bool = False  # sent back because of a `clear`, not reached in playback

    def describe(self) -> str:
        return f"mark {self.name!r} echoed" + (" (cleared)" if self.cleared else "")


@dataclass(frozen=True)
class SpokeAudio(Entry):
    """The caller's speech sent as stream audio: synthesized text or a recording."""

    source: str  # the text said, or the recording's file name
    seconds: float
    language: str | None = None  # synthesis language; None for a recording
    recording: bool = False

    def describe(self) -> str:
        what = f"recording {self.source}" if self.recording else f'"{self.source}"'
        lang = f", {self.language}" if self.language else ""
        return f"said {what} into the stream ({_seconds(self.seconds)}{lang})"


@dataclass(frozen=True)
class StreamClosed(Entry):
    url: str
    by: str  # server, caller, simulator
    reason: str
    frames: int  # 20 ms media frames sent
    seconds: float  # how long the stream lasted

    def describe(self) -> str:
        return (
            f"media stream closed by {self.by} after {_seconds(self.seconds)}"
            f" ({self.reason}; {self.frames} frames sent)"
        )


@dataclass(frozen=True)
class FallbackUsed(Entry):
    error_code: int
    error_url: str
    reason: str

    def describe(self) -> str:
        return f"fallback after error {self.error_code} on {self.error_url}: {self.reason}"


@dataclass(frozen=True)
class TwimlWarning(Entry):
    message: str

    def describe(self) -> str:
        return f"twilio warning {self.message}"


@dataclass(frozen=True)
class Note(Entry):
    text: str

    def describe(self) -> str:
        return self.text


@dataclass(frozen=True)
class LoopDetected(Entry):
    requests: int

    def describe(self) -> str:
        return f"loop detected: {self.requests} webhook requests, simulator ended the call"


@dataclass(frozen=True)
class HungUp(Entry):
    by: str  # caller, server, twilio, simulator
    reason: str

    def describe(self) -> str:
        return f"hung up by {self.by} ({self.reason})"


_E = TypeVar("_E", bound=Entry)


@dataclass(frozen=True)
class Transcript:
    call_sid: str
    entries: tuple[Entry, ...]
    total_seconds: float
    hung_up_by: str
    final_status: str  # the CallStatus of the final status callback

    @property
    def reached_human(self) -> bool:
        return any(
            (isinstance(e, Dialed) and e.outcome == "answered") or isinstance(e, CounselorJoined)
            for e in self.entries
        )

    @property
    def requests(self) -> tuple[Request, ...]:
        return tuple(e for e in self.entries if isinstance(e, Request))

    @property
    def fallback_used(self) -> bool:
        return any(isinstance(e, FallbackUsed) for e in self.entries)

    @property
    def loop_detected(self) -> bool:
        return any(isinstance(e, LoopDetected) for e in self.entries)

    def of_type(self, kind: type[_E]) -> tuple[_E, ...]:
        return tuple(e for e in self.entries if isinstance(e, kind))

    def format(self, *, show_requests: bool = False) -> str:
        lines = []
        for entry in self.entries:
            if isinstance(entry, Request) and entry.ok and not show_requests:
                continue
            lines.append(f"{entry.at:6.1f}s  {entry.describe()}")
        human = "yes" if self.reached_human else "no"
        lines.append(
            f"{self.total_seconds:6.1f}s  call {self.final_status}, "
            f"hung up by {self.hung_up_by}, reached a human: {human}"
        )
        return "\n".join(lines)
