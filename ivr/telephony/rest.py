"""The one module that calls Twilio's REST API (counselor legs, redirects).

Uses the `twilio` package's client with its asynchronous HTTP client, with
the API base URL configurable (IVR_TWILIO_API_URL) so tests can point it at
the simulator. Errors that mean "that call has already ended" are not
failures: whatever we wanted to stop has stopped.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass

from aiohttp import ClientSession, ClientTimeout
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

log = logging.getLogger(__name__)

# 20404: no such call (it ended and aged out); 21220: the call is not in
# progress (already completed or canceled), so it cannot be updated.
ALREADY_ENDED = frozenset({20404, 21220})
REQUEST_TIMEOUT = 10.0


class RestError(Exception):
    """Twilio refused or failed a request that was meant to change something."""


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
    def __init__(self, account_sid: str, auth_token: str, base_url: str) -> None:
        self._http = _HttpClient(REQUEST_TIMEOUT)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        self._client.api.base_url = base_url

    async def close(self) -> None:
        await self._http.close()

    async def place_call(
        self, *, to: str, from_: str, url: str, status_callback: str, ring_seconds: int
    ) -> Leg:
        """Ring `to`; Twilio requests `url` when answered and reports to `status_callback`."""
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
            raise RestError(f"placing a call failed: {exc.status} {exc.code}: {exc.msg}") from exc
        except Exception as exc:  # network, timeouts: the same for the caller
            raise RestError(f"placing a call failed: {exc!r}") from exc
        return Leg(str(call.sid), str(call.status))

    async def end_call(self, sid: str, *, ringing: bool) -> None:
        """Cancel a ringing leg or hang up a live one; an ended call is fine.

        Twilio ignores `canceled` for a call already answered, so a leg answered
        just before we cancel it is then hung up as well.
        """
        status = await self._update(sid, status="canceled" if ringing else "completed")
        if ringing and status == "in-progress":
            await self._update(sid, status="completed")

    async def redirect(self, sid: str, url: str) -> bool:
        """Send a live call to new TwiML; False when the call has already ended."""
        return await self._update(sid, url=url, method="POST") is not None

    async def _update(self, sid: str, **changes: str) -> str | None:
        """Update a call; the status Twilio reports after it, None if it had ended."""
        try:
            call = await self._client.calls(sid).update_async(**changes)
        except TwilioRestException as exc:
            if exc.code in ALREADY_ENDED:
                return None
            raise RestError(f"updating {sid} failed: {exc.status} {exc.code}") from exc
        except Exception as exc:  # network, timeouts: the same for the caller
            raise RestError(f"updating {sid} failed: {exc!r}") from exc
        return str(call.status or "unknown")
