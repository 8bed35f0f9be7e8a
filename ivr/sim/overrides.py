"""Twilio's webhook connection overrides, as the simulated Twilio honours them.

"Webhooks (HTTP callbacks): Connection Overrides",
https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides:
overrides are key=value pairs, joined by `&`, in the webhook URL's fragment
(after `#`). `rc` is the retry count (0 to 5; default 1), `rp` the retry
policy (`ct` connect timeout, `rt` read timeout, `4xx`, `5xx`, `all`;
default `ct`), `tt` the total time for all attempts including retries (100
to 15000 ms, default 15000). A fragment is not part of an HTTP request: the
request goes to, and is signed over, the URL without it.

Twilio applies its defaults (one retry on a connect timeout) to every
webhook; the simulator retries only where a URL carries overrides, so that
runs without them stay as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

MAX_RETRIES = 5
POLICIES = frozenset({"ct", "rt", "4xx", "5xx", "all"})
DEFAULT_TOTAL_MS = 15000


@dataclass(frozen=True)
class Overrides:
    retries: int = 0
    policy: frozenset[str] = frozenset()
    total_seconds: float = DEFAULT_TOTAL_MS / 1000

    def retry_on(self, status: int | None, timed_out: bool) -> bool:
        """Whether an attempt that ended so is retried under this policy."""
        if "all" in self.policy:
            return True
        if status is None:
            return ("rt" if timed_out else "ct") in self.policy
        return (f"{status // 100}xx" in self.policy) and status >= 400


def split(url: str) -> tuple[str, Overrides]:
    """The URL to request and sign (no fragment), and its overrides."""
    parts = urlsplit(url)
    if not parts.fragment:
        return url, Overrides()
    bare = urlunsplit(parts._replace(fragment=""))
    fields = dict(parse_qsl(parts.fragment))
    try:
        retries = min(MAX_RETRIES, max(0, int(fields.get("rc", "1"))))
    except ValueError:
        retries = 0
    policy = frozenset(p for p in fields.get("rp", "ct").split(",") if p in POLICIES)
    try:
        total_ms = min(DEFAULT_TOTAL_MS, max(100, int(fields.get("tt", DEFAULT_TOTAL_MS))))
    except ValueError:
        total_ms = DEFAULT_TOTAL_MS
    return bare, Overrides(retries, policy, total_ms / 1000)
