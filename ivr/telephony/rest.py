"""The one module that calls Twilio's REST API (counselor legs, redirects).

Uses the `twilio` package's client with its asynchronous HTTP client, with
the API base URL configurable (IVR_TWILIO_API_URL) so tests can point it at
the simulator. Errors that mean "that call has already ended" are not
failures: whatever we wanted to stop has stopped.

Every other failure is one of two kinds, and the difference decides who
pays for it:

- `AddressError`: Twilio refused the number or address being dialled (it is
  invalid, unreachable, or outside what the account may call). It is about
  that one destination: the counselor who gave it is not reachable there.
- `ServiceError`: anything else: credentials, the account, permissions, our
  own `From` or request, rate limits, Twilio's 5xx, timeouts, the network.
  Nobody on the staff caused it and every request would meet it: the API is
  unusable for now, whoever's leg happened to run into it.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import ClientSession, ClientTimeout
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from ivr.errors import TwilioError

log = logging.getLogger(__name__)

# 20404: no such call (it ended and aged out); 21220: the call is not in
# progress (already completed or canceled), so it cannot be updated.
ALREADY_ENDED = frozenset({20404, 21220})
REQUEST_TIMEOUT = 10.0

# Twilio error codes (https://www.twilio.com/docs/api/errors/<code>) that
# are about the destination of a call being placed, not about us.
ADDRESS_CODES: dict[int, str] = {
    21211: "invalid 'To' phone number",
    21214: "'To' phone number cannot be reached",
    21215: "the account is not authorized to call this number (geographic permissions)",
    21217: "phone number does not appear to be valid",
    13223: "invalid phone number format",
    13224: "Twilio does not support calling this number or the number is invalid",
    13225: "calling this number is forbidden (high-risk destination)",
}
# Left out on purpose although they name a destination: 21216 ("call blocked
# by Twilio") is also what every +1 call gets while the account lacks a
# Primary Customer Profile: account-wide, so it must not empty the staff.

# What an operator should look at for the usual service errors.
SERVICE_HINTS: dict[int, str] = {
    20003: "authentication failed: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
    20005: "the account is not active",
    20008: "test credentials cannot do this: set the live TWILIO_ACCOUNT_SID and "
           "TWILIO_AUTH_TOKEN",
    21210: "the 'From' number is not a number of the account: check TWILIO_CALLER_ID",
    21212: "the 'From' number is invalid: check TWILIO_CALLER_ID",
    20429: "too many requests",
}


class RestError(TwilioError):
    """Twilio refused or failed a request that was meant to change something."""

    def __init__(self, message: str, *, status: int | None = None,
                 code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class AddressError(RestError):
    """Twilio refused the address being dialled: about that destination only."""


class ServiceError(RestError):
    """The API cannot be used now (credentials, account, limits, outage, network)."""

    @property
    def credentials(self) -> bool:
        """Twilio does not accept our account SID and auth token."""
        return self.status == 401 or self.code == 20003


def classify(exc: TwilioRestException, doing: str, *, dialling: bool) -> RestError:
    """The typed error for a refusal; only a call being placed can have an address error."""
    status = int(exc.status) if exc.status is not None else None
    code = int(exc.code) if exc.code is not None else None
    if dialling and code in ADDRESS_CODES:
        return AddressError(f"{doing}: Twilio error {code}: {ADDRESS_CODES[code]}",
                            status=status, code=code)
    hint = SERVICE_HINTS.get(code or 0)
    if hint is None and status == 401:
        hint = SERVICE_HINTS[20003]
    detail = hint or (exc.msg or "").strip() or "no detail"
    return ServiceError(f"{doing}: HTTP {status}, Twilio error {code}: {detail}",
                        status=status, code=code)


def _unreachable(exc: Exception, doing: str) -> ServiceError:
    what = "timed out" if isinstance(exc, TimeoutError) else f"failed ({exc!r})"
    return ServiceError(f"{doing}: the request {what}")


@dataclass(frozen=True)
class Leg:
    sid: str
    status: str


class _HttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """twilio's async client, with a real timeout and without aiohttp's deprecated BasicAuth.

    twilio 9.13 ignores the client timeout and hands aiohttp a BasicAuth
    object, which aiohttp 3.14 deprecates; the header is simple to send.
    """

    def __init__(self, timeout: float) -> None:
        super().__init__(pool_connections=False)
        self.session = ClientSession(timeout=ClientTimeout(total=timeout))

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the base class's signature)
        allow_redirects: bool = False,
    ) -> Response:
        headers = dict(headers or {})
        if auth is not None:
            pair = f"{auth[0]}:{auth[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return await super().request(method, url, params, data, headers, None, None,
                                     allow_redirects)


class TwilioRest:
    def __init__(self, account_sid: str, auth_token: str, base_url: str, *,
                 on_error: Callable[[RestError], None] | None = None) -> None:
        self._http = _HttpClient(REQUEST_TIMEOUT)
        self._on_error = on_error  # told of every error raised (the metrics count them)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        self._client.api.base_url = base_url
        self.account_sid = account_sid

    async def close(self) -> None:
        await self._http.close()

    def _told(self, error: RestError) -> RestError:
        if self._on_error is not None:
            self._on_error(error)
        return error

    @property
    def closed(self) -> bool:
        return bool(self._http.session.closed)

    async def check_account(self) -> str:
        """Fetch our own Account resource (a cheap authenticated GET); its status.

        Raises ServiceError when Twilio refuses the credentials or cannot be reached.
        """
        doing = "fetching the account"
        try:
            account = await self._client.api.v2010.accounts(self.account_sid).fetch_async()
        except TwilioRestException as exc:
            raise self._told(classify(exc, doing, dialling=False)) from exc
        except Exception as exc:  # network, timeouts
            raise self._told(_unreachable(exc, doing)) from exc
        return str(account.status or "unknown")

    async def place_call(
        self, *, to: str, from_: str, url: str, status_callback: str, ring_seconds: int
    ) -> Leg:
        """Ring `to`; Twilio requests `url` when answered and reports to `status_callback`.

        Raises AddressError when Twilio refuses `to` itself, ServiceError otherwise.
        """
        doing = "placing a call"
        try:
            call = await self._client.calls.create_async(
                to=to,
                from_=from_,
                url=url,
                method="POST",
                status_callback=status_callback,
                status_callback_method="POST",
                status_callback_event=["initiated", "ringing", "answered", "completed"],
                timeout=ring_seconds,
            )
        except TwilioRestException as exc:
            raise self._told(classify(exc, doing, dialling=True)) from exc
        except Exception as exc:  # network, timeouts: the same for the caller
            raise self._told(_unreachable(exc, doing)) from exc
        return Leg(str(call.sid), str(call.status))

    async def end_call(self, sid: str) -> None:
        """Cancel a ringing leg, or hang it up if answered; an ended call is fine.

        Twilio ignores `canceled` for a call already answered, so a leg answered
        before the cancel reached it is then hung up (`completed`).
        """
        if await self._update(sid, status="canceled") == "in-progress":
            await self._update(sid, status="completed")

    async def call_status(self, sid: str) -> str | None:
        """Fetch a call (GET Calls/{Sid}.json) and return its status (queued,
        ringing, in-progress, completed, busy, failed, no-answer, canceled); None
        when Twilio no longer knows it. How a callback that never came is
        made up for."""
        doing = f"fetching {sid}"
        try:
            call = await self._client.calls(sid).fetch_async()
        except TwilioRestException as exc:
            if exc.code in ALREADY_ENDED or exc.status == 404:
                return None
            raise classify(exc, doing, dialling=False) from exc
        except Exception as exc:  # network, timeouts
            raise _unreachable(exc, doing) from exc
        return str(call.status or "unknown")

    async def redirect(self, sid: str, url: str) -> bool:
        """Send a live call to new TwiML; False when the call has already ended."""
        return await self._update(sid, url=url, method="POST") is not None

    async def _update(self, sid: str, **changes: str) -> str | None:
        """Update a call; the status Twilio reports after it, None if it had ended."""
        doing = f"updating {sid}"
        try:
            call = await self._client.calls(sid).update_async(**changes)
        except TwilioRestException as exc:
            if exc.code in ALREADY_ENDED:
                return None
            raise self._told(classify(exc, doing, dialling=False)) from exc
        except Exception as exc:  # network, timeouts: the same for the caller
            raise self._told(_unreachable(exc, doing)) from exc
        return str(call.status or "unknown")
