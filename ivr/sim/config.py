"""How the simulator reaches the server under test, and Twilio's limits."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ivr.sim.errors import ScriptError

DEV_ACCOUNT_SID = "AC00000000000000000000000000000000"
# Twilio's magic test number, a valid From with test credentials
# (https://www.twilio.com/docs/iam/test-credentials): the number the simulated
# account owns unless told otherwise (the server's development TWILIO_CALLER_ID).
TEST_CALLER_ID = "+15005550006"
# Twilio waits this long in all for an answer to a webhook, connection
# included, then fails the request (11205) and tries the Fallback URL
# ("11205: HTTP connection failure", https://www.twilio.com/docs/api/errors/11205;
# the 15000 ms default and maximum of `tt`, "Webhooks (HTTP callbacks):
# Connection Overrides", https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides).
WEBHOOK_TIMEOUT = 15.0


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
    # The number's Fallback URL when it is not on the server (a TwiML Bin, a
    # second host): wins over fallback_path. Twilio requests it with POST.
    fallback_url: str | None = None
    request_timeout: float = WEBHOOK_TIMEOUT  # simulated seconds Twilio waits for an answer
    # Real seconds per simulated second while waiting for an answer: the
    # wall-clock timeout is request_timeout * timeout_scale (tests shorten it;
    # the caller's clock still moves on by the full request_timeout).
    timeout_scale: float = 1.0
    # Numbers of the account (Twilio numbers, verified caller IDs): the
    # callerIds a <Dial> may use besides the call's own From and To.
    caller_ids: tuple[str, ...] = (TEST_CALLER_ID,)
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
        if self.fallback_url is not None:
            parts = urlsplit(self.fallback_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ScriptError(f"fallback url: {self.fallback_url!r} is not an http(s) URL")
        if (self.request_timeout <= 0 or self.max_requests < 1 or self.speaking_rate <= 0
                or not 0 < self.timeout_scale <= 1):
            raise ScriptError("timeouts, limits and rates must be positive")

    @property
    def number_fallback_url(self) -> str | None:
        """The number's Fallback URL, None when it has none."""
        if self.fallback_url is not None:
            return self.fallback_url
        return None if self.fallback_path is None else self.public(self.fallback_path)

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
