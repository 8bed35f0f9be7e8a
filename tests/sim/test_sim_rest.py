"""The emulated REST API, driven by the official `twilio` async client.

The client is the real `twilio.rest.Client` with `AsyncTwilioHttpClient`,
pointed at the world with `client.api.base_url = world.api_url`; the
counselor legs it creates call back a tiny app that checks signatures.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from ivr.sim import SimConfig
from ivr.sim.counselors import ApiError, CounselorScript, NoAnswer
from ivr.sim.errors import SimError
from ivr.sim.rest import RestOutage
from ivr.sim.transcript import Heard, LegEvent
from ivr.sim.world import TwilioWorld

# aiohttp 3.14 deprecates the BasicAuth object twilio's async client still uses.
pytestmark = [
    pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning"),
]

ACCOUNT = "AC" + "5" * 32
TOKEN = "rest-test-auth-token"
PUBLIC = "https://ivr.example.org"
LINE = "+18885550988"
RINGS = "+15125550100"  # never answers
PICKS_UP = "+15125550101"  # answers after 1 s, says nothing at a <Gather>
REFUSED = "+442071838750"
BROKEN = "+15125550199"
SID = re.compile(r"^CA[0-9a-f]{32}$")


@dataclass
class Hit:
    path: str
    form: dict[str, str]
    valid: bool


@dataclass
class App:
    """The server side of the legs: answers their webhooks, keeps the hits."""

    pages: dict[str, str]
    hits: list[Hit] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        valid = RequestValidator(TOKEN).validate(PUBLIC + request.raw_path, form, signature)
        self.hits.append(Hit(request.raw_path, form, valid))
        self.changed.set()
        page = self.pages.get(request.path)
        if page is None:
            return web.Response(text="")
        return web.Response(text=f"<Response>{page}</Response>", content_type="text/xml")

    def statuses(self) -> list[str]:
        return [h.form["CallStatus"] for h in self.hits if h.path == "/twilio/leg-status"]

    def to(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not done():
                self.changed.clear()
                await self.changed.wait()


@dataclass
class Rig:
    world: TwilioWorld
    client: Client
    app: App

    async def place(self, to: str, **options: object) -> Any:
        arguments: dict[str, object] = {
            "to": to,
            "from_": LINE,
            "url": f"{PUBLIC}/twilio/whisper",
            "method": "POST",
            "status_callback": f"{PUBLIC}/twilio/leg-status",
            "status_callback_method": "POST",
            "status_callback_event": ["initiated", "ringing", "answered", "completed"],
            "timeout": 20,
            **options,
        }
        return await self.client.calls.create_async(**arguments)


@pytest.fixture
async def rig(aiohttp_server: AiohttpServer) -> AsyncIterator[Rig]:
    app = App(
        {
            "/twilio/whisper": '<Gather timeout="3"><Say>A caller is waiting.</Say></Gather>'
            '<Pause length="60"/>',
            "/twilio/elsewhere": "<Say>Moved.</Say><Pause length=\"60\"/>",
        }
    )
    web_app = web.Application()
    web_app.router.add_route("*", "/{tail:.*}", app.handle)
    server = await aiohttp_server(web_app)
    world = TwilioWorld(
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        counselors={
            RINGS: NoAnswer(),
            PICKS_UP: CounselorScript(answer_after=1, then="silence"),
            BROKEN: ApiError(status=500, code=20500),
        },
        api_errors=[REFUSED],
        time_scale=0.01,
    )
    await world.start()
    world.bind(
        SimConfig(
            server_url=str(server.make_url("/")).rstrip("/"),
            public_url=PUBLIC,
            auth_token=TOKEN,
            account_sid=ACCOUNT,
        )
    )
    http = AsyncTwilioHttpClient()
    client = Client(ACCOUNT, TOKEN, http_client=http)
    client.api.base_url = world.api_url
    try:
        yield Rig(world, client, app)
    finally:
        await http.close()
        await world.stop()


async def test_create_fetch_and_cancel_a_ringing_call(rig: Rig) -> None:
    call = await rig.place(RINGS)
    assert SID.match(call.sid)
    assert call.status == "queued"
    assert (call.to, call._from, call.direction) == (RINGS, LINE, "outbound-api")
    assert call.account_sid == ACCOUNT and call.api_version == "2010-04-01"
    assert call.uri == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{call.sid}.json"
    assert isinstance(call.date_created, datetime)

    await rig.app.until(lambda: "ringing" in rig.app.statuses())
    fetched = await rig.client.calls(call.sid).fetch_async()
    assert (fetched.sid, fetched.status) == (call.sid, "ringing")

    canceled = await rig.client.calls(call.sid).update_async(status="canceled")
    assert canceled.status == "canceled"
    assert await rig.world.wait_idle(60)
    assert rig.app.statuses() == ["initiated", "ringing", "canceled"]
    hits = rig.app.to("/twilio/leg-status")
    assert all(h.valid for h in hits)
    assert [h.form["SequenceNumber"] for h in hits] == ["0", "1", "2"]
    final = hits[-1].form
    assert final["CallSid"] == call.sid and final["AccountSid"] == ACCOUNT
    assert final["Direction"] == "outbound-api" and final["CallDuration"] == "0"
    assert (final["To"], final["From"]) == (RINGS, LINE)
    assert rig.app.to("/twilio/whisper") == []  # never answered

    after = await rig.client.calls(call.sid).fetch_async()
    assert after.status == "canceled" and after.end_time is not None
    (leg,) = rig.world.legs
    assert leg.final_status == "canceled"
    assert [e.event for e in rig.world.events] == ["called", "ringing", "canceled"]


async def test_unanswered_call_times_out(rig: Rig) -> None:
    await rig.place(RINGS, timeout=5, status_callback_event=["completed"])
    assert await rig.world.wait_idle(60)
    assert rig.app.statuses() == ["no-answer"]
    (leg,) = rig.world.legs
    assert leg.final_status == "no-answer"
    assert leg.end_reason == "rang 5s with no answer"


async def test_updates_of_an_answered_call(rig: Rig) -> None:
    call = await rig.place(PICKS_UP)
    await rig.app.until(lambda: bool(rig.app.to("/twilio/whisper")))
    (whisper,) = rig.app.to("/twilio/whisper")
    assert whisper.valid and whisper.form["CallStatus"] == "in-progress"
    assert whisper.form["CallSid"] == call.sid

    # Status=canceled leaves an in-progress call alone.
    unchanged = await rig.client.calls(call.sid).update_async(status="canceled")
    assert unchanged.status == "in-progress"

    moved = await rig.client.calls(call.sid).update_async(
        url=f"{PUBLIC}/twilio/elsewhere", method="POST"
    )
    assert moved.status == "in-progress"
    await rig.app.until(lambda: bool(rig.app.to("/twilio/elsewhere")))

    ended = await rig.client.calls(call.sid).update_async(status="completed")
    assert ended.status == "completed"
    assert await rig.world.wait_idle(60)
    assert rig.app.statuses() == ["initiated", "ringing", "in-progress", "completed"]
    (leg,) = rig.world.legs
    heard = [e.text for e in leg.session.transcript().of_type(Heard)]
    assert heard == ["A caller is waiting.", "Moved."]
    assert "redirected by the server" in [e.event for e in rig.world.events]

    with pytest.raises(TwilioRestException) as info:
        await rig.client.calls(call.sid).update_async(url=f"{PUBLIC}/twilio/elsewhere")
    assert (info.value.status, info.value.code) == (400, 21220)
    with pytest.raises(TwilioRestException) as info:
        await rig.client.calls(call.sid).update_async(status="completed")
    assert info.value.code == 21220


async def test_inline_twiml_is_executed(rig: Rig) -> None:
    call = await rig.place(PICKS_UP, url=None, twiml="<Response><Say>Hello there.</Say></Response>")
    assert await rig.world.wait_idle(60)
    (leg,) = rig.world.legs
    assert leg.sid == call.sid and leg.final_status == "completed"
    assert leg.end_reason == "end of TwiML document"
    assert [e.text for e in leg.session.transcript().of_type(Heard)] == ["Hello there."]
    with pytest.raises(TwilioRestException) as info:
        await rig.place(PICKS_UP, url=None, twiml="<Response><Say>unclosed")
    assert info.value.status == 400


async def test_wrong_credentials_are_refused(rig: Rig) -> None:
    http = AsyncTwilioHttpClient()
    try:
        intruder = Client(ACCOUNT, "not-the-token", http_client=http)
        intruder.api.base_url = rig.world.api_url
        with pytest.raises(TwilioRestException) as info:
            await intruder.calls.create_async(to=RINGS, from_=LINE, url=f"{PUBLIC}/twilio/w")
        assert (info.value.status, info.value.code) == (401, 20003)
    finally:
        await http.close()
    assert rig.world.legs == ()


async def test_unknown_call_is_not_found(rig: Rig) -> None:
    missing = "CA" + "0" * 32
    with pytest.raises(TwilioRestException) as info:
        await rig.client.calls(missing).fetch_async()
    assert (info.value.status, info.value.code) == (404, 20404)
    with pytest.raises(TwilioRestException) as info:
        await rig.client.calls(missing).update_async(status="completed")
    assert (info.value.status, info.value.code) == (404, 20404)


async def test_injected_api_errors(rig: Rig) -> None:
    with pytest.raises(TwilioRestException) as info:
        await rig.place(REFUSED)
    assert (info.value.status, info.value.code) == (400, 21215)
    assert REFUSED in info.value.msg
    with pytest.raises(TwilioRestException) as info:
        await rig.place(BROKEN)
    assert (info.value.status, info.value.code) == (500, 20500)
    assert rig.world.legs == ()
    assert [(e.target, e.event) for e in rig.world.events] == [
        (REFUSED, "refused by the API"), (BROKEN, "refused by the API"),
    ]
    assert all(isinstance(e, LegEvent) for e in rig.world.events)


async def test_raw_requests_are_validated_like_twilio(rig: Rig) -> None:
    url = f"{rig.world.api_url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    credentials = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    auth = {"Authorization": f"Basic {credentials}"}
    async with aiohttp.ClientSession(headers=auth) as http:

        async def post(form: dict[str, str]) -> tuple[int, dict[str, object]]:
            async with http.post(url, data=form) as response:
                return response.status, await response.json()

        status, body = await post({"From": LINE, "Url": f"{PUBLIC}/twilio/whisper"})
        assert (status, body["code"]) == (400, 21201)
        assert body["more_info"] == "https://www.twilio.com/docs/errors/21201"
        status, body = await post({"To": RINGS, "Url": f"{PUBLIC}/twilio/whisper"})
        assert (status, body["code"]) == (400, 21213)
        status, body = await post({"To": RINGS, "From": LINE})
        assert (status, body["code"]) == (400, 21205)
        status, body = await post({"To": "12", "From": LINE, "Url": f"{PUBLIC}/twilio/w"})
        assert (status, body["code"]) == (400, 21211)
        # StatusCallbackEvent may also come space-separated in one value.
        status, body = await post(
            {
                "To": RINGS, "From": LINE, "Url": f"{PUBLIC}/twilio/whisper", "Timeout": "3",
                "StatusCallback": f"{PUBLIC}/twilio/leg-status",
                "StatusCallbackEvent": "initiated ringing",
            }
        )
        assert status == 201 and body["status"] == "queued"
        async with http.get(f"{rig.world.api_url}/2010-04-01/Accounts/{ACCOUNT}/Nope.json") as r:
            assert r.status == 404 and (await r.json())["code"] == 20404
    assert await rig.world.wait_idle(60)
    # Only the events asked for: no final callback.
    assert rig.app.statuses() == ["initiated", "ringing"]


async def test_the_account_resource_and_refused_credentials(rig: Rig) -> None:
    account = await rig.client.api.v2010.accounts(ACCOUNT).fetch_async()
    assert (account.sid, account.status, account.type) == (ACCOUNT, "active", "Full")
    assert account.uri == f"/2010-04-01/Accounts/{ACCOUNT}.json"
    http = AsyncTwilioHttpClient()
    try:
        intruder = Client(ACCOUNT, "rotated-token", http_client=http)
        intruder.api.base_url = rig.world.api_url
        with pytest.raises(TwilioRestException) as info:
            await intruder.api.v2010.accounts(ACCOUNT).fetch_async()
        assert (info.value.status, info.value.code) == (401, 20003)
        assert info.value.msg.endswith("Authenticate")  # the library prefixes what it did
        other = "AC" + "6" * 32  # another account's SID with our token: refused as well
        stranger = Client(other, TOKEN, http_client=http)
        stranger.api.base_url = rig.world.api_url
        with pytest.raises(TwilioRestException) as info:
            await stranger.api.v2010.accounts(other).fetch_async()
        assert (info.value.status, info.value.code) == (401, 20003)
    finally:
        await http.close()


async def test_every_request_is_logged_as_received(rig: Rig) -> None:
    call = await rig.place(RINGS)
    await rig.client.calls(call.sid).update_async(status="canceled")
    create, update = rig.world.api_requests
    assert (create.method, create.path, create.status) == (
        "POST", f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json", 201)
    assert [v for k, v in create.form if k == "StatusCallbackEvent"] == [
        "initiated", "ringing", "answered", "completed"]
    assert ("Timeout", "20") in create.form
    assert (update.path, update.form, update.status) == (
        f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{call.sid}.json", (("Status", "canceled"),), 200)
    assert await rig.world.wait_idle(60)


async def test_an_outage_fails_its_operations_for_its_window() -> None:
    outage = RestOutage(operations=frozenset({"update", "account"}), start=0, seconds=30)
    world = TwilioWorld(account_sid=ACCOUNT, auth_token=TOKEN, outages=[outage], time_scale=0.01)
    await world.start()
    http = AsyncTwilioHttpClient()
    try:
        client = Client(ACCOUNT, TOKEN, http_client=http)
        client.api.base_url = world.api_url
        missing = "CA" + "0" * 32
        with pytest.raises(TwilioRestException) as info:
            await client.calls(missing).update_async(status="completed")
        assert (info.value.status, info.value.code) == (503, 20503)
        with pytest.raises(TwilioRestException) as info:
            await client.api.v2010.accounts(ACCOUNT).fetch_async()
        assert (info.value.status, info.value.code) == (503, 20503)
        with pytest.raises(TwilioRestException) as info:  # not covered: answered as usual
            await client.calls(missing).fetch_async()
        assert info.value.code == 20404
        # Credentials are checked before an outage answers, as on any request.
        intruder = Client(ACCOUNT, "rotated-token", http_client=http)
        intruder.api.base_url = world.api_url
        with pytest.raises(TwilioRestException) as info:
            await intruder.calls(missing).update_async(status="completed")
        assert info.value.code == 20003
        await world.clock.wait(asyncio.Event(), outage.start + outage.seconds)
        with pytest.raises(TwilioRestException) as info:
            await client.calls(missing).update_async(status="completed")
        assert info.value.code == 20404  # the window is over
    finally:
        await http.close()
        await world.stop()


@pytest.mark.parametrize(
    "arguments",
    [{"operations": frozenset({"delete"})}, {"operations": frozenset()}, {"status": 404},
     {"seconds": -1.0}],
)
def test_outages_are_5xx_on_known_operations(arguments: dict[str, Any]) -> None:
    with pytest.raises(SimError):
        RestOutage(**arguments)
