"""The simulated Twilio honours connection overrides on a webhook URL (#rc=..&rp=..)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from twilio.request_validator import RequestValidator

from ivr.sim.config import SimConfig
from ivr.sim.overrides import split
from ivr.sim.webhook import WebhookClient
from tests.conftest import bounded

TOKEN = "sim-overrides-token"


class Answers:
    """A server that answers the statuses it is given, one per request, then 204."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.seen: list[tuple[str, str, bool]] = []  # path_qs, idempotency token, signed ok

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        url = "https://ivr.example.test" + request.path_qs
        valid = RequestValidator(TOKEN).validate(
            url, {k: str(v) for k, v in form.items()}, request.headers["X-Twilio-Signature"])
        self.seen.append((request.path_qs, request.headers["I-Twilio-Idempotency-Token"],
                          bool(valid)))
        status = self.statuses.pop(0) if self.statuses else 204
        return web.Response(status=status)


@pytest.fixture
async def answers() -> AsyncIterator[tuple[Answers, WebhookClient]]:
    a = Answers()
    app = web.Application()
    app.router.add_post("/cb", a.handle)
    server = TestServer(app)
    await server.start_server()
    cfg = SimConfig(server_url=str(server.make_url("")).rstrip("/"), auth_token=TOKEN,
                    public_url="https://ivr.example.test")
    async with aiohttp.ClientSession() as http:
        yield a, WebhookClient(http, cfg)
    await bounded(server.close(), "closing the test server")


@pytest.mark.parametrize(("fragment", "statuses", "ok", "attempts"), [
    ("", [500, 500], False, 1),  # no overrides: no retry
    ("#rc=3&rp=5xx", [500, 503], True, 3),
    ("#rc=1&rp=5xx", [500, 500, 500], False, 2),
    ("#rc=5&rp=all", [500, 404, 502], True, 4),
    ("#rc=5&rp=ct", [500], False, 1),  # a 500 is no connect timeout
    ("#rc=5&rp=4xx", [500], False, 1),
    ("#rc=2&rp=4xx", [404, 403, 400], False, 3),
    ("#rc=99&rp=5xx", [500] * 7, False, 6),  # rc above 5 counts as 5
])
async def test_retries_follow_rc_and_rp(
    answers: tuple[Answers, WebhookClient], fragment: str, statuses: list[int], ok: bool,
    attempts: int,
) -> None:
    server, client = answers
    server.statuses = list(statuses)
    exchange = await client.send("POST", "https://ivr.example.test/cb?offer=7" + fragment,
                                 {"CallStatus": "completed"}, "token-1")
    assert (exchange.ok, exchange.attempts) == (ok, attempts)
    # Every attempt is the same request: URL without the fragment, signed
    # over that URL, same idempotency token.
    assert server.seen == [("/cb?offer=7", "token-1", True)] * attempts


async def test_a_refused_connection_is_retried_under_ct() -> None:
    cfg = SimConfig(server_url="http://127.0.0.1:9", auth_token=TOKEN)
    async with aiohttp.ClientSession() as http:
        client = WebhookClient(http, cfg)
        retried = await client.send("POST", "http://127.0.0.1:9/cb#rc=2&rp=ct", {}, "t")
        not_retried = await client.send("POST", "http://127.0.0.1:9/cb#rc=2&rp=5xx", {}, "t")
    assert (retried.ok, retried.attempts) == (False, 3)
    assert not_retried.attempts == 1


def test_split_reads_the_fragment() -> None:
    url, o = split("https://h.example/x?a=1#rc=2&rp=5xx,ct&tt=3000")
    assert url == "https://h.example/x?a=1"
    assert (o.retries, o.policy, o.total_seconds) == (2, frozenset({"5xx", "ct"}), 3.0)
    url, o = split("https://h.example/x#rp=5xx")
    assert (o.retries, o.retry_on(503, False), o.retry_on(None, False)) == (1, True, False)
