"""X-Twilio-Signature checks for every /twilio/* request.

Twilio signs the URL it was configured with (our public URL), not the Host
our process sees behind a proxy, so the URL checked is always
IVR_PUBLIC_URL + the raw path and query of the request. A request that
fails gets 403 before any handler runs: nothing else happens.

The one exception is the number's Fallback URL: Twilio requests it when
something already went wrong, it answers a fixed document (dial the backup
line) with no side effects, and a caller must never lose that last resort
to a signature problem (a rotated token, a proxy rewriting the URL).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import MultiDict, MultiDictProxy
from twilio.request_validator import RequestValidator, get_signature_algorithm

from ivr import logs
from ivr.telephony.overrides import with_overrides

log = logging.getLogger(__name__)

FORM_KEY = web.RequestKey("form", MultiDictProxy[str])
UNSIGNED_PATHS = frozenset({"/twilio/fallback"})
# Seconds a request's body may take to arrive after its headers (Twilio's
# bodies are a few hundred bytes, sent at once).
BODY_TIMEOUT = 10.0
# Uploads read as a stream by their handler, with their own size and time
# limits (a content archive may be tens of MiB): read here, they would be
# cut at the server's client_max_size and gone from the handler's stream.
STREAMED_BODIES = frozenset({"/admin/content/publish"})
# Callbacks whose URLs carry connection overrides (overrides.py).
OVERRIDDEN_PATHS = frozenset({"/twilio/status", "/twilio/leg-status"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The X-Twilio-Webhooks-Signature-Settings algorithms and their digests
# (twilio-python's RequestValidator knows the same two).
DIGESTS = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}


def signature(mac: hmac.HMAC, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's signature of a request: the URL, then each parameter's name and
    value, sorted by name (case-sensitive) and, for a repeated name, by value,
    an identical pair counted once, as twilio-python's RequestValidator signs;
    the HMAC of that in UTF-8 (`mac`: keyed with the auth token, given no
    message yet), in base64.

    One sort of the pairs does the name and value ordering at once (4.8 us for
    a gather form where the validator took 10.6), and the keyed HMAC is
    copied rather than keyed again (the check 16 -> 12 us a webhook in the
    loaded server; issue 12)."""
    text = url + "".join([name + value for name, value in sorted(set(params))])
    keyed = mac.copy()
    keyed.update(text.encode())
    return base64.b64encode(keyed.digest()).decode()


class SignatureChecker:
    def __init__(self, auth_token: str, public_url: str) -> None:
        self._validator = RequestValidator(auth_token)
        self._macs = {name: hmac.new(auth_token.encode(), digestmod=digest)
                      for name, digest in DIGESTS.items()}
        self.public_url = public_url
        parts = urlsplit(public_url)
        ws_scheme = "wss" if parts.scheme == "https" else "ws"
        self._ws_base = f"{ws_scheme}://{parts.netloc}{parts.path}"

    def ok(self, url: str, params: Mapping[str, str], request: web.Request) -> bool:
        given = request.headers.get("X-Twilio-Signature", "")
        if not given or not given.isascii():
            # A base64 HMAC is ASCII; anything else is forged (and would make
            # compare_digest raise rather than answer).
            return False
        algorithm = get_signature_algorithm(
            request.headers.get("X-Twilio-Webhooks-Signature-Settings", "")
        )
        mac = self._macs.get(algorithm.upper())
        if mac is None:  # an algorithm we do not know
            return False
        # The URL as configured is what Twilio signs: one HMAC settles it. Only
        # a mismatch pays for the validator's with-and-without-port retries.
        if hmac.compare_digest(signature(mac, url, params.items()), given):
            return True
        return bool(self._validator.validate(url, params, given, algorithm))

    def http_url(self, request: web.Request) -> str:
        return self.public_url + request.raw_path

    def ws_url(self, request: web.Request) -> str:
        return self._ws_base + request.raw_path


def middleware(checker: SignatureChecker) -> Middleware:
    @web.middleware
    async def check_signature(request: web.Request, handler: Handler) -> web.StreamResponse:
        await _body_in_time(request)
        if not request.path.startswith("/twilio/") or request.path in UNSIGNED_PATHS:
            return await handler(request)
        if request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket":
            # Media Streams sign the stream URL as written in the TwiML, no params.
            if not checker.ok(checker.ws_url(request), {}, request):
                log.warning("forged or unsigned websocket upgrade to %s", request.path)
                raise web.HTTPForbidden(text="invalid Twilio signature\n")
            return await handler(request)
        if request.method != "POST":
            raise web.HTTPMethodNotAllowed(request.method, ["POST"])
        if request.content_type not in ("application/x-www-form-urlencoded", ""):
            raise web.HTTPBadRequest(text="expected a form-encoded body\n")
        try:
            form = await request.post()  # over client_max_size: aiohttp answers 413
        except (LookupError, UnicodeDecodeError, ValueError):
            # An unknown charset, bytes that are not in it: no form to verify.
            raise web.HTTPBadRequest(text="the form body cannot be decoded\n") from None
        params: MultiDict[str] = MultiDict(
            [(k, v) for k, v in form.items() if isinstance(v, str)]
        )
        url = checker.http_url(request)
        if not checker.ok(url, params, request) and not (
            # Twilio may sign the callback URL with its connection overrides
            # fragment as it was given (overrides.py): accept that one too.
            request.path in OVERRIDDEN_PATHS
            and checker.ok(with_overrides(url), params, request)
        ):
            log.warning("forged or unsigned request to %s", request.path)
            raise web.HTTPForbidden(text="invalid Twilio signature\n")
        request[FORM_KEY] = MultiDictProxy(params)
        sid = params.get("CallSid")
        if sid:  # this request's log lines are about its call (reset by ivr.monitoring)
            logs.call_sid.set(sid)
        return await handler(request)

    return check_signature


async def _body_in_time(request: web.Request) -> None:
    """Read any request's body (Twilio's, the admin API's) within BODY_TIMEOUT.

    A body that never arrives would hold a handler for ever, and a peer that
    gives up mid-body made aiohttp log a traceback per request: here either
    is one warning line and an answer (408, or 400 to nobody). The body is
    kept by aiohttp: handlers read it again at no cost.
    """
    if not request.body_exists or request.path in STREAMED_BODIES:
        return
    if request.content.is_eof():
        # All of it arrived with the headers (a webhook's few hundred bytes
        # nearly always do): nothing can keep the read waiting. Arming and
        # disarming the timer anyway was about 2% of a webhook's server time.
        await request.read()
        return
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            await request.read()  # over client_max_size: aiohttp answers 413
    except TimeoutError:
        log.warning("%s %s: the body did not arrive within %g s; dropped",
                    request.method, request.path, BODY_TIMEOUT)
        raise web.HTTPRequestTimeout(text="the body did not arrive\n",
                                     headers={"Connection": "close"}) from None
    except ConnectionResetError:  # aiohttp's "Connection lost" while reading
        log.warning("%s %s: the peer left before its body arrived", request.method,
                    request.path)
        raise web.HTTPBadRequest(text="incomplete body\n") from None


def form_of(request: web.Request) -> MultiDictProxy[str]:
    form: MultiDictProxy[str] = request[FORM_KEY]
    return form
