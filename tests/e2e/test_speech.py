"""Whole calls answered by voice: the simulator speaks (espeak-ng, Korean) over a
media stream and the server decides with the real Korean Vosk model."""

from __future__ import annotations

import shutil

import pytest
from aiohttp.test_utils import TestServer

from ivr.config import Settings
from ivr.sim import (
    CallScript,
    MediaStreams,
    Press,
    Silence,
    Speak,
    StreamSettings,
    TwilioWorld,
    simulate_call,
)
from ivr.sim.config import SimConfig
from ivr.sim.transcript import CounselorJoined, Dialed, Heard, Transcript
from tests.conftest import AUTH_TOKEN
from tests.helpers import staff_all

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox (Debian packages) make the caller's speech",
)


@pytest.fixture
async def voice_sim(speech_server: TestServer, settings: Settings) -> SimConfig:
    await staff_all(speech_server)
    return SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                     account_sid=settings.account_sid)


async def call(sim: SimConfig, world: TwilioWorld, *inputs: object) -> Transcript:
    media = MediaStreams(StreamSettings(speed=10))
    script = CallScript(from_number="+15125550123", inputs=inputs)  # type: ignore[arg-type]
    return await simulate_call(sim, script, world=world, handlers=world.handlers(media=media))


async def test_saying_spanish_is_answered_in_spanish(
    voice_sim: SimConfig, world: TwilioWorld
) -> None:
    t = await call(voice_sim, world, Speak("스페인어", language="ko"))
    assert t.reached_human, t.format()
    assert t.of_type(CounselorJoined)[0].who in ("+15125550101", "+15125550103")
    assert [h.language for h in t.of_type(Heard)][-2:] == ["es-US", "es-US"]


async def test_saying_the_veterans_word_reaches_the_veterans_line(
    voice_sim: SimConfig, world: TwilioWorld
) -> None:
    t = await call(voice_sim, world, Speak("아니요", language="ko"))
    assert t.reached_human, t.format()
    assert t.of_type(Dialed)[0].targets == ("+18005550111",)


async def test_keys_still_work_in_a_listening_menu(
    voice_sim: SimConfig, world: TwilioWorld
) -> None:
    t = await call(voice_sim, world, Press("2"))
    assert t.reached_human, t.format()
    assert [h.language for h in t.of_type(Heard)][-2:] == ["es-US", "es-US"]


async def test_silence_in_a_listening_menu_connects(
    voice_sim: SimConfig, world: TwilioWorld
) -> None:
    t = await call(voice_sim, world, Silence())
    assert t.reached_human, t.format()
    assert {h.language for h in t.of_type(Heard) if "español" not in h.text} == {"en-US"}
