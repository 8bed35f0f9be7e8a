import io
import struct
import wave

import pytest

from ivr.sim.errors import MediaError
from ivr.sim.wav import wav_duration


def pcm_wav(seconds: float, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * int(rate * seconds))
    return buffer.getvalue()


def mulaw_wav(seconds: float, rate: int = 8000) -> bytes:
    data = b"\xff" * int(rate * seconds)
    # format 7 = mu-law, 1 channel, 8 bits, with the 'fact' chunk such files carry
    fmt = struct.pack("<HHIIHHH", 7, 1, rate, rate, 1, 8, 0)
    fact = struct.pack("<I", len(data))
    body = (
        b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"fact" + struct.pack("<I", len(fact)) + fact
        + b"data" + struct.pack("<I", len(data)) + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_pcm_duration() -> None:
    assert wav_duration(pcm_wav(2.5)) == pytest.approx(2.5)
    assert wav_duration(pcm_wav(1.0, rate=16000)) == pytest.approx(1.0)


def test_mulaw_duration() -> None:
    assert wav_duration(mulaw_wav(3.0)) == pytest.approx(3.0)


def test_streamed_wav_with_placeholder_size_uses_the_bytes_present() -> None:
    data = bytearray(pcm_wav(1.0))
    index = data.index(b"data")
    data[index + 4 : index + 8] = b"\xff\xff\xff\xff"
    assert wav_duration(bytes(data)) == pytest.approx(1.0)


@pytest.mark.parametrize("blob", [b"", b"ID3\x03\x00mp3...", b"RIFF\x00\x00\x00\x00WAVE"])
def test_not_a_wav(blob: bytes) -> None:
    with pytest.raises(MediaError):
        wav_duration(blob)
