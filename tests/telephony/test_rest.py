"""The server's REST client against the simulator's Twilio API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ivr.sim import NoAnswer, TwilioWorld
from ivr.telephony.rest import RestError, TwilioRest

ACCOUNT = "AC" + "7" * 32
TOKEN = "rest-client-token"


@pytest.fixture
async def world() -> AsyncIterator[TwilioWorld]:
    async with TwilioWorld(account_sid=ACCOUNT, auth_token=TOKEN,
                           counselors={"+15125550100": NoAnswer()},
                           api_errors=["+15125550199"]) as w:
        yield w


@pytest.fixture
async def rest(world: TwilioWorld) -> AsyncIterator[TwilioRest]:
    client = TwilioRest(ACCOUNT, TOKEN, world.api_url)
    yield client
    await client.close()


async def test_ending_a_call_that_already_ended_is_not_a_failure(rest: TwilioRest) -> None:
    # Twilio answers 20404 for a call it no longer has: whatever we wanted to stop stopped.
    # (Cancelling a live leg is covered end to end by the abandoned-caller test.)
    await rest.end_call("CA" + "0" * 32, ringing=True)
    await rest.end_call("CA" + "0" * 32, ringing=False)
    assert await rest.redirect("CA" + "0" * 32, "http://127.0.0.1:9/twilio/resume") is False


async def test_refused_calls_and_bad_credentials_are_errors(
    rest: TwilioRest, world: TwilioWorld
) -> None:
    with pytest.raises(RestError, match="21215"):
        await rest.place_call(to="+15125550199", from_="+18005550100",
                              url="http://127.0.0.1:9/x", status_callback="http://127.0.0.1:9/y",
                              ring_seconds=20)
    wrong = TwilioRest(ACCOUNT, "wrong-token", world.api_url)
    try:
        with pytest.raises(RestError, match="401"):
            await wrong.place_call(to="+15125550100", from_="+18005550100",
                                   url="http://127.0.0.1:9/x",
                                   status_callback="http://127.0.0.1:9/y", ring_seconds=20)
    finally:
        await wrong.close()
