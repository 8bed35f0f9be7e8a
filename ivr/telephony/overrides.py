"""Twilio's webhook connection overrides on the callback URLs we hand out.

A status callback that reaches us while the database is away must not be
lost: Twilio retries a callback whose URL carries a fragment of connection
overrides ("Webhooks (HTTP callbacks): Connection Overrides",
https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides):
`rc` is the number of retries (0 to 5, default 1) and `rp` the failures that
are retried (`ct` connect timeout, `rt` read timeout, `4xx`, `5xx`, or
`all`; default `ct`). `tt` (total time, default and maximum 15000 ms) bounds
all attempts together, so we leave it at its maximum.

The fragment is never sent on the wire (a fragment is not part of an HTTP
request), so the URL Twilio requests, and signs, is the one without it; the
signature check also accepts a signature over the URL with the fragment,
which the documents do not rule out (signature.py).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

# Five retries on any failure: a 503 while the database is away (answered
# only when the local spool cannot keep the callback either), a dead
# instance behind a balancer (connection refused or timed out), a reset.
STATUS_CALLBACK_OVERRIDES = "rc=5&rp=all"


def with_overrides(url: str) -> str:
    """`url` with our connection overrides as its fragment (replacing any)."""
    return urlunsplit(urlsplit(url)._replace(fragment=STATUS_CALLBACK_OVERRIDES))
