"""Listening menus over a media stream, decoded for real with the Korean Vosk model.

The test plays Twilio's side of the websocket itself (the simulator does the
same for whole calls): signed upgrade, connected, start with the token
parameter, 20 ms mu-law media frames, dtmf, stop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from twilio.request_validator import RequestValidator

from ivr.app import create_app
from ivr.config import Settings
from ivr.content import Content, load_content
from ivr.speech.asr import SpeechEngine
from ivr.speech.audio import FRAME_BYTES, load_prompt_wav
from ivr.speech.render import render_prompt
from tests.conftest import AUTH_TOKEN
from tests.helpers import call_params, new_sid, parse_twiml, post_signed

# Line noise rather than digital silence, so the energy gate is really exercised.
QUIET = bytes([0xFE, 0xFF, 0x7E, 0xFF]) * (FRAME_BYTES // 4)


@pytest.fixture(scope="session")
def korean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox (Debian packages) make the test speech")
    out: dict[str, bytes] = {}
    folder = tmp_path_factory.mktemp("korean")
    for n, word in enumerate(("스페인어", "아니요", "영어")):
        path = folder / f"{n}.wav"
        render_prompt(word, "ko", path)
        out[word] = load_prompt_wav(path)
    return out


def signed_ws_headers(url: str) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(url, {})}


async def start_call(s: aiohttp.ClientSession, settings: Settings, sid: str) -> tuple[str, str]:
    """Place the call; returns (stream URL, token) of its listening menu."""
    status, body = await post_signed(s, settings.public_url + "/twilio/voice", call_params(sid))
    assert status == 200
    root = parse_twiml(body)
    connect = root.find("Connect")
    assert connect is not None, body
    assert connect.get("action") == settings.public_url + "/twilio/listen?seq=1"
    stream = connect.find("Stream")
    assert stream is not None
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    # No recording for the menu prompt: it is said before the stream opens,
    # inside a <Gather> so that a key pressed while it is said is heard.
    said = root.findall("Gather/Say")
    assert "press 1" in " ".join(say.text or "" for say in said)
    gather = root.find("Gather")
    assert gather is not None
    assert gather.get("action") == settings.public_url + "/twilio/gather?seq=1"
    return str(stream.get("url")), str(params["token"])


def start_message(sid: str, token: str) -> str:
    return json.dumps({
        "event": "start", "sequenceNumber": "1",
        "start": {"streamSid": "MZ" + "0" * 32, "accountSid": "AC" + "1" * 32, "callSid": sid,
                  "tracks": ["inbound"], "customParameters": {"token": token},
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                  "channels": 1}},
        "streamSid": "MZ" + "0" * 32,
    })


def media_message(n: int, frame: bytes) -> str:
    return json.dumps({"event": "media", "sequenceNumber": str(n + 2), "streamSid": "MZ" + "0" * 32,
                       "media": {"track": "inbound", "chunk": str(n + 1),
                                 "timestamp": str(n * 20),
                                 "payload": base64.b64encode(frame).decode()}})


async def stream(
    s: aiohttp.ClientSession, url: str, messages: Sequence[str], signed: bool = True
) -> bool:
    """Send Twilio's messages; True when the server closed the socket (it decided)."""
    headers = signed_ws_headers(url) if signed else {}
    async with s.ws_connect(url, headers=headers) as ws:
        for message in messages:
            if ws.closed:
                return True
            await ws.send_str(message)
        msg = await ws.receive(timeout=30)
        while msg.type == aiohttp.WSMsgType.TEXT:  # outbound audio, marks, clear
            msg = await ws.receive(timeout=30)
        return msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


def spoken(audio: bytes, sid: str, token: str, tail: float = 1.5) -> list[str]:
    frames = [QUIET] * 25
    frames += [audio[i:i + FRAME_BYTES].ljust(FRAME_BYTES, b"\xff")
               for i in range(0, len(audio), FRAME_BYTES)]
    frames += [QUIET] * int(tail * 50)
    return ['{"event": "connected", "protocol": "Call", "version": "1.0.0"}',
            start_message(sid, token), *(media_message(n, f) for n, f in enumerate(frames))]


async def listen_action(s: aiohttp.ClientSession, settings: Settings, sid: str) -> str:
    status, body = await post_signed(s, settings.public_url + "/twilio/listen?seq=1",
                                     call_params(sid, CallStatus="in-progress"))
    assert status == 200
    return body


Messages = Callable[[str, str], list[str]]  # (CallSid, token) -> what Twilio sends


async def answer_menu(settings: Settings, messages: Messages) -> tuple[ET.Element, str]:
    """Place a call, answer its listening menu over the stream, then follow the
    Connect action as Twilio does; returns its TwiML and the stream's token."""
    sid = new_sid()
    async with aiohttp.ClientSession() as s:
        url, token = await start_call(s, settings, sid)
        assert await stream(s, url, messages(sid, token))  # the server decided and closed
        return parse_twiml(await listen_action(s, settings, sid)), token


def languages(root: ET.Element) -> set[str | None]:
    return {say.get("language") for say in root.findall("Say")}


