"""Whole calls: the simulator plays Twilio (webhooks, REST API, counselors' phones)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from ivr.config import Settings
from ivr.sim import TwilioWorld
from ivr.sim.config import SimConfig
from tests.conftest import bounded
from tests.helpers import staff_all


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
    return SimConfig(server_url=settings.public_url, auth_token=settings.auth_token,
                     account_sid=settings.account_sid)
