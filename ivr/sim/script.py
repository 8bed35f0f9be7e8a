"""What the simulated caller (and the parties the call reaches) will do.

Caller inputs are consumed one per listening point (a `<Gather>` today, a
media stream's listening window later). When the script runs out of inputs
the caller stays on the line in silence, which is what a caller in distress
often does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ivr.sim.errors import ScriptError
from ivr.sim.geo import Place, place_for_number, place_for_state
from ivr.sim.twiml import DTMF_KEYS

DEFAULT_FROM = "+15125550142"  # Austin, TX; 555-01xx lines are reserved for fiction
DEFAULT_TO = "+18885550988"
DEFAULT_SIP_DOMAIN = "crisis.sip.twilio.com"
ANONYMOUS_SIP = "sip:anonymous@anonymous.invalid"  # RFC 3261 8.1.1.3: a withheld From

_PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_ADDRESS = re.compile(r"^(\+[1-9]\d{6,14}|sip:\S+|client:\S+|anonymous)$", re.IGNORECASE)
_SIP_USER = re.compile(r"^(sip:\S+@\S+|[0-9A-Za-z+*#._-]+)$")


@dataclass(frozen=True)
class CallerInput:
    """Base of what the caller does at one listening point."""


@dataclass(frozen=True)
class Press(CallerInput):
    """Key presses. `delay`: seconds after the prompt ends (or, with
    `barge_in`, after it starts) before the first key; keys follow each
    other `KEY_INTERVAL` apart.

    With `at`, the keys are pressed `at` seconds into the menu (from the
    start of its first prompt) whatever the call is doing then: heard by a
    `<Gather>` or a media stream, dropped anywhere else, as on Twilio."""

    digits: str
    delay: float = 1.0
    barge_in: bool = False
    at: float | None = None

    def __post_init__(self) -> None:
        if not self.digits or any(c not in DTMF_KEYS for c in self.digits):
            raise ScriptError(f"press: {self.digits!r} is not a sequence of keys 0-9 * #")
        if self.delay < 0:
            raise ScriptError("press: delay must not be negative")
        if self.at is not None and not self.at >= 0:
            raise ScriptError("press: the time into the menu must not be negative")

    @classmethod
    def parse(cls, text: str) -> Press:
        """`D` (at the next listening point) or `D@Ns` (N seconds into the menu)."""
        digits, timed, when = text.partition("@")
        if not timed:
            return cls(text)
        number = when[:-1] if when.endswith("s") else when
        try:
            at = float(number)
        except ValueError:
            raise ScriptError(f"press: {when!r} is not a number of seconds (D@3s)") from None
        return cls(digits, at=at)


@dataclass(frozen=True)
class Silence(CallerInput):
    """The caller says and presses nothing."""


@dataclass(frozen=True)
class Speak(CallerInput):
    """The caller says `text` (recognised by Twilio for `<Gather input="speech">`;
    synthesized with espeak-ng for a media stream). `language` (en, es, ko,
    en-US...) picks the voice; None: the stream's language parameter, else the
    language of the last `<Say>` heard, else English."""

    text: str
    delay: float = 0.5
    barge_in: bool = False
    language: str | None = None

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ScriptError("say: text must not be empty")
        if self.delay < 0:
            raise ScriptError("say: delay must not be negative")
        if self.language is not None and not _LANGUAGE.match(self.language):
            raise ScriptError(f"say: {self.language!r} is not a language code such as en or es-MX")


@dataclass(frozen=True)
class SpeakAudio(CallerInput):
    """The caller's speech as a recording, for media-stream listening points
    (8 or 16 kHz 16-bit PCM, or 8 kHz mu-law, mono WAV)."""

    path: Path
    delay: float = 0.5
    barge_in: bool = False

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ScriptError("say-audio: delay must not be negative")


DialKind = Literal["answer", "busy", "no-answer", "failed"]
DIAL_KINDS: tuple[DialKind, ...] = ("answer", "busy", "no-answer", "failed")


@dataclass(frozen=True)
class DialOutcome:
    """What the party reached by one `<Dial>` does."""

    kind: DialKind = "answer"
    ring_seconds: float = 4.0  # rings this long before answering (answer only)
    talk_seconds: float = 60.0  # then talks this long and hangs up

    def __post_init__(self) -> None:
        if self.kind not in DIAL_KINDS:
            raise ScriptError(f"dial: unknown outcome {self.kind!r}")
        if self.ring_seconds < 0 or self.talk_seconds < 0:
            raise ScriptError("dial: durations must not be negative")


@dataclass(frozen=True)
class CallScript:
    """One simulated inbound call.

    Location fields left at None are derived from the caller's number the
    way Twilio derives them; give them to simulate carrier data that
    disagrees with the area code (ported and mobile numbers).
    """

    from_number: str = DEFAULT_FROM
    to_number: str = DEFAULT_TO
    from_city: str | None = None
    from_state: str | None = None
    from_zip: str | None = None
    from_country: str | None = None
    sip_headers: Mapping[str, str] = field(default_factory=dict)
    sip_domain: str | None = None  # set: the call comes through this Twilio SIP domain
    stir_verstat: str | None = None
    inputs: tuple[CallerInput, ...] = ()
    dial_outcomes: tuple[DialOutcome, ...] = ()
    hangup_after: float | None = None  # the caller abandons at this simulated second
    hold_patience: float = 300.0  # seconds the caller waits on hold with nobody joining
    duplicate_callbacks: bool = False

    def __post_init__(self) -> None:
        if not _ADDRESS.match(self.from_number):
            raise ScriptError(f"from: {self.from_number!r} is not an E.164 number or address")
        if not _PHONE.match(self.to_number) and not (
            self.sip_domain is not None and _SIP_USER.match(self.to_number)
        ):
            raise ScriptError(f"to: {self.to_number!r} is not an E.164 number")
        if self.sip_domain is not None and not re.fullmatch(r"[A-Za-z0-9.-]+", self.sip_domain):
            raise ScriptError(f"sip: {self.sip_domain!r} is not a domain name")
        if self.sip_headers and self.sip_domain is None:
            # Twilio passes X- headers only for calls through a SIP domain, whose
            # To is a SIP URI ("SIP and TwiML Interaction",
            # https://www.twilio.com/docs/voice/api/sip-twiml).
            raise ScriptError("sip headers come only with calls through a SIP domain, "
                              "never with a call to a phone number: add --sip")
        if self.from_state is not None and not re.fullmatch(r"[A-Za-z]{2}", self.from_state):
            raise ScriptError(f"state: {self.from_state!r} is not a two-letter code")
        if self.from_zip is not None and not re.fullmatch(r"\d{5}", self.from_zip):
            raise ScriptError(f"zip: {self.from_zip!r} is not a five-digit ZIP code")
        if self.hangup_after is not None and self.hangup_after < 0:
            raise ScriptError("hangup-after must not be negative")
        if self.hold_patience < 0:
            raise ScriptError("hold patience must not be negative")
        for name in self.sip_headers:
            if not re.fullmatch(r"[A-Za-z0-9_.!%*+`'~-]+", name):
                raise ScriptError(f"sip header: {name!r} is not a valid header name")

    def caller_place(self) -> Place:
        derived = place_for_number(self.from_number)
        if self.from_state is not None and self.from_state.upper() != derived.state:
            # Carrier data puts the caller elsewhere: take a place in that state.
            derived = place_for_state(self.from_state) or Place(
                state=self.from_state.upper(), country="US"
            )
        return Place(
            city=derived.city if self.from_city is None else self.from_city,
            state=derived.state if self.from_state is None else self.from_state.upper(),
            zip=derived.zip if self.from_zip is None else self.from_zip,
            country=derived.country if self.from_country is None else self.from_country,
        )

    def called_place(self) -> Place:
        return place_for_number(self.to_number)

    def from_address(self) -> str:
        """The From Twilio gives the server: over a SIP domain, a SIP URI."""
        return self._sip_address(self.from_number, anonymous=ANONYMOUS_SIP)

    def to_address(self) -> str:
        return self._sip_address(self.to_number, anonymous=self.to_number)

    def _sip_address(self, address: str, *, anonymous: str) -> str:
        if self.sip_domain is None or address.lower().startswith("sip:"):
            return address
        if address.lower() == "anonymous":
            return anonymous
        return f"sip:{address}@{self.sip_domain}"
