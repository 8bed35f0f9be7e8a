"""GET /twilio/media: a listening menu over a Twilio Media Stream.

The stream plays the menu's prompt to the caller and listens at the same
time: keys (in-stream DTMF) and the menu's words (Vosk). The moment the
caller speaks or presses a key the prompt stops (`clear`: barge-in). Once
decided, the decision is stored on the call and the socket closed; Twilio
then requests the <Connect> action URL, whose handler reads the decision.
Whatever goes wrong on one socket closes that socket only, and the call
goes on by the menu's no-input path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ivr import keys, logs
from ivr.speech.asr import ListenSession, Match, NoMatch
from ivr.speech.audio import FRAME_BYTES
from ivr.storage import calls as db
from ivr.telephony.streamproto import (
    Connected,
    Dtmf,
    Mark,
    Media,
    Stop,
    StreamProtocolError,
    StreamStart,
    clear_message,
    mark_message,
    media_message,
    parse,
)

log = logging.getLogger(__name__)

START_TIMEOUT = 5.0  # a stream that never says `start` is not Twilio
PROMPT_MARK = "prompt-end"
SPEECH_GRACE = 4.0  # after the menu timeout, how long a word already begun may take
CHUNK_BYTES = 8000  # one second of mu-law per outbound media message
MAX_MESSAGE = 16 * 1024
STALL_SLACK = 3.0  # seconds without caller audio past the deadline: the stream is stalled
REARM_EVERY = 1.0  # seconds of wall time between two moves of the stall timer


async def close_media_streams(app: web.Application) -> None:
    """On shutdown: end every open stream (each call goes on by its Connect action)."""
    streams = app[keys.open_streams]
    for ws in list(streams):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


async def media_stream(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    app = request.app
    app[keys.open_streams].add(ws)
    speech = app.get(keys.speech)  # None: no Vosk model configured
    call_sid = "?"
    session: ListenSession | None = None
    try:
        async with asyncio.timeout(START_TIMEOUT):
            start = await _wait_start(ws)
        call_sid = start.call_sid
        logs.call_sid.set(call_sid)  # this stream's log lines (reset by the middleware)
        token = start.parameters.get("token", "")
        listen = await db.claim_listen(app[keys.pool], call_sid, token) if speech else None
        if speech is None or listen is None:
            log.warning("call %s: media stream with an unknown or used token", call_sid)
            return ws
        session = speech.listen(listen["grammars"])
        # The recording of the content version the call is on (the listen record names it).
        served = await app[keys.active].get(listen.get("content_version"))
        audio = served.prompt_audio.get((listen["language"], listen["prompt"]), b"")
        listener = _Listener(ws, start.stream_sid, session, audio, float(listen["timeout"]))
        try:
            # Time in the listener is caller audio received; a stream that
            # sends only marks or empty media moves it on never, so the
            # menu's deadline is also kept on the wall clock.
            async with asyncio.timeout(_wall_limit(audio, float(listen["timeout"]))):
                decision = await listener.run()
        except TimeoutError:
            log.warning("call %s: media stream sent no caller audio by the menu's deadline; "
                        "deciding on what was heard", call_sid)
            decision = _decision(await session.finish())
        app[keys.metrics].speech_decided(decision, session.decided_in)
        if decision is not None:
            await db.store_decision(app[keys.pool], call_sid, token, decision)
            log.info("call %s: listening menu decided %s", call_sid, _summary(decision))
    except TimeoutError:
        log.warning("call %s: media stream sent no start in %.0f s", call_sid, START_TIMEOUT)
    except StreamProtocolError as exc:
        log.warning("call %s: media stream closed: %s", call_sid, exc)
    except Exception:
        log.exception("call %s: media stream failed", call_sid)
    finally:
        if session is not None:
            session.close()  # frees the recognizer at once, whatever ended the stream
        await ws.close()
    return ws


def _wall_limit(prompt: bytes, timeout: float) -> float:
    """Wall seconds a listening menu may last: its prompt (played, then 2 s for
    its mark), its timeout, the grace for a word begun and the stall slack."""
    played = len(prompt) / 8000 + 2.0 if prompt else 0.0
    return played + timeout + SPEECH_GRACE + STALL_SLACK


async def _wait_start(ws: web.WebSocketResponse) -> StreamStart:
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            raise StreamProtocolError("binary or broken frame before start")
        event = parse(msg.data)
        if isinstance(event, StreamStart):
            return event
        if not isinstance(event, Connected):
            raise StreamProtocolError(f"{type(event).__name__} before start")
    raise StreamProtocolError("closed before start")


class _Listener:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        stream_sid: str,
        session: ListenSession,
        prompt: bytes,
        timeout: float,
    ) -> None:
        self.ws = ws
        self.stream_sid = stream_sid
        self.session = session
        self.prompt = prompt
        self.timeout = timeout
        self.playing = False
        self.heard = 0.0  # seconds of caller audio received
        self._stall: asyncio.Timeout | None = None
        self._rearm_at = 0.0

    async def run(self) -> dict[str, Any] | None:
        """Listen until a decision; None when the caller left (stop or socket gone).

        Time is counted in caller audio received (Twilio sends 20 ms every
        20 ms, so this is wall time on a live call), which keeps the menu's
        timeout exact even when the event loop is busy. A stream that stops
        sending is decided on what was heard, `STALL_SLACK` after the
        deadline its audio would have reached.
        """
        try:
            async with asyncio.timeout(None) as stall:
                self._stall = stall
                return await self._listen()
        except TimeoutError:
            if not stall.expired():
                raise
            log.warning("media stream stalled: deciding on what was heard")
            return _decision(await self.session.finish())

    def _arm_stall(self, remaining: float) -> None:
        """Move the stall timer to `remaining` + slack from now, at most once a second.

        One timer for the whole stream instead of a timeout per receive: a
        timeout per 20 ms message cost ~20 us of the event loop's time, as
        much as the rest of a silent frame's work. Between two moves the
        caller's audio advances with the clock, so the timer still falls
        `STALL_SLACK` after the deadline the audio received would reach.
        """
        now = asyncio.get_running_loop().time()
        if self._stall is not None and now >= self._rearm_at:
            self._stall.reschedule(now + remaining + STALL_SLACK)
            self._rearm_at = now + REARM_EVERY

    async def _listen(self) -> dict[str, Any] | None:
        deadline = self.timeout
        if self.prompt:
            await self._play()
            # The prompt's end comes back as a mark; if it never does, stop
            # waiting for it a little after the audio must have ended.
            deadline += len(self.prompt) / 8000 + 2.0
        grace_used = False
        while True:
            if self.heard >= deadline:
                if self.session.in_speech and not grace_used:
                    grace_used = True
                    deadline = self.heard + SPEECH_GRACE
                    self._rearm_at = 0.0  # the deadline moved: move the timer now
                    continue
                return _decision(await self.session.finish())
            self._arm_stall(deadline - self.heard)
            msg = await self.ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                            WSMsgType.ERROR):
                return None
            if msg.type != WSMsgType.TEXT:
                raise StreamProtocolError("binary frame")
            event = parse(msg.data)
            match event:
                case Media(payload=payload):
                    self.heard += len(payload) / 8000
                    decided = await self._hear(payload)
                    if decided is not None:
                        return decided
                case Dtmf(digit=digit):
                    await self._barge_in()
                    return {"digits": digit}
                case Mark(name=name) if name == PROMPT_MARK and self.playing:
                    self.playing = False
                    deadline = self.heard + self.timeout
                    self._rearm_at = 0.0
                case Stop():
                    return None
                case Mark():
                    pass
                case _:
                    raise StreamProtocolError(f"unexpected {type(event).__name__} mid-stream")

    async def _play(self) -> None:
        for i in range(0, len(self.prompt), CHUNK_BYTES):
            await self.ws.send_str(media_message(self.stream_sid, self.prompt[i : i + CHUNK_BYTES]))
        await self.ws.send_str(mark_message(self.stream_sid, PROMPT_MARK))
        self.playing = True

    async def _barge_in(self) -> None:
        if self.playing:
            self.playing = False
            await self.ws.send_str(clear_message(self.stream_sid))

    async def _hear(self, payload: bytes) -> dict[str, Any] | None:
        for i in range(0, len(payload), FRAME_BYTES):
            decision = await self.session.feed(payload[i : i + FRAME_BYTES])
            if self.playing and self.session.speech_started:
                await self._barge_in()
            if decision is not None:
                return _decision(decision)
        return None


def _decision(decision: Match | NoMatch) -> dict[str, Any] | None:
    if isinstance(decision, Match):
        return {"word": decision.word, "language": decision.lang,
                "confidence": round(decision.confidence, 3)}
    if decision.reason == "closed":
        return None
    if decision.reason == "silence":
        return {}  # no input
    return {"unrecognised": True, "reason": decision.reason}


def _summary(decision: dict[str, Any]) -> str:
    if "digits" in decision:
        return f"key {decision['digits']}"
    if "word" in decision:
        return f"word {decision['word']!r} ({decision['language']})"
    return str(decision.get("reason", "no input"))
