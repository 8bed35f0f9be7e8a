"""Length of a RIFF/WAVE recording, read from its header.

Twilio plays PCM and mu-law WAV files alike; the stdlib `wave` module only
reads PCM, so the chunks are walked here: duration = data bytes / byte rate.
"""

from __future__ import annotations

from ivr.sim.errors import MediaError


def wav_duration(data: bytes) -> float:
    """Seconds of audio in a WAV file; raises MediaError when it is not one."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise MediaError("not a RIFF/WAVE file")
    byte_rate: int | None = None
    data_size: int | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise MediaError("truncated WAV fmt chunk")
            byte_rate = int.from_bytes(data[body + 8 : body + 12], "little")
        elif chunk_id == b"data":
            # Streamed WAVs carry a placeholder size (0 or 0xFFFFFFFF): trust the bytes.
            available = len(data) - body
            data_size = available if size in (0, 0xFFFFFFFF) else min(size, available)
            break
        pos = body + size + (size & 1)
    if not byte_rate:
        raise MediaError("WAV file without a usable fmt chunk")
    if data_size is None:
        raise MediaError("WAV file without a data chunk")
    return data_size / byte_rate
