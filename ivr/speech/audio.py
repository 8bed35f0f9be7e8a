"""Telephone audio: G.711 mu-law, 8/16 kHz resampling, prompt WAVs, energy gate.

Everything here is pure Python on the standard library (``audioop`` is gone
in Python 3.13). "PCM" always means signed 16-bit little-endian samples, the
layout WAV files and Vosk use.

Speed matters on the call path: a 20 ms frame arrives 50 times a second per
call. Decoding mu-law is two ``bytes.translate`` calls (one per output byte),
and frame energy is a table lookup per byte, so a 160-byte frame costs a few
microseconds. Encoding and resampling run when prompts are loaded, not per
frame, and are plain table or list work.
"""

from __future__ import annotations

import math
import operator
import os
import sys
from array import array
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from ivr.speech.errors import AudioFormatError
from ivr.wavfile import MULAW, WavError, read_prompt_wav, read_wav

__all__ = [
    "FRAME_BYTES",
    "FRAME_MS",
    "MULAW_SILENCE",
    "SAMPLE_RATE",
    "AudioFormatError",
    "EnergyGate",
    "GateConfig",
    "GateStep",
    "downsample_16k_to_8k",
    "frame_rms",
    "frames",
    "load_prompt_wav",
    "pcm16_to_ulaw",
    "ulaw_decode_sample",
    "ulaw_encode_sample",
    "ulaw_to_pcm16",
    "upsample_8k_to_16k",
    "wav_duration",
]

SAMPLE_RATE = 8000
"""Twilio Media Streams carry 8 kHz mono mu-law."""
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000
"""One 20 ms frame of 8 kHz mu-law: 160 bytes, as Twilio sends them."""
MULAW_SILENCE = 0xFF
"""The mu-law code of linear zero."""

_BIAS = 0x84
_CLIP = 32635


def ulaw_decode_sample(code: int) -> int:
    """G.711 mu-law code (0..255) to a 16-bit linear sample."""
    code = ~code & 0xFF
    exponent = (code >> 4) & 0x07
    magnitude = ((((code & 0x0F) << 3) + _BIAS) << exponent) - _BIAS
    return -magnitude if code & 0x80 else magnitude


def ulaw_encode_sample(sample: int) -> int:
    """16-bit linear sample to its G.711 mu-law code (zero encodes as 0xFF)."""
    sign = 0
    if sample < 0:
        sample = -sample
        sign = 0x80
    sample = min(sample, _CLIP) + _BIAS
    # The segment is where the highest set bit lies among bits 7..14.
    exponent = max(sample.bit_length() - 8, 0)
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


_DECODED: tuple[int, ...] = tuple(ulaw_decode_sample(c) for c in range(256))
# Little-endian bytes of each decoded sample, as two translate tables.
_DECODE_LO = bytes(s & 0xFF for s in _DECODED)
_DECODE_HI = bytes((s >> 8) & 0xFF for s in _DECODED)
# Squared sample per code: frame energy without decoding the frame.
_SQUARED: tuple[int, ...] = tuple(s * s for s in _DECODED)


def _encode_table() -> bytes:
    """Code per unsigned 16-bit sample pattern, built from the code's runs.

    A code holds for a whole quantisation step, so the 65536 entries are
    256 runs; filling runs keeps import time under a millisecond.
    """
    starts = sorted(
        {0}
        | {
            start
            for exponent in range(8)
            for mantissa in range(16)
            if 0 < (start := ((16 + mantissa) << (exponent + 3)) - _BIAS) <= 0x8000
        }
    )
    by_magnitude = bytearray()  # magnitudes 0..32768
    for start, end in zip(starts, [*starts[1:], 0x8001], strict=True):
        by_magnitude += bytes([ulaw_encode_sample(start)]) * (end - start)
    negative = bytes(by_magnitude).translate(bytes(c & 0x7F for c in range(256)))
    # Patterns 0..32767 are x = 0..32767; 32768..65535 are x = -32768..-1.
    return bytes(by_magnitude[:0x8000]) + negative[0x8000:0:-1]


# Indexed by the unsigned 16-bit pattern of a sample.
_ENCODE = _encode_table()
_LITTLE_ENDIAN = sys.byteorder == "little"


def ulaw_to_pcm16(data: bytes) -> bytes:
    """Decode mu-law bytes to 16-bit little-endian PCM (twice as long)."""
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(_DECODE_LO)
    out[1::2] = data.translate(_DECODE_HI)
    return bytes(out)


