"""Twilio's webhook timeout and the number's Fallback URL, hosted apart from the app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from ivr.sim import CallScript, SimConfig, simulate_call
from ivr.sim.config import WEBHOOK_TIMEOUT
from ivr.sim.transcript import Dialed, FallbackUsed, Heard
from tests.sim import test_sim_call
from tests.sim.test_sim_call import PUBLIC, Hit, Start

start = test_sim_call.start  # the signature-checking voice app of the call engine's tests

FAST = 0.02  # real seconds per simulated second of waiting: Twilio's 15 s last 0.3 s


@pytest.fixture
async def release() -> AsyncIterator[asyncio.Event]:
    """Lets the hanging handlers go at the end, so their server can close."""
    event = asyncio.Event()
    yield event
    event.set()


@pytest.fixture
async def twiml_bin(aiohttp_server: AiohttpServer) -> tuple[list[dict[str, str]], str]:
    """A document hosted apart from the app (a TwiML Bin): requests it got, its URL."""
    got: list[dict[str, str]] = []

    async def serve(request: web.Request) -> web.Response:
        got.append({k: str(v) for k, v in (await request.post()).items()})
        return web.Response(
            text='<Response><Dial callerId="+15005550006">+18005550100</Dial></Response>',
            content_type="text/xml")

    app = web.Application()
    app.router.add_post("/bin", serve)
    server = await aiohttp_server(app)
    return got, str(server.make_url("/bin"))


async def test_a_voice_url_that_never_answers_falls_back_after_15_seconds(
    start: Start, release: asyncio.Event, twiml_bin: tuple[list[dict[str, str]], str],
) -> None:
    async def hang(hit: Hit) -> str:
        await release.wait()
        return "<Say>too late</Say>"

    got, bin_url = twiml_bin
    app, cfg = await start({"/twilio/voice": hang}, fallback_url=bin_url, timeout_scale=FAST)
    assert cfg.request_timeout == WEBHOOK_TIMEOUT == 15.0
    transcript = await simulate_call(cfg, CallScript())
    (used,) = transcript.of_type(FallbackUsed)
    assert used.error_code == 11205 and used.at == pytest.approx(15.0)
    [form] = got
    assert form["ErrorCode"] == "11205"
    assert form["ErrorUrl"] == f"{PUBLIC}/twilio/voice"
    assert form["CallSid"] == transcript.call_sid
    (dialed,) = transcript.of_type(Dialed)
    assert dialed.targets == ("+18005550100",) and dialed.at == pytest.approx(15.0)
    assert transcript.reached_human
    assert not app.to("/twilio/fallback")  # the app's own fallback path is not the number's


async def test_an_action_url_that_never_answers_falls_back_too(
    start: Start, release: asyncio.Event, twiml_bin: tuple[list[dict[str, str]], str],
) -> None:
    async def hang(hit: Hit) -> str:
        await release.wait()
        return ""

    got, bin_url = twiml_bin
    _app, cfg = await start(
        {"/twilio/voice": lambda h: "<Say>Hello.</Say><Redirect>/twilio/next</Redirect>",
         "/twilio/next": hang},
        fallback_url=bin_url, timeout_scale=FAST,
    )
    transcript = await simulate_call(cfg, CallScript())
    assert [f["ErrorUrl"] for f in got] == [f"{PUBLIC}/twilio/next"]
    said = transcript.of_type(Heard)[0]
    assert transcript.of_type(FallbackUsed)[0].at == pytest.approx(said.at + said.seconds + 15)
    assert transcript.reached_human


async def test_a_caller_who_hangs_up_while_twilio_waits_gets_no_fallback(
    start: Start, release: asyncio.Event, twiml_bin: tuple[list[dict[str, str]], str],
) -> None:
    async def hang(hit: Hit) -> str:
        await release.wait()
        return ""

    got, bin_url = twiml_bin
    _app, cfg = await start({"/twilio/voice": hang}, fallback_url=bin_url, timeout_scale=FAST)
    transcript = await simulate_call(cfg, CallScript(hangup_after=6))
    assert got == []
    assert not transcript.fallback_used and transcript.hung_up_by == "caller"
    assert transcript.total_seconds == pytest.approx(6)


def test_the_fallback_url_must_be_absolute() -> None:
    from ivr.sim.errors import ScriptError

    with pytest.raises(ScriptError, match="fallback url"):
        SimConfig(server_url="http://127.0.0.1:1", auth_token="t", fallback_url="/bin")
