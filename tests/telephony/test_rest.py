"""The server's REST client against the simulator's Twilio API: typed errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port
from twilio.base.exceptions import TwilioRestException

from ivr.sim import ApiError, CounselorScript, NoAnswer, TwilioWorld
from ivr.sim.config import SimConfig
from ivr.sim.rest import RestOutage
from ivr.telephony.rest import AddressError, ServiceError, TwilioRest, classify
from tests.helpers import catch_all_server
from tests.waiting import eventually

ACCOUNT = "AC" + "7" * 32
TOKEN = "rest-client-token"
RINGS = "+15125550100"
ANSWERS = "+15125550102"
LEG = {"from_": "+18005550100", "url": "http://127.0.0.1:9/x",
       "status_callback": "http://127.0.0.1:9/y", "ring_seconds": 20}


@pytest.fixture
async def world() -> AsyncIterator[TwilioWorld]:
    async with TwilioWorld(account_sid=ACCOUNT, auth_token=TOKEN,
                           counselors={RINGS: NoAnswer(),
                                       "+15125550111": ApiError(code=21211),
                                       "+15125550114": ApiError(code=21214),
                                       "+15125550117": ApiError(code=21217),
                                       "+15125550116": ApiError(code=21216),
                                       "+15125550110": ApiError(code=21210),
                                       "+15125550129": ApiError(status=429, code=20429),
                                       "+15125550150": ApiError(status=500, code=20500)},
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
    await rest.end_call("CA" + "0" * 32)
    assert await rest.redirect("CA" + "0" * 32, "http://127.0.0.1:9/twilio/resume") is False


async def test_ending_a_leg_answered_before_its_cancel_hangs_it_up() -> None:
    # Twilio ignores `canceled` for a call in progress: the client then hangs it up.
    async def twiml(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="<Response><Pause length=\"3600\"/></Response>",
                            content_type="text/xml")

    port = unused_port()
    runner = await catch_all_server(twiml, port)
    try:
        async with TwilioWorld(account_sid=ACCOUNT, auth_token=TOKEN, counselors={
                ANSWERS: CounselorScript(answer_after=0, then="silence")}) as world:
            base = f"http://127.0.0.1:{port}"
            world.bind(SimConfig(server_url=base, auth_token=TOKEN, account_sid=ACCOUNT))
            client = TwilioRest(ACCOUNT, TOKEN, world.api_url)
            try:
                leg = await client.place_call(to=ANSWERS, from_="+18005550100", url=base + "/x",
                                              status_callback=base + "/y", ring_seconds=20)
                [placed] = world.legs
                await eventually(lambda: placed.session.status == "in-progress",
                                 "the counselor answers")
                await client.end_call(leg.sid)
                await world.wait_idle(10)
            finally:
                await client.close()
            updates = [dict(r.form).get("Status") for r in world.api_requests
                       if r.path.endswith(f"/Calls/{leg.sid}.json") and r.method == "POST"]
            assert updates == ["canceled", "completed"]
            assert placed.final_status == "completed"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("to", "kind", "code"),
    [
        # About the number dialled: counts against whoever gave it.
        ("+15125550111", AddressError, 21211),
        ("+15125550114", AddressError, 21214),
        ("+15125550199", AddressError, 21215),
        ("+15125550117", AddressError, 21217),
        # Nobody's fault on the staff: the account, our From, limits, outages.
        ("+15125550116", ServiceError, 21216),
        ("+15125550110", ServiceError, 21210),
        ("+15125550129", ServiceError, 20429),
        ("+15125550150", ServiceError, 20500),
    ],
)
async def test_refusals_are_typed_by_whose_problem_they_are(
    rest: TwilioRest, to: str, kind: type[Exception], code: int
) -> None:
    with pytest.raises(kind) as raised:
        await rest.place_call(to=to, **LEG)  # type: ignore[arg-type]
    assert type(raised.value) is kind
    assert raised.value.code == code  # type: ignore[attr-defined]


async def test_wrong_credentials_are_a_service_error_naming_the_variables(
    world: TwilioWorld,
) -> None:
    wrong = TwilioRest(ACCOUNT, "wrong-token", world.api_url)
    try:
        names = "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
        with pytest.raises(ServiceError, match=names) as raised:
            await wrong.place_call(to=RINGS, **LEG)  # type: ignore[arg-type]
        assert raised.value.credentials and raised.value.status == 401
        with pytest.raises(ServiceError) as raised:
            await wrong.check_account()
        assert raised.value.credentials
        with pytest.raises(ServiceError) as raised:
            await wrong.redirect("CA" + "0" * 32, "http://127.0.0.1:9/twilio/resume")
        assert raised.value.credentials
    finally:
        await wrong.close()


async def test_the_account_check_and_an_unreachable_api(rest: TwilioRest) -> None:
    assert await rest.check_account() == "active"
    dead = TwilioRest(ACCOUNT, TOKEN, "http://127.0.0.1:9")
    try:
        with pytest.raises(ServiceError, match="request failed") as raised:
            await dead.place_call(to=RINGS, **LEG)  # type: ignore[arg-type]
        assert not raised.value.credentials
    finally:
        await dead.close()


async def test_an_update_refused_during_an_outage_is_a_service_error() -> None:
    outage = RestOutage(operations=frozenset({"update"}), seconds=100_000)
    async with TwilioWorld(account_sid=ACCOUNT, auth_token=TOKEN, outages=[outage]) as world:
        client = TwilioRest(ACCOUNT, TOKEN, world.api_url)
        try:
            with pytest.raises(ServiceError) as raised:
                await client.redirect("CA" + "0" * 32, "http://127.0.0.1:9/twilio/resume")
            assert (raised.value.status, raised.value.code) == (503, 20503)
        finally:
            await client.close()


@pytest.mark.parametrize("code", [21211, 21214, 21215, 21217, 13223, 13224, 13225])
def test_only_a_call_being_placed_has_address_errors(code: int) -> None:
    exc = TwilioRestException(400, "https://api.twilio.com/x", msg="refused", code=code)
    assert isinstance(classify(exc, "placing a call", dialling=True), AddressError)
    # The same code on an update is about our request, never a counselor's address.
    assert type(classify(exc, "updating", dialling=False)) is ServiceError