def _samples(pcm: bytes) -> array[int]:
    if len(pcm) % 2:
        raise ValueError(f"16-bit PCM needs an even number of bytes, got {len(pcm)}")
    samples = array("h", pcm)
    if not _LITTLE_ENDIAN:
        samples.byteswap()
    return samples


def _pcm_bytes(samples: array[int]) -> bytes:
    if not _LITTLE_ENDIAN:
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """Encode 16-bit little-endian PCM to mu-law (half as long)."""
    if len(pcm) % 2:
        raise ValueError(f"16-bit PCM needs an even number of bytes, got {len(pcm)}")
    words = array("H", pcm)
    if not _LITTLE_ENDIAN:
        words.byteswap()
    return bytes(map(_ENCODE.__getitem__, words))


def _clamp16(value: int) -> int:
    return -32768 if value < -32768 else 32767 if value > 32767 else value


def upsample_8k_to_16k(pcm: bytes) -> bytes:
    """Double the sample rate of a whole buffer.

    Original samples are kept; each new one between them comes from the
    4-tap half-band interpolator (-1, 9, 9, -1)/16, flatter than a straight
    line across the telephone band at about the same cost.
    """
    upsampler = Upsampler()
    return upsampler.push(pcm) + upsampler.flush()


class Upsampler:
    """`upsample_8k_to_16k` for a stream fed in pieces, without seams.

    The interpolator needs two samples of look-ahead, so each `push` holds
    back the last two input samples until the next piece (or `flush`)
    arrives: 0.25 ms of delay, and chunk boundaries leave no clicks.
    """

    def __init__(self) -> None:
        self._prev: int | None = None
        self._pending: list[int] = []

    def push(self, pcm: bytes) -> bytes:
        """Add 8 kHz PCM; return the 16 kHz PCM that is now complete."""
        new = _samples(pcm)
        if not new:
            return b""
        if self._prev is None:
            self._prev = new[0]
        buf = [self._prev, *self._pending, *new]
        return self._emit(buf, len(buf) - 2)

    def flush(self) -> bytes:
        """Emit the held-back samples (edge-padded) and start a new stream."""
        if self._prev is None:
            return b""
        buf = [self._prev, *self._pending]
        last = buf[-1]
        out = self._emit([*buf, last, last], len(buf))
        self._prev = None
        self._pending = []
        return out

    def _emit(self, buf: list[int], stop: int) -> bytes:
        # Emits x[j] and the point after it for 1 <= j < stop; needs buf[stop + 1].
        if stop <= 1:
            self._pending = buf[1:]
            return b""
        out = array("h", bytes(4 * (stop - 1)))
        out[0::2] = array("h", buf[1:stop])
        out[1::2] = array(
            "h",
            (
                _clamp16((9 * (buf[j] + buf[j + 1]) - buf[j - 1] - buf[j + 2] + 8) >> 4)
                for j in range(1, stop)
            ),
        )
        self._prev = buf[stop - 1]
        self._pending = buf[stop:]
        return _pcm_bytes(out)


def downsample_16k_to_8k(pcm: bytes) -> bytes:
    """Halve the sample rate of a whole buffer.

    A 7-tap half-band low-pass (-1, 0, 9, 16, 9, 0, -1)/32 runs before
    keeping every other sample, so most energy above 4 kHz is removed
    instead of folding back into the band as aliasing.
    """
    x = _samples(pcm)
    n = len(x)
    if n == 0:
        return b""
    first, last = x[0], x[-1]
    padded = [first, first, first, *x, last, last, last]
    out = array(
        "h",
        (
            _clamp16(
                (
                    16 * padded[i + 3]
                    + 9 * (padded[i + 2] + padded[i + 4])
                    - padded[i]
                    - padded[i + 6]
                    + 16
                )
                >> 5
            )
            for i in range(0, n, 2)
        ),
    )
    return _pcm_bytes(out)


def frames(mulaw: bytes, size: int = FRAME_BYTES) -> Iterator[bytes]:
    """Cut mu-law audio into `size`-byte frames (20 ms by default).

    The last frame is padded with mu-law silence so every frame has the same
    length, which keeps frame counting equal to elapsed time.
    """
    if size <= 0:
        raise ValueError(f"frame size must be positive, got {size}")
    for start in range(0, len(mulaw), size):
        chunk = mulaw[start : start + size]
        if len(chunk) < size:
            chunk = chunk + bytes([MULAW_SILENCE]) * (size - len(chunk))
        yield chunk


