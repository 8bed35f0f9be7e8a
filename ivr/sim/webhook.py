"""HTTP requests exactly as Twilio sends them to a voice application."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from ivr.sim.config import SimConfig
from ivr.sim.overrides import split
from ivr.sim.signing import SIGNATURE_HEADER, compute_signature, url_with_query

USER_AGENT = "TwilioProxy/1.1"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

# Twilio's error codes for a request that produced no usable answer.
HTTP_RETRIEVAL_FAILURE = 11200
HTTP_CONNECTION_FAILURE = 11205
DOCUMENT_PARSE_FAILURE = 12100
INVALID_CONTENT_TYPE = 12300


@dataclass(frozen=True)
class Exchange:
    """One request and what came back."""

    method: str
    url: str  # the public URL requested (query included), as signed
    status: int | None
    content_type: str
    body: bytes
    error: str | None = None
    error_code: int | None = None
    timed_out: bool = False  # no answer within the timeout: the caller waited all of it
    attempts: int = 1  # with the retries a URL's connection overrides asked for

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300


class WebhookClient:
    """Signs, maps and sends requests; never raises for network trouble."""

    def __init__(self, http: aiohttp.ClientSession, cfg: SimConfig) -> None:
        self._http = http
        self._cfg = cfg

    async def send(
        self,
        method: str,
        public_url: str,
        params: Mapping[str, str],
        idempotency_token: str,
    ) -> Exchange:
        """Send as Twilio does, retrying as the URL's connection overrides ask
        (overrides.py): every attempt is the same request, same token."""
        public_url, overrides = split(public_url)
        loop = asyncio.get_running_loop()
        # `tt` bounds all attempts together, in simulated seconds as the rest.
        deadline = loop.time() + overrides.total_seconds * self._cfg.timeout_scale
        attempt = 1
        while True:
            exchange = await self._send_once(method, public_url, params, idempotency_token)
            if (exchange.ok or attempt > overrides.retries or loop.time() >= deadline
                    or not overrides.retry_on(exchange.status, exchange.timed_out)):
                return replace(exchange, attempts=attempt)
            attempt += 1

    async def _send_once(
        self,
        method: str,
        public_url: str,
        params: Mapping[str, str],
        idempotency_token: str,
    ) -> Exchange:
        headers = {
            "User-Agent": USER_AGENT,
            "Accept": "*/*",
            "Cache-Control": "max-age=259200",
            "I-Twilio-Idempotency-Token": idempotency_token,
            "X-Home-Region": "us1",
        }
        body: bytes | None
        if method == "GET":
            url = url_with_query(public_url, params)
            headers[SIGNATURE_HEADER] = compute_signature(self._cfg.auth_token, url, {})
            body = None
        else:
            url = public_url
            headers[SIGNATURE_HEADER] = compute_signature(self._cfg.auth_token, url, params)
            headers["Content-Type"] = FORM_CONTENT_TYPE
            body = urlencode(list(params.items())).encode()
        return await self._request(method, url, headers, body)

    async def fetch_media(self, public_url: str) -> Exchange:
        """GET an audio file for <Play>; Twilio signs these fetches too."""
        headers = {
            "User-Agent": USER_AGENT,
            "Accept": "audio/*, */*",
            SIGNATURE_HEADER: compute_signature(self._cfg.auth_token, public_url, {}),
        }
        return await self._request("GET", public_url, headers, None)

    async def _request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> Exchange:
        target = URL(self._cfg.to_server(url), encoded=True)
        # One budget for connecting and answering, as Twilio's (see
        # WEBHOOK_TIMEOUT), run faster than real time when the config says so.
        timeout = aiohttp.ClientTimeout(
            total=self._cfg.request_timeout * self._cfg.timeout_scale)
        try:
            async with self._http.request(
                method, target, data=body, headers=headers, timeout=timeout
            ) as response:
                content = await response.read()
                exchange = Exchange(
                    method=method,
                    url=url,
                    status=response.status,
                    content_type=response.content_type,
                    body=content,
                )
        except TimeoutError:
            # "If either of those timers expire, we fail the request, fire a
            # notification, and try your fallback URL" (Twilio error 11205,
            # https://www.twilio.com/docs/api/errors/11205).
            return Exchange(
                method, url, None, "", b"",
                error=f"no answer within {self._cfg.request_timeout:g}s",
                error_code=HTTP_CONNECTION_FAILURE,
                timed_out=True,
            )
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            return Exchange(
                method, url, None, "", b"",
                error=f"connection failed: {exc.__class__.__name__}",
                error_code=HTTP_CONNECTION_FAILURE,
            )
        if not exchange.ok:
            return Exchange(
                method, url, exchange.status, exchange.content_type, exchange.body,
                error=f"HTTP {exchange.status}", error_code=HTTP_RETRIEVAL_FAILURE,
            )
        return exchange
