"""Settings from the environment, read once at start-up.

The names are a contract (DESIGN.md). Reading them has no side effects: a
secret that is not configured is None. Only `ivr serve` fills the missing
ones in (`with_generated_secrets`), from files it generates once in the
data directory, so a development server is never open to unsigned requests
and keeps the same tokens across restarts.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from ivr.errors import ConfigError as ConfigError  # re-exported for callers

# Twilio's magic test number (valid as a From for test credentials): a
# development default only; `ivr serve` requires TWILIO_CALLER_ID off loopback.
DEV_CALLER_ID = "+15005550006"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")

# Each secret: its variable, and the file `ivr serve` generates it into when unset.
AUTH_TOKEN_VAR = "TWILIO_AUTH_TOKEN"
ADMIN_TOKEN_VAR = "IVR_ADMIN_TOKEN"
HASH_KEY_VAR = "IVR_CALLER_HASH_KEY"
SECRET_FILES = {
    AUTH_TOKEN_VAR: "twilio_auth_token",
    ADMIN_TOKEN_VAR: "admin_token",
    HASH_KEY_VAR: "caller_hash_key",
}


@dataclass(frozen=True)
class Secrets:
    """The secrets a server cannot run without, all configured."""

    auth_token: str  # checks X-Twilio-Signature, signs REST calls
    admin_token: str  # bearer token of /admin
    caller_hash_key: bytes  # key of the caller-number hash


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    public_url: str
    # Secrets: None when not configured (see `required_secrets`,
    # `with_generated_secrets`).
    auth_token: str | None
    account_sid: str
    admin_token: str | None
    flows_dir: Path
    prompts_dir: Path
    # A Twilio number of the account: the From of counselor legs and the
    # callerId of <Dial>s whose caller ID Twilio could refuse (SIP, anonymous).
    caller_id: str = DEV_CALLER_ID
    database_url: str | None = None
    backup_number: str | None = None
    caller_hash_key: bytes | None = None
    twilio_api_url: str = "https://api.twilio.com"
    vosk_models: Mapping[str, Path] = field(default_factory=dict)
    # After a call, a counselor is in wrap-up this long before being offered again.
    wrap_up_seconds: float = 60.0
    # Bearer token GET /metrics requires; None: open (IVR_METRICS_TOKEN).
    metrics_token: str | None = None
    # How long a timer claimed by an instance stays its own (IVR_TIMER_LEASE_SECONDS):
    # a dead instance's work waits this long for another; longer than any REST request.
    # None: the worker's own (ivr.telephony.worker.LEASE, 30 s).
    timer_lease_seconds: float | None = None
    # Where `with_generated_secrets` found or made each secret, for `ivr serve` to say.
    generated: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the environment; nothing else is read or written."""
        env = os.environ if env is None else env
        public_url = env.get("IVR_PUBLIC_URL", "http://127.0.0.1:8080").rstrip("/")
        if not public_url.startswith(("http://", "https://")):
            raise ConfigError(f"IVR_PUBLIC_URL must start with http:// or https://: {public_url}")
        hash_key = env.get(HASH_KEY_VAR) or None
        return cls(
            data_dir=Path(env.get("IVR_DATA_DIR", "./var")).resolve(),
            public_url=public_url,
            auth_token=env.get(AUTH_TOKEN_VAR) or None,
            account_sid=env.get("TWILIO_ACCOUNT_SID", "AC" + "0" * 32),
            admin_token=env.get(ADMIN_TOKEN_VAR) or None,
            flows_dir=Path(env.get("IVR_FLOWS_DIR", "./flows")),
            prompts_dir=Path(env.get("IVR_PROMPTS_DIR", "./prompts")),
            caller_id=_caller_id(env),
            database_url=env.get("IVR_DATABASE_URL") or None,
            backup_number=_backup_number(env),
            caller_hash_key=None if hash_key is None else hash_key.encode(),
            twilio_api_url=env.get("IVR_TWILIO_API_URL", "https://api.twilio.com").rstrip("/"),
            vosk_models=_vosk_models(env),
            wrap_up_seconds=_seconds(env, "IVR_WRAP_UP_SECONDS", 60.0),
            metrics_token=env.get("IVR_METRICS_TOKEN", "").strip() or None,
            timer_lease_seconds=(_seconds(env, "IVR_TIMER_LEASE_SECONDS", 0.0)
                                 if env.get("IVR_TIMER_LEASE_SECONDS", "").strip() else None),
        )

    def required_secrets(self) -> Secrets:
        """The secrets a server needs; ConfigError naming every one not configured."""
        auth, admin, key = self.auth_token, self.admin_token, self.caller_hash_key
        if auth and admin and key:
            return Secrets(auth_token=auth, admin_token=admin, caller_hash_key=key)
        missing = [var for var, value in ((AUTH_TOKEN_VAR, auth), (ADMIN_TOKEN_VAR, admin),
                                          (HASH_KEY_VAR, key)) if not value]
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(f"{', '.join(missing)} {verb} not set: a server needs every secret "
                          f"(`ivr serve` generates missing ones in {self.data_dir})")

    def auth_token_for(self, purpose: str) -> str:
        """TWILIO_AUTH_TOKEN for a command that needs it; ConfigError saying why when unset."""
        if self.auth_token:
            return self.auth_token
        stored = self.data_dir / SECRET_FILES[AUTH_TOKEN_VAR]
        raise ConfigError(f"{AUTH_TOKEN_VAR} is not set: {purpose} (a development `ivr serve` "
                          f"keeps the token it generated in {stored})")

    def with_generated_secrets(self) -> Settings:
        """For `ivr serve`: every secret not configured, generated once into the data
        directory and kept there (mode 0600), so restarts keep the same tokens.
        Writes files: call it before the event loop runs."""
        generated: list[str] = []

        def stored(var: str, value: str | None) -> str:
            if value:
                return value
            path = self.data_dir / SECRET_FILES[var]
            generated.append(f"{var} read from {path}")
            return _stored_secret(path)

        return replace(
            self,
            auth_token=stored(AUTH_TOKEN_VAR, self.auth_token),
            admin_token=stored(ADMIN_TOKEN_VAR, self.admin_token),
            caller_hash_key=self.caller_hash_key or stored(HASH_KEY_VAR, None).encode(),
            generated=tuple(generated),
        )

    def check_for_serving(self) -> None:
        """What `ivr serve` needs beyond what every command reads; ConfigError if not met.

        Off loopback, Twilio is really calling: it opens media streams over
        wss only, so the public URL must be https, and the <Dial>s and
        counselor legs need a caller ID of the account (the development
        default is a test-credentials number that real calls refuse).
        """
        if is_loopback_url(self.public_url):
            return
        if urlsplit(self.public_url).scheme != "https":
            raise ConfigError(
                f"IVR_PUBLIC_URL must be an https:// URL when it is not a loopback address "
                f"(Twilio connects media streams over wss only): {self.public_url}"
            )
        if self.caller_id == DEV_CALLER_ID:
            raise ConfigError(
                "TWILIO_CALLER_ID is required when IVR_PUBLIC_URL is not a loopback address: "
                "set it to a phone number of your Twilio account, in E.164 form (+1...)"
            )


