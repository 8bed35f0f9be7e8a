"""TwiML documents parsed into typed, immutable verbs.

Defaults are the ones Twilio documents for each verb and noun. Where Twilio
only *warns* about a bad attribute value (and then uses its default), the
parser does the same and keeps the warning on the document so the call
transcript shows it. Where Twilio refuses the document (not XML, no
`<Response>` root, an unknown verb, a verb nested where it may not be), the
parser raises `TwimlError` with Twilio's error code.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ivr.sim.errors import TwimlError

Method = Literal["GET", "POST"]

DTMF_KEYS = "0123456789*#"
# What Twilio plays to a caller waiting in a conference when no waitUrl is given.
TWILIO_DEFAULT_WAIT_URL = "https://twimlets.com/holdmusic?Bucket=com.twilio.music.classical"


@dataclass(frozen=True)
class Verb:
    """Base of every executable TwiML verb."""


@dataclass(frozen=True)
class Say(Verb):
    text: str
    voice: str = "man"
    language: str = "en-US"
    loop: int = 1  # 0: repeat until the call moves on (Twilio caps it at 1000)


@dataclass(frozen=True)
class Play(Verb):
    url: str
    loop: int = 1
    digits: str | None = None  # DTMF tones to play instead of (or before) audio


@dataclass(frozen=True)
class Pause(Verb):
    length: int = 1


GatherChild = Say | Play | Pause


@dataclass(frozen=True)
class Gather(Verb):
    input: str = "dtmf"
    action: str | None = None  # None: the URL of the current document
    method: Method = "POST"
    timeout: int = 5
    speech_timeout: str | None = None  # "auto" or seconds; None: same as timeout
    finish_on_key: str = "#"
    num_digits: int | None = None
    language: str = "en-US"
    hints: str | None = None
    action_on_empty_result: bool = False
    barge_in: bool = True
    profanity_filter: bool = True
    partial_result_callback: str | None = None
    speech_model: str | None = None
    enhanced: bool = False
    max_speech_time: int = 60
    children: tuple[GatherChild, ...] = ()

    @property
    def accepts_dtmf(self) -> bool:
        return "dtmf" in self.input.split()

    @property
    def accepts_speech(self) -> bool:
        return "speech" in self.input.split()


@dataclass(frozen=True)
class Redirect(Verb):
    url: str
    method: Method = "POST"


@dataclass(frozen=True)
class DialTarget:
    """Base of the nouns `<Dial>` can call."""

    @property
    def label(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Number(DialTarget):
    number: str
    send_digits: str | None = None
    url: str | None = None
    method: Method = "POST"
    status_callback: str | None = None
    status_callback_event: str = "completed"
    status_callback_method: Method = "POST"
    machine_detection: str | None = None

    @property
    def label(self) -> str:
        return self.number


@dataclass(frozen=True)
class Sip(DialTarget):
    uri: str
    username: str | None = None
    password: str | None = None
    url: str | None = None
    method: Method = "POST"
    status_callback: str | None = None
    status_callback_event: str | None = None
    status_callback_method: Method = "POST"

    @property
    def label(self) -> str:
        return self.uri


@dataclass(frozen=True)
class Client(DialTarget):
    identity: str
    url: str | None = None
    method: Method = "POST"
    status_callback: str | None = None
    status_callback_event: str | None = None
    status_callback_method: Method = "POST"
    parameters: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"client:{self.identity}"


@dataclass(frozen=True)
class Conference(DialTarget):
    name: str
    muted: bool = False
    beep: str = "true"
    start_conference_on_enter: bool = True
    end_conference_on_exit: bool = False
    wait_url: str = TWILIO_DEFAULT_WAIT_URL  # "" means silence
    wait_method: Method = "POST"
    max_participants: int = 250
    record: str = "do-not-record"
    region: str | None = None
    coach: str | None = None
    trim: str = "trim-silence"
    status_callback: str | None = None
    status_callback_event: str | None = None
    status_callback_method: Method = "POST"
    event_callback_url: str | None = None
    participant_label: str | None = None

    @property
    def label(self) -> str:
        return f"conference:{self.name}"


@dataclass(frozen=True)
class Queue(DialTarget):
    name: str
    url: str | None = None
    method: Method = "POST"

    @property
    def label(self) -> str:
        return f"queue:{self.name}"


@dataclass(frozen=True)
class Dial(Verb):
    targets: tuple[DialTarget, ...]
    action: str | None = None  # None: continue with the next verb after <Dial>
    method: Method = "POST"
    timeout: int = 30
    time_limit: int = 14400
    caller_id: str | None = None
    record: str = "do-not-record"
    answer_on_bridge: bool = False
    hangup_on_star: bool = False
    ring_tone: str | None = None
    recording_status_callback: str | None = None
    sequential: bool = False

    @property
    def conference(self) -> Conference | None:
        for target in self.targets:
            if isinstance(target, Conference):
                return target
        return None


@dataclass(frozen=True)
class Hangup(Verb):
    pass


@dataclass(frozen=True)
class Reject(Verb):
    reason: str = "rejected"


@dataclass(frozen=True)
class Stream:
    url: str
    name: str | None = None
    track: str = "inbound_track"
    status_callback: str | None = None
    status_callback_method: Method = "POST"
    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Connect(Verb):
    stream: Stream
    action: str | None = None  # None: continue with the next verb after <Connect>
    method: Method = "POST"


@dataclass(frozen=True)
class Start(Verb):
    streams: tuple[Stream, ...]
    action: str | None = None
    method: Method = "POST"


@dataclass(frozen=True)
class Stop(Verb):
    stream_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Enqueue(Verb):
    name: str
    action: str | None = None
    method: Method = "POST"
    wait_url: str | None = None
    wait_url_method: Method = "POST"
    workflow_sid: str | None = None
    max_queue_size: int | None = None


@dataclass(frozen=True)
class Leave(Verb):
    pass


@dataclass(frozen=True)
class Twiml:
    """A parsed document: its verbs in order, and Twilio's warnings about it."""

    verbs: tuple[Verb, ...]
    warnings: tuple[str, ...] = ()


