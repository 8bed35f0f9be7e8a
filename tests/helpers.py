"""Small helpers for tests that speak to the server as Twilio does."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from twilio.request_validator import RequestValidator

from ivr import keys
from ivr.app import create_app
from ivr.config import Settings
from ivr.content import Content, load_content
from ivr.storage.counselors import list_counselors, set_presence
from tests.conftest import AUTH_TOKEN, bounded
from tests.waiting import eventually


def new_sid() -> str:
    return "CA" + uuid.uuid4().hex


def call_params(sid: str, **extra: str) -> dict[str, str]:
    params = {
        "CallSid": sid,
        "AccountSid": "AC" + "1" * 32,
        "From": "+15125550123",
        "To": "+18002738255",
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
        "FromState": "TX",
        "FromCountry": "US",
    }
    params.update(extra)
    return params


async def post_signed(
    session: aiohttp.ClientSession,
    url: str,
    params: Mapping[str, str],
    *,
    signed_url: str | None = None,
    token: str = AUTH_TOKEN,
) -> tuple[int, str]:
    signature = RequestValidator(token).compute_signature(signed_url or url, dict(params))
    async with session.post(url, data=dict(params),
                            headers={"X-Twilio-Signature": signature}) as resp:
        return resp.status, await resp.text()


def parse_twiml(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == "Response"
    return root


async def staff_all(server: TestServer) -> None:
    """Every counselor of the plan starts the shift available."""
    pool = server.app[keys.pool]
    ids = [c.id for c in await list_counselors(pool)]
    for counselor in ids:
        await set_presence(pool, counselor, "available")
    # The server hears of it by NOTIFY (onshift.py): callers it takes from now
    # on are lined up early as they would be on a shift under way.
    on_shift = server.app[keys.callflow].early.on_shift
    if on_shift is not None:
        await eventually(lambda: on_shift.sure_of(ids), "the server sees the shift start",
                         seconds=10)


@contextlib.asynccontextmanager
async def server_on(settings: Settings, content: Content) -> AsyncIterator[TestServer]:
    """A server at settings.public_url serving `content`, closed on the way out."""
    port = int(settings.public_url.rsplit(":", 1)[1])
    srv = TestServer(create_app(settings, content), host="127.0.0.1", port=port)
    await srv.start_server()
    try:
        yield srv
    finally:
        await bounded(srv.close(), "closing the test server")


@contextlib.asynccontextmanager
async def server_on_folders(
    settings: Settings, folders: Path
) -> AsyncIterator[tuple[TestServer, Settings]]:
    """A server at settings.public_url on its own content folders
    (`folders`/flows, `folders`/prompts), which a test may edit or publish;
    yields it with the settings it runs on."""
    own = replace(settings, flows_dir=folders / "flows", prompts_dir=folders / "prompts")
    content = await asyncio.to_thread(load_content, own.flows_dir, own.prompts_dir)
    async with server_on(own, content) as srv:
        yield srv, own


SHIPPED = Path(__file__).resolve().parents[1]  # the repository: its flows/ and prompts/


def queueing_folders(dest: Path) -> Path:
    """The shipped content copied under `dest`, with a local tier that holds
    callers for ten minutes instead of skipping it when nobody is free: callers
    wait where a test can watch them. Such a tier puts the national backup past
    the flow's max_time_to_backup, which `ivr serve` would refuse, so the limit
    is dropped: these tests are about queueing, not the bound."""
    shutil.copytree(SHIPPED / "flows", dest / "flows")
    shutil.copytree(SHIPPED / "prompts", dest / "prompts")
    plan = dest / "flows" / "routing.yaml"
    text = plan.read_text()
    local = "{tier: local, ring_timeout: 20s, skip_when_unavailable: true}"
    assert local in text
    plan.write_text(text.replace(local, "{tier: local, ring_timeout: 600s}"))
    flow = dest / "flows" / "988.yaml"
    flow.write_text("".join(line for line in flow.read_text().splitlines(keepends=True)
                            if not line.startswith("max_time_to_backup:")))
    return dest


async def catch_all_server(route: Callable[[web.Request], Awaitable[web.Response]],
                port: int) -> web.AppRunner:
    """A server on 127.0.0.1:`port` that hands every request to `route`."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", route)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner
