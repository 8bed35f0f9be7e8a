"""Is this sound speech? Voicing evidence for an utterance, from its 8 kHz PCM.

The recognizer alone cannot say: with a grammar of a few words, loud line
noise (pink noise driven into clipping, mains hum with its harmonics)
decodes as a menu word with a posterior of 0.9 to 1.0, because the words
are the only paths through the graph besides the unknown token. What
noise lacks is a voice: vowels are periodic at the speaker's pitch
(50 to 400 Hz), and that pitch moves; hiss is not periodic, brown noise
is smooth but not periodic, and hum is periodic at one fixed frequency.

So each 40 ms window of an utterance is tested for a pitch: the
normalised autocorrelation of the window (decimated to 4 kHz) must have a
peak inside the pitch range, standing clear of a dip before it (a smooth,
low-pass signal correlates at every short lag but has no such dip). An
utterance is speech-like when enough windows are voiced and their pitch
is not one constant tone (60 Hz hum reads as 66.67 samples at 4 kHz to
within 0.05 sample at every level; espeak-ng's flattest voice moved by
0.6 sample over a word).

Cost: ~0.1 ms of pure Python per 40 ms window (the search runs at 2 kHz,
then is refined at 4 kHz), paid only until the evidence is found (a few
windows into a word), in the decoding thread, where it holds the GIL:
an exhaustive 4 kHz search cost 0.46 ms and showed in the event loop's
latency under load.
"""

from __future__ import annotations

import operator
from array import array
from dataclasses import dataclass
from itertools import accumulate

from ivr.speech.audio import _samples

__all__ = ["VoicingConfig", "VoicingMeter", "window_pitch"]

_RATE = 4000  # the analysis rate, after 2:1 decimation
_WINDOW = 160  # samples at 4 kHz: 40 ms, two periods of the lowest pitch
_OCTAVE = 0.85  # a shorter lag this close to the strongest peak is the true period
_GLIDE = 0.2  # a voice's pitch moves less than this between two windows


@dataclass(frozen=True)
class VoicingConfig:
    """What counts as a voice.

    `min_voiced_windows` consecutive windows of 40 ms must show a pitch
    between `min_pitch_hz` and `max_pitch_hz` (correlation at least
    `min_correlation`, standing `min_prominence` above the dip before it),
    each within 20% of the one before: a voice glides, while noise that
    happens to correlate jumps from window to window. Over such stretches
    the pitch period must move by `min_pitch_spread` samples at 4 kHz and
    by `min_pitch_motion` of itself: mains hum is periodic but does not
    move. `min_rms` skips windows too quiet to judge.
    """

    min_pitch_hz: float = 50.0
    max_pitch_hz: float = 400.0
    min_correlation: float = 0.5
    min_prominence: float = 0.3
    min_voiced_windows: int = 3
    min_pitch_spread: float = 0.3
    min_pitch_motion: float = 0.015
    min_rms: float = 100.0

    def __post_init__(self) -> None:
        if not 0 < self.min_pitch_hz < self.max_pitch_hz <= _RATE / 4:
            raise ValueError("pitch range must satisfy 0 < min < max <= 1000 Hz")
        if self.min_voiced_windows < 1 or self.min_pitch_spread < 0:
            raise ValueError("min_voiced_windows must be >= 1 and min_pitch_spread >= 0")


def _decimate(pcm8k: array[int]) -> list[int]:
    """8 kHz to 4 kHz by averaging pairs (a crude low-pass, enough for pitch)."""
    return list(map(operator.add, pcm8k[0::2], pcm8k[1::2]))


def _correlations(x: list[int], lags: range) -> list[float]:
    """Normalised autocorrelation of `x` at each lag (energies from running sums)."""
    n = len(x)
    head = [0, *accumulate(map(operator.mul, x, x))]
    out: list[float] = []
    for lag in lags:
        a = head[n - lag]
        b = head[n] - head[lag]
        dot = sum(map(operator.mul, x[: n - lag], x[lag:]))
        out.append(dot / (a * b) ** 0.5 if a and b else 0.0)
    return out