# ---------------------------------------------------------------- WAV files


def wav_duration(path: str | os.PathLike[str]) -> float:
    """Length of a WAV file in seconds (any format with a sane header)."""
    try:
        return read_wav(path).seconds
    except WavError as exc:
        raise AudioFormatError(f"{os.fspath(path)}: {exc}") from exc


def load_prompt_wav(path: str | os.PathLike[str]) -> bytes:
    """Load a prompt recording as 8 kHz mu-law, ready to stream in 20 ms frames.

    Which recordings are usable is decided by `ivr.wavfile.read_prompt_wav`,
    the rule `ivr validate` applies too: mono 16-bit PCM at 8 or 16 kHz (16 kHz
    is resampled), or mono 8 kHz mu-law. Anything else raises
    `AudioFormatError` naming the file and what is wrong with it.
    """
    try:
        wav = read_prompt_wav(path)
    except WavError as exc:
        raise AudioFormatError(f"{os.fspath(path)}: {exc}") from exc
    if wav.format_tag == MULAW:
        return wav.data
    pcm = wav.data[: len(wav.data) - len(wav.data) % 2]
    if wav.rate == 2 * SAMPLE_RATE:
        pcm = downsample_16k_to_8k(pcm)
    return pcm16_to_ulaw(pcm)


# ---------------------------------------------------------------- energy gate