def _caller_id(env: Mapping[str, str]) -> str:
    """TWILIO_CALLER_ID, checked; the development default when unset."""
    value = env.get("TWILIO_CALLER_ID", "").strip()
    if not value:
        return DEV_CALLER_ID
    if not _E164.match(value):
        raise ConfigError(
            f"TWILIO_CALLER_ID must be a phone number in E.164 form like +15125550100: {value!r}"
        )
    return value


def _backup_number(env: Mapping[str, str]) -> str | None:
    """IVR_BACKUP_NUMBER, stripped; None when unset (the routing plan's national backup)."""
    return env.get("IVR_BACKUP_NUMBER", "").strip() or None


def is_loopback_url(url: str) -> bool:
    """Whether a URL's host is this machine (127.0.0.0/8, ::1, localhost): development."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {text!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


def _vosk_models(env: Mapping[str, str]) -> dict[str, Path]:
    """{language: model dir} from every IVR_VOSK_MODEL_<LANG> that is set."""
    return {
        name.removeprefix("IVR_VOSK_MODEL_").lower(): Path(value.strip())
        for name, value in env.items()
        if name.startswith("IVR_VOSK_MODEL_") and value.strip()
    }


def _stored_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside then linked: two instances starting together both end up
    # with whichever secret was linked first, never with a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    tmp.write_text(secrets.token_hex(20) + "\n")
    tmp.chmod(0o600)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()
