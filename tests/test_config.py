"""Settings from the environment, read without side effects; secrets generated
only on request (`ivr serve`), once, and kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.config import ConfigError, Settings


def test_reading_the_environment_writes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "var"
    s = Settings.from_env({"IVR_DATA_DIR": str(data)})
    assert (s.auth_token, s.admin_token, s.caller_hash_key) == (None, None, None)
    assert s.generated == ()
    assert not data.exists()


def test_missing_secrets_are_named(tmp_path: Path) -> None:
    s = Settings.from_env({"IVR_DATA_DIR": str(tmp_path), "TWILIO_AUTH_TOKEN": "tok"})
    with pytest.raises(ConfigError, match="IVR_ADMIN_TOKEN, IVR_CALLER_HASH_KEY are not set"):
        s.required_secrets()
    assert s.auth_token_for("signing") == "tok"
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN is not set: signing"):
        Settings.from_env({"IVR_DATA_DIR": str(tmp_path)}).auth_token_for("signing")
    assert list(tmp_path.iterdir()) == []


def test_missing_secrets_are_generated_once_and_kept(tmp_path: Path) -> None:
    env = {"IVR_DATA_DIR": str(tmp_path)}
    first = Settings.from_env(env).with_generated_secrets()
    second = Settings.from_env(env).with_generated_secrets()
    secrets = first.required_secrets()
    assert secrets == second.required_secrets()
    assert secrets.admin_token != secrets.auth_token
    for name in ("twilio_auth_token", "admin_token", "caller_hash_key"):
        assert (tmp_path / name).stat().st_mode & 0o077 == 0
    assert first.generated == (
        f"TWILIO_AUTH_TOKEN read from {tmp_path / 'twilio_auth_token'}",
        f"IVR_ADMIN_TOKEN read from {tmp_path / 'admin_token'}",
        f"IVR_CALLER_HASH_KEY read from {tmp_path / 'caller_hash_key'}",
    )


def test_a_configured_secret_is_never_replaced_by_a_generated_one(tmp_path: Path) -> None:
    env = {"IVR_DATA_DIR": str(tmp_path), "TWILIO_AUTH_TOKEN": "tok"}
    s = Settings.from_env(env).with_generated_secrets()
    assert s.auth_token == "tok"
    assert not (tmp_path / "twilio_auth_token").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["admin_token", "caller_hash_key"]


def test_configured_values_win(tmp_path: Path) -> None:
    env = {
        "IVR_DATA_DIR": str(tmp_path),
        "TWILIO_AUTH_TOKEN": "tok",
        "IVR_ADMIN_TOKEN": "adm",
        "IVR_CALLER_HASH_KEY": "k",
        "IVR_PUBLIC_URL": "https://ivr.example.org/",
        "IVR_VOSK_MODEL_ES": "/models/es",
        "IVR_DATABASE_URL": "postgresql://db/ivr",
        "IVR_FLOWS_DIR": "/content/flows",
        "IVR_PROMPTS_DIR": "/content/prompts",
    }
    s = Settings.from_env(env)
    assert (s.auth_token, s.admin_token, s.caller_hash_key) == ("tok", "adm", b"k")
    assert s.public_url == "https://ivr.example.org"
    assert s.vosk_models == {"es": Path("/models/es")}
    assert s.database_url == "postgresql://db/ivr"
    assert (s.flows_dir, s.prompts_dir) == (Path("/content/flows"), Path("/content/prompts"))
    assert s.with_generated_secrets() == s
    assert list(tmp_path.iterdir()) == []


def test_public_url_must_be_http(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="IVR_PUBLIC_URL"):
        Settings.from_env({"IVR_DATA_DIR": str(tmp_path), "IVR_PUBLIC_URL": "ivr.example.org"})


def test_the_timer_lease_is_configurable(tmp_path: Path) -> None:
    """How long a dead instance's claimed work waits for another (the drills shorten it)."""
    env = {"IVR_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(env).timer_lease_seconds is None  # the worker's own, 30 s
    assert Settings.from_env({**env, "IVR_TIMER_LEASE_SECONDS": "3"}).timer_lease_seconds == 3.0
    with pytest.raises(ConfigError, match="IVR_TIMER_LEASE_SECONDS must be a number"):
        Settings.from_env({**env, "IVR_TIMER_LEASE_SECONDS": "soon"})
