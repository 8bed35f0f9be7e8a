"""The shared degraded state of Twilio's REST API: one line per degradation, probes, recovery."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest

from ivr.sim import TwilioWorld
from ivr.sim.rest import RestOutage
from ivr.storage.database import open_pool
from ivr.telephony.apihealth import ApiHealth
from ivr.telephony.rest import ServiceError, TwilioRest

ACCOUNT = "AC" + "3" * 32
TOKEN = "health-token"
OUTAGE = ServiceError("placing a call: HTTP 503, Twilio error 20503: Service unavailable",
                      status=503, code=20503)


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await open_pool(dsn)
    yield p
    await p.close()


def account_checks(world: TwilioWorld) -> int:
    return sum(r.path.endswith(f"/Accounts/{ACCOUNT}.json") for r in world.api_requests)


def lines(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records)


async def test_one_line_per_degradation_whichever_instance_sees_it(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with TwilioWorld(account_sid=ACCOUNT, auth_token=TOKEN) as world:
        rest = TwilioRest(ACCOUNT, TOKEN, world.api_url)
        try:
            one, two = ApiHealth(pool, rest), ApiHealth(pool, rest)  # two instances
            assert await one.usable()
            await one.failed(OUTAGE)
            await two.failed(OUTAGE)
            await one.failed(OUTAGE)
            assert not await two.usable()
            state = await two.state()
            assert state is not None and "20503" in state.reason and not state.probe_due
            assert lines(caplog, "Twilio REST API degraded") == 1
            assert not await one.probe()  # the cool-off is not over: Twilio is not asked
            assert account_checks(world) == 0 and not await one.usable()
        finally:
            await rest.close()


async def test_a_probe_after_the_cool_off_ends_it_or_starts_another(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    outage = RestOutage(operations=frozenset({"account"}), seconds=100_000)
    async with TwilioWorld(account_sid=ACCOUNT, auth_token=TOKEN, outages=[outage]) as down:
        rest = TwilioRest(ACCOUNT, TOKEN, down.api_url)
        try:
            health = ApiHealth(pool, rest, cool_off=0)
            await health.failed(OUTAGE)
            assert not await health.probe()  # Twilio still failing: still degraded
            assert account_checks(down) == 1 and not await health.usable()
        finally:
            await rest.close()
    async with TwilioWorld(account_sid=ACCOUNT, auth_token=TOKEN) as up:
        rest = TwilioRest(ACCOUNT, TOKEN, up.api_url)
        try:
            health = ApiHealth(pool, rest, cool_off=0)
            assert await health.probe()
            assert account_checks(up) == 1 and await health.usable()
            assert lines(caplog, "Twilio REST API usable again") == 1
            assert lines(caplog, "Twilio REST API degraded") == 1
            assert await health.probe()  # nothing degraded: nothing asked
            assert account_checks(up) == 1
        finally:
            await rest.close()


async def test_a_failure_the_database_cannot_record_is_only_logged(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    await pool.execute("DROP TABLE api_health")
    rest = TwilioRest(ACCOUNT, TOKEN, "http://127.0.0.1:9")
    try:
        await ApiHealth(pool, rest).failed(OUTAGE)  # the caller's rescue goes on
    finally:
        await rest.close()
    assert lines(caplog, "could not record the REST API as degraded") == 1
