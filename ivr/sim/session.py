"""State of one simulated call: clock, script cursor, transcript, requests.

Verb handlers (ivr.sim.verbs) and drivers (ivr.sim.hold, later media
streams and the REST emulation) act on the call only through this object,
so everything they do is timed, recorded and signed the same way.
"""

from __future__ import annotations

import secrets
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urljoin, urlsplit

from ivr.sim.config import SimConfig
from ivr.sim.errors import MediaError, SimError, TwimlError
from ivr.sim.script import CallerInput, CallScript, DialOutcome, Press, Silence
from ivr.sim.transcript import (
    Entry,
    FallbackUsed,
    Heard,
    HungUp,
    LoopDetected,
    Note,
    Pressed,
    Request,
    Transcript,
    TwimlWarning,
)
from ivr.sim.twiml import Play, Say, Twiml, parse_twiml
from ivr.sim.wav import wav_duration
from ivr.sim.webhook import (
    HTTP_RETRIEVAL_FAILURE,
    INVALID_CONTENT_TYPE,
    Exchange,
    WebhookClient,
)

API_VERSION = "2010-04-01"
SIP_SOURCE_IP = "192.0.2.10"  # the carrier's SBC sending the INVITE (a documentation address)
APPLICATION_ERROR = "We are sorry, an application error has occurred. Goodbye."
_TWIML_TYPES = frozenset({"text/xml", "application/xml", "text/html"})


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def say_seconds(text: str, words_per_second: float) -> float:
    """How long a text-to-speech voice takes to read `text`."""
    return max(0.5, len(text.split()) / words_per_second)


def url_path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass(frozen=True)
class Document:
    """TwiML being executed, with the URL it came from (relative URLs in it
    resolve against that URL, and it is `<Gather>`'s default action)."""

    url: str
    twiml: Twiml


@dataclass(frozen=True)
class Step:
    """What a verb handler tells the executor to do next."""

    kind: Literal["continue", "goto", "end"]
    document: Document | None = None


CONTINUE = Step("continue")
END = Step("end")


def goto(document: Document) -> Step:
    return Step("goto", document)


