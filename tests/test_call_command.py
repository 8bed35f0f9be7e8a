"""`ivr call` cannot touch a real line: it runs on a database of its own."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ivr.cli import main
from ivr.content import Content
from ivr.storage.counselors import set_presence, sync_counselors
from ivr.storage.database import open_pool
from tests.conftest import ROOT


async def _state(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        calls = await conn.fetchval("SELECT count(*) FROM calls")
        staff = await conn.fetch(
            "SELECT id, presence, presence_since FROM counselors ORDER BY id")
    finally:
        await conn.close()
    return {"calls": calls, "staff": [tuple(r) for r in staff]}


@pytest.fixture
async def real_line(
    dsn: str, content: Content, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Path]:
    """A configured line: its database (Ana on shift, everyone else off), its data
    directory, and a temporary directory watched for leftovers."""
    pool = await open_pool(dsn, min_size=1, max_size=1)
    try:
        await sync_counselors(pool, content.plan)
        await set_presence(pool, "tx-ana", "available")
    finally:
        await pool.close()
    dirs = {"data": tmp_path / "var", "temp": tmp_path / "tmp"}
    dirs["temp"].mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(dirs["temp"]))
    monkeypatch.setenv("IVR_DATABASE_URL", dsn)
    monkeypatch.setenv("IVR_DATA_DIR", str(dirs["data"]))
    monkeypatch.setenv("IVR_FLOWS_DIR", str(ROOT / "flows"))
    monkeypatch.setenv("IVR_PROMPTS_DIR", str(ROOT / "prompts"))
    monkeypatch.setenv("IVR_LOG_LEVEL", "WARNING")
    return dirs


async def test_a_simulated_call_leaves_the_configured_line_alone(
    dsn: str, real_line: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    before = await _state(dsn)
    assert await asyncio.to_thread(main, ["call", "--press", "2"]) == 0
    assert "counselor" in capsys.readouterr().out  # the call happened, somewhere else
    assert await _state(dsn) == before
    assert before["calls"] == 0
    assert not real_line["data"].exists()  # no secret, no embedded database there
    assert list(real_line["temp"].iterdir()) == []  # its own database is gone too


async def test_a_database_given_explicitly_is_used_but_nobody_is_staffed(
    dsn: str, real_line: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pool = await open_pool(dsn, min_size=1, max_size=1)
    try:  # nobody on shift: a call placed on this line goes to the dial steps
        await set_presence(pool, "tx-ana", "offline")
    finally:
        await pool.close()
    before = await _state(dsn)
    assert await asyncio.to_thread(main, ["call", "--database", dsn, "--silence"]) == 0
    after = await _state(dsn)
    assert after["calls"] == 1  # recorded where it was told to
    assert after["staff"] == before["staff"]  # and nobody was made available
    assert not real_line["data"].exists()


def test_sip_headers_without_sip_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "--sip-header", "X-Georoute-State=TX"]) == 2
    err = capsys.readouterr().err
    assert "SIP domain" in err and "--sip" in err


def test_database_with_server_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "--server", "http://127.0.0.1:9", "--database", "postgresql://x"]) == 2
    assert "--database" in capsys.readouterr().err


def test_a_server_given_needs_the_auth_token_to_sign(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Twilio signs every request with the account's auth token: without it the
    call cannot be placed, and nothing is generated in its place."""
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("IVR_DATA_DIR", str(tmp_path / "var"))
    assert main(["call", "--server", "http://127.0.0.1:9", "--silence"]) == 2
    err = capsys.readouterr().err
    assert "TWILIO_AUTH_TOKEN is not set" in err and "--server" in err
    assert not (tmp_path / "var").exists()
