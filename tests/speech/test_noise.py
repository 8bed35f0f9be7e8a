"""Loud line noise is not a word (issue 9 item 8).

A noise corpus made with sox (white, pink and brown noise, 60 Hz mains hum
with its harmonics; from well under full scale to driven 20 dB into
clipping) goes through 8 kHz mu-law and 20 ms frames into the menu the
shipped flow listens with: the veterans word (아니요) in one language and
the Spanish one (스페인어) in the other, each with its own recognizer.
Before voicing evidence was required, pink noise clipped 20 dB decided 12
of 20 calls as the veterans word (posterior 0.75 to 1.0) and hum at full
scale 14 of 20 as a word.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from ivr.speech.asr import ListenConfig, Match, NoMatch, SpeechEngine, SpeechModels
from ivr.speech.audio import GateConfig, frames, load_prompt_wav
from ivr.speech.render import render_prompt
from tests.speech.conftest import SILENCE_FRAME, listen_to, need_tools, padded

# The first menu of the shipped flow, as the tests' Korean content words it
# (tests/conftest.py SPEECH_OPTION_WORDS): veterans and Spanish.
MENU = {"en": ["아니요"], "es": ["스페인어"]}
# The server's gate (ivr/app.py LISTEN_CONFIG): decisions 200 ms after speech.
CONFIG = ListenConfig(gate=GateConfig(end_silence_ms=200, hangover_ms=160))

SOURCES = {
    "white": ["whitenoise"],
    "pink": ["pinknoise"],
    "brown": ["brownnoise"],
    "hum": ["sine", "60", "sine", "180", "sine", "300"],  # mains hum and its odd harmonics
}
# Peak level in dB: negative is under full scale, positive is gain past it (clipping).
LEVELS = (-20, -6, 0, 6, 20)
CORPUS_SECONDS = 30


def _sox_noise(kind: str, level: int, out: Path) -> bytes:
    gain = ["gain", "-n", str(level)] if level <= 0 else ["gain", "-n", "0", "gain", str(level)]
    # -R: sox's repeatable random seed, so the corpus is the same on every run.
    subprocess.run(
        [
            "sox",
            "-R",
            "-n",
            "-r",
            "8000",
            "-c",
            "1",
            "-e",
            "mu-law",
            str(out),
            "synth",
            str(CORPUS_SECONDS),
            *SOURCES[kind],
            *gain,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return load_prompt_wav(out)


@pytest.fixture(scope="session")
def noise(tmp_path_factory: pytest.TempPathFactory) -> Mapping[tuple[str, int], bytes]:
    """30 s of each kind of noise at each level, as 8 kHz mu-law."""
    need_tools()
    directory = tmp_path_factory.mktemp("noise")
    return {
        (kind, level): _sox_noise(kind, level, directory / f"{kind}{level:+d}.wav")
        for kind in SOURCES
        for level in LEVELS
    }


def pieces(audio: bytes, count: int) -> list[bytes]:
    """`count` stretches of 0.3 to 1.8 s from different places in the noise."""
    out = []
    for i in range(count):
        seconds = 0.3 + (i % 7) * 0.25
        start = int(i * 1.3 * 8000)
        out.append(audio[start : start + int(seconds * 8000)])
    return out


@pytest.fixture(scope="module")
def flow_engine(ko_models: SpeechModels) -> Iterator[SpeechEngine]:
    """The Korean model under the flow's two language codes, with the server's gate."""
    models = SpeechModels({"en": ko_models.path("ko"), "es": ko_models.path("ko")})
    engine = SpeechEngine(models, max_workers=2, config=CONFIG)
    yield engine
    engine.shutdown()


async def decide_noise(engine: SpeechEngine, audio: bytes) -> tuple[object, NoMatch | Match]:
    """What `feed` decided on its own (None: nothing), and then `finish`."""
    session = engine.listen(MENU)
    try:
        early = None
        for frame in frames(padded(audio, after=1.0)):
            early = await session.feed(frame)
            if early is not None:
                break
        return early, await session.finish()
    finally:
        session.close()


@pytest.mark.parametrize(("kind", "level"), [("pink", 20), ("hum", 0), ("hum", 6)])
async def test_loud_noise_is_not_the_veterans_word(
    flow_engine: SpeechEngine,
    noise: Mapping[tuple[str, int], bytes],
    kind: str,
    level: int,
) -> None:
    calls = pieces(noise[kind, level], 20)
    decided = [await decide_noise(flow_engine, piece) for piece in calls]
    words = [final for _, final in decided if isinstance(final, Match)]
    assert words == [], f"{len(words)} of 20 noise calls decided as a word: {words[:3]}"
    assert all(early is None for early, _ in decided)
    assert {final.reason for _, final in decided if isinstance(final, NoMatch)} <= {
        "noise",
        "silence",
    }


@pytest.mark.parametrize("kind", sorted(SOURCES))
async def test_noise_corpus_yields_no_decision(
    flow_engine: SpeechEngine, noise: Mapping[tuple[str, int], bytes], kind: str
) -> None:
    decided: list[tuple[int, object, object]] = []
    for level in LEVELS:
        for piece in pieces(noise[kind, level], 5):
            early, final = await decide_noise(flow_engine, piece)
            decided.append((level, early, final))
    # Noise neither ends the menu early nor counts as an answer at its timeout.
    wrong = [
        (level, early, final)
        for level, early, final in decided
        if early is not None or final not in (NoMatch("noise"), NoMatch("silence"))
    ]
    assert wrong == []
    # The loud pieces did open the gate and reach the recognizers: the test
    # exercises the decision, not just the energy gate.
    assert any(final == NoMatch("noise") for _, _, final in decided)


# espeak-ng's Korean voice at its default and at other speeds (words per
# minute) and pitches (0-99), so the voice is not one fixed tone.
VOICES = [(None, None), (120, 20), (200, 80), (170, 60), (90, 0)]
Voice = tuple[str, int | None, int | None]  # word, speed, pitch


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> dict[Voice, bytes]:
    need_tools()
    directory = tmp_path_factory.mktemp("voices")
    out: dict[Voice, bytes] = {}
    for n, (speed, pitch) in enumerate(VOICES):
        for word in ("아니요", "스페인어"):
            path = render_prompt(
                word, "ko", directory / f"{n}-{word}.wav", speed=speed, pitch=pitch
            )
            out[word, speed, pitch] = load_prompt_wav(path)
    return out


async def test_spoken_words_still_decide(
    flow_engine: SpeechEngine, spoken: Mapping[Voice, bytes]
) -> None:
    expected = {"아니요": ("en", "아니요"), "스페인어": ("es", "스페인어")}
    results: dict[Voice, Match | NoMatch] = {}
    for (word, speed, pitch), audio in spoken.items():
        session = flow_engine.listen(MENU)
        try:
            results[word, speed, pitch] = await listen_to(session, padded(audio))
        finally:
            session.close()
    for (word, speed, pitch), decision in results.items():
        assert isinstance(decision, Match), (word, speed, pitch, decision)
        assert (decision.lang, decision.word) == expected[word], (word, speed, pitch)


async def test_word_after_loud_noise(
    flow_engine: SpeechEngine,
    noise: Mapping[tuple[str, int], bytes],
    spoken: Mapping[Voice, bytes],
) -> None:
    """Clipped hum, a pause, then the caller's word: the hum is skipped, the word decides."""
    session = flow_engine.listen(MENU)
    try:
        audio = padded(noise["hum", 6][:8000]) + padded(spoken["아니요", None, None])
        decision = await listen_to(session, audio)
        assert isinstance(decision, Match), decision
        assert (decision.lang, decision.word) == ("en", "아니요")
        assert session.stats.unvoiced_utterances == 1
        assert session.stats.utterances == 2
        assert await session.feed(SILENCE_FRAME) is None
    finally:
        session.close()
