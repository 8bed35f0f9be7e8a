"""Small helpers for tests that speak to the server as Twilio does."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping

import aiohttp
from aiohttp.test_utils import TestServer
from twilio.request_validator import RequestValidator

from ivr import keys
from ivr.storage.counselors import list_counselors, set_presence
from tests.conftest import AUTH_TOKEN


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
    for counselor in await list_counselors(pool):
        await set_presence(pool, counselor.id, "available")
