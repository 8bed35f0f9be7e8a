"""An embedded PostgreSQL left running by a killed `ivr serve` is adopted, then stopped.

pgserver stops its PostgreSQL when the last process using it exits; a
server killed with -9 never says it left. The next `ivr serve` on the same
IVR_DATA_DIR must adopt the running PostgreSQL (not start a second one, not
fail) and, when it stops in turn, stop it: not leave it running for ever.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # pgserver's own dependency
import pytest
from aiohttp.test_utils import unused_port

from tests.conftest import AUTH_TOKEN, ROOT


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "IVR_DATABASE_URL"}
    return {
        **env,
        "IVR_PUBLIC_URL": "https://ivr.example.test",
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_CALLER_ID": "+15125550199",
        "IVR_DATA_DIR": str(data_dir),
        "IVR_FLOWS_DIR": str(ROOT / "flows"),
        "IVR_PROMPTS_DIR": str(ROOT / "prompts"),
        "IVR_LOG_LEVEL": "WARNING",
    }


def _serve(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = unused_port()
    proc = subprocess.Popen([sys.executable, "-m", "ivr.cli", "serve", "--port", str(port)],
                            env=_env(data_dir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ivr serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail("ivr serve did not become healthy")


def _postmaster(data_dir: Path) -> int:
    return int((data_dir / "pg" / "postmaster.pid").read_text().splitlines()[0])


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    # Whatever happened, no PostgreSQL of this test outlives it.
    pid_file = tmp_path / "pg" / "postmaster.pid"
    if pid_file.exists():
        with contextlib.suppress(psutil.NoSuchProcess, ValueError):
            psutil.Process(_postmaster(tmp_path)).kill()


def test_a_postgresql_left_by_a_killed_server_is_adopted_then_stopped(data_dir: Path) -> None:
    first, url = _serve(data_dir)
    try:
        _wait_healthy(first, url)
        postgres = _postmaster(data_dir)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert psutil.pid_exists(postgres)  # left running by the killed server

    second, url = _serve(data_dir)
    try:
        _wait_healthy(second, url)
        assert _postmaster(data_dir) == postgres  # adopted, not a second one
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
    deadline = time.monotonic() + 20
    while psutil.pid_exists(postgres) and psutil.Process(postgres).status() != "zombie":
        if time.monotonic() > deadline:
            pytest.fail("the embedded PostgreSQL still runs after the last server stopped")
        time.sleep(0.2)
