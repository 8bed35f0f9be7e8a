"""The fail-safes: /twilio/fallback whatever the signature, `ivr fallback`, and
the callerId of the backup <Dial> for callers whose own caller ID would be refused."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from ivr.cli import main
from ivr.config import Settings
from tests.conftest import ROOT
from tests.helpers import call_params, new_sid, parse_twiml, post_signed

BACKUP = "+18005550100"  # the shipped plan's national backup
CALLER_ID = "+15125550199"


def the_dial(body: str) -> ET.Element:
    root = parse_twiml(body)
    assert len(root) == 1, body
    dial = root.find("Dial")
    assert dial is not None, body
    return dial


def print_fallback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    **env: str,
) -> str:
    for name in ("TWILIO_CALLER_ID", "IVR_BACKUP_NUMBER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IVR_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("IVR_FLOWS_DIR", str(ROOT / "flows"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["fallback"]) == 0
    return capsys.readouterr().out


def test_ivr_fallback_dials_the_backup_with_our_caller_id(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    dial = the_dial(print_fallback(monkeypatch, capsys, tmp_path, TWILIO_CALLER_ID=CALLER_ID))
    assert (dial.text or "").strip() == BACKUP
    assert dial.get("callerId") == CALLER_ID
    assert not (tmp_path / "var").exists()  # it only prints: no secret, no database


def test_ivr_fallback_uses_the_configured_backup_number(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = print_fallback(monkeypatch, capsys, tmp_path, TWILIO_CALLER_ID=CALLER_ID,
                         IVR_BACKUP_NUMBER="+12025550111")
    assert (the_dial(out).text or "").strip() == "+12025550111"


def test_ivr_fallback_without_a_plan_or_backup_number_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("IVR_BACKUP_NUMBER", raising=False)
    monkeypatch.setenv("IVR_FLOWS_DIR", str(tmp_path))
    assert main(["fallback"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "IVR_BACKUP_NUMBER" in captured.err


async def _calls(settings: Settings) -> int:
    conn = await asyncpg.connect(settings.database_url)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM calls")
        return count
    finally:
        await conn.close()


@pytest.mark.parametrize("signature", ["valid", "missing", "wrong"])
async def test_the_fallback_answers_whatever_the_signature(
    server: TestServer, settings: Settings, signature: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    url = settings.public_url + "/twilio/fallback"
    params = call_params(new_sid(), ErrorCode="11200", ErrorUrl=settings.public_url)
    async with aiohttp.ClientSession() as s:
        if signature == "valid":
            status, body = await post_signed(s, url, params)
        elif signature == "wrong":
            status, body = await post_signed(s, url, params, token="not-the-token")
        else:
            async with s.post(url, data=params) as resp:
                status, body = resp.status, await resp.text()
    assert status == 200
    # The very document `ivr fallback` prints with the same settings.
    printed = await asyncio.to_thread(  # a command: off the event loop
        print_fallback, monkeypatch, capsys, tmp_path, TWILIO_CALLER_ID=settings.caller_id)
    assert ET.canonicalize(body) == ET.canonicalize(printed.strip())
    assert the_dial(body).get("callerId") == settings.caller_id
    assert await _calls(settings) == 0


async def test_every_other_twilio_path_still_needs_the_signature(
    server: TestServer, settings: Settings
) -> None:
    paths = sorted(
        info["path"]
        for resource in server.app.router.resources()
        if "path" in (info := resource.get_info())
        and info["path"].startswith("/twilio/") and info["path"] != "/twilio/fallback"
        and any(route.method == "POST" for route in resource)
    )
    assert "/twilio/voice" in paths and "/twilio/status" in paths
    async with aiohttp.ClientSession() as s:
        for path in paths:
            url = f"{settings.public_url}{path}?seq=1&offer=1"
            async with s.post(url, data=call_params(new_sid())) as resp:
                assert resp.status == 403, path
            status, _ = await post_signed(s, url, call_params(new_sid()), token="not-the-token")
            assert status == 403, path
    assert await _calls(settings) == 0


@pytest.mark.parametrize(
    ("caller", "caller_id_used"),
    [
        ("+15125550123", False),  # a phone number passes through to the backup centre
        ("sip:+15125550123@crisis.sip.twilio.com", True),
        ("anonymous", True),
        ("Restricted", True),
        ("+266696687", True),  # "ANONYMOUS" on a keypad, as some carriers send it
        (None, True),
    ],
)
async def test_the_fail_safe_dial_has_a_caller_id_the_network_accepts(
    server: TestServer, settings: Settings, caller: str | None, caller_id_used: bool
) -> None:
    params = call_params(new_sid(), Digits="1")
    if caller is None:
        del params["From"]
    else:
        params["From"] = caller
    async with aiohttp.ClientSession() as s:
        # A callback for a call we never saw: an internal error, the fail-safe answers.
        status, body = await post_signed(s, settings.public_url + "/twilio/gather?seq=1", params)
    assert status == 200
    dial = the_dial(body)
    assert (dial.text or "").strip() == BACKUP
    assert dial.get("callerId") == (settings.caller_id if caller_id_used else None)
