"""`ivr publish`, straight into the database or through a server's admin
API, and `kill -HUP` of `ivr serve`: each as a real process."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import unused_port

from ivr.config import Settings
from ivr.content import load_content
from ivr.publishing.versions import content_hash
from tests.conftest import AUTH_TOKEN, ROOT
from tests.e2e.test_resilience import _wait_healthy
from tests.helpers import server_on
from tests.publishing.test_publish import CHANGED, SHIPPED
from tests.waiting import eventually, has

BROKEN = ("next: spanish", "next: nowhere")


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "flows", tmp_path / "own" / "flows")
    shutil.copytree(ROOT / "prompts", tmp_path / "own" / "prompts")
    return tmp_path / "own"


def env_for(folders: Path, dsn: str, data: Path, **more: str) -> dict[str, str]:
    return {**os.environ, "IVR_DATABASE_URL": dsn, "IVR_DATA_DIR": str(data),
            "IVR_FLOWS_DIR": str(folders / "flows"), "IVR_PROMPTS_DIR": str(folders / "prompts"),
            "IVR_LOG_LEVEL": "WARNING", **more}


async def ivr(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "ivr.cli", *args], env=env,
        capture_output=True, text=True, timeout=120)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


async def active_version(dsn: str) -> str | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT version FROM content_active")  # type: ignore[no-any-return]
    finally:
        await conn.close()


async def test_publish_into_the_database(folders: Path, dsn: str, tmp_path: Path) -> None:
    env = env_for(folders, dsn, tmp_path / "data")
    done = await ivr(env, "publish")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == content_hash(SHIPPED)

    flow = folders / "flows" / "988.yaml"
    await asyncio.to_thread(edit, flow, *BROKEN)
    refused = await ivr(env, "publish")
    assert refused.returncode == 2, refused.stderr
    # Named as on disk, so an editor jumps to the line.
    assert any(line.startswith(f"{flow}:") and "nowhere" in line
               for line in refused.stdout.splitlines()), refused.stdout
    assert await active_version(dsn) == content_hash(SHIPPED)


@pytest.fixture
async def base(settings: Settings) -> AsyncIterator[str]:
    content = await asyncio.to_thread(load_content, settings.flows_dir, settings.prompts_dir)
    async with server_on(settings, content):
        yield settings.public_url


async def serving(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as resp:
        return str((await resp.json())["content_version"])


async def test_publish_through_a_server(
    base: str, folders: Path, tmp_path: Path, settings: Settings
) -> None:
    env = env_for(folders, "postgresql://nowhere.invalid/x", tmp_path / "data",
                  IVR_ADMIN_TOKEN=str(settings.admin_token))
    await asyncio.to_thread(edit, folders / "flows" / "988.yaml",
                            "transfer: {line: veterans,", "transfer: {queue: crisis,")
    done = await ivr(env, "publish", "--server", base)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == content_hash(CHANGED)
    assert await serving(base) == content_hash(CHANGED)

    await asyncio.to_thread(edit, folders / "flows" / "988.yaml", *BROKEN)
    refused = await ivr(env, "publish", "--server", base)
    assert refused.returncode == 2, refused.stderr
    assert any(line.startswith(f"{folders / 'flows' / '988.yaml'}:") and "nowhere" in line
               for line in refused.stdout.splitlines()), refused.stdout
    assert await serving(base) == content_hash(CHANGED)

    wrong = await ivr({**env, "IVR_ADMIN_TOKEN": "wrong"}, "publish", "--server", base)
    assert wrong.returncode == 1 and "401" in wrong.stderr


async def test_sighup_publishes_the_folders(folders: Path, dsn: str, tmp_path: Path) -> None:
    port = unused_port()
    env = env_for(folders, dsn, tmp_path / "data", TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                  IVR_ADMIN_TOKEN="hup-admin", IVR_TWILIO_API_URL="http://127.0.0.1:9",
                  IVR_PUBLIC_URL=f"http://127.0.0.1:{port}")
    # Popen returns at once; only waiting on a process would block the loop.
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "ivr.cli", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_healthy(url, proc)
        assert await serving(url) == content_hash(SHIPPED)
        await asyncio.to_thread(edit, folders / "flows" / "988.yaml",
                                "transfer: {line: veterans,", "transfer: {queue: crisis,")
        proc.send_signal(signal.SIGHUP)
        await eventually(lambda: has(serving(url), content_hash(CHANGED)), "HUP published the edit",
                    seconds=20)
        assert await serving(url) == content_hash(CHANGED)
        assert proc.poll() is None  # HUP did not stop it
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
