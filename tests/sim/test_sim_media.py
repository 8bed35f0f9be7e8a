"""Media Streams in the simulator, against a small websocket server written here.

The server checks the upgrade's signature, plays a prompt (a mu-law tone)
followed by a mark, records every message it gets, sends `clear` on the
first key or the first loud frame (a plain energy check), and closes the
socket when it has what it waits for. It also serves the webhooks, so the
whole call runs: voice URL, stream, <Connect> action, status callback.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import re
import shutil
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from aiohttp import WSMsgType, web
from pytest_aiohttp import AiohttpServer
from twilio.request_validator import RequestValidator

from ivr.sim import CallScript, Press, Silence, SimConfig, Speak, SpeakAudio, simulate_call
from ivr.sim.media import FRAME_BYTES, MediaStreams, StreamSettings
from ivr.sim.options import add_call_arguments, script_from_args
from ivr.sim.transcript import (
    Heard,
    MarkEchoed,
    Pressed,
    SpokeAudio,
    StreamAudio,
    StreamClosed,
    StreamFailed,
    StreamOpened,
    Transcript,
    TwimlWarning,
)
from ivr.sim.verbs import default_handlers
from ivr.speech.audio import pcm16_to_ulaw, ulaw_to_pcm16

TOKEN = "media-test-auth-token"
PUBLIC = "https://ivr.example.org"
STREAM_URL = "wss://ivr.example.org/twilio/media"
STREAM_TOKEN = "per-call-secret-8f2e"
LOUD = 1000.0  # RMS above which a frame is speech, for this server's energy check
FAST = StreamSettings(speed=25.0, prompt_wait_wall=0.0)

CloseOn = Literal["dtmf", "speech", "start", "mark", "timeout", "drop", "never"]


def tone(seconds: float, amplitude: int = 6000, rate: int = 8000, hz: float = 440.0) -> bytes:
    """16-bit PCM sine."""
    samples = [
        round(amplitude * math.sin(2 * math.pi * hz * n / rate)) for n in range(int(rate * seconds))
    ]
    return b"".join(s.to_bytes(2, "little", signed=True) for s in samples)


def rms(frame: bytes) -> float:
    pcm = ulaw_to_pcm16(frame)
    values = [int.from_bytes(pcm[i : i + 2], "little", signed=True) for i in range(0, len(pcm), 2)]
    return math.sqrt(sum(v * v for v in values) / len(values))


@dataclass
class Hit:
    path: str
    form: dict[str, str]
    valid: bool


@dataclass
class MediaServer:
    """The server under test, as far as streams go."""

    prompt_seconds: float = 0.4
    close_on: CloseOn = "dtmf"
    digits_wanted: int = 1
    ws_token: str = TOKEN  # another value: the server refuses every upgrade
    after: str = "<Say>After the stream.</Say><Hangup/>"
    voice: str = (
        '<Connect action="/twilio/after"><Stream url="wss://ivr.example.org/twilio/media">'
        f'<Parameter name="token" value="{STREAM_TOKEN}"/></Stream></Connect>'
    )
    faulty: bool = False  # send messages Twilio would ignore
    reprompt: bool = False  # after speech, play the prompt again and keep listening
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[tuple[str, int]] = field(default_factory=list)  # (event, frames received by then)
    hits: list[Hit] = field(default_factory=list)
    upgrade_headers: dict[str, str] = field(default_factory=dict)
    frames: list[bytes] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/twilio/media", self.media)
        app.router.add_post("/{tail:.*}", self.webhook)
        return app

    def to(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]

    async def webhook(self, request: web.Request) -> web.StreamResponse:
        form = {k: str(v) for k, v in (await request.post()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        valid = RequestValidator(TOKEN).validate(PUBLIC + request.raw_path, form, signature)
        self.hits.append(Hit(request.path, form, valid))
        if not valid:
            return web.Response(status=403)
        body = {"/twilio/voice": self.voice, "/twilio/after": self.after}.get(request.path, "")
        return web.Response(
            text=f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>',
            content_type="text/xml",
        )

    async def media(self, request: web.Request) -> web.StreamResponse:
        self.upgrade_headers = dict(request.headers)
        signature = request.headers.get("X-Twilio-Signature", "")
        if not RequestValidator(self.ws_token).validate(STREAM_URL, {}, signature):
            return web.Response(status=403)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = ""
        playing = False
        speech = quiet_after = digits = 0
        prompt_end: int | None = None  # frames received when the last prompt played out
        async for message in ws:
            assert message.type == WSMsgType.TEXT
            data = json.loads(message.data)
            self.received.append(data)
            event = data["event"]
            barge = False
            if event == "start":
                sid = data["streamSid"]
                if self.close_on == "start":
                    break
                if self.close_on == "drop":
                    assert request.transport is not None
                    request.transport.close()  # no closing handshake: a crash
                    return ws
                if self.faulty:
                    await ws.send_str(json.dumps({"event": "media", "media": {"payload": ""}}))
                    await ws.send_str(json.dumps({"event": "dance", "streamSid": sid}))
                    await ws.send_str(json.dumps({"event": "dance", "streamSid": sid}))
                await self.prompt(ws, sid)
                playing = True
            elif event == "media":
                frame = base64.b64decode(data["media"]["payload"])
                self.frames.append(frame)
                if rms(frame) > LOUD:
                    speech += 1
                    barge = speech == 1
                    quiet_after = 0
                elif speech:
                    quiet_after += 1  # in a row: word gaps are shorter than 10 frames
                if quiet_after == 10 and self.reprompt:
                    speech = quiet_after = 0
                    await self.prompt(ws, sid)
                    playing = True
                if self.close_on == "speech" and quiet_after >= 10:
                    break
                if (
                    self.close_on == "timeout"
                    and prompt_end is not None
                    and len(self.frames) - prompt_end >= 50
                ):
                    break  # a second without input after the prompt: no input
            elif event == "dtmf":
                digits += 1
                barge = digits == 1
                if self.close_on == "dtmf" and digits >= self.digits_wanted:
                    break
            elif event == "mark":
                playing = False
                prompt_end = len(self.frames)
                if self.close_on == "mark":
                    break
            elif event == "stop":
                break
            if barge and playing:
                playing = False
                await self.send(ws, "clear", sid)
        await ws.close()
        return ws

    async def prompt(self, ws: web.WebSocketResponse, sid: str) -> None:
        audio = pcm16_to_ulaw(tone(self.prompt_seconds))
        for i in range(0, len(audio), 800):
            payload = base64.b64encode(audio[i : i + 800]).decode()
            await self.send(ws, "media", sid, media={"payload": payload})
        await self.send(ws, "mark", sid, mark={"name": "prompt-end"})

    async def send(self, ws: web.WebSocketResponse, event: str, sid: str, **part: Any) -> None:
        self.sent.append((event, len(self.frames)))
        await ws.send_str(json.dumps({"event": event, "streamSid": sid, **part}))

    def of(self, event: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m["event"] == event]

    def index(self, event: str, **match: str) -> int:
        """Position of the first message of `event` (and matching fields) received."""
        for i, m in enumerate(self.received):
            if m["event"] == event and all(m[event].get(k) == v for k, v in match.items()):
                return i
        raise AssertionError(f"no {event} {match} received")


async def run_call(
    aiohttp_server: AiohttpServer,
    server: MediaServer,
    script: CallScript,
    settings: StreamSettings = FAST,
) -> Transcript:
    live = await aiohttp_server(server.app())
    cfg = SimConfig(
        server_url=str(live.make_url("/")).rstrip("/"), public_url=PUBLIC, auth_token=TOKEN
    )
    handlers = default_handlers(media=MediaStreams(settings))
    return await asyncio.wait_for(simulate_call(cfg, script, handlers=handlers), 30)


def heard(transcript: Transcript) -> list[str]:
    return [e.text for e in transcript.of_type(Heard)]


# -- protocol ------------------------------------------------------------------


async def test_messages_follow_twilios_schema_and_order(
    aiohttp_server: AiohttpServer,
) -> None:
    server = MediaServer(digits_wanted=2)
    transcript = await run_call(aiohttp_server, server, CallScript(inputs=(Press("42"),)))

    received = server.received
    assert received[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = received[1]
    sid = start["streamSid"]
    (voice,) = server.to("/twilio/voice")
    assert re.fullmatch(r"MZ[0-9a-f]{32}", sid)
    assert start == {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": voice.form["AccountSid"],
            "streamSid": sid,
            "callSid": voice.form["CallSid"],
            "tracks": ["inbound"],
            "customParameters": {"token": STREAM_TOKEN},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": sid,
    }
    # Every message after `connected` counts up from 1, whatever its kind.
    assert [m["sequenceNumber"] for m in received[1:]] == [
        str(n) for n in range(1, len(received))
    ]
    media = server.of("media")
    assert len(media) > 20
    for chunk, message in enumerate(media, start=1):
        assert message["streamSid"] == sid
        assert message["media"]["track"] == "inbound"
        assert message["media"]["chunk"] == str(chunk)
        assert message["media"]["timestamp"] == str((chunk - 1) * 20)
        assert len(base64.b64decode(message["media"]["payload"])) == FRAME_BYTES

    # The 0.4 s prompt plays out (20 frames) before its mark comes back; the
    # caller (no barge-in) presses only after that, one key per message.
    mark_at = server.index("mark")
    assert received[mark_at] == {
        "event": "mark",
        "sequenceNumber": received[mark_at]["sequenceNumber"],
        "streamSid": sid,
        "mark": {"name": "prompt-end"},
    }
    assert len([m for m in received[:mark_at] if m["event"] == "media"]) >= 20
    dtmf = server.of("dtmf")
    assert [m["dtmf"] for m in dtmf] == [
        {"track": "inbound_track", "digit": "4"},
        {"track": "inbound_track", "digit": "2"},
    ]
    assert set(dtmf[0]) == {"event", "streamSid", "sequenceNumber", "dtmf"}
    assert server.index("dtmf") > mark_at
    assert server.of("stop") == []  # the server closed: nothing more to stop
    assert "clear" not in [event for event, _ in server.sent]

    # The socket closed, so Twilio requested the <Connect> action and went on.
    (after,) = server.to("/twilio/after")
    assert after.valid and after.form["CallSid"] == voice.form["CallSid"]
    assert heard(transcript) == ["After the stream."]
    (opened,) = transcript.of_type(StreamOpened)
    assert (opened.url, opened.stream_sid) == (STREAM_URL, sid)
    assert opened.parameters == (("token", STREAM_TOKEN),)
    assert [p.digits for p in transcript.of_type(Pressed)] == ["42"]
    (audio,) = transcript.of_type(StreamAudio)
    assert audio.ending == "finished" and not audio.interrupted
    assert audio.seconds == pytest.approx(0.4)
    (mark,) = transcript.of_type(MarkEchoed)
    assert mark.name == "prompt-end" and not mark.cleared
    (closed,) = transcript.of_type(StreamClosed)
    assert closed.by == "server" and closed.frames >= len(media)
    text = transcript.format()
    assert "media stream wss://ivr.example.org/twilio/media opened (parameters: token)" in text
    assert STREAM_TOKEN not in text


async def test_upgrade_is_signed_over_the_stream_url(aiohttp_server: AiohttpServer) -> None:
    server = MediaServer(close_on="start")
    await run_call(aiohttp_server, server, CallScript())
    signature = server.upgrade_headers["X-Twilio-Signature"]
    assert RequestValidator(TOKEN).validate(STREAM_URL, {}, signature)
    # Not over the http(s) URL the socket really went to.
    assert not RequestValidator(TOKEN).validate(PUBLIC + "/twilio/media", {}, signature)


# -- playback, marks and clear ---------------------------------------------------


async def test_barge_in_key_clears_the_prompt(aiohttp_server: AiohttpServer) -> None:
    server = MediaServer(prompt_seconds=3.0, close_on="mark")
    script = CallScript(inputs=(Press("1", delay=0.5, barge_in=True),))
    transcript = await run_call(aiohttp_server, server, script)

    # The key came while the prompt played; the server cleared; Twilio sent
    # the pending mark back at once rather than after 3 s of audio.
    frames_at_dtmf = len([m for m in server.received[: server.index("dtmf")]
                          if m["event"] == "media"])
    assert frames_at_dtmf < 150
    assert server.index("mark") > server.index("dtmf")
    assert len(server.of("media")) < 150
    (audio,) = transcript.of_type(StreamAudio)
    assert audio.interrupted and audio.ending == "cleared"
    assert 0.4 <= audio.seconds < 3.0
    assert audio.unplayed > 0
    assert audio.seconds + audio.unplayed == pytest.approx(3.0)
    (mark,) = transcript.of_type(MarkEchoed)
    assert mark.cleared
    assert "(cleared" in transcript.format()
    assert heard(transcript) == ["After the stream."]


def write_wav(path: Path, pcm: bytes, rate: int) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return path


async def test_recorded_speech_barges_in_over_line_noise(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "caller.wav", tone(0.6, amplitude=9000, rate=16000), 16000)
    server = MediaServer(prompt_seconds=2.0, close_on="speech")
    script = CallScript(inputs=(SpeakAudio(wav, delay=0.3, barge_in=True),))
    transcript = await run_call(aiohttp_server, server, script)

    levels = [rms(frame) for frame in server.frames]
    first_loud = next(i for i, level in enumerate(levels) if level > LOUD)
    loud = [level for level in levels if level > LOUD]
    # Before the caller speaks the line carries noise: not digital silence,
    # and well under any speech gate.
    assert first_loud >= 10
    assert all(0 < level < 200 for level in levels[:first_loud])
    assert all(0 < level < 200 for level in levels[first_loud + len(loud) :])
    assert 28 <= len(loud) <= 31  # 0.6 s of 16 kHz audio, resampled to 20 ms frames
    assert ("clear", first_loud + 1) in server.sent
    (spoke,) = transcript.of_type(SpokeAudio)
    assert spoke.recording and spoke.source == "caller.wav"
    assert spoke.seconds == pytest.approx(0.6)
    (audio,) = transcript.of_type(StreamAudio)
    assert audio.interrupted and audio.seconds < 2.0
    assert transcript.of_type(StreamClosed)[0].by == "server"


@pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="caller speech is synthesized with espeak-ng and sox (Debian packages)",
)
@pytest.mark.parametrize(
    ("say", "parameter", "speak", "language"),
    [
        # the language of the last <Say> heard...
        ('<Say language="es-MX">Diga algo.</Say>', "", Speak("hola, necesito ayuda"), "es"),
        ("<Say>Say something.</Say>", "", Speak("I need help"), "en"),
        # ...unless the stream names one...
        ("<Say>Say something.</Say>", "es", Speak("necesito ayuda"), "es"),
        # ...unless the script does.
        ("<Say>Say something.</Say>", "es", Speak("도와주세요", language="ko-KR"), "ko"),
    ],
)
async def test_said_text_is_synthesized_in_the_callers_language(
    aiohttp_server: AiohttpServer, say: str, parameter: str, speak: Speak, language: str
) -> None:
    server = MediaServer(prompt_seconds=0.2, close_on="speech")
    server.voice = say + server.voice
    if parameter:
        server.voice = server.voice.replace(
            "</Stream>", f'<Parameter name="language" value="{parameter}"/></Stream>'
        )
    transcript = await run_call(aiohttp_server, server, CallScript(inputs=(speak,)))

    (spoke,) = transcript.of_type(SpokeAudio)
    assert (spoke.source, spoke.language, spoke.recording) == (speak.text, language, False)
    assert spoke.seconds > 0.3
    loud = [frame for frame in server.frames if rms(frame) > LOUD]
    assert len(loud) >= 10
    # No barge-in: the caller waited for the prompt's mark before speaking.
    first_loud = next(i for i, f in enumerate(server.frames) if rms(f) > LOUD)
    frames_before_mark = len([m for m in server.received[: server.index("mark")]
                              if m["event"] == "media"])
    assert first_loud >= frames_before_mark
    assert "clear" not in [event for event, _ in server.sent]


# -- listening windows ------------------------------------------------------------


async def test_each_new_prompt_on_the_stream_takes_the_next_input(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "mumble.wav", tone(0.4, amplitude=9000), 8000)
    server = MediaServer(reprompt=True, close_on="dtmf")
    script = CallScript(inputs=(SpeakAudio(wav), Press("5")))
    transcript = await run_call(aiohttp_server, server, script)

    # Speech after the first prompt; the server prompted again; the key
    # came only once that second prompt had played out.
    marks = [i for i, m in enumerate(server.received) if m["event"] == "mark"]
    assert len(marks) == 2
    assert server.index("dtmf") > marks[1]
    assert [e.ending for e in transcript.of_type(StreamAudio)] == ["finished", "finished"]
    assert len(transcript.of_type(SpokeAudio)) == 1
    assert [p.digits for p in transcript.of_type(Pressed)] == ["5"]


async def test_a_prompt_before_the_stream_and_one_on_it_make_one_window(
    aiohttp_server: AiohttpServer,
) -> None:
    # The caller hears a greeting, then the menu prompt over the stream, and
    # says nothing; the key they press later belongs to the next menu.
    server = MediaServer(
        close_on="timeout",
        after='<Gather action="/twilio/menu" numDigits="1"><Say>Press a key.</Say></Gather>',
    )
    server.voice = "<Say>Welcome.</Say>" + server.voice
    script = CallScript(inputs=(Silence(), Press("7")))
    transcript = await run_call(aiohttp_server, server, script)

    assert server.of("dtmf") == []
    assert transcript.of_type(StreamClosed)[0].by == "server"
    assert server.to("/twilio/menu")[0].form["Digits"] == "7"


# -- how streams end ---------------------------------------------------------------


async def test_refused_upgrade_requests_the_connect_action(aiohttp_server: AiohttpServer) -> None:
    server = MediaServer(
        ws_token="not-the-account-token",
        after='<Gather action="/twilio/menu" numDigits="1"><Say>Press a key.</Say></Gather>',
    )
    transcript = await run_call(aiohttp_server, server, CallScript(inputs=(Press("7"),)))

    assert server.received == []
    (failed,) = transcript.of_type(StreamFailed)
    assert failed.status == 403 and "refused" in failed.reason
    assert len(server.to("/twilio/after")) == 1
    # The stream never listened, so the caller's key went to the next menu.
    (menu,) = server.to("/twilio/menu")
    assert menu.form["Digits"] == "7"
    assert transcript.of_type(StreamClosed) == ()


async def test_server_closing_at_once_keeps_the_callers_input(
    aiohttp_server: AiohttpServer,
) -> None:
    server = MediaServer(
        close_on="start",
        after='<Gather action="/twilio/menu" numDigits="1"><Say>Press a key.</Say></Gather>',
    )
    transcript = await run_call(aiohttp_server, server, CallScript(inputs=(Press("3"),)))

    assert [m["event"] for m in server.received] == ["connected", "start"]
    (closed,) = transcript.of_type(StreamClosed)
    assert closed.by == "server" and closed.reason.endswith("(code 1000)")
    assert server.to("/twilio/menu")[0].form["Digits"] == "3"


async def test_dropped_connection_ends_the_stream_too(aiohttp_server: AiohttpServer) -> None:
    server = MediaServer(close_on="drop")
    transcript = await run_call(aiohttp_server, server, CallScript())
    (closed,) = transcript.of_type(StreamClosed)
    assert closed.by == "server" and "dropped" in closed.reason
    assert len(server.to("/twilio/after")) == 1
    assert heard(transcript) == ["After the stream."]


async def test_caller_hanging_up_mid_stream_sends_stop(aiohttp_server: AiohttpServer) -> None:
    server = MediaServer(prompt_seconds=5.0, close_on="never")
    script = CallScript(inputs=(Silence(),), hangup_after=1.0)
    transcript = await run_call(aiohttp_server, server, script)

    (stop,) = server.of("stop")
    (voice,) = server.to("/twilio/voice")
    assert stop == {
        "event": "stop",
        "sequenceNumber": stop["sequenceNumber"],
        "stop": {"accountSid": voice.form["AccountSid"], "callSid": voice.form["CallSid"]},
        "streamSid": server.received[1]["streamSid"],
    }
    assert server.received[-1] == stop
    assert int(stop["sequenceNumber"]) == len(server.received) - 1
    # TwiML Voice <Connect>: the action is requested when the verb ends, a
    # hang-up included; the call is over, so its answer runs nowhere.
    (after,) = server.to("/twilio/after")
    assert after.form["CallStatus"] == "completed"
    (status,) = server.to("/twilio/status")
    assert status.form["CallStatus"] == "completed" and status.form["CallDuration"] == "1"
    assert transcript.hung_up_by == "caller"
    (closed,) = transcript.of_type(StreamClosed)
    assert closed.by == "caller"
    (audio,) = transcript.of_type(StreamAudio)
    assert audio.ending == "caller hung up" and audio.seconds < 1.0 < audio.seconds + audio.unplayed


async def test_silent_line_is_stopped_after_the_idle_limit(aiohttp_server: AiohttpServer) -> None:
    server = MediaServer(prompt_seconds=0.2, close_on="never")
    settings = StreamSettings(speed=50.0, idle_limit=2.0, prompt_wait_wall=0.0)
    transcript = await run_call(aiohttp_server, server, CallScript(inputs=(Silence(),)), settings)

    assert [m["event"] for m in server.received][-1] == "stop"
    (closed,) = transcript.of_type(StreamClosed)
    assert closed.by == "simulator" and "2s" in closed.reason
    # The prompt, then 2 s of nothing (100 frames) from either side.
    assert 110 <= closed.frames < 200
    # Stopping the stream is not hanging up: the call goes on with the action.
    assert len(server.to("/twilio/after")) == 1
    assert heard(transcript) == ["After the stream."]


async def test_stream_status_callbacks(aiohttp_server: AiohttpServer) -> None:
    server = MediaServer(close_on="start")
    server.voice = server.voice.replace(
        "<Stream ", '<Stream name="menu" statusCallback="/twilio/stream-status" '
    )
    await run_call(aiohttp_server, server, CallScript())
    events = server.to("/twilio/stream-status")
    assert [h.form["StreamEvent"] for h in events] == ["stream-started", "stream-stopped"]
    (voice,) = server.to("/twilio/voice")
    for hit in events:
        assert hit.valid
        assert hit.form["StreamSid"] == server.received[1]["streamSid"]
        assert hit.form["StreamName"] == "menu"
        assert hit.form["CallSid"] == voice.form["CallSid"]
        assert hit.form["AccountSid"] == voice.form["AccountSid"]
        assert hit.form["Timestamp"]
        assert "From" not in hit.form  # a stream event, not a call webhook


async def test_messages_twilio_would_ignore_are_reported_once(
    aiohttp_server: AiohttpServer,
) -> None:
    server = MediaServer(faulty=True, close_on="mark")
    transcript = await run_call(aiohttp_server, server, CallScript())
    warnings = [w.message for w in transcript.of_type(TwimlWarning)]
    assert warnings == [
        "media stream: media message without this stream's streamSid ignored",
        "media stream: unknown event 'dance' ignored",
    ]
    # The well-formed prompt still played in full.
    assert transcript.of_type(StreamAudio)[0].seconds == pytest.approx(0.4)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="speed"):
        StreamSettings(speed=0)
    with pytest.raises(ValueError, match="idle limit"):
        StreamSettings(idle_limit=-1)


# -- ivr call options ----------------------------------------------------------------


def parse(*argv: str) -> CallScript:
    parser = argparse.ArgumentParser()
    add_call_arguments(parser)
    return script_from_args(parser.parse_args(argv))


def test_say_options_make_stream_inputs(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "yes.wav", tone(0.2), 8000)
    script = parse("--say", "veteran", "--say-audio", str(wav), "--press", "1")
    assert script.inputs == (Speak("veteran"), SpeakAudio(wav), Press("1"))


def test_say_audio_rejects_what_cannot_be_streamed(tmp_path: Path) -> None:
    stereo = tmp_path / "stereo.wav"
    with wave.open(str(stereo), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 1600)
    not_wav = tmp_path / "notes.txt"
    not_wav.write_text("hello")
    for path in (stereo, not_wav):
        with pytest.raises(SystemExit) as caught:
            parse("--say-audio", str(path))
        assert caught.value.code == 2