# Each mu-law code's magnitude, in steps of 128 (a byte holds up to 32767/128).
_PEAK = bytes(min(255, abs(ulaw_decode_sample(code)) // 128 + 1) for code in range(256))
QUIET_SKIP = 8  # frames settled by their peak between two exact RMS measurements
_QUIET_RATES = tuple(1 - 0.95 ** (n + 1) for n in range(QUIET_SKIP + 1))


def frame_peak(frame: bytes) -> float:
    """An upper bound of a mu-law frame's peak amplitude, in 16-bit linear units."""
    return max(frame.translate(_PEAK), default=0) * 128.0


def frame_rms(frame: bytes, encoding: Literal["mulaw", "pcm16"] = "mulaw") -> float:
    """Root mean square of a frame, in 16-bit linear units."""
    if not frame:
        return 0.0
    if encoding == "mulaw":
        return math.sqrt(sum(map(_SQUARED.__getitem__, frame)) / len(frame))
    samples = _samples(frame)
    if not samples:
        return 0.0
    return math.sqrt(sum(map(operator.mul, samples, samples)) / len(samples))


@dataclass(frozen=True)
class GateConfig:
    """Tuning of `EnergyGate`; times are in milliseconds.

    `min_rms` (about -44 dBFS) sits above line hiss and below soft speech;
    the threshold also rises to `noise_factor` times the running noise floor
    on noisy lines. `hangover_ms` keeps passing frames after the energy
    drops so soft word endings reach the decoder; `preroll_ms` replays the
    frames before the onset so soft beginnings do too. `end_silence_ms` of
    quiet ends an utterance; `max_utterance_ms` ends one that never falls
    quiet, and the noise floor slowly rises under endless loud sound (a
    television), so such sound stops reaching the decoder.
    """

    min_rms: float = 200.0
    noise_factor: float = 3.0
    onset_ms: int = 40
    hangover_ms: int = 300
    preroll_ms: int = 200
    end_silence_ms: int = 600
    max_utterance_ms: int = 10_000
    frame_ms: int = FRAME_MS

    def __post_init__(self) -> None:
        if self.frame_ms <= 0:
            raise ValueError("frame_ms must be positive")
        if self.min_rms < 0 or self.noise_factor < 0:
            raise ValueError("min_rms and noise_factor must not be negative")
        if self.preroll_ms < self.onset_ms:
            raise ValueError("preroll_ms must cover onset_ms, or speech starts are cut")
        if self.end_silence_ms < self.hangover_ms:
            raise ValueError("end_silence_ms must be at least hangover_ms")
        if self.onset_ms < 0 or self.max_utterance_ms <= 0:
            raise ValueError("onset_ms must be >= 0 and max_utterance_ms > 0")

    def count(self, ms: int) -> int:
        """Whole frames in `ms` milliseconds (at least one)."""
        return max(1, -(-ms // self.frame_ms))


@dataclass(frozen=True)
class GateStep:
    """What the gate made of one frame.

    `frames` are the frames to hand to the decoder now, oldest first (empty
    for silence; several when an onset replays the pre-roll).
    """

    frames: tuple[bytes, ...]
    speech_started: bool = False
    speech_ended: bool = False


_NOTHING = GateStep(())


class EnergyGate:
    """Decides per 20 ms frame whether it is speech worth decoding.

    Idle, it keeps only a short pre-roll and a slow noise-floor estimate, so
    a silent frame costs one table pass over its bytes. An onset (enough
    consecutive loud frames) starts an utterance and replays the pre-roll;
    the utterance ends after `end_silence_ms` of quiet and reports
    `speech_ended` so the caller can ask the decoder for its final result.
    """

    def __init__(
        self,
        config: GateConfig | None = None,
        *,
        encoding: Literal["mulaw", "pcm16"] = "mulaw",
    ) -> None:
        self.config = config or GateConfig()
        self.encoding: Literal["mulaw", "pcm16"] = encoding
        cfg = self.config
        self._onset = cfg.count(cfg.onset_ms) if cfg.onset_ms else 1
        self._hangover = cfg.count(cfg.hangover_ms)
        self._end = cfg.count(cfg.end_silence_ms)
        self._max = cfg.count(cfg.max_utterance_ms)
        self._preroll: deque[bytes] = deque(maxlen=max(cfg.count(cfg.preroll_ms), self._onset))
        self.noise_rms = 0.0
        self.last_rms = 0.0
        self._quiet_skips = 0
        self._reset_utterance()

    def _reset_utterance(self) -> None:
        self.in_speech = False
        self._loud_run = 0
        self._quiet_run = 0
        self._length = 0
        self._preroll.clear()

    def reset(self) -> None:
        """Forget the current utterance (the noise floor is kept)."""
        self._reset_utterance()

    @property
    def threshold(self) -> float:
        """Current RMS above which a frame counts as loud."""
        return max(self.config.min_rms, self.config.noise_factor * self.noise_rms)

    def push(self, frame: bytes) -> GateStep:
        """Classify one frame; return the frames to decode and utterance events."""
        if (
            not self.in_speech
            and self.encoding == "mulaw"
            and frame_peak(frame) <= self.threshold
            and self._quiet_skips < QUIET_SKIP
        ):
            # The RMS cannot exceed the peak: a quiet line between words is
            # settled by one C-speed pass; the exact RMS (for the noise floor)
            # is still taken on every QUIET_SKIP-th frame.
            self._quiet_skips += 1
            self._preroll.append(frame)
            self._loud_run = 0
            return _NOTHING
        skipped, self._quiet_skips = self._quiet_skips, 0
        rms = self.last_rms = frame_rms(frame, self.encoding)
        loud = rms > self.threshold
        # The floor follows quiet frames within a second, and creeps up under
        # loud ones (a 40 s time constant): speech barely moves it, but a
        # television left on stops opening the gate after ~15 s. Frames settled
        # by their peak alone count towards the quiet rate as if measured.
        rate = 0.0005 if loud else _QUIET_RATES[skipped]
        self.noise_rms += rate * (rms - self.noise_rms)
        if not self.in_speech:
            self._preroll.append(frame)
            if not loud:
                self._loud_run = 0
                return _NOTHING
            self._loud_run += 1
            if self._loud_run < self._onset:
                return _NOTHING
            self.in_speech = True
            self._quiet_run = 0
            self._length = len(self._preroll)
            replay = tuple(self._preroll)
            self._preroll.clear()
            return GateStep(replay, speech_started=True)

        self._length += 1
        if self._length >= self._max:
            self._reset_utterance()
            return GateStep((frame,), speech_ended=True)
        if loud:
            replay = (*self._preroll, frame) if self._quiet_run > self._hangover else (frame,)
            self._preroll.clear()
            self._quiet_run = 0
            return GateStep(replay)
        self._quiet_run += 1
        if self._quiet_run >= self._end:
            self._reset_utterance()
            return GateStep((), speech_ended=True)
        if self._quiet_run > self._hangover:
            # Past the hangover: hold the frame back, replay it if speech resumes.
            self._preroll.append(frame)
            return GateStep(())
        return GateStep((frame,))
