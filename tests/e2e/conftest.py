"""Whole calls: the simulator plays Twilio (webhooks, REST API, counselors' phones).

Every REST request the server sends in these tests, to any simulated world,
is checked against Twilio's OpenAPI description (tests/openapi_check.py) when
the test ends: a misspelt or missing parameter fails the test that sent it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp.test_utils import TestServer

from ivr.config import Settings
from ivr.logs import JsonFormatter
from ivr.sim import TwilioWorld
from ivr.sim.config import SimConfig
from tests.conftest import AUTH_TOKEN, bounded
from tests.helpers import staff_all
from tests.openapi_check import check_request


@pytest.fixture(autouse=True)
def rest_requests_follow_twilios_description(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    worlds: list[TwilioWorld] = []
    start = TwilioWorld.start

    async def started(world: TwilioWorld) -> str:
        worlds.append(world)
        return await start(world)

    monkeypatch.setattr(TwilioWorld, "start", started)
    yield
    problems = [
        f"{r.method} {r.path}: {problem}"
        for world in worlds for r in world.api_requests
        for problem in check_request(r.method, r.path, r.form, r.query)
    ]
    assert not problems, "REST requests Twilio's description does not allow:\n" + "\n".join(
        problems)


@pytest.fixture
async def world(request: pytest.FixtureRequest) -> AsyncIterator[TwilioWorld]:
    """Counselors answer and accept after 3 s unless a test marks otherwise."""
    marker = request.node.get_closest_marker("counselors")
    options = marker.kwargs if marker else {}
    w = TwilioWorld(**options)
    await w.start()
    yield w
    await bounded(w.stop(), "stopping the simulated Twilio")


@pytest.fixture
def twilio_api_url(world: TwilioWorld) -> str:
    return world.api_url


@pytest.fixture
async def sim(server: TestServer, settings: Settings, world: TwilioWorld) -> SimConfig:
    await staff_all(server)
    return SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                     account_sid=settings.account_sid)


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Every log line of the test, as IVR_LOG_FORMAT=json writes them."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)
