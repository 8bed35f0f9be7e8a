"""A call survives what a single process cannot: restarts, other instances, a lost database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer, unused_port

from ivr.app import create_app
from ivr.content import Content
from tests.conftest import AUTH_TOKEN, ROOT, make_settings
from tests.helpers import call_params, new_sid, parse_twiml, post_signed

PUBLIC = "https://ivr.example.test"  # both instances sit behind this one public URL


async def _wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(200):
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                async with s.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("server did not become healthy")


@pytest.fixture
def instances(dsn: str, tmp_path: Path) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    started = []
    for n in range(2):
        port = unused_port()
        env = {
            **os.environ,
            "IVR_DATABASE_URL": dsn,
            "IVR_PUBLIC_URL": PUBLIC,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_CALLER_ID": "+15125550199",  # required off loopback
            "IVR_DATA_DIR": str(tmp_path / f"instance{n}"),
            "IVR_FLOWS_DIR": str(ROOT / "flows"),
            "IVR_PROMPTS_DIR": str(ROOT / "prompts"),
            "IVR_LOG_LEVEL": "WARNING",
        }
        cmd = [sys.executable, "-m", "ivr.cli", "serve", "--port", str(port)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started.append((f"http://127.0.0.1:{port}", proc))
    yield started
    for _, proc in started:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


async def test_call_continues_on_another_server_process(
    instances: list[tuple[str, subprocess.Popen[bytes]]],
) -> None:
    (a, proc_a), (b, proc_b) = instances
    await asyncio.gather(_wait_healthy(a, proc_a), _wait_healthy(b, proc_b))
    sid = new_sid()
    async with aiohttp.ClientSession() as s:
        status, first = await post_signed(s, a + "/twilio/voice", call_params(sid),
                                          signed_url=PUBLIC + "/twilio/voice")
        assert status == 200
        action = parse_twiml(first).find("Gather").get("action")  # type: ignore[union-attr]
        assert action == PUBLIC + "/twilio/gather?seq=1"
        # The load balancer sends the menu answer to the other instance.
        status, second = await post_signed(s, b + "/twilio/gather?seq=1",
                                           call_params(sid, Digits="2"), signed_url=action)
    assert status == 200
    root = parse_twiml(second)
    assert [say.get("language") for say in root.findall("Say")] == ["es-US", "es-US"]
    assert root.find("Dial") is not None


@pytest.fixture
async def own_database(tmp_path: Path) -> AsyncIterator[tuple[str, object]]:
    from pgserver import get_server  # type: ignore[attr-defined]

    pg = get_server(tmp_path / "pg", cleanup_mode="stop")
    yield str(pg.get_uri()), pg
    pg.cleanup()


async def test_database_stopped_mid_call_sends_caller_to_backup(
    own_database: tuple[str, object], tmp_path: Path, content: Content
) -> None:
    dsn, pg = own_database
    port = unused_port()
    settings = make_settings(tmp_path, dsn, port)
    server = TestServer(create_app(settings, content), host="127.0.0.1", port=port)
    await server.start_server()
    try:
        sid = new_sid()
        base = settings.public_url
        async with aiohttp.ClientSession() as s:
            status, first = await post_signed(s, base + "/twilio/voice", call_params(sid))
            assert parse_twiml(first).find("Gather") is not None
            await asyncio.to_thread(pg.cleanup)  # type: ignore[attr-defined]
            status, body = await post_signed(s, base + "/twilio/gather?seq=1",
                                             call_params(sid, Digits="2"))
            async with s.get(base + "/healthz") as health:
                assert health.status == 503
    finally:
        await server.close()
    assert status == 200
    root = parse_twiml(body)
    assert [d.text for d in root.findall("Dial")] == ["+18005550100"]


async def test_database_lost_while_holding_sends_the_caller_to_backup(
    own_database: tuple[str, object], tmp_path: Path, content: Content
) -> None:
    """Nobody can be offered to a holding caller without the database: after about
    a minute on hold the wait URL notices and the REST API takes them to the backup."""
    from ivr import keys
    from ivr.sim import CallScript, NoAnswer, Silence, TwilioWorld, simulate_call
    from ivr.sim.config import SimConfig
    from ivr.sim.transcript import Dialed
    from tests.helpers import staff_all

    dsn, pg = own_database
    # Ana's phone must still be ringing when the database goes: at 0.3 real s a
    # simulated second, her shortest ring (10 s) outlasts stopping PostgreSQL
    # on a loaded machine; at the default scale a missed ring could move the
    # caller on to the next tier first.
    async with TwilioWorld(default=NoAnswer(), time_scale=0.3) as world:
        port = unused_port()
        settings = make_settings(tmp_path, dsn, port, world.api_url)
        server = TestServer(create_app(settings, content), host="127.0.0.1", port=port)
        await server.start_server()
        try:
            await staff_all(server)
            pool = server.app[keys.pool]
            sim = SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                            account_sid=settings.account_sid)
            script = CallScript(from_number="+15125550123", inputs=(Silence(),),
                                hold_patience=600)
            call = asyncio.create_task(simulate_call(sim, script, world=world))
            for _ in range(500):  # until the caller holds and Ana's phone rings unanswered
                # Holding, not only offered: Ana is rung while the menu still
                # plays (an early offer, preoffer.py).
                if await pool.fetchval(
                        "SELECT count(*) FROM offers o JOIN calls c USING (call_sid)"
                        " WHERE o.state = 'ringing' AND c.phase = 'transfer'"):
                    break
                await asyncio.sleep(0.02)
            await asyncio.to_thread(pg.cleanup)  # type: ignore[attr-defined]
            t = await asyncio.wait_for(call, 60)
        finally:
            await server.close()
    assert t.reached_human, t.format()
    # Straight to the backup line: not the regional backup a missed tier would lead to.
    assert [d.targets for d in t.of_type(Dialed)] == [("+18005550100",)]
    assert "/twilio/fallback" in t.format(show_requests=True)
