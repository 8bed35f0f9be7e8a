"""Bidirectional Media Streams (`<Connect><Stream>`), emulated over a real websocket.

Twilio opens a websocket to the stream URL, signing the upgrade like a
webhook over the URL exactly as the TwiML wrote it, with no parameters. It
sends `connected`, then `start` (stream, call and account SIDs, tracks,
the `<Parameter>`s as customParameters, the media format), then the
caller's audio as `media` messages, 160 bytes of base64 mu-law every 20 ms,
and a `dtmf` message per key. The server answers with `media` (audio to
play), `mark` (tell me when playback gets here) and `clear` (drop what has
not been played yet, and send back the pending marks). The stream is over
when the server closes the socket, and Twilio then requests the
`<Connect>` action; when the caller hangs up Twilio sends `stop` instead.

Time: the call clock moves 20 ms per frame, and frames go out on the wall
clock `speed` times faster than real time. A server reacting within a few
wall milliseconds is seen reacting `speed` times slower in call time.

The caller: each listening window takes the script's next input, then
acts `delay` seconds after the server's prompt ends (after it starts, with
`barge_in`). The first window opens when the server's first prompt starts
playing, or when no audio came at all for a while; later windows open once
a new prompt has played out and the line stayed quiet briefly, so a
closing "thank you" does not swallow the input meant for the next
listening point. Around everything the caller does the line carries
low-level noise, never digital silence, so the server's energy gate meets
a real line.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import ipaddress
import json
import random
import sys
import tempfile
import uuid
from array import array
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from yarl import URL

from ivr.sim.errors import ScriptError
from ivr.sim.script import CallerInput, Press, Silence, Speak, SpeakAudio
from ivr.sim.session import CallSession, Document, new_sid, url_path
from ivr.sim.signing import SIGNATURE_HEADER, compute_signature
from ivr.sim.transcript import (
    Heard,
    MarkEchoed,
    Note,
    Played,
    Pressed,
    Request,
    Silent,
    SpokeAudio,
    StreamAudio,
    StreamClosed,
    StreamFailed,
    StreamOpened,
    TwimlWarning,
)
from ivr.sim.twiml import Connect, Stream
from ivr.speech.audio import load_prompt_wav, pcm16_to_ulaw, ulaw_to_pcm16
from ivr.speech.errors import SpeechError
from ivr.speech.render import espeak_voice, render_prompt

__all__ = ["FRAME_BYTES", "FRAME_SECONDS", "MediaStreams", "StreamSettings", "refused_stream_url"]

SAMPLE_RATE = 8000
FRAME_SECONDS = 0.02
FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law
MEDIA_FORMAT: Mapping[str, Any] = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
USER_AGENT = "Twilio.TmeWs/1.0"
LANGUAGE_PARAMETERS = ("language", "lang")  # <Parameter> names read as the caller's language
_NOISE_SEED = 988
ABNORMAL_CLOSURE = 1006  # RFC 6455: the connection went away without a close frame
MAX_WALL_LAG = 0.05  # wall seconds behind schedule before pacing starts afresh


@dataclass(frozen=True)
class StreamSettings:
    """How the emulated streams behave; times are call-clock seconds unless
    they say `wall`."""

    speed: float = 1.0  # call seconds per wall second (tests use 10 or more)
    idle_limit: float = 30.0  # caller waiting and server silent this long: stream stopped
    max_seconds: float = 600.0  # no stream runs longer (a server playing audio forever)
    prompt_wait: float = 1.0  # first window: no audio by then means there is no prompt...
    prompt_wait_wall: float = 0.1  # ...once at least this much wall time went by too
    listen_grace: float = 0.3  # later windows open after a prompt and this much quiet
    key_interval: float = 0.3  # between two keys, as for <Gather>
    noise_rms: float = 40.0  # line noise, 16-bit linear (about -58 dBFS)
    language: str = "en"  # caller's language when nothing says otherwise
    connect_timeout: float = 10.0  # wall seconds for the websocket upgrade
    close_timeout: float = 2.0  # wall seconds for the closing handshake

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ScriptError("stream speed must be positive")
        for name in ("idle_limit", "max_seconds", "connect_timeout", "close_timeout"):
            if not getattr(self, name) > 0:
                raise ScriptError(f"stream {name.replace('_', ' ')} must be positive")
        for name in ("prompt_wait", "prompt_wait_wall", "listen_grace", "key_interval"):
            if getattr(self, name) < 0:
                raise ScriptError(f"stream {name.replace('_', ' ')} must not be negative")
        if not 0 <= self.noise_rms <= 3000:
            raise ScriptError("stream noise level must be between 0 and 3000")


class MediaStreams:
    """The `MediaStreamDriver` that runs `<Connect><Stream>` as Twilio does.

    `http` reuses a client session for the websockets (one is opened per
    stream otherwise)."""

    def __init__(
        self, settings: StreamSettings | None = None, *, http: aiohttp.ClientSession | None = None
    ) -> None:
        self.settings = settings or StreamSettings()
        self._http = http
        self._noise = _line_noise(self.settings.noise_rms)

    async def connect(self, session: CallSession, document: Document, connect: Connect) -> None:
        stream = connect.stream
        url = session.resolve(document, stream.url)
        refused = refused_stream_url(url)
        if refused is not None:
            session.record(StreamFailed(session.now, url, None, refused))
            return
        if not session.is_ours(_as_web(url)):
            reason = "not the server under test, not connected"
            session.record(StreamFailed(session.now, url, None, reason))
            return
        # Twilio signs the URL as the TwiML wrote it; only a relative one
        # has to be resolved first.
        signed = stream.url if urlsplit(stream.url).scheme else url
        # Media Streams, WebSocket messages: a key pressed during the stream
        # is sent to it as a `dtmf` message, never lost.
        session.hears_keys = True
        try:
            if self._http is not None:
                await self._open(session, document, stream, url, signed, self._http)
                return
            async with aiohttp.ClientSession() as http:
                await self._open(session, document, stream, url, signed, http)
        finally:
            session.hears_keys = False

    async def _open(
        self,
        session: CallSession,
        document: Document,
        stream: Stream,
        url: str,
        signed: str,
        http: aiohttp.ClientSession,
    ) -> None:
        cfg = session.cfg
        stream_sid = new_sid("MZ")
        status = _StatusCallback(session, document, stream, stream_sid)
        headers = {
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: compute_signature(cfg.auth_token, signed, {}),
        }
        target = URL(cfg.to_server_websocket(url), encoded=True)
        failure: tuple[int | None, str] | None = None
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                ws = await http.ws_connect(
                    target,
                    headers=headers,
                    autoping=True,
                    timeout=aiohttp.ClientWSTimeout(ws_close=self.settings.close_timeout),
                )
        except aiohttp.WSServerHandshakeError as exc:
            failure = (exc.status, f"upgrade refused: HTTP {exc.status}")
        except TimeoutError:
            failure = (None, f"no answer to the upgrade within {self.settings.connect_timeout:g}s")
        except (aiohttp.ClientError, OSError) as exc:
            failure = (None, f"connection failed: {exc.__class__.__name__}")
        if failure is not None:
            code, reason = failure
            session.record(StreamFailed(session.now, url, code, reason))
            await status.send("stream-error", reason)
            return
        try:
            run = _StreamRun(session, stream, url, stream_sid, ws, self.settings, self._noise)
            await run.start()
            await status.send("stream-started")
            await run.run()
        finally:
            if not ws.closed:
                await ws.close()
        await status.send("stream-stopped")


# Error 31922, "Stream - WebSocket - URL Schema Not Supported": "Verify the
# schema in TwiML URL is wss" (TwiML Voice <Stream>: Twilio connects to a
# secure WebSocket only).
SCHEME_NOT_SUPPORTED = 31922
LOOPBACK_HOSTS = frozenset({"localhost", "::1"})


def refused_stream_url(url: str) -> str | None:
    """Why Twilio would not open this stream URL (None: it would).

    A documented concession: the local development servers (the tests, `ivr
    call` in-process) serve plain http on a loopback address and so name
    ws:// stream URLs; those are opened. ws:// to any other host is refused
    as Twilio refuses it, so a server that would fail on Twilio fails here."""
    parts = urlsplit(url)
    if parts.scheme == "wss":
        return None
    if parts.scheme == "ws" and _loopback(parts.hostname or ""):
        return None
    return f"error {SCHEME_NOT_SUPPORTED}: URL scheme {parts.scheme or 'missing'!r} is not " \
        "supported by Media Streams (wss only)"


def _loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _as_web(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit(parts._replace(scheme=scheme))


class _StatusCallback:
    """`<Stream statusCallback>`: stream-started, stream-stopped, stream-error.

    These carry the stream's own parameters, not a call webhook's."""

    def __init__(
        self, session: CallSession, document: Document, stream: Stream, stream_sid: str
    ) -> None:
        self._session = session
        self._stream = stream
        self._sid = stream_sid
        self._url = session.resolve(document, stream.status_callback or "")

    async def send(self, event: str, error: str | None = None) -> None:
        session, stream = self._session, self._stream
        if not stream.status_callback:
            return
        if not session.is_ours(self._url):
            session.record(Note(session.now, f"stream status callback to {self._url} not sent"))
            return
        params = {
            "AccountSid": session.cfg.account_sid,
            "CallSid": session.call_sid,
            "StreamSid": self._sid,
            "StreamName": stream.name or self._sid,
            "StreamEvent": event,
            "Timestamp": format_datetime(datetime.now(UTC)),
        }
        if error is not None:
            params["StreamError"] = error
        method = stream.status_callback_method
        exchange = await session.webhooks.send(method, self._url, params, str(uuid.uuid4()))
        session.record(
            Request(
                session.now, exchange.method, url_path(self._url), exchange.status,
                "stream status callback", exchange.error,
            )
        )


# -- line noise and caller audio -----------------------------------------------


def _clamp16(value: int) -> int:
    return -32768 if value < -32768 else 32767 if value > 32767 else value


def _pcm_samples(pcm: bytes) -> array[int]:
    samples = array("h", pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _pcm_bytes(samples: array[int]) -> bytes:
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


@functools.lru_cache(maxsize=4)
def _line_noise(rms: float) -> _LineNoise:
    return _LineNoise(rms)


class _LineNoise:
    """One second of low Gaussian hiss, repeated: what an open phone line
    carries when nobody speaks."""

    def __init__(self, rms: float) -> None:
        rng = random.Random(_NOISE_SEED)
        self._pcm = array("h", (_clamp16(round(rng.gauss(0.0, rms))) for _ in range(SAMPLE_RATE)))
        self._mulaw = pcm16_to_ulaw(_pcm_bytes(self._pcm))

    def frame(self, index: int) -> bytes:
        start = (index * FRAME_BYTES) % SAMPLE_RATE
        return self._mulaw[start : start + FRAME_BYTES]

    def mix(self, mulaw: bytes) -> bytes:
        """`mulaw` with the line noise added (speech comes over the same line)."""
        speech = _pcm_samples(ulaw_to_pcm16(mulaw))
        noise = self._pcm
        n = len(noise)
        mixed = array("h", (_clamp16(s + noise[i % n]) for i, s in enumerate(speech)))
        return pcm16_to_ulaw(_pcm_bytes(mixed))


@functools.lru_cache(maxsize=64)
def _synthesize(text: str, language: str) -> bytes:
    """`text` spoken by espeak-ng in `language`, as 8 kHz mu-law."""
    with tempfile.TemporaryDirectory(prefix="ivr-sim-say-") as tmp:
        wav = render_prompt(text, language, Path(tmp) / "say.wav", voice=espeak_voice(language))
        return load_prompt_wav(wav)


def _caller_audio(caller_input: Speak | SpeakAudio, language: str, noise: _LineNoise) -> bytes:
    """Runs in a worker thread: espeak-ng and sox take a moment."""
    if isinstance(caller_input, Speak):
        mulaw = _synthesize(caller_input.text, language)
    else:
        mulaw = load_prompt_wav(caller_input.path)
    return noise.mix(mulaw)


def _base_language(code: str) -> str:
    return code.split("-", 1)[0].lower()


# -- what the server asked Twilio to play --------------------------------------


@dataclass(frozen=True)
class _Mark:
    name: str


class _Playback:
    """The outbound buffer: audio and marks in the order the server sent
    them, played 20 ms per tick."""

    def __init__(self) -> None:
        self._items: deque[bytes | _Mark] = deque()
        self.buffered = 0  # bytes of audio not played yet

    def add_audio(self, data: bytes) -> None:
        if data:
            self._items.append(data)
            self.buffered += len(data)

    def add_mark(self, name: str) -> None:
        self._items.append(_Mark(name))

    def play_frame(self) -> tuple[int, list[str]]:
        """Play up to one frame: (bytes played, marks reached). A mark is
        reached once all the audio sent before it has played."""
        played = 0
        marks: list[str] = []
        while self._items:
            head = self._items[0]
            if isinstance(head, _Mark):
                marks.append(head.name)
                self._items.popleft()
                continue
            if played == FRAME_BYTES:
                break
            take = min(len(head), FRAME_BYTES - played)
            if take == len(head):
                self._items.popleft()
            else:
                self._items[0] = head[take:]
            played += take
        self.buffered -= played
        return played, marks

    def clear(self) -> tuple[int, list[str]]:
        """Drop everything: (bytes dropped, marks pending, in order)."""
        marks = [item.name for item in self._items if isinstance(item, _Mark)]
        dropped = self.buffered
        self._items.clear()
        self.buffered = 0
        return dropped, marks


# -- the caller ----------------------------------------------------------------

Phase = Literal["waiting", "armed", "acting"]


class _Caller:
    """What the caller does on the stream, one tick at a time."""

    def __init__(
        self,
        session: CallSession,
        settings: StreamSettings,
        noise: _LineNoise,
        language_parameter: str | None,
        after_prompt: bool,
    ) -> None:
        self._session = session
        self._settings = settings
        self._noise = noise
        self._language_parameter = language_parameter
        self.started_at = session.now
        # A stream opened right after a <Say>/<Play> listens for the answer
        # to it: no need to wait for a prompt over the stream.
        self._after_prompt = after_prompt
        self.phase: Phase = "waiting"
        self.windows = 0
        self.last_activity = session.now  # end of the last thing said or pressed
        self._input: CallerInput = Silence()
        self._armed_at = 0.0
        self._prompt_start = 0.0  # of the prompt the armed input answers
        self._heard_prompt = False  # whether that prompt came over the stream
        self._playing_since: float | None = None  # start of the server audio playing now
        self._last_heard = -1.0  # when server audio last played
        self._window_closed = session.now  # when the caller last finished an input
        self._audio: asyncio.Task[bytes] | None = None
        self._language: str | None = None
        self._speech = b""
        self._pos = 0
        self._keys = ""
        self._next_key_at = 0.0
        self._press_at: float | None = None  # when a key timed into the menu is pressed

    async def tick(
        self, now: float, playing: bool, quiet_since: float | None, wall_elapsed: float
    ) -> tuple[bytes | None, str]:
        """(speech frame or None for line noise, key to send) for this tick.

        `playing`: server audio is playing in this tick; `quiet_since`: when
        the server's audio last stopped (None while some is playing or
        buffered)."""
        settings = self._settings
        if playing:
            if self._playing_since is None:
                self._playing_since = now
            self._last_heard = now
        prompt_start = self._playing_since
        if not playing:
            self._playing_since = None
        if self.phase == "waiting":
            if self.windows == 0:
                no_prompt = self._after_prompt or (
                    now - self.started_at >= settings.prompt_wait
                    and wall_elapsed >= settings.prompt_wait_wall
                )
                # Keys timed into a menu that has started already are pressed
                # on time, whatever the stream plays.
                timed = self._session.press_moment() is not None
                if playing or no_prompt or timed:
                    self._arm(now, now, heard=playing)
            elif (
                self._last_heard >= self._window_closed
                and quiet_since is not None
                and now - quiet_since >= settings.listen_grace
            ):
                # A new prompt played out and the server now waits: the
                # caller answers it (barge-in cannot come earlier than this).
                self._arm(
                    now, prompt_start if prompt_start is not None else quiet_since, heard=True
                )
        if self.phase == "armed" and playing and not self._heard_prompt:
            # Armed before any audio came (the prompt seemed to be over), but
            # the server plays one now: that is the prompt the caller answers.
            self._heard_prompt = True
            self._prompt_start = now if prompt_start is None else prompt_start
        if self.phase == "armed":
            start = self._start_time(quiet_since)
            # Whatever the call clock says, give the server a moment of wall
            # time to start a prompt before the caller answers a silent line.
            early = (
                self.windows == 0
                and not self._heard_prompt
                and wall_elapsed < settings.prompt_wait_wall
                and self._press_at is None
            )
            if start is not None and now >= start and not early:
                await self._begin(now)
        if self.phase == "acting":
            return self._act(now)
        return None, ""

    def _arm(self, now: float, prompt_start: float, *, heard: bool) -> None:
        self.phase = "armed"
        self._armed_at = now
        self._prompt_start = prompt_start
        self._heard_prompt = heard
        # A key timed into the menu counts from the menu's start: the prompt
        # said before the stream, else this prompt over the stream.
        self._session.start_menu(prompt_start)
        self._press_at = self._session.press_moment()
        self._input = self._session.next_input()
        if isinstance(self._input, Speak | SpeakAudio):
            language = self._language_for(self._input)
            self._language = language
            self._audio = asyncio.create_task(
                asyncio.to_thread(_caller_audio, self._input, language, self._noise)
            )

    def _language_for(self, caller_input: Speak | SpeakAudio) -> str:
        if isinstance(caller_input, Speak) and caller_input.language:
            return _base_language(caller_input.language)
        if self._language_parameter:
            return _base_language(self._language_parameter)
        heard = self._session.transcript().of_type(Heard)
        if heard:
            return _base_language(heard[-1].language)
        return self._settings.language

    def _start_time(self, quiet_since: float | None) -> float | None:
        caller_input = self._input
        # Silence has no delay of its own: the caller stays quiet once the
        # prompt is over, which takes as long as noticing it is over.
        delay = getattr(caller_input, "delay", self._settings.listen_grace)
        if self._press_at is not None:
            return self._press_at
        if getattr(caller_input, "barge_in", False):
            return self._prompt_start + delay
        if quiet_since is None:
            return None  # the prompt is still playing: wait for its end
        return max(self._armed_at, quiet_since + delay)

    async def _begin(self, now: float) -> None:
        caller_input = self._input
        session = self._session
        if isinstance(caller_input, Press):
            self._keys = caller_input.digits
            self._next_key_at = now
            session.record(Pressed(now, caller_input.digits))
            self.phase = "acting"
        elif isinstance(caller_input, Speak | SpeakAudio):
            task, self._audio = self._audio, None
            assert task is not None
            try:
                # Usually ready long before; if not, the stream waits for it
                # (in wall time only), so the caller speaks exactly on time.
                self._speech = await task
            except SpeechError as exc:
                session.record(Note(now, f"caller audio unavailable, silence instead: {exc}"))
                self._finish(now, acted=False)
                return
            self._pos = 0
            if isinstance(caller_input, Speak):
                source, language, recording = caller_input.text, self._language, False
            else:
                source, language, recording = caller_input.path.name, None, True
            seconds = len(self._speech) / SAMPLE_RATE
            session.record(SpokeAudio(now, source, seconds, language, recording))
            self.phase = "acting"
        else:
            if not isinstance(caller_input, Silence):
                name = type(caller_input).__name__
                session.record(Note(now, f"{name} input cannot be given over a media stream"))
            self._finish(now, acted=False)

    def _act(self, now: float) -> tuple[bytes | None, str]:
        if self._keys:
            if now < self._next_key_at:
                return None, ""
            key, self._keys = self._keys[0], self._keys[1:]
            self._next_key_at = now + self._settings.key_interval
            if not self._keys:
                self._finish(now, acted=True)
            return None, key
        frame = self._speech[self._pos : self._pos + FRAME_BYTES]
        self._pos += FRAME_BYTES
        if self._pos >= len(self._speech):
            self._finish(now + FRAME_SECONDS, acted=True)
        return frame, ""

    def _finish(self, now: float, *, acted: bool) -> None:
        self.phase = "waiting"
        self.windows += 1
        self._window_closed = now
        if acted:
            self.last_activity = now

    def cancel(self) -> None:
        task, self._audio = self._audio, None
        if task is not None:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: nobody needs it any more
            task.cancel()


# -- one stream ------------------------------------------------------------------


class _StreamRun:
    """One open stream: the tick loop, the server's messages, the transcript."""

    def __init__(
        self,
        session: CallSession,
        stream: Stream,
        url: str,
        stream_sid: str,
        ws: aiohttp.ClientWebSocketResponse,
        settings: StreamSettings,
        noise: _LineNoise,
    ) -> None:
        self.session = session
        self.stream = stream
        self.url = url
        self.sid = stream_sid
        self.ws = ws
        self.settings = settings
        self.noise = noise
        self.started_at = session.now
        self.sequence = 0
        self.frames = 0
        self.playback = _Playback()
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._server_closed = False
        self._socket_gone = False
        self._warned: set[str] = set()
        self._segment_start: float | None = None
        self._segment_bytes = 0
        self._quiet_since: float | None = session.now
        self._line_active = session.now  # end of the last server audio played
        language = next(
            (
                value
                for name, value in stream.parameters.items()
                if name.lower() in LANGUAGE_PARAMETERS and value.strip()
            ),
            None,
        )
        self.caller = _Caller(session, settings, noise, language, _after_prompt(session))

    # -- messages to the server ----------------------------------------------

    def _next_sequence(self) -> str:
        self.sequence += 1
        return str(self.sequence)

    async def _send(self, message: Mapping[str, Any]) -> None:
        if self._socket_gone or self.ws.closed:
            self._socket_gone = True
            return
        try:
            await self.ws.send_str(json.dumps(message))
        except (ConnectionError, aiohttp.ClientError):
            # The server went away between two frames: the receiver reports it.
            self._socket_gone = True

    async def start(self) -> None:
        session = self.session
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send(
            {
                "event": "start",
                "sequenceNumber": self._next_sequence(),
                "start": {
                    "accountSid": session.cfg.account_sid,
                    "streamSid": self.sid,
                    "callSid": session.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": dict(self.stream.parameters),
                    "mediaFormat": dict(MEDIA_FORMAT),
                },
                "streamSid": self.sid,
            }
        )
        parameters = tuple(self.stream.parameters.items())
        session.record(StreamOpened(session.now, self.url, self.sid, parameters))

    async def _send_media(self, payload: bytes) -> None:
        self.frames += 1
        await self._send(
            {
                "event": "media",
                "sequenceNumber": self._next_sequence(),
                "media": {
                    "track": "inbound",
                    "chunk": str(self.frames),
                    "timestamp": str((self.frames - 1) * 20),
                    "payload": base64.b64encode(payload).decode("ascii"),
                },
                "streamSid": self.sid,
            }
        )

    async def _send_dtmf(self, digit: str) -> None:
        await self._send(
            {
                "event": "dtmf",
                "streamSid": self.sid,
                "sequenceNumber": self._next_sequence(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def _echo_mark(self, name: str, *, cleared: bool, at: float | None = None) -> None:
        await self._send(
            {
                "event": "mark",
                "sequenceNumber": self._next_sequence(),
                "streamSid": self.sid,
                "mark": {"name": name},
            }
        )
        self.session.record(MarkEchoed(self.session.now if at is None else at, name, cleared))

    async def _stop(self) -> None:
        session = self.session
        await self._send(
            {
                "event": "stop",
                "sequenceNumber": self._next_sequence(),
                "stop": {"accountSid": session.cfg.account_sid, "callSid": session.call_sid},
                "streamSid": self.sid,
            }
        )

    # -- messages from the server --------------------------------------------

    async def _receive(self) -> None:
        try:
            async for message in self.ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self._inbox.put_nowait(message.data)
                elif message.type == aiohttp.WSMsgType.BINARY:
                    self._inbox.put_nowait(b"")
        finally:
            self._inbox.put_nowait(None)

    def _warn(self, text: str) -> None:
        # Once per kind of fault: a faulty server repeats it every frame.
        if text not in self._warned:
            self._warned.add(text)
            self.session.record(TwimlWarning(self.session.now, f"media stream: {text}"))

    async def _take_messages(self) -> None:
        while not self._inbox.empty():
            raw = self._inbox.get_nowait()
            if raw is None:
                self._server_closed = True
                return
            await self._handle(raw)

    async def _handle(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            self._warn("binary message ignored (Twilio expects JSON text)")
            return
        try:
            message = json.loads(raw)
        except ValueError:
            self._warn("message that is not JSON ignored")
            return
        if not isinstance(message, dict):
            self._warn("message that is not a JSON object ignored")
            return
        event = message.get("event")
        if event not in ("media", "mark", "clear"):
            self._warn(f"unknown event {event!r} ignored")
            return
        if message.get("streamSid") != self.sid:
            self._warn(f"{event} message without this stream's streamSid ignored")
            return
        if event == "media":
            self._on_media(message.get("media"))
        elif event == "mark":
            mark = message.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            if not isinstance(name, str):
                self._warn("mark message without mark.name ignored")
                return
            self.playback.add_mark(name)
        else:
            await self._on_clear()

    def _on_media(self, media: object) -> None:
        payload = media.get("payload") if isinstance(media, dict) else None
        if not isinstance(payload, str):
            self._warn("media message without media.payload ignored")
            return
        try:
            audio = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            self._warn("media payload that is not base64 ignored")
            return
        self.playback.add_audio(audio)

    async def _on_clear(self) -> None:
        dropped, marks = self.playback.clear()
        self._end_segment("cleared", dropped)
        for name in marks:
            await self._echo_mark(name, cleared=True)

    # -- playback and transcript ---------------------------------------------

    def _end_segment(self, ending: str, dropped: int = 0, at: float | None = None) -> None:
        """Record the server audio heard since the last silence, if any."""
        now = self.session.now if at is None else at
        if self._segment_start is None and not dropped:
            return
        started = now if self._segment_start is None else self._segment_start
        seconds = self._segment_bytes / SAMPLE_RATE
        self.session.record(StreamAudio(now, started, seconds, ending, dropped / SAMPLE_RATE))
        self._segment_start = None
        self._segment_bytes = 0
        self._quiet_since = now

    async def _play(self) -> bool:
        """Play one frame of server audio; True if some played."""
        now = self.session.now
        played, marks = self.playback.play_frame()
        end = now + played / SAMPLE_RATE  # where playback is once this frame is out
        if played:
            if self._segment_start is None:
                self._segment_start = now
                self._quiet_since = None
            self._segment_bytes += played
        if self._segment_start is not None and not self.playback.buffered:
            self._end_segment("finished", at=end)
        for name in marks:
            await self._echo_mark(name, cleared=False, at=end)
        return played > 0

    # -- the loop --------------------------------------------------------------

    async def run(self) -> None:
        session = self.session
        receiver = asyncio.create_task(self._receive())
        try:
            by, reason = await self._loop()
        finally:
            self.caller.cancel()
            if not self._server_closed:
                # Twilio ends its side with `stop`, then closes the socket.
                await self._stop()
                await self.ws.close()
            try:
                async with asyncio.timeout(self.settings.close_timeout):
                    await receiver
            except TimeoutError:
                receiver.cancel()
        seconds = session.now - self.started_at
        session.record(StreamClosed(session.now, self.url, by, reason, self.frames, seconds))

    async def _loop(self) -> tuple[str, str]:
        session, settings = self.session, self.settings
        clock = asyncio.get_running_loop()
        opened = wall_start = clock.time()  # wall_start: where pacing counts from
        ticks = 0
        while True:
            await self._take_messages()
            if self._server_closed:
                self._end_segment("stream closed", self.playback.buffered)
                code = self.ws.close_code
                if code is None or code == ABNORMAL_CLOSURE:
                    return "server", "the connection dropped without a closing handshake"
                return "server", f"the server closed the websocket (code {code})"
            now = session.now
            playing = await self._play()
            quiet_since = None if self.playback.buffered or playing else self._quiet_since
            speech, key = await self.caller.tick(
                now, playing, quiet_since, clock.time() - opened
            )
            line = self.noise.frame(self.frames)
            await self._send_media(line if speech is None else speech + line[len(speech) :])
            if key:
                await self._send_dtmf(key)

            if playing:
                self._line_active = now + FRAME_SECONDS
            idle_since = max(self.caller.last_activity, self._line_active)
            if self.caller.phase == "waiting" and now - idle_since >= settings.idle_limit:
                self._end_segment("stream stopped", self.playback.buffered)
                return "simulator", f"nobody said anything for {settings.idle_limit:g}s"
            if now - self.started_at >= settings.max_seconds:
                self._end_segment("stream stopped", self.playback.buffered)
                return "simulator", f"stream longer than {settings.max_seconds:g}s"
            if _frame_ends_call(session):
                self._end_segment("caller hung up", self.playback.buffered)
            if not session.advance(FRAME_SECONDS):
                return session.hung_up_by or "caller", "the call ended"
            ticks += 1
            ahead = wall_start + ticks * FRAME_SECONDS / settings.speed - clock.time()
            if ahead < -MAX_WALL_LAG:
                # Fell behind (a slow event loop, caller audio still being
                # made): go on from here rather than burst to catch up.
                wall_start -= ahead
                ahead = 0.0
            await asyncio.sleep(max(0.0, ahead))


def _after_prompt(session: CallSession) -> bool:
    """Whether the last thing that happened on the call was a prompt heard."""
    for entry in reversed(session.transcript().entries):
        # Bookkeeping is not something the caller lived through; nor is the
        # silent second of a <Gather> that nests the prompt and falls through
        # to the stream (the caller still answers that prompt).
        if isinstance(entry, Request | Note | TwimlWarning | Silent):
            continue
        return isinstance(entry, Heard | Played)
    return False


def _frame_ends_call(session: CallSession) -> bool:
    """Whether advancing one frame ends the call (mirrors CallSession.advance),
    so that what was playing is recorded before the hangup."""
    target = session.now + FRAME_SECONDS
    hangup = session.script.hangup_after
    return (hangup is not None and target >= hangup) or target >= session.cfg.max_call_seconds
