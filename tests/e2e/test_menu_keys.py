"""A key pressed at any moment of a menu counts, including while a listening
menu's prompt is said with <Say> before its media stream opens (the shipped
prompts have no recording of the menu)."""

from __future__ import annotations

import argparse
import shutil

import pytest
from aiohttp.test_utils import TestServer

from ivr.config import Settings
from ivr.sim import (
    CallScript,
    MediaStreams,
    Press,
    StreamSettings,
    TwilioWorld,
    add_call_arguments,
    script_from_args,
    simulate_call,
)
from ivr.sim.config import SimConfig
from ivr.sim.transcript import CounselorJoined, Heard, Pressed, Transcript
from tests.conftest import AUTH_TOKEN
from tests.helpers import staff_all

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox (Debian packages) run the media stream's caller",
)

TX_SPANISH = ("+15125550101", "+15125550103")  # Ana, Carla


@pytest.fixture
async def voice_sim(speech_server: TestServer, settings: Settings) -> SimConfig:
    await staff_all(speech_server)
    return SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                     account_sid=settings.account_sid)


async def call(sim: SimConfig, world: TwilioWorld, script: CallScript) -> Transcript:
    media = MediaStreams(StreamSettings(speed=10))
    return await simulate_call(sim, script, world=world, handlers=world.handlers(media=media))


def from_command_line(*argv: str) -> CallScript:
    parser = argparse.ArgumentParser()
    add_call_arguments(parser)
    return script_from_args(parser.parse_args(["--from", "+15125550123", *argv]))


async def test_pressing_2_three_seconds_into_the_menu_gets_spanish(
    voice_sim: SimConfig, world: TwilioWorld
) -> None:
    script = from_command_line("--press", "2@3s")
    assert script.inputs == (Press("2", at=3.0),)
    t = await call(voice_sim, world, script)
    assert t.reached_human, t.format()
    [pressed] = t.of_type(Pressed)
    assert not pressed.ignored, t.format()
    menu = next(h for h in t.of_type(Heard) if "press 1" in h.text)
    assert pressed.at == pytest.approx(menu.at + 3.0)
    # The key cut the prompt (barge-in), and everything after it is Spanish.
    assert menu.interrupted
    assert all(h.language == "es-US" for h in t.of_type(Heard) if h.at > pressed.at)
    assert t.of_type(CounselorJoined)[0].who in TX_SPANISH


async def test_a_key_after_the_prompt_reaches_the_stream(
    voice_sim: SimConfig, world: TwilioWorld
) -> None:
    # Menu prompt about 9 s, then a second for a key, then the stream listens.
    t = await call(voice_sim, world, CallScript(from_number="+15125550123",
                                               inputs=(Press("2", at=12.0),)))
    assert t.reached_human, t.format()
    [pressed] = t.of_type(Pressed)
    assert not pressed.ignored
    assert t.of_type(CounselorJoined)[0].who in TX_SPANISH
