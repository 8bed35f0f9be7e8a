"""A Twilio account problem never empties the staff, and no caller is stranded on hold.

Only Twilio refusing a counselor's own address counts against that
counselor; wrong credentials, an outage or the network mark the REST API
degraded (shared by every instance), withdraw offers without blame and send
callers on to the dial steps at once. A caller whose move out of the
conference failed is moved again by their hold rounds.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from ivr import keys
from ivr.app import create_app
from ivr.config import ConfigError, Settings
from ivr.content import Content
from ivr.sim import ApiError, CallScript, NoAnswer, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.rest import RestOutage
from ivr.sim.transcript import CounselorJoined, Dialed, JoinedConference, Transcript
from ivr.storage.counselors import list_counselors, set_presence
from tests.conftest import AUTH_TOKEN, make_settings
from tests.e2e.test_transfer import call_row
from tests.helpers import staff_all

ANA, BEN = "+15125550101", "sip:ben@tx-crisis.example.org"
TX_CALLER = "+15125550123"
GULF_BACKUP = "+15045550112"
# An account SID other than the server's: the token is right (webhook
# signatures still check), the REST API refuses the pair with 401 / 20003.
OTHER_ACCOUNT = "AC" + "2" * 32


async def health(settings: Settings) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(settings.public_url + "/healthz") as resp:
        return resp.status, await resp.json()


async def presences(server: TestServer) -> dict[str, str]:
    return {c.id: c.presence for c in await list_counselors(server.app[keys.pool])}


async def tx_call(sim: SimConfig, world: TwilioWorld, **script: Any) -> Transcript:
    args: dict[str, Any] = {"from_number": TX_CALLER, "inputs": (Silence(),), **script}
    return await simulate_call(sim, CallScript(**args), world=world)


@pytest.mark.counselors(account_sid=OTHER_ACCOUNT, auth_token=AUTH_TOKEN)
async def test_refused_credentials_send_callers_on_and_keep_the_staff(
    settings: Settings, server: TestServer, world: TwilioWorld
) -> None:
    await staff_all(server)
    staffed = await presences(server)
    sim = SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                    account_sid=OTHER_ACCOUNT)
    t = await tx_call(sim, world)
    assert t.reached_human, t.format()
    # Straight to the first dial step: nobody rung, no wait in a conference.
    assert t.of_type(Dialed)[0].targets == (GULF_BACKUP,), t.format()
    assert not t.of_type(JoinedConference) and not world.legs
    assert await presences(server) == staffed
    status, body = await health(settings)
    assert status == 200
    assert body["twilio_api"] == "degraded"
    assert "TWILIO_ACCOUNT_SID" in body["twilio_api_reason"]
    # The start-up check asked once, Twilio-style, and was refused.
    [check] = [r for r in world.api_requests if r.path.endswith(f"{settings.account_sid}.json")]
    assert (check.method, check.status) == ("GET", 401)


@pytest.mark.counselors(outages=[RestOutage(operations=frozenset({"create"}),
                                            seconds=100_000, status=500, code=20500)])
async def test_an_outage_placing_legs_withdraws_the_offer_without_blame(
    sim: SimConfig, settings: Settings, server: TestServer, world: TwilioWorld
) -> None:
    staffed = await presences(server)
    t = await tx_call(sim, world)
    assert t.reached_human, t.format()
    assert t.of_type(Dialed)[0].targets == (GULF_BACKUP,), t.format()
    # One offer was tried, withdrawn as never made; nobody else was rung after it.
    row = await call_row(settings, t.call_sid)
    assert row["offers"] == [("tx-ana", "canceled")]
    creates = [r for r in world.api_requests if r.path.endswith("/Calls.json")]
    assert [r.status for r in creates] == [500]
    assert await presences(server) == staffed
    status, body = await health(settings)
    assert status == 200 and body["twilio_api"] == "degraded"
    assert "20500" in body["twilio_api_reason"]


@pytest.mark.counselors(counselors={ANA: ApiError(code=21211)})
async def test_a_refused_address_counts_against_that_counselor_only(
    sim: SimConfig, settings: Settings, server: TestServer, world: TwilioWorld
) -> None:
    staffed = await presences(server)
    t = await tx_call(sim, world)
    people = t.of_type(CounselorJoined)
    assert [p.who for p in people] == [BEN], t.format()
    row = await call_row(settings, t.call_sid)
    assert row["offers"][0] == ("tx-ana", "failed")
    after = await presences(server)
    assert after["tx-ana"] == "offline"
    assert {k: v for k, v in after.items() if k not in ("tx-ana", "tx-ben")} == {
        k: v for k, v in staffed.items() if k not in ("tx-ana", "tx-ben")}
    status, body = await health(settings)
    assert status == 200 and body["twilio_api"] == "ok"


# Every redirect fails for a while: longer than the server's own retries of
# the move (about 7.5 s of real time), so only the hold rounds can save the
# caller. A tenth of real time per simulated second makes 150 s last 15 s.
@pytest.mark.counselors(counselors={ANA: NoAnswer()}, time_scale=0.1,
                        outages=[RestOutage(operations=frozenset({"update"}), seconds=150)])
async def test_a_caller_whose_move_failed_is_moved_by_a_hold_round(
    sim: SimConfig, settings: Settings, server: TestServer, world: TwilioWorld
) -> None:
    await set_presence(server.app[keys.pool], "tx-ben", "offline")  # Ana alone, never answering
    t = await tx_call(sim, world, hold_patience=400)
    assert t.reached_human, t.format(show_requests=True)
    assert t.of_type(Dialed)[0].targets == (GULF_BACKUP,), t.format()
    assert "/twilio/resume" in t.format(show_requests=True)
    moves = [r for r in world.api_requests
             if r.path.endswith(f"/Calls/{t.call_sid}.json") and r.method == "POST"]
    failed = [r for r in moves if r.status == 503]
    # The server's own attempts all failed; a later hold round asked again.
    assert len(failed) >= 4 and moves[-1].status == 200, [r.status for r in moves]


async def test_refused_credentials_stop_a_public_server_from_starting(
    tmp_path: Path, dsn: str, content: Content
) -> None:
    async with TwilioWorld(account_sid=OTHER_ACCOUNT, auth_token=AUTH_TOKEN) as world:
        settings = make_settings(tmp_path, dsn, 0, world.api_url)
        public = replace(settings, public_url="https://ivr.example.org")
        server = TestServer(create_app(public, content), host="127.0.0.1")
        with pytest.raises(ConfigError, match=r"TWILIO_ACCOUNT_SID .* TWILIO_AUTH_TOKEN"):
            await server.start_server()
        await server.close()
        # The database was opened before the check failed: closed all the same.
        assert server.app[keys.pool].is_closing()
