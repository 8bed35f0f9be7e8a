"""Voicing evidence on synthetic signals: a gliding voice, a steady tone, hiss."""

from __future__ import annotations

import math
import random
from array import array

import pytest

from ivr.speech.voicing import VoicingConfig, VoicingMeter


def pcm(samples: list[float]) -> bytes:
    return array("h", (max(-32768, min(32767, round(s))) for s in samples)).tobytes()


def buzz(f0_start: float, f0_end: float, seconds: float, amplitude: float = 8000.0) -> bytes:
    """A glottal-like pulse train whose pitch glides from f0_start to f0_end."""
    n = int(8000 * seconds)
    phase = 0.0
    out = []
    for i in range(n):
        f0 = f0_start + (f0_end - f0_start) * i / n
        phase += 2 * math.pi * f0 / 8000
        # A few harmonics with falling amplitude, like a vowel's source.
        out.append(amplitude * sum(math.sin(k * phase) / k for k in range(1, 6)) / 2)
    return pcm(out)


def meter_of(audio: bytes, piece: int = 320) -> VoicingMeter:
    meter = VoicingMeter()
    for i in range(0, len(audio), piece):  # fed in 20 ms pieces, as decode jobs come
        meter.push(audio[i : i + piece])
    return meter


def test_gliding_voice_is_speech_like() -> None:
    assert meter_of(buzz(110, 150, 0.5)).speech_like
    assert meter_of(buzz(220, 180, 0.5)).speech_like


def test_steady_tone_is_not() -> None:
    meter = meter_of(buzz(120, 120, 1.0))
    assert not meter.speech_like
    assert len(meter.periods) > 10  # voiced all along, but the pitch never moved


def test_hiss_is_not() -> None:
    rng = random.Random(3)
    meter = meter_of(pcm([rng.gauss(0, 6000) for _ in range(8000)]))
    assert not meter.speech_like
    assert meter.windows == 25


def test_short_voice_is_not_enough() -> None:
    """Under three windows (120 ms) of a voice: a click or a cough, not a word."""
    assert not meter_of(buzz(110, 150, 0.1)).speech_like


def test_reset_starts_a_new_utterance() -> None:
    meter = meter_of(buzz(110, 150, 0.5))
    assert meter.speech_like
    meter.reset()
    assert not meter.speech_like and meter.periods == [] and meter.windows == 0
    meter.push(buzz(120, 120, 0.5))
    assert not meter.speech_like


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        VoicingConfig(min_pitch_hz=400, max_pitch_hz=100)
    with pytest.raises(ValueError):
        VoicingConfig(min_voiced_windows=0)