async def test_spoken_spanish_continues_in_spanish(
    speech_server: TestServer, settings: Settings, korean: dict[str, bytes]
) -> None:
    root, _ = await answer_menu(settings, lambda sid, tok: spoken(korean["스페인어"], sid, tok))
    assert languages(root) == {"es-US"}
    assert root.find("Dial") is not None


async def test_spoken_veteran_word_goes_to_the_veterans_line(
    speech_server: TestServer, settings: Settings, korean: dict[str, bytes]
) -> None:
    root, _ = await answer_menu(settings, lambda sid, tok: spoken(korean["아니요"], sid, tok))
    assert [n.text for n in root.iter("Number")] == ["+18005550111"]
    assert languages(root) == {"en-US"}


async def test_in_stream_dtmf_selects_like_a_key(
    speech_server: TestServer, settings: Settings
) -> None:
    dtmf = json.dumps({"event": "dtmf", "streamSid": "MZ" + "0" * 32,
                       "dtmf": {"track": "inbound_track", "digit": "2"}})
    root, _ = await answer_menu(
        settings, lambda sid, tok: [*spoken(b"", sid, tok, tail=0.2)[:12], dtmf])
    assert languages(root) == {"es-US"}


async def test_silence_until_the_timeout_is_no_input(
    speech_server: TestServer, settings: Settings
) -> None:
    # 6 s of line noise: past the menu's 5 s timeout.
    root, _ = await answer_menu(settings, lambda sid, tok: spoken(b"", sid, tok, tail=6.0))
    assert "Connecting you" in (root.find("Say").text or "")  # type: ignore[union-attr]
    assert root.find("Dial") is not None


