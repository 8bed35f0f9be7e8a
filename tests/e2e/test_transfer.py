"""Warm transfers through the simulator: tiers, counselor behaviours, abandonment, outcomes."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from ivr import keys
from ivr.config import Settings
from ivr.routing.progress import Phase, Progress
from ivr.sim import (
    Busy,
    CallScript,
    CounselorScript,
    NoAnswer,
    Silence,
    TwilioWorld,
    simulate_call,
)
from ivr.sim.config import SimConfig
from ivr.sim.script import DialOutcome
from ivr.sim.transcript import CounselorJoined, Dialed, Transcript
from ivr.storage.counselors import get_counselor, list_counselors, set_presence
from tests.conftest import AUTH_TOKEN

ANA, BEN = "+15125550101", "sip:ben@tx-crisis.example.org"
TX_CALLER = "+15125550123"
GULF_BACKUP = "+15045550112"


def joined(t: Transcript) -> str:
    people = t.of_type(CounselorJoined)
    assert len(people) == 1, t.format()
    return people[0].who


async def call_row(settings: Settings, sid: str) -> dict[str, Any]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM calls WHERE call_sid = $1", sid)
        offers = await conn.fetch(
            "SELECT counselor_id, state FROM offers WHERE call_sid = $1 ORDER BY id", sid)
    finally:
        await conn.close()
    assert row is not None
    return {**dict(row), "offers": [(o["counselor_id"], o["state"]) for o in offers]}


def progress_of(row: dict[str, Any]) -> Progress:
    """The call's stored transfer progress (read through its one codec)."""
    return Progress.from_json(json.loads(row["transfer"]))


def connected_after_ana(row: dict[str, Any]) -> None:
    """The progress followed the legs: Ana's offer ended against her, Ben's
    second offer was accepted."""
    p = progress_of(row)
    assert p.phase is Phase.CONNECTED and p.tried == ("tx-ana",), p
    assert p.offer is not None and (p.offer.number, p.offer.counselor) == (2, "tx-ben"), p
    assert p.offers_made == 2


async def silent_tx_call(sim: SimConfig, world: TwilioWorld, **script: Any) -> Transcript:
    args: dict[str, Any] = {"from_number": TX_CALLER, "inputs": (Silence(),), **script}
    return await simulate_call(sim, CallScript(**args), world=world)


@pytest.mark.counselors(counselors={ANA: CounselorScript(then="decline")})
async def test_a_decline_moves_to_the_next_counselor(
    sim: SimConfig, world: TwilioWorld, settings: Settings, server: TestServer
) -> None:
    t = await silent_tx_call(sim, world)
    assert joined(t) == BEN, t.format()
    row = await call_row(settings, t.call_sid)
    assert row["offers"] == [("tx-ana", "declined"), ("tx-ben", "accepted")]
    connected_after_ana(row)
    # A decline keeps Ana ready for the next caller; Ben is in wrap-up, then available.
    assert (await get_counselor(server.app[keys.pool], "tx-ana")).presence == "available"
    assert row["answered_tier"] == "local" and row["answered_in_state"] is True


@pytest.mark.counselors(counselors={ANA: NoAnswer()})
async def test_no_answer_moves_on_and_takes_the_counselor_offline(
    sim: SimConfig, world: TwilioWorld, settings: Settings, server: TestServer
) -> None:
    t = await silent_tx_call(sim, world)
    assert joined(t) == BEN, t.format()
    assert (await get_counselor(server.app[keys.pool], "tx-ana")).presence == "offline"
    row = await call_row(settings, t.call_sid)
    assert row["offers"] == [("tx-ana", "missed"), ("tx-ben", "accepted")]
    connected_after_ana(row)


@pytest.mark.counselors(counselors={ANA: Busy()})
async def test_busy_moves_to_the_next_counselor(
    sim: SimConfig, world: TwilioWorld, settings: Settings
) -> None:
    t = await silent_tx_call(sim, world)
    assert joined(t) == BEN, t.format()
    row = await call_row(settings, t.call_sid)
    assert row["offers"][0] == ("tx-ana", "declined")
    connected_after_ana(row)


