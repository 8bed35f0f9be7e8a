"""The fallback outlives the server: a server that hangs, and the number's
Fallback URL on another host serving what `ivr fallback` printed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from ivr.cli import main
from ivr.sim import CallScript, Silence, simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.transcript import Dialed, FallbackUsed
from tests.conftest import AUTH_TOKEN, ROOT

CALLER_ID = "+15125550199"  # TWILIO_CALLER_ID: a number of the account
BACKUP = "+18005550100"


@pytest.fixture
def fallback_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> str:
    monkeypatch.delenv("IVR_BACKUP_NUMBER", raising=False)
    monkeypatch.setenv("TWILIO_CALLER_ID", CALLER_ID)
    monkeypatch.setenv("IVR_FLOWS_DIR", str(ROOT / "flows"))
    monkeypatch.setenv("IVR_DATA_DIR", str(tmp_path))
    assert main(["fallback"]) == 0
    return capsys.readouterr().out


@pytest.fixture
async def hung_server(aiohttp_server: AiohttpServer) -> AsyncIterator[str]:
    """The voice app, alive enough to accept connections and never answer."""
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=500)

    app = web.Application()
    app.router.add_post("/twilio/{tail:.*}", hang)
    server = await aiohttp_server(app)
    yield str(server.make_url("")).rstrip("/")
    release.set()


@pytest.fixture
async def twiml_bin(
    aiohttp_server: AiohttpServer, fallback_document: str
) -> tuple[str, list[dict[str, str]]]:
    """Somewhere else entirely, serving the printed document as it is."""
    got: list[dict[str, str]] = []

    async def serve(request: web.Request) -> web.Response:
        got.append({k: str(v) for k, v in (await request.post()).items()})
        return web.Response(text=fallback_document, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/TwiML/EHxxxx", serve)
    server = await aiohttp_server(app)
    return str(server.make_url("/TwiML/EHxxxx")), got


@pytest.mark.parametrize("sip", [False, True])
async def test_a_hung_server_still_gets_the_caller_to_the_backup_line(
    hung_server: str, twiml_bin: tuple[str, list[dict[str, str]]], sip: bool
) -> None:
    bin_url, got = twiml_bin
    cfg = SimConfig(server_url=hung_server, auth_token=AUTH_TOKEN, fallback_url=bin_url,
                    timeout_scale=0.05, caller_ids=(CALLER_ID,))
    script = CallScript(sip_domain="crisis.sip.twilio.com" if sip else None,
                        inputs=(Silence(),))
    t = await simulate_call(cfg, script)
    (used,) = t.of_type(FallbackUsed)
    assert used.error_code == 11205 and used.at == pytest.approx(15.0)  # Twilio's timeout
    assert [form["ErrorUrl"] for form in got] == [f"{hung_server}/twilio/voice"]
    # The backup line answers: for a SIP caller only thanks to the document's callerId.
    assert [(d.targets, d.outcome) for d in t.of_type(Dialed)] == [((BACKUP,), "answered")]
    assert t.reached_human, t.format()
