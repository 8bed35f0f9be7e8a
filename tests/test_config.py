"""Settings from the environment, and secrets generated once when not configured."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.config import ConfigError, Settings


def test_missing_tokens_are_generated_once_and_kept(tmp_path: Path) -> None:
    env = {"IVR_DATA_DIR": str(tmp_path)}
    first = Settings.from_env(env)
    second = Settings.from_env(env)
    assert first.auth_token and first.auth_token == second.auth_token
    assert first.admin_token and first.admin_token != first.auth_token
    assert (tmp_path / "twilio_auth_token").stat().st_mode & 0o077 == 0
    assert any("TWILIO_AUTH_TOKEN" in note for note in first.generated)


def test_configured_values_win(tmp_path: Path) -> None:
    env = {
        "IVR_DATA_DIR": str(tmp_path),
        "TWILIO_AUTH_TOKEN": "tok",
        "IVR_ADMIN_TOKEN": "adm",
        "IVR_CALLER_HASH_KEY": "k",
        "IVR_PUBLIC_URL": "https://ivr.example.org/",
        "IVR_VOSK_MODEL_ES": "/models/es",
        "IVR_DATABASE_URL": "postgresql://db/ivr",
    }
    s = Settings.from_env(env)
    assert (s.auth_token, s.admin_token, s.caller_hash_key) == ("tok", "adm", b"k")
    assert s.public_url == "https://ivr.example.org"
    assert s.vosk_models == {"es": Path("/models/es")}
    assert s.database_url == "postgresql://db/ivr"
    assert s.generated == ()
    assert not (tmp_path / "twilio_auth_token").exists()


def test_public_url_must_be_http(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="IVR_PUBLIC_URL"):
        Settings.from_env({"IVR_DATA_DIR": str(tmp_path), "IVR_PUBLIC_URL": "ivr.example.org"})
