"""How the simulator reaches the server under test, and Twilio's limits."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ivr.sim.errors import ScriptError

DEV_ACCOUNT_SID = "AC00000000000000000000000000000000"


def _check_base_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ScriptError(f"{name}: {url!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise ScriptError(f"{name}: {url!r} must not have a query or fragment")


def _check_path(name: str, path: str | None) -> None:
    if path is not None and not path.startswith("/"):
        raise ScriptError(f"{name}: {path!r} must start with '/'")


@dataclass(frozen=True)
class SimConfig:
    """`server_url` is where requests are sent; `public_url` is the base URL
    Twilio was told about (IVR_PUBLIC_URL) and is what gets signed. Absolute
    URLs under `public_url` found in TwiML are requested on `server_url`."""

    server_url: str
    auth_token: str
    public_url: str | None = None  # None: same as server_url
    account_sid: str = DEV_ACCOUNT_SID
    voice_path: str = "/twilio/voice"
    status_callback_path: str | None = "/twilio/status"
    fallback_path: str | None = "/twilio/fallback"
    request_timeout: float = 15.0  # Twilio's total HTTP timeout per request
    max_requests: int = 100  # loop guard: webhook requests per call
    max_call_seconds: float = 4 * 3600.0
    speaking_rate: float = 2.5  # words per second of <Say> (150 words a minute)

    def __post_init__(self) -> None:
        _check_base_url("server", self.server_url)
        if self.public_url is not None:
            _check_base_url("public url", self.public_url)
        if not self.auth_token:
            raise ScriptError("auth token must not be empty")
        _check_path("voice path", self.voice_path)
        _check_path("status callback path", self.status_callback_path)
        _check_path("fallback path", self.fallback_path)
        if self.request_timeout <= 0 or self.max_requests < 1 or self.speaking_rate <= 0:
            raise ScriptError("timeouts, limits and rates must be positive")

    @property
    def signed_base(self) -> str:
        return (self.public_url or self.server_url).rstrip("/")

    def public(self, path: str) -> str:
        """Absolute public URL of a server path."""
        return self.signed_base + path

    def to_server(self, public_url: str) -> str:
        """Where to actually send a request Twilio would send to `public_url`."""
        base = urlsplit(self.signed_base)
        target = urlsplit(public_url)
        if (target.scheme, target.netloc) != (base.scheme, base.netloc):
            return public_url
        if not (target.path == base.path or target.path.startswith(base.path + "/")):
            return public_url
        server = urlsplit(self.server_url.rstrip("/"))
        path = server.path + target.path[len(base.path) :]
        return urlunsplit((server.scheme, server.netloc, path, target.query, ""))

    def to_server_websocket(self, stream_url: str) -> str:
        """Where to open a `<Stream>` websocket Twilio would open at `stream_url`
        (ws/wss mapped like http/https; the signature stays on `stream_url`)."""
        parts = urlsplit(stream_url)
        web_scheme = {"ws": "http", "wss": "https"}.get(parts.scheme)
        if web_scheme is None:
            return stream_url
        as_web = urlunsplit(parts._replace(scheme=web_scheme))
        mapped = urlsplit(self.to_server(as_web))
        if mapped.geturl() == as_web:
            return stream_url
        return urlunsplit(mapped._replace(scheme="wss" if mapped.scheme == "https" else "ws"))
