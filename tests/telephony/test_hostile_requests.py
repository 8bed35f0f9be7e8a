"""Hostile requests to a real server: whatever a request carries, no 500.

Each row is sent as raw bytes over a socket (so headers can carry what
aiohttp's client would refuse to send) to a live server, with the status
it must get: 4xx, or for a voice webhook the fail-safe TwiML (200, the
caller dialled to the backup line).
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from twilio.request_validator import RequestValidator

from ivr import keys
from ivr.app import create_app
from ivr.config import Settings
from ivr.content import Content
from ivr.telephony import signature
from tests.conftest import AUTH_TOKEN, bounded
from tests.helpers import call_params, new_sid

ADMIN = b"Bearer test-admin-token"
FORM = "application/x-www-form-urlencoded"
BACKUP = "+18005550100"  # the plan's national backup, the fail-safe's number


@dataclass(frozen=True)
class Hostile:
    what: str
    path: str
    status: int
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    method: str = "POST"
    sign: bool = True  # sign the body as Twilio would (for /twilio/* rows)
    content_type: str = FORM
    backup: bool = False  # the answer is TwiML that dials the backup line


def form(**params: str) -> bytes:
    return urlencode(params).encode()


def nested_json(depth: int) -> bytes:
    return b'{"presence":' + b"[" * depth + b"]" * depth + b"}"


SID = new_sid()
TWILIO_ROWS = [
    Hostile("non-ASCII signature", "/twilio/status", 403, form(CallSid=SID),
            ((b"X-Twilio-Signature", "sïgnature✓".encode()),), sign=False),
    Hostile("non-UTF-8 signature", "/twilio/status", 403, form(CallSid=SID),
            ((b"X-Twilio-Signature", b"\xff\xfe\x80"),), sign=False),
    Hostile("unknown charset", "/twilio/status", 400, form(CallSid=SID),
            content_type=FORM + "; charset=x-no-such-charset"),
    Hostile("unknown charset on the voice webhook", "/twilio/voice", 400,
            form(**call_params(SID)), content_type=FORM + "; charset=x-no-such-charset"),
    Hostile("non-UTF-8 form body", "/twilio/status", 400,
            b"CallSid=" + b"\xff\xfe" + b"&CallStatus=completed"),
    Hostile("NUL in CallSid (status)", "/twilio/status", 400,
            form(CallSid="CA\x00" + "0" * 30, CallStatus="completed")),
    Hostile("3 KB CallSid (status)", "/twilio/status", 400,
            form(CallSid="CA" + "f" * 3000, CallStatus="completed")),
    Hostile("NUL in CallSid (voice)", "/twilio/voice", 200,
            form(**call_params("CA\x00" + "0" * 30)), backup=True),
    Hostile("3 KB CallSid (voice)", "/twilio/voice", 200,
            form(**call_params("CA" + "f" * 3000)), backup=True),
    Hostile("NUL in CallSid (gather)", "/twilio/gather?seq=1", 200,
            form(**call_params("CA\x00" + "0" * 30, Digits="1")), backup=True),
    Hostile("non-numeric seq", "/twilio/gather?seq=x", 200,
            form(**call_params(SID, Digits="1")), backup=True),
    Hostile("non-numeric offer id (leg status)", "/twilio/leg-status?offer=abc", 400,
            form(CallSid=SID, CallStatus="completed")),
    Hostile("2^63 offer id (leg status)", f"/twilio/leg-status?offer={2**63}", 400,
            form(CallSid=SID, CallStatus="completed")),
    Hostile("no offer id (leg status)", "/twilio/leg-status", 400,
            form(CallSid=SID, CallStatus="completed")),
    Hostile("NUL in hold call id", "/twilio/hold?call=CA%00x&n=1", 200, form(CallSid=SID)),
    Hostile("2^63 offer id (whisper)", f"/twilio/whisper?offer={2**63}", 200,
            form(CallSid=SID)),
    Hostile("5,000-digit hold round", "/twilio/hold?call=CAx&n=" + "9" * 5000, 200,
            form(CallSid=SID)),
    Hostile("5,000-digit seq", "/twilio/gather?seq=" + "9" * 5000, 200,
            form(**call_params(SID, Digits="1")), backup=True),
    Hostile("non-numeric offer id (counselor wait)", "/twilio/counselor-wait?offer=-1", 200,
            form(CallSid=SID)),
    Hostile("JSON body on a webhook", "/twilio/status", 400, nested_json(30_000),
            content_type="application/json"),
]

ADMIN_ROWS = [
    Hostile("non-UTF-8 Authorization", "/admin/counselors", 401,
            headers=((b"Authorization", b"Bearer \xff\xfe\x80token"),), method="GET"),
    Hostile("non-ASCII Authorization", "/admin/counselors", 401,
            headers=((b"Authorization", "Bearer jéton".encode()),), method="GET"),
    Hostile("JSON nested 30,000 deep", "/admin/counselors/tx-ana/presence", 400,
            nested_json(30_000), ((b"Authorization", ADMIN),), content_type="application/json"),
    Hostile("NUL in counselor id", "/admin/counselors/tx%00ana", 400,
            headers=((b"Authorization", ADMIN),), method="GET"),
    Hostile("3 KB counselor id", "/admin/counselors/" + "a" * 3000, 404,
            headers=((b"Authorization", ADMIN),), method="GET"),
    Hostile("NUL in counselor id (presence)", "/admin/counselors/tx%00ana/presence", 400,
            b'{"presence":"available"}', ((b"Authorization", ADMIN),),
            content_type="application/json"),
    Hostile("NUL in center", "/admin/counselors?center=t%00x", 404,
            headers=((b"Authorization", ADMIN),), method="GET"),
    Hostile("non-UTF-8 JSON", "/admin/counselors/tx-ana/presence", 400,
            b'{"presence":"\xff"}', ((b"Authorization", ADMIN),),
            content_type="application/json"),
    Hostile("lone surrogate in JSON", "/admin/counselors/tx-ana/presence", 400,
            b'{"presence":"\\udc80"}', ((b"Authorization", ADMIN),),
            content_type="application/json"),
]


def _signature(url: str, body: bytes) -> bytes:
    try:
        params = dict(parse_qsl(body.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        params = {}
    return str(RequestValidator(AUTH_TOKEN).compute_signature(url, params)).encode()


async def send(server: TestServer, row: Hostile) -> tuple[int, bytes]:
    host, port = server.host, server.port
    lines = [f"{row.method} {row.path} HTTP/1.1".encode(), f"Host: {host}:{port}".encode(),
             b"Connection: close"]
    if row.method == "POST":
        lines += [b"Content-Type: " + row.content_type.encode(),
                  b"Content-Length: " + str(len(row.body)).encode()]
    if row.sign and row.path.startswith("/twilio/"):
        url = server.app[keys.settings].public_url + row.path
        lines.append(b"X-Twilio-Signature: " + _signature(url, row.body))
    lines += [name + b": " + value for name, value in row.headers]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + row.body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _dials_backup(body: bytes) -> bool:
    root = ET.fromstring(body)
    dial = root.find("Dial")
    return root.tag == "Response" and dial is not None and (dial.text or "").strip() == BACKUP


@pytest.mark.parametrize("row", TWILIO_ROWS + ADMIN_ROWS, ids=lambda r: r.what)
async def test_a_hostile_request_gets_its_status_never_a_500(
    server: TestServer, row: Hostile
) -> None:
    status, body = await send(server, row)
    assert status == row.status, (row.what, status, body[:300])
    if row.backup:
        assert _dials_backup(body), body[:500]




@pytest.mark.parametrize(
    "path", ["/twilio/status", "/twilio/voice", "/admin/counselors/x/presence"])
async def test_a_body_that_never_arrives_is_dropped_and_logged_once(
    server: TestServer, path: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(signature, "BODY_TIMEOUT", 1.0)
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n"
                     "Content-Length: 500\r\n\r\nCallSid=CA".encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    dropped = [r for r in caplog.records if "did not arrive" in r.getMessage()]
    assert len(dropped) == 1 and dropped[0].exc_info is None
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_peer_that_leaves_mid_body_is_one_line_not_a_traceback(
    settings: Settings, content: Content, caplog: pytest.LogCaptureFixture
) -> None:
    # Served as `ivr serve` serves (web.run_app: a handler is not cancelled
    # when its peer leaves; aiohttp's TestServer cancels it, hiding the case).
    runner = web.AppRunner(create_app(settings, content))
    await runner.setup()
    port = int(settings.public_url.rsplit(":", 1)[1])
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"POST /twilio/status HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n"
                     "Content-Length: 500\r\n\r\nCallSid=CA".encode())
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.close()
        for _ in range(100):  # until the server has noticed the peer left
            if any("left before" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.1)
    finally:
        await bounded(runner.cleanup(), "stopping the server")
    assert len([r for r in caplog.records if "left before" in r.getMessage()]) == 1
    assert not [r for r in caplog.records if r.exc_info]