class _Failure(SimError):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class CallSession:
    def __init__(self, cfg: SimConfig, script: CallScript, webhooks: WebhookClient) -> None:
        self.cfg = cfg
        self.script = script
        self.webhooks = webhooks
        self.call_sid = new_sid("CA")
        self.now = 0.0
        self.status = "ringing"
        self.answered_at: float | None = None
        self.ended = False
        self.hung_up_by = ""
        self.final_status = "completed"
        self.requests_made = 0
        self._entries: list[Entry] = []
        self._inputs: deque[CallerInput] = deque(script.inputs)
        self._dial_outcomes: deque[DialOutcome] = deque(script.dial_outcomes)
        self._audio_cache: dict[str, tuple[float | None, str | None]] = {}
        self._in_fallback = False
        self._base_params = self._build_base_params()
        # Keys timed into a menu (Press.at): where the menu started, whether
        # what runs now hears keys (a <Gather>, a media stream), and what it is.
        self.menu_started: float | None = None
        self.hears_keys = False
        self.doing = "the call"
        # Awaited before each request (a world pacing the caller's IVR sets it:
        # the time the verbs took passes before the webhook that ends them).
        self.before_request: Callable[[], Awaitable[None]] | None = None

    # -- clock -----------------------------------------------------------

    def advance(self, seconds: float) -> bool:
        """Let `seconds` of call time pass; False when the call ended meanwhile."""
        if self.ended:
            return False
        target = self.now + max(0.0, seconds)
        self._drop_keys_before(target)
        hangup = self.script.hangup_after
        if hangup is not None and target >= hangup:
            self.now = max(self.now, hangup)
            self.end("caller", f"caller hung up after {hangup:g}s")
            return False
        if target >= self.cfg.max_call_seconds:
            self.now = self.cfg.max_call_seconds
            self.end("simulator", "maximum call length reached")
            return False
        self.now = target
        return True

    def time_left(self) -> float:
        """Seconds until the caller hangs up (or the call hits its length limit)."""
        limit = self.cfg.max_call_seconds
        if self.script.hangup_after is not None:
            limit = min(limit, self.script.hangup_after)
        return max(0.0, limit - self.now)

    @property
    def answered(self) -> bool:
        return self.answered_at is not None

    def answer(self) -> None:
        if self.answered_at is None:
            self.answered_at = self.now
            self.status = "in-progress"

    def end(self, by: str, reason: str, final_status: str = "completed") -> None:
        if self.ended:
            return
        self.ended = True
        self.hung_up_by = by
        self.final_status = final_status
        self.status = final_status
        self.record(HungUp(self.now, by, reason))

    # -- script ----------------------------------------------------------

    def next_input(self) -> CallerInput:
        self.menu_started = None
        return self._inputs.popleft() if self._inputs else Silence()

    def peek_input(self) -> CallerInput:
        return self._inputs[0] if self._inputs else Silence()

    # -- keys timed into a menu (Press.at) ----------------------------------

    def timed_press(self) -> Press | None:
        head = self.peek_input()
        return head if isinstance(head, Press) and head.at is not None else None

    def start_menu(self, at: float | None = None) -> None:
        """The menu a timed press counts from starts (now, or at `at`)."""
        if self.menu_started is None and self.timed_press() is not None:
            self.menu_started = self.now if at is None else at

    def press_moment(self) -> float | None:
        press = self.timed_press()
        if press is None or press.at is None or self.menu_started is None:
            return None
        return self.menu_started + press.at

    def _drop_keys_before(self, target: float) -> None:
        # Twilio hears keys only in a <Gather> (its nested <Say>/<Play>/<Pause>
        # included: TwiML Voice <Gather>, "Nest other verbs") and, as `dtmf`
        # messages, in a media stream (Media Streams, WebSocket messages).
        # A key pressed during anything else (a bare <Say>, a ringing <Dial>,
        # holding in a conference) is lost.
        moment = self.press_moment()
        limit = min(target, self.time_left() + self.now)
        if moment is None or self.hears_keys or moment >= limit:
            return
        press = self.next_input()
        assert isinstance(press, Press)
        self.record(Pressed(moment, press.digits, ignored=True))
        self.record(Note(moment, f"keys {press.digits} pressed during {self.doing} were lost: "
                                 "Twilio hears keys only in a <Gather> or a media stream"))

    def next_dial_outcome(self) -> DialOutcome:
        return self._dial_outcomes.popleft() if self._dial_outcomes else DialOutcome()

    # -- transcript ------------------------------------------------------

    def record(self, entry: Entry) -> None:
        self._entries.append(entry)

    def note(self, text: str) -> None:
        self.record(Note(self.now, text))

    def transcript(self) -> Transcript:
        return Transcript(
            call_sid=self.call_sid,
            entries=tuple(self._entries),
            total_seconds=self.now,
            hung_up_by=self.hung_up_by or "nobody",
            final_status=self.final_status,
        )

    # -- parameters and URLs ---------------------------------------------

    @property
    def caller_address(self) -> str:
        """The call's From as Twilio gives it (a number, a SIP URI, anonymous)."""
        return self._base_params["From"]

    @property
    def called_address(self) -> str:
        return self._base_params["To"]

    def _build_base_params(self) -> dict[str, str]:
        script = self.script
        params = {
            "AccountSid": self.cfg.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": self.call_sid,
            "Direction": "inbound",
            "From": script.from_address(),
            "Caller": script.from_address(),
            "To": script.to_address(),
            "Called": script.to_address(),
        }
        if script.sip_domain is not None:
            # A call through a SIP domain: To is the INVITE's URI, From its From
            # header, plus the domain and X- headers as SipHeader_<name>; no
            # geographic data, which Twilio derives from phone numbers ("SIP and
            # TwiML Interaction", https://www.twilio.com/docs/voice/api/sip-twiml).
            params.update(self._sip_params(script.sip_domain))
            for name, value in script.sip_headers.items():
                params[f"SipHeader_{name}"] = value
            return params
        caller = script.caller_place()
        called = script.called_place()
        for prefixes, place in ((("From", "Caller"), caller), (("To", "Called"), called)):
            for prefix in prefixes:
                for name, value in (
                    ("City", place.city),
                    ("State", place.state),
                    ("Zip", place.zip),
                    ("Country", place.country),
                ):
                    if value:
                        params[prefix + name] = value
        if script.stir_verstat:
            params["StirVerstat"] = script.stir_verstat
        return params

    def _sip_params(self, domain: str) -> dict[str, str]:
        return {
            "SipDomain": domain,
            "SipDomainSid": new_sid("SD"),
            "SipCallId": f"{uuid.uuid4()}@{SIP_SOURCE_IP}",
            "SipSourceIp": SIP_SOURCE_IP,
        }

    def params(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The form Twilio posts to any webhook of this call, plus `extra`."""
        params = dict(self._base_params)
        params["CallStatus"] = self.status
        if extra:
            params.update(extra)
        return params

    def resolve(self, document: Document, reference: str) -> str:
        return urljoin(document.url, reference)

    def is_ours(self, url: str) -> bool:
        return self.cfg.to_server(url) != url or url.startswith(self.cfg.signed_base + "/")

    # -- requests ----------------------------------------------------------

    async def follow(
        self,
        url: str,
        method: str,
        purpose: str,
        extra: Mapping[str, str] | None = None,
        *,
        callback: bool = False,
    ) -> Step:
        """Request a document and continue the call with it (or end the call)."""
        if self.before_request is not None:
            await self.before_request()
        document = await self.fetch_document(url, method, purpose, extra, callback=callback)
        return END if document is None else goto(document)

    async def fetch_document(
        self,
        url: str,
        method: str,
        purpose: str,
        extra: Mapping[str, str] | None = None,
        *,
        callback: bool = False,
        fallback: bool = True,
    ) -> Document | None:
        """Request TwiML. On failure Twilio requests the fallback URL (when
        `fallback`), else plays its application error and hangs up. None
        means the call has ended, or (without `fallback`) that the request
        failed."""
        if not self._count_request():
            return None
        params = self.params(extra)
        exchange = await self._exchange(url, method, purpose, params, callback)
        try:
            return self._document_from(url, exchange)
        except _Failure as failure:
            if not fallback:
                self.note(f"{purpose} failed ({failure.reason}), ignored")
                return None
            return await self._fall_back(failure, url, exchange.url, params)

    async def notify(
        self,
        url: str,
        method: str,
        purpose: str,
        extra: Mapping[str, str] | None = None,
        *,
        callback: bool = False,
    ) -> None:
        """A request whose answer Twilio ignores (status callbacks, actions
        requested after the caller hung up)."""
        await self._exchange(url, method, purpose, self.params(extra), callback)

    def _count_request(self) -> bool:
        if self.ended:
            return False
        if self.requests_made >= self.cfg.max_requests:
            self.record(LoopDetected(self.now, self.requests_made))
            self.end("simulator", "loop detected")
            return False
        self.requests_made += 1
        return True

    async def _exchange(
        self, url: str, method: str, purpose: str, params: Mapping[str, str], callback: bool
    ) -> Exchange:
        token = str(uuid.uuid4())
        exchange = await self.webhooks.send(method, url, params, token)
        self._record_request(url, exchange, purpose, duplicate=False)
        if exchange.timed_out:
            # The caller waited the whole time in silence (on the first request,
            # ringing): the call's clock moves on by Twilio's timeout, whatever
            # real time the wait took.
            self.advance(self.cfg.request_timeout)
        if not (callback and self.script.duplicate_callbacks):
            return exchange
        # A retried webhook carries the same idempotency token; Twilio acts on
        # the answer to the retry, as the first answer is the one it lost.
        again = await self.webhooks.send(method, url, params, token)
        self._record_request(url, again, purpose, duplicate=True)
        if exchange.ok and again.ok and exchange.body != again.body:
            self.note(f"duplicate {purpose} was answered differently")
        return again

    def _record_request(
        self, url: str, exchange: Exchange, purpose: str, *, duplicate: bool
    ) -> None:
        # `url` is the URL before a GET's parameters were appended: those
        # include the caller's number, which transcripts must not show.
        self.record(
            Request(
                self.now,
                exchange.method,
                url_path(url),
                exchange.status,
                purpose,
                exchange.error,
                duplicate,
            )
        )

    def _document_from(self, url: str, exchange: Exchange) -> Document:
        if not exchange.ok:
            raise _Failure(exchange.error_code or HTTP_RETRIEVAL_FAILURE, exchange.error or "")
        content_type = exchange.content_type
        if content_type in _TWIML_TYPES:
            try:
                twiml = parse_twiml(exchange.body)
            except TwimlError as exc:
                raise _Failure(exc.code, str(exc)) from exc
        elif content_type.startswith("audio/"):
            # Twilio plays an audio answer as if it were <Play>ed.
            self._audio_cache[url] = self._measure(exchange)
            twiml = Twiml((Play(url=url),))
        elif content_type == "text/plain":
            text = exchange.body.decode("utf-8", "replace").strip()
            twiml = Twiml((Say(text=text),), ("text/plain answer: Twilio reads it aloud",))
        else:
            raise _Failure(INVALID_CONTENT_TYPE, f"content type {content_type!r} is not TwiML")
        for warning in twiml.warnings:
            self.record(TwimlWarning(self.now, warning))
        return Document(url=url, twiml=twiml)

    async def _fall_back(
        self, failure: _Failure, url: str, error_url: str, params: Mapping[str, str]
    ) -> Document | None:
        if self.ended:
            return None  # the caller hung up while Twilio waited for an answer
        fallback_url = self.cfg.number_fallback_url
        if self._in_fallback or fallback_url is None:
            self.note(f"error {failure.code}: {failure.reason}")
            self._application_error()
            return None
        # "If Twilio is unable to retrieve or execute TwiML from your web server,
        # a request is immediately made to the number's Fallback URL", with
        # ErrorCode and ErrorUrl ("Availability and Reliability",
        # https://www.twilio.com/docs/usage/security/availability-reliability).
        self.record(FallbackUsed(self.now, failure.code, url_path(url), failure.reason))
        self._in_fallback = True
        try:
            if not self._count_request():
                return None
            # The same parameters as the request that failed, plus what failed.
            form = {**params, "ErrorCode": str(failure.code), "ErrorUrl": error_url}
            exchange = await self._exchange(fallback_url, "POST", "fallback", form, False)
            try:
                return self._document_from(fallback_url, exchange)
            except _Failure as second:
                self.note(f"fallback failed too: error {second.code}: {second.reason}")
                self._application_error()
                return None
        finally:
            self._in_fallback = False

    def _application_error(self) -> None:
        self.answer()
        seconds = say_seconds(APPLICATION_ERROR, self.cfg.speaking_rate)
        self.record(Heard(self.now, APPLICATION_ERROR, "en-US", "woman", seconds))
        if self.advance(seconds):
            self.end("twilio", "application error")

    # -- media -------------------------------------------------------------

    async def audio_seconds(self, url: str) -> tuple[float | None, str | None]:
        """(seconds, None) for playable audio, (None, reason) when it is not.
        Twilio caches media, so each URL is fetched once per call."""
        cached = self._audio_cache.get(url)
        if cached is not None:
            return cached
        exchange = await self.webhooks.fetch_media(url)
        self._record_request(url, exchange, "play", duplicate=False)
        result = self._measure(exchange)
        self._audio_cache[url] = result
        return result

    @staticmethod
    def _measure(exchange: Exchange) -> tuple[float | None, str | None]:
        if not exchange.ok:
            return None, exchange.error
        try:
            return wav_duration(exchange.body), None
        except MediaError as exc:
            return None, f"{exchange.content_type}: {exc}"

