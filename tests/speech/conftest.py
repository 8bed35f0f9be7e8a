"""Speech fixtures: the Korean Vosk model from PyPI and espeak-ng test speech.

Loading the model costs seconds and half a gigabyte, and synthesising speech
costs a process per word, so both happen once per test session.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from ivr.speech.asr import Decision, ListenSession, SpeechEngine, SpeechModels
from ivr.speech.audio import FRAME_BYTES, MULAW_SILENCE, frames, load_prompt_wav
from ivr.speech.render import render_prompt

KOREAN_WORDS = ("영어", "스페인어", "아니요")
"""English, Spanish, No: multi-syllable words that decode reliably at 8 kHz."""

SILENCE_FRAME = bytes([MULAW_SILENCE]) * FRAME_BYTES


def need_tools() -> None:
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian package {tool}); it makes test speech")


@pytest.fixture(scope="session")
def ko_models(ko_model_dir: Path) -> SpeechModels:
    """The Korean model under two language codes: loaded once, shared."""
    return SpeechModels({"ko": ko_model_dir, "k2": ko_model_dir})


@pytest.fixture(scope="session")
def engine(ko_models: SpeechModels) -> Iterator[SpeechEngine]:
    engine = SpeechEngine(ko_models, max_workers=2)
    yield engine
    engine.shutdown()


class Speech:
    """espeak-ng speech as phone audio (8 kHz mu-law), rendered on first use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: dict[tuple[str, str], bytes] = {}

    def mulaw(self, text: str, lang: str = "ko") -> bytes:
        key = (text, lang)
        if key not in self._cache:
            need_tools()
            path = self.directory / f"{lang}-{len(self._cache)}.wav"
            render_prompt(text, lang, path)
            self._cache[key] = load_prompt_wav(path)
        return self._cache[key]


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    return Speech(tmp_path_factory.mktemp("speech"))


def padded(mulaw: bytes, *, before: float = 0.5, after: float = 1.0) -> bytes:
    """Audio with line silence around it, as a caller's answer arrives."""
    lead = bytes([MULAW_SILENCE]) * int(8000 * before)
    tail = bytes([MULAW_SILENCE]) * int(8000 * after)
    return lead + mulaw + tail


async def listen_to(session: ListenSession, mulaw: bytes) -> Decision:
    """Feed 20 ms frames as Twilio would; finish when the audio runs out."""
    for frame in frames(mulaw):
        decision = await session.feed(frame)
        if decision is not None:
            return decision
    return await session.finish()


async def hear(
    engine: SpeechEngine, grammars: Mapping[str, Sequence[str]], mulaw: bytes
) -> Decision:
    session = engine.listen(grammars)
    try:
        return await listen_to(session, padded(mulaw))
    finally:
        session.close()
