"""RIFF/WAVE headers, and the one rule for which prompt recordings we can use.

A prompt recording is both played by Twilio (<Play>) and streamed by us over
a media stream as 8 kHz mu-law, so the server loads every recording at
start-up. `ivr validate` (through the prompt loader) and the server (through
`ivr.speech.audio.load_prompt_wav`) both judge a recording with
`read_prompt_wav`: what one refuses, the other refuses.

This module sits below `ivr.flow` and `ivr.speech` (like `ivr.yamlsrc`) so
both can use it without the flow package depending on speech.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from ivr.errors import ContentError

PCM = 0x0001
MULAW = 0x0007
_EXTENSIBLE = 0xFFFE
_FORMAT_NAMES = {
    0x0003: "IEEE float",
    0x0006: "A-law",
    0x0011: "IMA ADPCM",
    0x0055: "MP3",
}
PROMPT_RATES = (8000, 16000)
"""16-bit PCM rates a prompt may have: 8 kHz as it is, 16 kHz halved exactly."""
MULAW_RATE = 8000
_EXPECTED = "expected 16-bit PCM (8 or 16 kHz) or 8 kHz mu-law"


class WavError(ContentError, ValueError):
    """A file that is not a usable WAV; the message says what is wrong, without the path."""


@dataclass(frozen=True)
class Wav:
    format_tag: int  # the SubFormat's code for WAVE_FORMAT_EXTENSIBLE files
    channels: int
    rate: int
    bits: int
    block_align: int
    data: bytes

    @property
    def seconds(self) -> float:
        return len(self.data) // self.block_align / self.rate


def read_wav(path: str | os.PathLike[str]) -> Wav:
    """Parse a RIFF/WAVE file by hand: the stdlib `wave` module refuses mu-law."""
    try:
        with open(path, "rb") as handle:
            blob = handle.read()
    except OSError as exc:
        raise WavError(f"cannot read: {exc.strerror or exc}") from exc
    if len(blob) < 12 or blob[0:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise WavError("not a WAV file (no RIFF/WAVE header)")
    fmt: tuple[int, int, int, int, int] | None = None
    data: bytes | None = None
    pos = 12
    while pos + 8 <= len(blob):
        chunk_id = blob[pos : pos + 4]
        (size,) = struct.unpack_from("<I", blob, pos + 4)
        body = blob[pos + 8 : pos + 8 + size]  # writers streaming to a pipe overstate size
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise WavError("truncated 'fmt ' chunk")
            tag, channels, rate, _byte_rate, align, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _EXTENSIBLE and len(body) >= 26:
                # The real format code opens the SubFormat GUID.
                (tag,) = struct.unpack_from("<H", body, 24)
            fmt = (tag, channels, rate, align, bits)
        elif chunk_id == b"data":
            data = body
            if fmt is not None:
                break
        pos += 8 + size + (size & 1)
    if fmt is None:
        raise WavError("WAV file has no 'fmt ' chunk")
    if data is None:
        raise WavError("WAV file has no 'data' chunk")
    tag, channels, rate, align, bits = fmt
    if rate <= 0 or align <= 0:
        raise WavError(f"invalid header (block align {align}, rate {rate} Hz)")
    return Wav(tag, channels, rate, bits, align, data)


def read_prompt_wav(path: str | os.PathLike[str]) -> Wav:
    """Read a prompt recording, refusing what the server cannot stream.

    Accepted: mono 16-bit PCM at 8 or 16 kHz, or mono 8 kHz mu-law, with
    some audio in it (an empty recording would be silence where a caller
    expects words).
    """
    wav = read_wav(path)
    if wav.format_tag == PCM:
        kind = f"{wav.bits}-bit PCM"
    elif wav.format_tag == MULAW:
        kind = "mu-law"
    else:
        label = _FORMAT_NAMES.get(wav.format_tag, f"format code 0x{wav.format_tag:04x}")
        raise WavError(f"{label} audio, {_EXPECTED}")
    if wav.channels != 1:
        raise WavError(f"{wav.channels} channels, expected mono")
    if wav.format_tag == MULAW:
        if wav.bits != 8:
            raise WavError(f"mu-law with {wav.bits} bits per sample, expected 8")
        if wav.rate != MULAW_RATE:
            raise WavError(f"mu-law at {wav.rate} Hz, expected {MULAW_RATE} Hz")
    elif wav.bits != 16:
        raise WavError(f"{kind} audio, {_EXPECTED}")
    elif wav.rate not in PROMPT_RATES:
        raise WavError(f"sample rate {wav.rate} Hz, {_EXPECTED}")
    if wav.block_align != wav.bits // 8:
        raise WavError(f"inconsistent header: block align {wav.block_align} for {kind}")
    if len(wav.data) < wav.block_align:
        raise WavError("no audio (the data chunk is empty)")
    return wav