@pytest.mark.counselors(api_errors=[ANA])
async def test_an_api_error_moves_to_the_next_counselor(
    sim: SimConfig, world: TwilioWorld, settings: Settings
) -> None:
    t = await silent_tx_call(sim, world)
    assert joined(t) == BEN, t.format()
    row = await call_row(settings, t.call_sid)
    assert row["offers"][0] == ("tx-ana", "failed")
    connected_after_ana(row)


@pytest.mark.counselors(counselors={ANA: CounselorScript(then="silence")})
async def test_a_counselor_who_answers_but_never_accepts_is_passed_over(
    sim: SimConfig, world: TwilioWorld, settings: Settings
) -> None:
    t = await silent_tx_call(sim, world)
    assert joined(t) == BEN, t.format()
    row = await call_row(settings, t.call_sid)
    assert row["offers"][0] == ("tx-ana", "missed")
    connected_after_ana(row)


async def test_nobody_available_skips_the_tier_at_once(
    settings: Settings, server: TestServer, world: TwilioWorld
) -> None:
    # Nobody staffed (every counselor starts offline): no leg is placed at all.
    sim = SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                    account_sid=settings.account_sid)
    t = await silent_tx_call(sim, world)
    assert t.reached_human
    assert not world.legs
    assert t.of_type(Dialed)[0].targets == (GULF_BACKUP,)
    row = await call_row(settings, t.call_sid)
    assert row["answered_tier"] == "backup" and row["answered_in_state"] is False


@pytest.mark.counselors(counselors={ANA: NoAnswer(), BEN: NoAnswer()})
async def test_every_local_counselor_missing_rolls_over_to_the_backup(
    sim: SimConfig, world: TwilioWorld, settings: Settings
) -> None:
    t = await silent_tx_call(sim, world,
                             dial_outcomes=(DialOutcome("answer"),))
    assert t.reached_human
    assert t.of_type(Dialed)[0].targets == (GULF_BACKUP,)
    row = await call_row(settings, t.call_sid)
    assert [o for o, _ in row["offers"]] == ["tx-ana", "tx-ben"]
    assert row["answered_tier"] == "backup"


async def test_neighbouring_state_is_answered_out_of_state(
    sim: SimConfig, world: TwilioWorld, settings: Settings
) -> None:
    # Oklahoma has no center: the Texas center answers as the south's backup.
    t = await simulate_call(sim, CallScript(from_number="+14055550123", from_state="OK",
                                            inputs=(Silence(),)), world=world)
    assert joined(t) in (ANA, BEN), t.format()
    row = await call_row(settings, t.call_sid)
    assert (row["location_state"], row["location_source"]) == ("OK", "from_state")
    assert row["answered_tier"] == "backup" and row["answered_in_state"] is False


# A tenth of real time per simulated second: the caller hangs up 7 simulated
# seconds after the transfer starts, and at the fastest scale that was 70 ms
# of real time for the dispatcher to ring Ana (CI once took longer, and the
# caller left before any leg was placed).
@pytest.mark.counselors(counselors={ANA: NoAnswer(), BEN: NoAnswer()},
                        default=CounselorScript(answer_after=3), time_scale=0.1)
async def test_caller_hanging_up_while_it_rings_cancels_the_leg(
    sim: SimConfig, world: TwilioWorld, settings: Settings, server: TestServer
) -> None:
    pool = server.app[keys.pool]
    await set_presence(pool, "tx-ben", "offline")  # only Ana is rung, and she never answers
    t = await silent_tx_call(sim, world, hangup_after=27.0)  # while Ana's phone rings
    assert not t.reached_human
    await world.wait_idle(5)
    [leg] = world.legs
    assert leg.who == ANA and leg.final_status == "canceled"
    assert (await get_counselor(pool, "tx-ana")).presence == "available"
    row = await call_row(settings, t.call_sid)
    assert row["abandoned"] is True and row["answered_at"] is None
    assert row["offers"] == [("tx-ana", "canceled")]


async def test_counselors_are_synced_from_the_plan(server: TestServer) -> None:
    ids = {c.id for c in await list_counselors(server.app[keys.pool])}
    assert {"tx-ana", "tx-ben", "tx-carla", "ny-dan", "ca-fatima"} <= ids
