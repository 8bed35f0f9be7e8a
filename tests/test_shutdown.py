"""Stopping is bounded: a server with a caller on a media stream and a query
that never returns still closes, and a teardown that hangs fails its test."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from ivr import keys
from ivr.app import create_app
from ivr.config import Settings
from ivr.content import Content
from ivr.speech.asr import SpeechEngine
from tests.conftest import bounded
from tests.helpers import call_params, new_sid, parse_twiml, post_signed
from tests.telephony.test_media import signed_ws_headers, start_message

# The app gives each resource 5 s to close (app.CLOSE_TIMEOUT) before it forces it.
SHUTDOWN_BOUND = 15.0


async def test_bounded_fails_a_teardown_that_hangs_and_cancels_it() -> None:
    cancelled = asyncio.Event()

    async def never_closes() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(pytest.fail.Exception, match="a stuck close did not finish"):
        await bounded(never_closes(), "a stuck close", seconds=0.05)
    assert cancelled.is_set()


async def test_bounded_passes_on_a_teardown_error() -> None:
    async def broken() -> None:
        raise RuntimeError("close failed")

    with pytest.raises(RuntimeError, match="close failed"):
        await bounded(broken(), "a broken close")


async def test_server_with_open_stream_and_stuck_query_closes_within_bound(
    settings: Settings, speech_content: Content, speech_engine: SpeechEngine
) -> None:
    port = int(settings.public_url.rsplit(":", 1)[1])
    srv = TestServer(create_app(settings, speech_content, speech_engine),
                     host="127.0.0.1", port=port)
    await srv.start_server()
    sid = new_sid()
    async with aiohttp.ClientSession() as s:
        status, body = await post_signed(s, settings.public_url + "/twilio/voice",
                                         call_params(sid))
        assert status == 200
        stream = next(parse_twiml(body).iter("Stream"))
        url = str(stream.get("url"))
        token = next(p.get("value") for p in stream.iter("Parameter") if p.get("name") == "token")
        async with s.ws_connect(url, headers=signed_ws_headers(url)) as ws:
            await ws.send_str(json.dumps({"event": "connected", "protocol": "Call",
                                          "version": "1.0.0"}))
            await ws.send_str(start_message(sid, str(token)))
            pool: asyncpg.Pool = srv.app[keys.pool]
            stuck = asyncio.ensure_future(pool.fetchval("SELECT pg_sleep(3600)"))
            await asyncio.sleep(0.2)  # the query is on the server, the stream open
            assert not stuck.done()

            await bounded(srv.close(), "the server's shutdown", seconds=SHUTDOWN_BOUND)

            msg = await ws.receive(timeout=5)
            while msg.type == aiohttp.WSMsgType.TEXT:  # prompt audio sent before the close
                msg = await ws.receive(timeout=5)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                aiohttp.WSMsgType.CLOSING)
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            await asyncio.wait_for(stuck, 5)
