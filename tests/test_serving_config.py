"""What `ivr serve` refuses to start with: a caller ID and https off loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import unused_port

from ivr.config import DEV_CALLER_ID, ConfigError, Settings
from tests.conftest import ROOT

CALLER_ID = "+15125550199"


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"IVR_DATA_DIR": str(tmp_path), **env})


@pytest.mark.parametrize("value", ["5125550199", "+1 512 555 0199", "sip:+15125550199@x.org",
                                   "anonymous", "+0123456789"])
def test_the_caller_id_must_be_e164(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="TWILIO_CALLER_ID"):
        settings(tmp_path, TWILIO_CALLER_ID=value)


def test_the_caller_id_is_read(tmp_path: Path) -> None:
    assert settings(tmp_path, TWILIO_CALLER_ID=f" {CALLER_ID} ").caller_id == CALLER_ID
    assert settings(tmp_path).caller_id == DEV_CALLER_ID


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://127.8.9.10", "http://[::1]:80",
                                 "http://localhost:8080/ivr"])
def test_loopback_needs_neither_https_nor_a_caller_id(tmp_path: Path, url: str) -> None:
    settings(tmp_path, IVR_PUBLIC_URL=url).check_for_serving()


def test_off_loopback_the_caller_id_is_required(tmp_path: Path) -> None:
    s = settings(tmp_path, IVR_PUBLIC_URL="https://ivr.example.org")
    with pytest.raises(ConfigError, match="TWILIO_CALLER_ID is required"):
        s.check_for_serving()


@pytest.mark.parametrize("url", ["http://ivr.example.org", "http://10.0.0.5:8080",
                                 "http://localhost.example.org"])
def test_off_loopback_the_public_url_must_be_https(tmp_path: Path, url: str) -> None:
    s = settings(tmp_path, IVR_PUBLIC_URL=url, TWILIO_CALLER_ID=CALLER_ID)
    with pytest.raises(ConfigError, match="IVR_PUBLIC_URL must be an https://"):
        s.check_for_serving()


def test_https_with_a_caller_id_is_ready(tmp_path: Path) -> None:
    settings(tmp_path, IVR_PUBLIC_URL="https://ivr.example.org",
             TWILIO_CALLER_ID=CALLER_ID).check_for_serving()


def test_other_commands_read_the_settings_without_the_serving_rules(tmp_path: Path) -> None:
    s = settings(tmp_path, IVR_PUBLIC_URL="http://ivr.example.org")
    assert s.public_url == "http://ivr.example.org" and s.caller_id == DEV_CALLER_ID


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"IVR_PUBLIC_URL": "https://ivr.example.org"}, "TWILIO_CALLER_ID"),
        ({"IVR_PUBLIC_URL": "http://ivr.example.org", "TWILIO_CALLER_ID": CALLER_ID},
         "IVR_PUBLIC_URL"),
        ({"TWILIO_CALLER_ID": "5125550199"}, "TWILIO_CALLER_ID"),
    ],
)
def test_serve_refuses_to_start(tmp_path: Path, env: dict[str, str], named: str) -> None:
    base = {k: v for k, v in os.environ.items()
            if k not in ("TWILIO_CALLER_ID", "IVR_PUBLIC_URL", "IVR_DATABASE_URL")}
    # A server that wrongly starts finds no database (and starts no embedded one),
    # or is stopped by the timeout: the test fails, never hangs.
    nowhere = "postgresql://127.0.0.1:9/none"
    proc = subprocess.run(
        [sys.executable, "-m", "ivr.cli", "serve", "--port", str(unused_port())],
        env={**base, "IVR_DATA_DIR": str(tmp_path), "IVR_DATABASE_URL": nowhere, **env},
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "configuration error" in proc.stderr and named in proc.stderr


def test_serve_generates_the_missing_secrets_and_says_where(tmp_path: Path) -> None:
    data = tmp_path / "var"
    base = {k: v for k, v in os.environ.items()
            if k not in ("TWILIO_AUTH_TOKEN", "IVR_ADMIN_TOKEN", "IVR_CALLER_HASH_KEY",
                         "TWILIO_CALLER_ID", "IVR_PUBLIC_URL", "IVR_DATABASE_URL")}
    # The secrets are generated before the server starts; it then stops on a
    # database that does not answer.
    proc = subprocess.run(
        [sys.executable, "-m", "ivr.cli", "serve", "--port", str(unused_port())],
        env={**base, "IVR_DATA_DIR": str(data), "IVR_FLOWS_DIR": str(ROOT / "flows"),
             "IVR_PROMPTS_DIR": str(ROOT / "prompts"),
             "IVR_DATABASE_URL": "postgresql://127.0.0.1:9/none"},
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1 and "cannot connect to the database" in proc.stderr
    for variable, name in [("TWILIO_AUTH_TOKEN", "twilio_auth_token"),
                           ("IVR_ADMIN_TOKEN", "admin_token"),
                           ("IVR_CALLER_HASH_KEY", "caller_hash_key")]:
        assert f"{variable} read from {data / name} (generated" in proc.stderr
        assert (data / name).stat().st_mode & 0o077 == 0
