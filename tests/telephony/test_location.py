"""Where the caller is, as recorded on the call for each source Twilio can give."""

from __future__ import annotations

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from ivr.config import Settings
from tests.helpers import call_params, new_sid, post_signed


@pytest.mark.parametrize(
    ("params", "state", "source", "area_code"),
    [
        # A carrier's georouting header wins over everything Twilio guessed.
        ({"SipHeader_X-Georoute-State": "US-NY", "FromState": "TX"}, "NY", "georoute", "512"),
        ({"SipHeader_X-Georoute-State": "garbage", "FromState": "TX"}, "TX", "from_state", "512"),
        ({"FromState": "CA"}, "CA", "from_state", "512"),
        # A Canadian caller's province is not a US state: the area code is used instead.
        ({"FromState": "ON", "FromCountry": "CA", "From": "+14165550123"}, None, "default",
         "416"),
        ({"FromState": ""}, "TX", "area_code", "512"),
        ({"FromState": "", "From": "+18005550123"}, None, "default", "800"),
        ({"FromState": "", "From": "anonymous"}, None, "default", None),
        ({"FromState": "", "From": "+442071234567", "FromCountry": "GB"}, None, "default", None),
    ],
)
async def test_location_source_is_recorded(
    server: TestServer, settings: Settings, params: dict[str, str],
    state: str | None, source: str, area_code: str | None,
) -> None:
    sid = new_sid()
    async with aiohttp.ClientSession() as s:
        status, _ = await post_signed(s, settings.public_url + "/twilio/voice",
                                      call_params(sid, **params))
    assert status == 200
    conn = await asyncpg.connect(settings.database_url)
    try:
        row = await conn.fetchrow(
            "SELECT location_state, location_source, caller_area_code FROM calls "
            "WHERE call_sid = $1", sid)
    finally:
        await conn.close()
    assert row is not None
    assert (row["location_state"], row["location_source"], row["caller_area_code"]) == (
        state, source, area_code)