# Attributes each element accepts; anything else draws Twilio's 12200 warning.
_KNOWN_ATTRIBUTES: dict[str, frozenset[str]] = {
    "Response": frozenset(),
    "Say": frozenset({"voice", "loop", "language"}),
    "Play": frozenset({"loop", "digits"}),
    "Pause": frozenset({"length"}),
    "Gather": frozenset(
        {
            "input", "action", "method", "timeout", "speechTimeout", "maxSpeechTime",
            "profanityFilter", "finishOnKey", "numDigits", "partialResultCallback",
            "partialResultCallbackMethod", "language", "hints", "bargeIn", "debug",
            "actionOnEmptyResult", "speechModel", "enhanced",
        }
    ),
    "Redirect": frozenset({"method"}),
    "Dial": frozenset(
        {
            "action", "method", "timeout", "hangupOnStar", "timeLimit", "callerId", "record",
            "trim", "recordingStatusCallback", "recordingConfigurationId",
            "recordingStatusCallbackMethod", "recordingStatusCallbackEvent", "answerOnBridge",
            "ringTone", "recordingTrack", "sequential", "referUrl", "referMethod", "events",
        }
    ),
    "Number": frozenset(
        {
            "sendDigits", "url", "method", "statusCallbackEvent", "statusCallback",
            "statusCallbackMethod", "byoc", "machineDetection", "amdStatusCallbackMethod",
            "amdStatusCallback", "machineDetectionTimeout", "machineDetectionSpeechThreshold",
            "machineDetectionSpeechEndThreshold", "machineDetectionSilenceTimeout",
        }
    ),
    "Sip": frozenset(
        {
            "username", "password", "url", "method", "statusCallbackEvent", "statusCallback",
            "statusCallbackMethod", "machineDetection", "amdStatusCallbackMethod",
            "amdStatusCallback", "machineDetectionTimeout", "machineDetectionSpeechThreshold",
            "machineDetectionSpeechEndThreshold", "machineDetectionSilenceTimeout",
        }
    ),
    "Client": frozenset(
        {"url", "method", "statusCallbackEvent", "statusCallback", "statusCallbackMethod"}
    ),
    "Conference": frozenset(
        {
            "muted", "beep", "startConferenceOnEnter", "endConferenceOnExit", "waitUrl",
            "waitMethod", "maxParticipants", "record", "recordingConfigurationId", "region",
            "coach", "trim", "statusCallbackEvent", "statusCallback", "statusCallbackMethod",
            "recordingStatusCallback", "recordingStatusCallbackMethod",
            "recordingStatusCallbackEvent", "eventCallbackUrl", "jitterBufferSize",
            "participantLabel",
        }
    ),
    "Queue": frozenset({"url", "method", "reservationSid", "postWorkActivitySid"}),
    "Hangup": frozenset(),
    "Reject": frozenset({"reason"}),
    "Connect": frozenset({"action", "method"}),
    "Start": frozenset({"action", "method"}),
    "Stop": frozenset(),
    "Stream": frozenset(
        {
            "name", "connectorName", "url", "track", "statusCallback", "statusCallbackMethod",
            "audioFormat", "sampleRate",
        }
    ),
    "Parameter": frozenset({"name", "value"}),
    "Identity": frozenset(),
    "Enqueue": frozenset(
        {"action", "maxQueueSize", "method", "waitUrl", "waitUrlMethod", "workflowSid"}
    ),
    "Leave": frozenset(),
}

