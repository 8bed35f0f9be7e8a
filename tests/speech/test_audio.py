"""G.711 mu-law, resampling, prompt WAV loading and the energy gate."""

from __future__ import annotations

import math
import struct
import warnings
import wave
from array import array
from pathlib import Path
from types import ModuleType

import pytest

from ivr.speech.audio import (
    FRAME_BYTES,
    MULAW_SILENCE,
    AudioFormatError,
    EnergyGate,
    GateConfig,
    Upsampler,
    downsample_16k_to_8k,
    frame_rms,
    frames,
    load_prompt_wav,
    pcm16_to_ulaw,
    ulaw_decode_sample,
    ulaw_encode_sample,
    ulaw_to_pcm16,
    upsample_8k_to_16k,
    wav_duration,
)

ALL_CODES = bytes(range(256))
ALL_SAMPLES = array("h", range(-32768, 32768)).tobytes()


def audioop_module() -> ModuleType:
    """The old C implementation, as an outside reference where it still exists."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            pytest.skip("audioop is not available (removed in Python 3.13)")
    return audioop


def pcm(samples: list[int]) -> bytes:
    return array("h", samples).tobytes()


def sine(freq: float, rate: int, seconds: float, amplitude: float = 8000.0) -> list[int]:
    count = int(rate * seconds)
    return [round(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(count)]


def rms(samples: list[int] | array[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples))


# ------------------------------------------------------------------- G.711


def test_known_mulaw_values() -> None:
    assert ulaw_decode_sample(0xFF) == 0
    assert ulaw_decode_sample(0x7F) == 0  # "negative zero"
    assert ulaw_decode_sample(0x00) == -32124
    assert ulaw_decode_sample(0x80) == 32124
    assert ulaw_decode_sample(0xF0) == 8 * 15  # segment 0, top step
    assert ulaw_encode_sample(0) == 0xFF
    assert ulaw_encode_sample(32767) == 0x80
    assert ulaw_encode_sample(-32768) == 0x00


def g711_decision_codes() -> list[int]:
    """Encoder output per 16-bit input, from the decision levels of G.711 table 2a.

    The table gives, on the 14-bit scale (max 8159), the boundaries of the
    128 magnitude steps: 0, 1, then 15 steps of 2 up to 31, then 16 steps
    each of 4, 8, 16, 32, 64, 128 and 256 up to 8159. A 16-bit sample is
    four times the 14-bit value.
    """
    bounds = [1]
    for step, count in ((2, 15), (4, 16), (8, 16), (16, 16), (32, 16), (64, 16), (128, 16)):
        for _ in range(count):
            bounds.append(bounds[-1] + step)
    for _ in range(15):  # the last step runs to the clip level
        bounds.append(bounds[-1] + 256)
    bounds16 = [4 * b for b in bounds]  # 127 upper bounds of levels 0..126
    codes = []
    for x in range(-32768, 32768):
        magnitude = abs(x)
        level = next((i for i, bound in enumerate(bounds16) if magnitude < bound), 127)
        codes.append((0xFF if x >= 0 else 0x7F) - level)
    return codes


def test_encoder_follows_g711_decision_levels() -> None:
    assert list(pcm16_to_ulaw(ALL_SAMPLES)) == g711_decision_codes()


def test_decode_matches_audioop() -> None:
    audioop = audioop_module()
    assert ulaw_to_pcm16(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)


def test_encode_is_within_one_step_of_audioop() -> None:
    # audioop truncates negative samples to 14 bits before encoding, which
    # moves some of them one step; the standard's levels are symmetric.
    audioop = audioop_module()
    ours = pcm16_to_ulaw(ALL_SAMPLES)
    theirs = audioop.lin2ulaw(ALL_SAMPLES, 2)
    assert all(abs(a - b) <= 1 for a, b in zip(ours, theirs, strict=True))
    assert ours[32768:] == theirs[32768:], "non-negative samples must agree exactly"


def test_round_trips() -> None:
    for code in range(256):
        value = ulaw_decode_sample(code)
        assert ulaw_decode_sample(ulaw_encode_sample(value)) == value
        if code != 0x7F:  # both zeros encode as 0xFF
            assert ulaw_encode_sample(value) == code
    assert pcm16_to_ulaw(ulaw_to_pcm16(ALL_CODES)) == ALL_CODES.replace(b"\x7f", b"\xff")


def test_whole_buffer_matches_per_sample() -> None:
    decoded = array("h", ulaw_to_pcm16(ALL_CODES))
    assert list(decoded) == [ulaw_decode_sample(c) for c in range(256)]
    samples = list(range(-32768, 32768, 97))
    assert list(pcm16_to_ulaw(pcm(samples))) == [ulaw_encode_sample(s) for s in samples]


def test_odd_pcm_length_is_rejected() -> None:
    with pytest.raises(ValueError, match="even number"):
        pcm16_to_ulaw(b"\x00\x01\x02")


# ------------------------------------------------------------------- resampling


def test_upsample_keeps_samples_and_a_tone() -> None:
    tone = sine(1000, 8000, 0.1)
    up = array("h", upsample_8k_to_16k(pcm(tone)))
    assert len(up) == 2 * len(tone)
    assert list(up[0::2]) == tone
    ideal = sine(1000, 16000, 0.1)
    error = [a - b for a, b in zip(up[8:-8], ideal[8:-8], strict=True)]
    assert rms(error) < 0.02 * rms(ideal)


def test_upsampler_streams_without_seams() -> None:
    tone = pcm(sine(440, 8000, 0.25))
    whole = upsample_8k_to_16k(tone)
    for piece in (2, 6, 320, 322):
        streamer = Upsampler()
        out = b"".join(streamer.push(tone[i : i + piece]) for i in range(0, len(tone), piece))
        assert out + streamer.flush() == whole, piece
    assert Upsampler().flush() == b""


def test_downsample_passes_speech_band_and_stops_aliases() -> None:
    low = array("h", downsample_16k_to_8k(pcm(sine(1000, 16000, 0.2))))
    high = array("h", downsample_16k_to_8k(pcm(sine(6000, 16000, 0.2))))
    assert len(low) == 1600
    assert rms(low[10:-10]) > 0.9 * 8000 / math.sqrt(2)
    # 6 kHz would fold to 2 kHz; the half-band filter keeps it ~25 dB down.
    assert rms(high[10:-10]) < 0.1 * 8000 / math.sqrt(2)


def test_frames_are_20ms_and_padded() -> None:
    audio = bytes(range(256)) * 2  # 512 bytes
    cut = list(frames(audio))
    assert [len(f) for f in cut] == [FRAME_BYTES] * 4
    assert b"".join(cut)[:512] == audio
    assert cut[-1][32:] == bytes([MULAW_SILENCE]) * (FRAME_BYTES - 32)
    assert list(frames(b"")) == []


# ------------------------------------------------------------------- WAV files


def write_pcm_wav(path: Path, samples: list[int], rate: int, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm(samples))
    return path


def write_raw_wav(path: Path, tag: int, channels: int, rate: int, bits: int, data: bytes) -> Path:
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def test_load_8k_pcm(tmp_path: Path) -> None:
    tone = sine(500, 8000, 0.5)
    path = write_pcm_wav(tmp_path / "p.wav", tone, 8000)
    assert load_prompt_wav(path) == pcm16_to_ulaw(pcm(tone))
    assert wav_duration(path) == pytest.approx(0.5)


def test_load_16k_pcm_is_resampled(tmp_path: Path) -> None:
    tone = sine(500, 16000, 0.5)
    path = write_pcm_wav(tmp_path / "p16.wav", tone, 16000)
    loaded = load_prompt_wav(path)
    assert len(loaded) == 4000
    level = rms(array("h", ulaw_to_pcm16(loaded)))
    assert level == pytest.approx(8000 / math.sqrt(2), rel=0.05)


def test_load_mulaw_wav_as_is(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10
    path = write_raw_wav(tmp_path / "u.wav", 7, 1, 8000, 8, data)
    assert load_prompt_wav(path) == data
    assert wav_duration(path) == pytest.approx(2560 / 8000)


@pytest.mark.parametrize(
    ("tag", "channels", "rate", "bits", "message"),
    [
        (1, 2, 8000, 16, "2 channels, expected mono"),
        (1, 1, 22050, 16, "sample rate 22050 Hz"),
        (1, 1, 8000, 8, "8-bit PCM"),
        (3, 1, 8000, 32, "IEEE float"),
        (7, 1, 16000, 8, "mu-law at 16000 Hz"),
        (6, 1, 8000, 8, "A-law"),
    ],
)
def test_unusable_wav_names_file_and_problem(
    tmp_path: Path, tag: int, channels: int, rate: int, bits: int, message: str
) -> None:
    path = write_raw_wav(tmp_path / "bad.wav", tag, channels, rate, bits, bytes(64))
    with pytest.raises(AudioFormatError) as caught:
        load_prompt_wav(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_not_a_wav_and_missing_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("hello")
    with pytest.raises(AudioFormatError, match=r"notes\.wav: not a WAV file"):
        load_prompt_wav(text)
    with pytest.raises(AudioFormatError, match=r"missing\.wav: cannot read"):
        wav_duration(tmp_path / "missing.wav")


def test_real_sox_files_load(tmp_path: Path) -> None:
    """sox writes headers its own way (e.g. mu-law with a 'fact' chunk)."""
    import shutil
    import subprocess

    if shutil.which("sox") is None:
        pytest.skip("sox is not installed (Debian package sox)")
    source = write_pcm_wav(tmp_path / "src.wav", sine(700, 8000, 0.3), 8000)
    mulaw = tmp_path / "mulaw.wav"
    wide = tmp_path / "wide.wav"
    subprocess.run(["sox", str(source), "-e", "mu-law", str(mulaw)], check=True)
    subprocess.run(["sox", str(source), "-r", "16000", str(wide)], check=True)
    assert len(load_prompt_wav(mulaw)) == 2400
    assert len(load_prompt_wav(wide)) == 2400
    assert wav_duration(mulaw) == pytest.approx(0.3)


# ------------------------------------------------------------------- energy gate


def mulaw_tone(level: float, ms: int = 20, freq: float = 300.0) -> bytes:
    return pcm16_to_ulaw(pcm(sine(freq, 8000, ms / 1000, amplitude=level * math.sqrt(2))))


SILENT = bytes([MULAW_SILENCE]) * FRAME_BYTES
LOUD = mulaw_tone(3000)


def test_frame_rms_both_encodings() -> None:
    assert frame_rms(SILENT) == 0.0
    assert frame_rms(LOUD) == pytest.approx(3000, rel=0.05)
    assert frame_rms(ulaw_to_pcm16(LOUD), "pcm16") == pytest.approx(frame_rms(LOUD), rel=1e-6)


def test_silence_never_opens_the_gate() -> None:
    gate = EnergyGate()
    steps = [gate.push(SILENT) for _ in range(500)]
    assert all(step.frames == () and not step.speech_started for step in steps)
    assert not gate.in_speech


def test_utterance_with_preroll_hangover_and_end() -> None:
    cfg = GateConfig(onset_ms=40, preroll_ms=200, hangover_ms=300, end_silence_ms=600)
    gate = EnergyGate(cfg)
    quiet = mulaw_tone(100)  # audible hiss, below the default threshold
    for _ in range(20):
        assert gate.push(quiet).frames == ()
    first = gate.push(LOUD)
    assert first.frames == () and not first.speech_started  # one frame is not an onset
    onset = gate.push(LOUD)
    assert onset.speech_started
    # Pre-roll: 10 frames (200 ms) ending with the two loud ones.
    assert len(onset.frames) == 10 and onset.frames[-2:] == (LOUD, LOUD)
    for _ in range(10):
        assert gate.push(LOUD).frames == (LOUD,)
    passed: list[bytes] = []
    ended_at = None
    for i in range(40):
        step = gate.push(SILENT)
        passed.extend(step.frames)
        if step.speech_ended:
            ended_at = i + 1
            break
    assert len(passed) == 15  # 300 ms hangover reaches the decoder
    assert ended_at == 30  # 600 ms of quiet ends the utterance
    assert not gate.in_speech
    assert gate.push(SILENT).frames == ()


def test_resumed_speech_replays_the_held_gap() -> None:
    gate = EnergyGate(GateConfig(hangover_ms=100, end_silence_ms=600, onset_ms=20))
    assert gate.push(LOUD).speech_started
    for _ in range(5):
        gate.push(SILENT)  # hangover: passed on
    held = [gate.push(SILENT) for _ in range(4)]
    assert all(step.frames == () and not step.speech_ended for step in held)
    resumed = gate.push(LOUD)
    assert resumed.frames == (SILENT,) * 4 + (LOUD,)
    assert not resumed.speech_started


def test_max_utterance_ends_endless_noise() -> None:
    gate = EnergyGate(GateConfig(max_utterance_ms=1000))
    ended = [i for i in range(200) if gate.push(LOUD).speech_ended]
    assert ended and ended[0] < 60


def test_endless_loud_sound_stops_opening_the_gate() -> None:
    gate = EnergyGate()
    steps = [gate.push(LOUD) for _ in range(3000)]  # a minute of television
    assert any(step.speech_started for step in steps[:50])
    assert not any(step.frames for step in steps[-1000:])
    assert gate.threshold > 3000


def test_noise_floor_raises_the_threshold() -> None:
    gate = EnergyGate(GateConfig(min_rms=300, noise_factor=3.0))
    hiss = mulaw_tone(200)
    for _ in range(200):
        assert gate.push(hiss).frames == ()
    assert gate.threshold == pytest.approx(600, rel=0.1)
    louder_hiss = mulaw_tone(400)  # above min_rms, but within 3x the floor
    assert all(not gate.push(louder_hiss).speech_started for _ in range(20))
    assert any(gate.push(mulaw_tone(4000)).speech_started for _ in range(3))


def test_gate_accepts_pcm_frames() -> None:
    gate = EnergyGate(encoding="pcm16")
    loud = ulaw_to_pcm16(LOUD)
    assert gate.push(ulaw_to_pcm16(SILENT)).frames == ()
    gate.push(loud)
    assert gate.push(loud).speech_started


def test_gate_config_is_validated() -> None:
    with pytest.raises(ValueError, match="preroll"):
        GateConfig(onset_ms=100, preroll_ms=40)
    with pytest.raises(ValueError, match="end_silence"):
        GateConfig(hangover_ms=500, end_silence_ms=200)


def test_frame_peak_bounds_the_rms_from_above() -> None:
    from ivr.speech.audio import frame_peak, frame_rms

    for frame in (SILENT, LOUD, mulaw_tone(200), mulaw_tone(4000), bytes(range(160))):
        assert frame_peak(frame) >= frame_rms(frame)
    assert frame_peak(mulaw_tone(200)) < 1000  # quiet hiss stays well under a threshold
