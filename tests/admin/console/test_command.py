"""`ivr tokens`: issue, list and revoke console tokens against a real database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from aiohttp.test_utils import TestServer

from ivr.config import Settings
from tests.admin.console.helpers import browser, sign_in


async def _ivr(dsn: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IVR_DATABASE_URL": dsn, "IVR_DATA_DIR": str(tmp_path / "var"),
           "IVR_LOG_LEVEL": "WARNING"}
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "ivr.cli", "tokens", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False)


async def test_issue_sign_in_list_revoke(
    server: TestServer, settings: Settings, dsn: str, tmp_path: Path
) -> None:
    issued = await _ivr(dsn, tmp_path, "issue", "--counselor", "tx-ana")
    assert issued.returncode == 0, issued.stderr
    first, secret = issued.stdout.strip().splitlines()
    assert first.startswith("token 1 for counselor tx-ana")
    assert secret.startswith("ivrc_")

    listed = await _ivr(dsn, tmp_path, "list")
    assert listed.returncode == 0
    assert "1\tcounselor\ttx-ana" in listed.stdout and "active" in listed.stdout
    assert secret not in listed.stdout  # only its digest is kept

    async with browser() as session:
        status, html = await sign_in(session, settings.public_url, secret)
        assert status == 200 and "Counselor console" in html
        revoked = await _ivr(dsn, tmp_path, "revoke", "1")
        assert revoked.returncode == 0, revoked.stderr
        async with session.get(f"{settings.public_url}/console/") as resp:
            assert resp.url.path == "/console/signin"  # its session ended too
    async with browser() as session:
        status, _ = await sign_in(session, settings.public_url, secret)
    assert status == 401
    assert "revoked" in (await _ivr(dsn, tmp_path, "list")).stdout


async def test_unknown_counselor_and_token_are_refused(
    server: TestServer, dsn: str, tmp_path: Path
) -> None:
    unknown = await _ivr(dsn, tmp_path, "issue", "--counselor", "nobody")
    assert unknown.returncode == 2
    assert "no counselor 'nobody'" in unknown.stderr
    missing = await _ivr(dsn, tmp_path, "revoke", "42")
    assert missing.returncode == 2
    assert "no token 42" in missing.stderr
    both = await _ivr(dsn, tmp_path, "issue", "--counselor", "tx-ana", "--supervisor", "Dana")
    assert both.returncode == 2  # argparse: one or the other
