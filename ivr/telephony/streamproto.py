"""Twilio Media Streams messages, parsed into small typed events and back.

The rest of the server never sees Twilio's JSON. Anything that is not a
well-formed message of the documented kinds raises `StreamProtocolError`:
the socket is then closed and the call goes on by its no-input path.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from ivr.errors import TwilioError

# A Twilio media message carries 20 ms (160 bytes) of 8 kHz mu-law; allow
# generous batching but nothing that could be a memory attack.
MAX_MEDIA_BYTES = 1600
DTMF_DIGITS = frozenset("0123456789*#")


class StreamProtocolError(TwilioError):
    """A Media Streams message that does not follow the protocol."""


@dataclass(frozen=True)
class Connected:
    pass


@dataclass(frozen=True)
class StreamStart:
    stream_sid: str
    call_sid: str
    parameters: dict[str, str]
    encoding: str
    sample_rate: int


@dataclass(frozen=True)
class Media:
    payload: bytes  # mu-law, 8 kHz
    track: str


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class Mark:
    name: str


@dataclass(frozen=True)
class Stop:
    pass


StreamEvent = Connected | StreamStart | Media | Dtmf | Mark | Stop


def parse(text: str) -> StreamEvent:
    try:
        message = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise StreamProtocolError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise StreamProtocolError("a message must be a JSON object")
    event = message.get("event")
    match event:
        case "connected":
            return Connected()
        case "start":
            return _start(_part(message, "start"))
        case "media":
            return _media(_part(message, "media"))
        case "dtmf":
            digit = _part(message, "dtmf").get("digit")
            if not isinstance(digit, str) or digit not in DTMF_DIGITS:
                raise StreamProtocolError(f"not a DTMF digit: {digit!r}")
            return Dtmf(digit)
        case "mark":
            name = _part(message, "mark").get("name")
            if not isinstance(name, str):
                raise StreamProtocolError("mark without a name")
            return Mark(name)
        case "stop":
            return Stop()
    raise StreamProtocolError(f"unknown event {event!r}")


def _part(message: dict[str, Any], name: str) -> dict[str, Any]:
    part = message.get(name)
    if not isinstance(part, dict):
        raise StreamProtocolError(f"'{name}' event without its '{name}' object")
    return part


def _start(start: dict[str, Any]) -> StreamStart:
    fmt = start.get("mediaFormat") or {}
    params = start.get("customParameters") or {}
    stream_sid, call_sid = start.get("streamSid"), start.get("callSid")
    if not isinstance(stream_sid, str) or not isinstance(call_sid, str) or not call_sid:
        raise StreamProtocolError("start without streamSid or callSid")
    if not isinstance(params, dict) or not isinstance(fmt, dict):
        raise StreamProtocolError("start with malformed customParameters or mediaFormat")
    encoding = str(fmt.get("encoding", "audio/x-mulaw"))
    rate = fmt.get("sampleRate", 8000)
    if encoding != "audio/x-mulaw" or rate != 8000:
        raise StreamProtocolError(f"unsupported media format {encoding} at {rate} Hz")
    return StreamStart(stream_sid, call_sid, {str(k): str(v) for k, v in params.items()},
                       encoding, int(rate))


def _media(media: dict[str, Any]) -> Media:
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise StreamProtocolError("media without a payload")
    if len(payload) > MAX_MEDIA_BYTES * 4 // 3 + 4:
        raise StreamProtocolError("media payload too large")
    try:
        audio = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise StreamProtocolError("media payload is not base64") from None
    return Media(audio, str(media.get("track", "inbound")))


def media_message(stream_sid: str, audio: bytes) -> str:
    payload = base64.b64encode(audio).decode("ascii")
    return json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def mark_message(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})