def window_pitch(x: list[int], config: VoicingConfig) -> float | None:
    """The pitch period (samples at 4 kHz, fractional) of one window, or None if unvoiced.

    The search runs at 2 kHz (a quarter of the multiplications) and the
    period found is refined at 4 kHz among its two neighbours.
    """
    n = len(x)
    mean = sum(x) // n if n else 0
    x = [v - mean for v in x]
    total = sum(map(operator.mul, x, x))
    # Pairs were summed, so amplitudes are doubled: compare against 2 * min_rms.
    if total < n * (2 * config.min_rms) ** 2:
        return None
    coarse = list(map(operator.add, x[0::2], x[1::2]))
    rate = _RATE // 2
    lo = max(2, int(rate / config.max_pitch_hz))
    hi = min(len(coarse) // 2, int(rate / config.min_pitch_hz) + 1)
    corr = _correlations(coarse, range(lo - 1, hi + 2))
    peaks: list[tuple[int, float]] = []
    dip = corr[0]
    for i in range(1, len(corr) - 1):
        r = corr[i]
        dip = min(dip, r)
        if r >= corr[i - 1] and r >= corr[i + 1] and r - dip >= config.min_prominence:
            peaks.append((lo - 1 + i, r))
    strongest = max((r for _, r in peaks), default=0.0)
    if strongest < config.min_correlation:
        return None
    # Multiples of the period correlate as well as the period itself: the
    # shortest lag nearly as strong as the best is the pitch, not its octave below.
    lag = 2 * next(lag for lag, r in peaks if r >= _OCTAVE * strongest)
    # At 4 kHz: the best of the lag and its neighbours, then the top of the
    # parabola through three correlations, so a steady tone reads as one
    # steady period rather than flickering between two whole samples.
    c = _correlations(x, range(lag - 2, lag + 3))
    k = max(range(1, 4), key=c.__getitem__)
    left, mid, right = c[k - 1], c[k], c[k + 1]
    bend = left - 2 * mid + right
    shift = 0.5 * (left - right) / bend if bend < 0 else 0.0
    return lag - 2 + k + max(-0.5, min(0.5, shift))


class VoicingMeter:
    """Collects voicing evidence over one utterance, fed its 8 kHz PCM in pieces."""

    def __init__(self, config: VoicingConfig | None = None) -> None:
        self.config = config or VoicingConfig()
        self._buf = array("h")
        self.periods: list[float] = []  # every window's pitch period, for logs and tests
        self.windows = 0
        self.longest_run = 0
        self.speech_like = False
        self._prev: float | None = None
        self._run = 0
        self._held: list[float] = []  # periods of windows continuing their neighbour's pitch

    def push(self, pcm: bytes) -> None:
        """Add 16-bit little-endian 8 kHz PCM; stops analysing once speech is proven."""
        if self.speech_like or not pcm:
            return
        self._buf.extend(_samples(pcm))
        step = 2 * _WINDOW
        start = 0
        while len(self._buf) - start >= step and not self.speech_like:
            self._analyse(_decimate(self._buf[start : start + step]))
            start += step
        del self._buf[:start]

    def _analyse(self, window: list[int]) -> None:
        self.windows += 1
        period = window_pitch(window, self.config)
        prev, self._prev = self._prev, period
        if period is None:
            self._run = 0
            return
        self.periods.append(period)
        if prev is None or abs(period - prev) > _GLIDE * prev:
            self._run = 1  # a jump (or an octave error) starts a new stretch
            return
        self._run += 1
        self.longest_run = max(self.longest_run, self._run)
        if self._run == 2:
            self._held.append(prev)
        self._held.append(period)
        cfg = self.config
        spread = max(self._held) - min(self._held)
        if self.longest_run >= cfg.min_voiced_windows and spread >= max(
            cfg.min_pitch_spread, cfg.min_pitch_motion * min(self._held)
        ):
            self.speech_like = True

    def reset(self) -> None:
        """Start a new utterance."""
        del self._buf[:]
        self.periods = []
        self.windows = 0
        self.longest_run = 0
        self.speech_like = False
        self._prev = None
        self._run = 0
        self._held = []
