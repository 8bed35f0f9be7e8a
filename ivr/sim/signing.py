"""Request signing exactly as Twilio does it (`X-Twilio-Signature`).

Twilio signs the full URL it requested (scheme, host, path and query string)
followed by the POST parameters sorted by name; a GET request carries its
parameters in the query string and signs no body. The computation is
delegated to the validator of the official helper library, so the server's
check and the simulator's signature can never drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

SIGNATURE_HEADER = "X-Twilio-Signature"


def compute_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Signature of a form POST to `url` (or of a GET when `params` is empty)."""
    signature: str = RequestValidator(auth_token).compute_signature(url, dict(params))
    return signature


def url_with_query(url: str, params: Mapping[str, str]) -> str:
    """`url` with `params` appended to its query string, as Twilio builds GETs."""
    if not params:
        return url
    separator = "&" if "?" in url else "?"
    return url + separator + urlencode(list(params.items()))
