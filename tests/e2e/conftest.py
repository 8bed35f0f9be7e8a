from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer

from ivr.config import Settings
from ivr.sim.config import SimConfig


@pytest.fixture
def sim(server: TestServer, settings: Settings) -> SimConfig:
    return SimConfig(server_url=settings.public_url, auth_token=settings.auth_token,
                     account_sid=settings.account_sid)