async def test_stream_that_stops_sending_is_decided_on_what_was_heard(
    speech_server: TestServer, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Half a second of line noise, then nothing while the socket stays open.

    The server waits for the menu's deadline plus its stall slack, then
    decides (no input here) and closes; the caller goes on by the Connect action.
    """
    root, _ = await answer_menu(settings, lambda sid, tok: spoken(b"", sid, tok, tail=0.0)[:27])
    assert "Connecting you" in (root.find("Say").text or "")  # type: ignore[union-attr]
    assert root.find("Dial") is not None
    # Decided by the stall timer, not by the wall-clock limit behind it (which
    # would decide the same, seconds later).
    assert "media stream stalled" in caplog.text
    assert "no caller audio by the menu's deadline" not in caplog.text


async def test_unknown_word_takes_the_no_match_path(
    speech_server: TestServer, settings: Settings, korean: dict[str, bytes]
) -> None:
    # 영어 is in the model but in no grammar of this menu.
    root, token = await answer_menu(settings, lambda sid, tok: spoken(korean["영어"], sid, tok))
    # no_match: "sorry", then the menu again, listening with a fresh token.
    assert "Sorry" in (root.find("Say").text or "")  # type: ignore[union-attr]
    new_token = root.find("Connect/Stream/Parameter").get("value")  # type: ignore[union-attr]
    assert new_token and new_token != token


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        '{"event": "media", "media": {"payload": "%%%not base64%%%"}}',
        '{"event": "teleport"}',
        json.dumps({"event": "media",
                    "media": {"payload": base64.b64encode(b"x" * 9000).decode()}}),
    ],
)
async def test_malformed_stream_closes_and_the_call_goes_on(
    speech_server: TestServer, settings: Settings, bad: str
) -> None:
    root, _ = await answer_menu(
        settings, lambda sid, tok: [*spoken(b"", sid, tok, tail=0.1)[:5], bad])
    # No decision stored: the menu's no-input path (connect).
    assert root.find("Dial") is not None


async def test_token_is_single_use(
    speech_server: TestServer, settings: Settings, korean: dict[str, bytes]
) -> None:
    sid = new_sid()
    async with aiohttp.ClientSession() as s:
        url, token = await start_call(s, settings, sid)
        assert await stream(s, url, spoken(korean["아니요"], sid, token))
        # A replayed start with the same token is refused at once.
        assert await stream(s, url, spoken(korean["스페인어"], sid, token))
        body = await listen_action(s, settings, sid)
    assert [n.text for n in parse_twiml(body).iter("Number")] == ["+18005550111"]


async def test_forged_token_or_unsigned_upgrade_is_refused(
    speech_server: TestServer, settings: Settings, korean: dict[str, bytes]
) -> None:
    sid = new_sid()
    async with aiohttp.ClientSession() as s:
        url, _ = await start_call(s, settings, sid)
        assert await stream(s, url, spoken(korean["스페인어"], sid, "forged"))
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await stream(s, url, [], signed=False)
        assert refused.value.status == 403
        body = await listen_action(s, settings, sid)
    assert {say.get("language") for say in parse_twiml(body).findall("Say")} == {"en-US"}


async def test_stream_without_start_is_closed(
    speech_server: TestServer, settings: Settings
) -> None:
    sid = new_sid()
    async with aiohttp.ClientSession() as s:
        url, _ = await start_call(s, settings, sid)
        assert await stream(s, url, ['{"event": "connected"}', media_message(0, QUIET)])


async def test_recognizer_freed_when_the_caller_hangs_up(
    speech_server: TestServer, settings: Settings, speech_engine: object,
    korean: dict[str, bytes]
) -> None:
    sid = new_sid()
    async with aiohttp.ClientSession() as s:
        url, token = await start_call(s, settings, sid)
        messages = spoken(korean["스페인어"], sid, token)[:30]
        messages.append(json.dumps({"event": "stop", "stop": {"callSid": sid}}))
        assert await stream(s, url, messages)
    assert speech_engine.open_sessions == 0  # type: ignore[attr-defined]
    conn = await asyncpg.connect(settings.database_url)
    try:
        decision = await conn.fetchval("SELECT listen->'decision' FROM calls")
    finally:
        await conn.close()
    assert decision is None




@pytest.fixture(scope="session")
def recorded_content(
    tmp_path_factory: pytest.TempPathFactory, speech_content: Content,
    speech_models: dict[str, Path],
) -> Content:
    """The speech test content with a real recording of the English menu prompt."""
    root = tmp_path_factory.mktemp("recorded")
    source = Path(next(iter(speech_content.flows.flows.values())).source).parent.parent
    shutil.copytree(source / "flows", root / "flows")
    shutil.copytree(source / "prompts", root / "prompts")
    text = speech_content.flows.prompts.get("en", "main_menu").text  # type: ignore[union-attr]
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng (Debian package) renders the recording")
    render_prompt(text, "en", root / "prompts" / "en" / "main_menu.wav")
    return load_content(root / "flows", root / "prompts", speech_models)


async def test_speaking_over_the_prompt_stops_it(
    settings: Settings, recorded_content: Content, speech_engine: SpeechEngine,
    korean: dict[str, bytes],
) -> None:
    port = int(settings.public_url.rsplit(":", 1)[1])
    # Building the app reads the recordings: off the loop, as `ivr serve` does it.
    app = await asyncio.to_thread(create_app, settings, recorded_content, speech_engine)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    sid = new_sid()
    try:
        async with aiohttp.ClientSession() as s:
            _, body = await post_signed(s, settings.public_url + "/twilio/voice",
                                             call_params(sid))
            root = parse_twiml(body)
            # The recorded prompt is played over the stream, not said before it.
            assert not any("press 1" in (say.text or "") for say in root.iter("Say"))
            stream_el = root.find("Connect/Stream")
            assert stream_el is not None
            url = str(stream_el.get("url"))
            token = str(stream_el.find("Parameter").get("value"))  # type: ignore[union-attr]
            received: list[dict[str, Any]] = []
            async with s.ws_connect(url, headers=signed_ws_headers(url)) as ws:
                for message in spoken(korean["스페인어"], sid, token):
                    if ws.closed:
                        break
                    await ws.send_str(message)
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        received.append(json.loads(msg.data))
            body = await listen_action(s, settings, sid)
    finally:
        await server.close()
    events = [m["event"] for m in received]
    assert events[0] == "media" and "mark" in events
    assert events[-1] == "clear"  # barge-in: the rest of the prompt is dropped
    played = sum(len(base64.b64decode(m["media"]["payload"]))
                 for m in received if m["event"] == "media")
    assert played == len(await asyncio.to_thread(load_prompt_wav, root_wav(recorded_content)))
    assert {say.get("language") for say in parse_twiml(body).findall("Say")} == {"es-US"}


def root_wav(content: Content) -> Path:
    prompt = content.flows.prompts.get("en", "main_menu")
    assert prompt is not None and prompt.recording is not None
    return prompt.recording


@pytest.mark.parametrize("kind", ["marks", "empty media"])
async def test_a_stream_of_only_marks_or_empty_media_is_closed_at_the_menus_deadline(
    speech_server: TestServer, settings: Settings, kind: str
) -> None:
    # Neither moves the caller's audio clock on: the menu's deadline (5 s
    # timeout, plus grace and slack) must close the socket all the same.
    sid = new_sid()
    mark = json.dumps({"event": "mark", "streamSid": "MZ" + "0" * 32,
                       "mark": {"name": "not-ours"}})
    async with aiohttp.ClientSession() as s:
        url, token = await start_call(s, settings, sid)
        async with s.ws_connect(url, headers=signed_ws_headers(url)) as ws:
            await ws.send_str(start_message(sid, token))

            async def read_until_closed() -> None:
                async for _ in ws:  # outbound audio, marks, clear: until the close
                    pass

            reader = asyncio.create_task(read_until_closed())
            for n in range(600):  # 60 s of messages: far past the deadline
                if reader.done() or ws.closed:
                    break
                await ws.send_str(mark if kind == "marks" else media_message(n, b""))
                await asyncio.sleep(0.1)
            closed_by_server = reader.done()
            reader.cancel()
        assert closed_by_server, "the server kept the stream open past the menu's deadline"
        body = await listen_action(s, settings, sid)
    assert parse_twiml(body).find("Dial") is not None  # no input: the menu's connect path
