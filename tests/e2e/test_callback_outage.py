"""Status callbacks that arrive while PostgreSQL is down are not lost.

A PostgreSQL of this module's own (the suite's shared one must keep running)
is stopped as if killed (`pg_ctl stop -m immediate`) while a call ends or
a counselor's leg ends, and started again a few seconds later: the server
keeps the callbacks in its spool meanwhile and replays them, so the call
row is closed and the counselor is free again without an administrator.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from ivr.config import Settings
from ivr.sim import CallScript, CounselorScript, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.telephony import spool as spool_module
from tests.conftest import fresh_database
from tests.helpers import call_params, new_sid, post_signed
from tests.waiting import eventually

ANA = "+15125550101"  # tx-ana, first for a Texas caller
TX_CALLER = "+15125550123"


@dataclass(frozen=True)
class OwnPostgres:
    """A PostgreSQL this module may stop and start."""

    pgdata: Path
    uri: str
    user: str | None

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(list(args), pgdata=self.pgdata, user=self.user, timeout=30)

    def kill(self) -> None:
        self._pg_ctl("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        socket_dir = parse_qs(urlsplit(self.uri).query)["host"][0]
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {socket_dir}",
                     "-l", str(self.pgdata / "log"), "start")

    def stop(self) -> None:
        """Before pgserver's cleanup, which stops only the postmaster it started
        itself: one started again here would outlive the tests."""
        try:
            self._pg_ctl("status")
        except subprocess.CalledProcessError:
            return  # not running
        self._pg_ctl("-m", "fast", "-w", "stop")


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnPostgres]:
    from pgserver import get_server  # type: ignore[attr-defined]

    server = get_server(tmp_path_factory.mktemp("outage-pg"), cleanup_mode="delete")
    own = OwnPostgres(server.pgdata, str(server.get_uri()), server.system_user)
    yield own
    own.stop()
    server.cleanup()


@pytest.fixture
async def dsn(own_postgres: OwnPostgres) -> AsyncIterator[str]:
    """This module's tests use their own PostgreSQL (the shared `dsn`, overridden)."""
    async for url in fresh_database(own_postgres.uri):
        yield url


@pytest.fixture
async def outage(own_postgres: OwnPostgres) -> AsyncIterator[OwnPostgres]:
    yield own_postgres
    # Whatever the test did, PostgreSQL runs again for the next one.
    try:
        async with asyncio.timeout(30):
            conn = await asyncpg.connect(own_postgres.uri)
            await conn.close()
    except (OSError, asyncpg.PostgresError, TimeoutError):
        await asyncio.to_thread(own_postgres.start)


async def fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    try:
        conn = await asyncpg.connect(dsn, timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return []
    try:
        rows: list[asyncpg.Record] = await conn.fetch(query, *args)
        return rows
    finally:
        await conn.close()


def spooled(settings: Settings) -> list[str]:
    spool = settings.data_dir / "spool"
    return sorted(n for n in os.listdir(spool) if n.endswith(".json")) if spool.exists() else []


async def test_a_call_that_ends_during_the_outage_is_closed_when_postgresql_returns(
    server: TestServer, settings: Settings, outage: OwnPostgres
) -> None:
    sid = new_sid()
    status_url = settings.public_url + "/twilio/status"
    async with aiohttp.ClientSession() as s:
        status, _ = await post_signed(s, settings.public_url + "/twilio/voice", call_params(sid))
        assert status == 200
        await asyncio.to_thread(outage.kill)
        status, body = await post_signed(
            s, status_url, call_params(sid, CallStatus="completed", CallDuration="42"))
        assert status == 204, body  # kept, not a bare 500 Twilio forgets
        assert len(await asyncio.to_thread(spooled, settings)) == 1
        # The caller's number is not in the spool.
        (name,) = await asyncio.to_thread(spooled, settings)
        kept = await asyncio.to_thread((settings.data_dir / "spool" / name).read_text)
        assert "5550123" not in kept and sid in kept
        await asyncio.sleep(2)  # a few seconds of outage
        await asyncio.to_thread(outage.start)

        async def closed() -> bool:
            rows = await fetch(settings.database_url or "",
                               "SELECT phase, ended_at, twilio_status FROM calls "
                               "WHERE call_sid = $1", sid)
            return bool(rows) and rows[0]["ended_at"] is not None

        await eventually(closed, "the call row closed after PostgreSQL returned")
        await eventually(lambda: _empty(settings), "the spool emptied")
        (before,) = await fetch(settings.database_url or "",
                                "SELECT phase, ended_at, twilio_status FROM calls "
                                "WHERE call_sid = $1", sid)
        assert (before["phase"], before["twilio_status"]) == ("ended", "completed")
        # The same callback again (Twilio's retry, a second replay): nothing changes.
        status, _ = await post_signed(
            s, status_url, call_params(sid, CallStatus="completed", CallDuration="42"))
        assert status == 204
        (after,) = await fetch(settings.database_url or "",
                               "SELECT phase, ended_at, twilio_status FROM calls "
                               "WHERE call_sid = $1", sid)
        assert dict(after) == dict(before)


async def _empty(settings: Settings) -> bool:
    return not await asyncio.to_thread(spooled, settings)


@pytest.mark.counselors(counselors={ANA: CounselorScript(answer_after=1, talk_seconds=300)})
async def test_a_counselor_leg_that_ends_during_the_outage_frees_the_counselor(
    sim: SimConfig, world: TwilioWorld, settings: Settings, server: TestServer,
    outage: OwnPostgres,
) -> None:
    dsn = settings.database_url or ""
    call = asyncio.create_task(simulate_call(
        sim, CallScript(from_number=TX_CALLER, inputs=(Silence(),)), world=world))

    async def on_call() -> bool:
        rows = await fetch(dsn, "SELECT presence FROM counselors WHERE id = 'tx-ana'")
        return bool(rows) and rows[0]["presence"] == "on-call"

    await eventually(on_call, "Ana on the call")
    await asyncio.to_thread(outage.kill)
    # Ana hangs up (300 simulated seconds of talk) and the caller's call ends,
    # all while PostgreSQL is down.
    transcript = await asyncio.wait_for(call, 60)
    await asyncio.to_thread(outage.start)

    async def freed() -> bool:
        rows = await fetch(dsn, "SELECT presence, current_call FROM counselors "
                                "WHERE id = 'tx-ana'")
        return bool(rows) and rows[0]["presence"] == "available"

    async def closed() -> bool:
        rows = await fetch(dsn, "SELECT ended_at FROM calls WHERE call_sid = $1",
                           transcript.call_sid)
        return bool(rows) and rows[0]["ended_at"] is not None

    await eventually(freed, "Ana available again after PostgreSQL returned")
    await eventually(closed, "the call row closed")
    await eventually(lambda: _empty(settings), "the spool emptied")


async def test_a_callback_neither_stored_nor_spooled_is_a_503_for_twilio_to_retry(
    server: TestServer, settings: Settings, outage: OwnPostgres,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(spool_module, "MAX_ENTRIES", 0)  # a full spool
    sid = new_sid()
    async with aiohttp.ClientSession() as s:
        status, _ = await post_signed(s, settings.public_url + "/twilio/voice", call_params(sid))
        assert status == 200
        await asyncio.to_thread(outage.kill)
        status, _ = await post_signed(s, settings.public_url + "/twilio/status",
                                      call_params(sid, CallStatus="completed"))
        # 5xx, which the URL's "rp=all" has Twilio retry (a bare 500 was a bug's answer).
        assert status == 503
        await asyncio.to_thread(outage.start)