# Valid TwiML that this simulator does not execute: refusing loudly beats
# silently skipping something the server relies on.
_UNSUPPORTED_VERBS = frozenset({"Record", "Echo", "Pay", "Prompt", "Refer", "Sms", "Siprec"})


class _Reader:
    """Typed attribute access for one element, collecting Twilio-style warnings."""

    def __init__(self, element: ET.Element, warnings: list[str]) -> None:
        self.element = element
        self.tag = element.tag
        self.warnings = warnings
        known = _KNOWN_ATTRIBUTES.get(element.tag, frozenset())
        for name in sorted(set(element.attrib) - known):
            self.warn(12200, f"unknown attribute {name!r}")

    def warn(self, code: int, message: str) -> None:
        self.warnings.append(f"{code} <{self.tag}>: {message}")

    def opt(self, name: str) -> str | None:
        return self.element.attrib.get(name)

    def text_attr(self, name: str, default: str) -> str:
        value = self.element.attrib.get(name)
        return default if value is None else value

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        value = self.opt(name)
        if value is None:
            return default
        try:
            number = int(value.strip())
        except ValueError:
            number = minimum - 1
        if number < minimum:
            self.warn(13000, f"invalid {name}={value!r}, using {default}")
            return default
        return number

    def opt_integer(self, name: str, minimum: int = 1) -> int | None:
        value = self.opt(name)
        if value is None:
            return None
        try:
            number = int(value.strip())
        except ValueError:
            number = minimum - 1
        if number < minimum:
            self.warn(13000, f"invalid {name}={value!r}, ignored")
            return None
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.opt(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        self.warn(13000, f"invalid {name}={value!r}, using {str(default).lower()}")
        return default

    def method(self, name: str = "method") -> Method:
        value = self.opt(name)
        if value is None:
            return "POST"
        upper = value.strip().upper()
        if upper == "GET":
            return "GET"
        if upper != "POST":
            self.warn(13000, f"invalid {name}={value!r}, using POST")
        return "POST"

    def choice(self, name: str, default: str, allowed: frozenset[str]) -> str:
        value = self.opt(name)
        if value is None:
            return default
        if value not in allowed:
            self.warn(13000, f"invalid {name}={value!r}, using {default!r}")
            return default
        return value


def _text(element: ET.Element) -> str:
    """Text content with SSML markup flattened and whitespace collapsed."""
    return re.sub(r"\s+", " ", "".join(element.itertext())).strip()


def _own_text(element: ET.Element) -> str:
    return (element.text or "").strip()


def parse_twiml(document: str | bytes) -> Twiml:
    """Parse a TwiML voice document; raises TwimlError where Twilio would fail the call."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        raise TwimlError(f"not well-formed XML: {exc}") from exc
    if root.tag != "Response":
        raise TwimlError(f"root element must be <Response>, not <{root.tag}>")
    warnings: list[str] = []
    _Reader(root, warnings)
    verbs = tuple(_parse_verb(child, warnings) for child in root)
    return Twiml(verbs=verbs, warnings=tuple(warnings))


def _parse_verb(element: ET.Element, warnings: list[str]) -> Verb:
    tag = element.tag
    parser = _VERB_PARSERS.get(tag)
    if parser is not None:
        return parser(element, warnings)
    if tag in _UNSUPPORTED_VERBS:
        raise TwimlError(f"<{tag}> is valid TwiML but the call simulator does not execute it")
    if tag in _NOUN_TAGS:
        raise TwimlError(f"<{tag}> is a noun and cannot appear directly in <Response>")
    hint = ""
    if tag[:1].islower() and tag[:1].upper() + tag[1:] in _VERB_PARSERS:
        hint = " (TwiML is case-sensitive)"
    raise TwimlError(f"unknown TwiML verb <{tag}>{hint}")


def _no_children(element: ET.Element) -> None:
    for child in element:
        raise TwimlError(f"<{element.tag}> cannot contain <{child.tag}>")


def _parse_say(element: ET.Element, warnings: list[str]) -> Say:
    r = _Reader(element, warnings)
    return Say(
        text=_text(element),
        voice=r.text_attr("voice", "man"),
        language=r.text_attr("language", "en-US"),
        loop=r.integer("loop", 1),
    )


def _parse_play(element: ET.Element, warnings: list[str]) -> Play:
    r = _Reader(element, warnings)
    _no_children(element)
    url = _own_text(element)
    digits = r.opt("digits")
    if digits is not None and any(c not in DTMF_KEYS + "w" for c in digits):
        r.warn(13000, f"invalid digits={digits!r}, ignored")
        digits = None
    if not url and not digits:
        raise TwimlError("<Play> needs a URL or digits")
    return Play(url=url, loop=r.integer("loop", 1), digits=digits)


def _parse_pause(element: ET.Element, warnings: list[str]) -> Pause:
    r = _Reader(element, warnings)
    _no_children(element)
    return Pause(length=r.integer("length", 1, minimum=1))


_GATHER_CHILDREN: dict[str, Callable[[ET.Element, list[str]], GatherChild]] = {
    "Say": _parse_say,
    "Play": _parse_play,
    "Pause": _parse_pause,
}


def _parse_gather(element: ET.Element, warnings: list[str]) -> Gather:
    r = _Reader(element, warnings)
    children: list[GatherChild] = []
    for child in element:
        child_parser = _GATHER_CHILDREN.get(child.tag)
        if child_parser is None:
            raise TwimlError(f"<Gather> cannot contain <{child.tag}>")
        children.append(child_parser(child, warnings))
    input_kinds = r.text_attr("input", "dtmf")
    if not input_kinds.split() or set(input_kinds.split()) - {"dtmf", "speech"}:
        r.warn(13000, f"invalid input={input_kinds!r}, using 'dtmf'")
        input_kinds = "dtmf"
    finish_on_key = r.text_attr("finishOnKey", "#")
    if finish_on_key and (len(finish_on_key) != 1 or finish_on_key not in DTMF_KEYS):
        r.warn(13310, f"invalid finishOnKey={finish_on_key!r}, using '#'")
        finish_on_key = "#"
    speech_timeout = r.opt("speechTimeout")
    if speech_timeout is not None and speech_timeout != "auto" and not speech_timeout.isdigit():
        r.warn(13327, f"invalid speechTimeout={speech_timeout!r}, ignored")
        speech_timeout = None
    return Gather(
        input=" ".join(input_kinds.split()),
        action=r.opt("action"),
        method=r.method(),
        timeout=r.integer("timeout", 5),
        speech_timeout=speech_timeout,
        finish_on_key=finish_on_key,
        num_digits=r.opt_integer("numDigits"),
        language=r.text_attr("language", "en-US"),
        hints=r.opt("hints"),
        action_on_empty_result=r.boolean("actionOnEmptyResult", False),
        barge_in=r.boolean("bargeIn", True),
        profanity_filter=r.boolean("profanityFilter", True),
        partial_result_callback=r.opt("partialResultCallback"),
        speech_model=r.opt("speechModel"),
        enhanced=r.boolean("enhanced", False),
        max_speech_time=r.integer("maxSpeechTime", 60, minimum=1),
        children=tuple(children),
    )


def _parse_redirect(element: ET.Element, warnings: list[str]) -> Redirect:
    r = _Reader(element, warnings)
    _no_children(element)
    url = _own_text(element)
    if not url:
        raise TwimlError("<Redirect> needs a URL")
    return Redirect(url=url, method=r.method())


_RECORD_VALUES = frozenset(
    {
        "do-not-record", "record-from-answer", "record-from-ringing",
        "record-from-answer-dual", "record-from-ringing-dual", "true", "false",
    }
)


def _parse_number(element: ET.Element, warnings: list[str]) -> Number:
    r = _Reader(element, warnings)
    _no_children(element)
    number = _own_text(element)
    if not number:
        raise TwimlError("<Number> needs a phone number")
    return Number(
        number=number,
        send_digits=r.opt("sendDigits"),
        url=r.opt("url"),
        method=r.method(),
        status_callback=r.opt("statusCallback"),
        status_callback_event=r.text_attr("statusCallbackEvent", "completed"),
        status_callback_method=r.method("statusCallbackMethod"),
        machine_detection=r.opt("machineDetection"),
    )


def _parse_sip(element: ET.Element, warnings: list[str]) -> Sip:
    r = _Reader(element, warnings)
    uri = _own_text(element)
    if not uri:
        raise TwimlError("<Sip> needs a SIP URI")
    return Sip(
        uri=uri,
        username=r.opt("username"),
        password=r.opt("password"),
        url=r.opt("url"),
        method=r.method(),
        status_callback=r.opt("statusCallback"),
        status_callback_event=r.opt("statusCallbackEvent"),
        status_callback_method=r.method("statusCallbackMethod"),
    )


def _parameters(element: ET.Element, warnings: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for child in element:
        if child.tag != "Parameter":
            continue
        r = _Reader(child, warnings)
        name = r.opt("name")
        if not name:
            r.warn(13000, "<Parameter> without a name, ignored")
            continue
        params[name] = r.text_attr("value", "")
    return params


def _parse_client(element: ET.Element, warnings: list[str]) -> Client:
    r = _Reader(element, warnings)
    identity = _own_text(element)
    for child in element:
        if child.tag == "Identity":
            identity = _own_text(child)
        elif child.tag != "Parameter":
            raise TwimlError(f"<Client> cannot contain <{child.tag}>")
    if not identity:
        raise TwimlError("<Client> needs an identity")
    return Client(
        identity=identity,
        url=r.opt("url"),
        method=r.method(),
        status_callback=r.opt("statusCallback"),
        status_callback_event=r.opt("statusCallbackEvent"),
        status_callback_method=r.method("statusCallbackMethod"),
        parameters=_parameters(element, warnings),
    )


def _parse_conference(element: ET.Element, warnings: list[str]) -> Conference:
    r = _Reader(element, warnings)
    _no_children(element)
    name = _own_text(element)
    if not name:
        raise TwimlError("<Conference> needs a name")
    return Conference(
        name=name,
        muted=r.boolean("muted", False),
        beep=r.choice("beep", "true", frozenset({"true", "false", "onEnter", "onExit"})),
        start_conference_on_enter=r.boolean("startConferenceOnEnter", True),
        end_conference_on_exit=r.boolean("endConferenceOnExit", False),
        wait_url=r.text_attr("waitUrl", TWILIO_DEFAULT_WAIT_URL),
        wait_method=r.method("waitMethod"),
        max_participants=r.integer("maxParticipants", 250, minimum=2),
        record=r.choice(
            "record", "do-not-record", frozenset({"do-not-record", "record-from-start"})
        ),
        region=r.opt("region"),
        coach=r.opt("coach"),
        trim=r.choice("trim", "trim-silence", frozenset({"trim-silence", "do-not-trim"})),
        status_callback=r.opt("statusCallback"),
        status_callback_event=r.opt("statusCallbackEvent"),
        status_callback_method=r.method("statusCallbackMethod"),
        event_callback_url=r.opt("eventCallbackUrl"),
        participant_label=r.opt("participantLabel"),
    )


def _parse_queue(element: ET.Element, warnings: list[str]) -> Queue:
    r = _Reader(element, warnings)
    _no_children(element)
    name = _own_text(element)
    if not name:
        raise TwimlError("<Queue> needs a name")
    return Queue(name=name, url=r.opt("url"), method=r.method())


_DIAL_NOUNS: dict[str, Callable[[ET.Element, list[str]], DialTarget]] = {
    "Number": _parse_number,
    "Sip": _parse_sip,
    "Client": _parse_client,
    "Conference": _parse_conference,
    "Queue": _parse_queue,
}


def _parse_dial(element: ET.Element, warnings: list[str]) -> Dial:
    r = _Reader(element, warnings)
    targets: list[DialTarget] = []
    for child in element:
        noun_parser = _DIAL_NOUNS.get(child.tag)
        if noun_parser is None:
            raise TwimlError(f"<Dial> cannot contain <{child.tag}>")
        targets.append(noun_parser(child, warnings))
    if not targets:
        number = _own_text(element)
        if not number:
            raise TwimlError("<Dial> needs a number or a noun to dial")
        targets.append(Number(number=number))
    conferences = sum(isinstance(t, Conference | Queue) for t in targets)
    if conferences and len(targets) > 1:
        raise TwimlError("<Dial> with <Conference> or <Queue> cannot dial anything else")
    return Dial(
        targets=tuple(targets),
        action=r.opt("action"),
        method=r.method(),
        timeout=r.integer("timeout", 30, minimum=1),
        time_limit=r.integer("timeLimit", 14400, minimum=1),
        caller_id=r.opt("callerId"),
        record=r.choice("record", "do-not-record", _RECORD_VALUES),
        answer_on_bridge=r.boolean("answerOnBridge", False),
        hangup_on_star=r.boolean("hangupOnStar", False),
        ring_tone=r.opt("ringTone"),
        recording_status_callback=r.opt("recordingStatusCallback"),
        sequential=r.boolean("sequential", False),
    )


def _parse_hangup(element: ET.Element, warnings: list[str]) -> Hangup:
    _Reader(element, warnings)
    _no_children(element)
    return Hangup()


def _parse_reject(element: ET.Element, warnings: list[str]) -> Reject:
    r = _Reader(element, warnings)
    _no_children(element)
    return Reject(reason=r.choice("reason", "rejected", frozenset({"rejected", "busy"})))


def _parse_stream(element: ET.Element, warnings: list[str]) -> Stream:
    r = _Reader(element, warnings)
    for child in element:
        if child.tag != "Parameter":
            raise TwimlError(f"<Stream> cannot contain <{child.tag}>")
    url = r.opt("url")
    if not url:
        raise TwimlError("<Stream> needs a url attribute")
    return Stream(
        url=url,
        name=r.opt("name"),
        track=r.choice(
            "track", "inbound_track", frozenset({"inbound_track", "outbound_track", "both_tracks"})
        ),
        status_callback=r.opt("statusCallback"),
        status_callback_method=r.method("statusCallbackMethod"),
        parameters=_parameters(element, warnings),
    )


def _parse_connect(element: ET.Element, warnings: list[str]) -> Connect:
    r = _Reader(element, warnings)
    nouns = list(element)
    if len(nouns) != 1:
        raise TwimlError("<Connect> needs exactly one noun")
    if nouns[0].tag != "Stream":
        raise TwimlError(f"<Connect><{nouns[0].tag}> is not simulated (only <Stream>)")
    stream = _parse_stream(nouns[0], warnings)
    if stream.track != "inbound_track":
        r.warn(13000, "a bidirectional <Connect><Stream> only supports track='inbound_track'")
    return Connect(stream=stream, action=r.opt("action"), method=r.method())


def _parse_start(element: ET.Element, warnings: list[str]) -> Start:
    r = _Reader(element, warnings)
    streams: list[Stream] = []
    for child in element:
        if child.tag != "Stream":
            raise TwimlError(f"<Start><{child.tag}> is not simulated (only <Stream>)")
        streams.append(_parse_stream(child, warnings))
    if not streams:
        raise TwimlError("<Start> needs a noun")
    return Start(streams=tuple(streams), action=r.opt("action"), method=r.method())


def _parse_stop(element: ET.Element, warnings: list[str]) -> Stop:
    _Reader(element, warnings)
    names: list[str] = []
    for child in element:
        if child.tag != "Stream":
            raise TwimlError(f"<Stop><{child.tag}> is not simulated (only <Stream>)")
        name = _Reader(child, warnings).opt("name")
        if name:
            names.append(name)
    return Stop(stream_names=tuple(names))


def _parse_enqueue(element: ET.Element, warnings: list[str]) -> Enqueue:
    r = _Reader(element, warnings)
    name = _own_text(element)
    for child in element:
        if child.tag != "Task":
            raise TwimlError(f"<Enqueue> cannot contain <{child.tag}>")
    if not name and r.opt("workflowSid") is None:
        raise TwimlError("<Enqueue> needs a queue name")
    return Enqueue(
        name=name,
        action=r.opt("action"),
        method=r.method(),
        wait_url=r.opt("waitUrl"),
        wait_url_method=r.method("waitUrlMethod"),
        workflow_sid=r.opt("workflowSid"),
        max_queue_size=r.opt_integer("maxQueueSize"),
    )


def _parse_leave(element: ET.Element, warnings: list[str]) -> Leave:
    _Reader(element, warnings)
    _no_children(element)
    return Leave()


_VERB_PARSERS: dict[str, Callable[[ET.Element, list[str]], Verb]] = {
    "Say": _parse_say,
    "Play": _parse_play,
    "Pause": _parse_pause,
    "Gather": _parse_gather,
    "Redirect": _parse_redirect,
    "Dial": _parse_dial,
    "Hangup": _parse_hangup,
    "Reject": _parse_reject,
    "Connect": _parse_connect,
    "Start": _parse_start,
    "Stop": _parse_stop,
    "Enqueue": _parse_enqueue,
    "Leave": _parse_leave,
}

_NOUN_TAGS = frozenset(
    {"Number", "Sip", "Client", "Conference", "Queue", "Stream", "Parameter", "Identity", "Task"}
)
