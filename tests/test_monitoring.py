"""GET /metrics on live servers: its bearer token, the line-wide gauges every
instance reads from the shared database, and each instance's own counters."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from twilio.request_validator import RequestValidator

from ivr import keys, logs
from ivr.app import create_app
from ivr.config import Settings
from ivr.content import Content
from ivr.metrics import CALL_OUTCOMES, Metrics, rest_error_class
from ivr.monitoring import content_version
from ivr.storage import queue
from ivr.storage.linegauges import LineSnapshot
from ivr.telephony.rest import AddressError, ServiceError
from tests.conftest import AUTH_TOKEN, ROOT, bounded
from tests.e2e.test_metrics import scrape, value
from tests.helpers import call_params, new_sid, post_signed

METRICS_TOKEN = "scrape-me-please"


async def _serve(settings: Settings, content: Content) -> TestServer:
    port = int(settings.public_url.rsplit(":", 1)[1])
    srv = TestServer(create_app(settings, content), host="127.0.0.1", port=port)
    await srv.start_server()
    return srv


@pytest.fixture
async def guarded(settings: Settings, content: Content) -> AsyncIterator[Settings]:
    """A server whose /metrics wants a bearer token."""
    guarded = replace(settings, metrics_token=METRICS_TOKEN)
    srv = await _serve(guarded, content)
    yield guarded
    await bounded(srv.close(), "closing the guarded server")


@pytest.fixture
async def second(server: TestServer, other_settings: Settings,
                 content: Content) -> AsyncIterator[TestServer]:
    """Another instance on the same database as `server`."""
    srv = await _serve(other_settings, content)
    yield srv
    await bounded(srv.close(), "closing the second server")


async def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers or {}) as resp:
        return resp.status, resp.headers.get("WWW-Authenticate", "")


def test_metrics_token_comes_from_the_environment() -> None:
    assert Settings.from_env({"IVR_METRICS_TOKEN": " t0k "}).metrics_token == "t0k"
    assert Settings.from_env({}).metrics_token is None


async def test_open_by_default(server: TestServer, settings: Settings) -> None:
    status, _ = await _get(settings.public_url + "/admin/counselors")
    assert status == 401
    samples, _ = await scrape(settings.public_url)
    assert value(samples, "ivr_line_gauges_up") == 1
    # The admin sub-application's requests are timed by their route too.
    assert value(samples, "ivr_webhook_seconds_count", endpoint="/admin/counselors") == 1


async def test_bearer_token_when_configured(guarded: Settings) -> None:
    url = guarded.public_url + "/metrics"
    status, challenge = await _get(url)
    assert status == 401 and challenge.startswith("Bearer")
    status, _ = await _get(url, {"Authorization": "Bearer not-the-token"})
    assert status == 401
    status, _ = await _get(url, {"Authorization": f"Basic {METRICS_TOKEN}"})
    assert status == 401
    samples, _ = await scrape(guarded.public_url, METRICS_TOKEN)
    assert value(samples, "ivr_line_gauges_up") == 1


async def test_every_instance_reports_the_line_from_the_database(
    server: TestServer, second: TestServer, settings: Settings, other_settings: Settings
) -> None:
    pool = server.app[keys.pool]
    for _ in range(3):
        assert await queue.enqueue(pool, new_sid(), "crisis", "en", None, "TX", 0, "local",
                                   [], [])
    assert await queue.enqueue(pool, new_sid(), "veterans", "en", "veteran", None, 0, "local",
                               [], [])
    first, _ = await scrape(settings.public_url)
    other, _ = await scrape(other_settings.public_url)
    for samples in (first, other):
        assert value(samples, "ivr_callers_waiting", queue="crisis") == 3
        assert value(samples, "ivr_callers_waiting", queue="veterans") == 1
        assert value(samples, "ivr_oldest_wait_seconds", queue="crisis") >= 0
    # The counselors of the plan, all offline at first, the same seen from both.
    counselors = {labels: v for (name, labels), v in first.items() if name == "ivr_counselors"}
    assert counselors == {labels: v for (name, labels), v in other.items()
                          if name == "ivr_counselors"}
    offline = sum(v for labels, v in counselors.items() if ("presence", "offline") in labels)
    assert offline == sum(counselors.values()) > 0
    assert ("center", "tx-austin") in {pair for labels in counselors for pair in labels}


async def test_each_instance_counts_its_own_calls(
    server: TestServer, second: TestServer, settings: Settings, other_settings: Settings
) -> None:
    async with aiohttp.ClientSession() as s:
        await post_signed(s, settings.public_url + "/twilio/gather?seq=1",
                          call_params(new_sid(), CallStatus="in-progress"))
    first, _ = await scrape(settings.public_url)
    other, _ = await scrape(other_settings.public_url)
    assert value(first, "ivr_calls_total", outcome="failsafe") == 1
    assert value(other, "ivr_calls_total", outcome="failsafe") == 0


async def test_line_gauges_down_when_the_database_is_not_answering(
    server: TestServer, settings: Settings
) -> None:
    await server.app[keys.pool].close()
    samples, text = await scrape(settings.public_url)
    assert value(samples, "ivr_line_gauges_up") == 0
    assert "ivr_callers_waiting" not in text


async def test_rest_errors_counted_by_class(server: TestServer, settings: Settings) -> None:
    # The test settings point the REST API at a port nobody listens on: the
    # credentials check at start-up could not reach Twilio.
    samples, _ = await scrape(settings.public_url)
    assert value(samples, "ivr_rest_errors_total", **{"class": "unreachable"}) >= 1
    assert value(samples, "ivr_rest_errors_total", **{"class": "credentials"}) == 0


@pytest.mark.parametrize(("error", "kind"), [
    (AddressError("x", status=400, code=21211), "address"),
    (ServiceError("x"), "unreachable"),
    (ServiceError("x", status=401, code=20003), "credentials"),
    (ServiceError("x", status=429, code=20429), "rate_limited"),
    (ServiceError("x", status=503), "server"),
    (ServiceError("x", status=400, code=21220), "refused"),
])
def test_rest_error_classes(error: ServiceError, kind: str) -> None:
    assert rest_error_class(error) == kind


def test_content_version_names_each_flow_by_its_hash(content: Content) -> None:
    version = content_version(content)
    for flow in content.flows.flows.values():
        assert f"{flow.id}@{flow.version}" in version


def _exposed_names() -> set[str]:
    metrics = Metrics()
    metrics.line.snapshot = LineSnapshot()
    names = set()
    for family in metrics.registry.collect():
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        names.add(family.name + suffix)
    return names


def test_readme_lists_every_metric_and_its_rules_use_them() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Monitoring", 1)[1]
    listed = set(re.findall(r"^\| `(ivr_\w+)` \|", section, re.MULTILINE))
    assert listed == _exposed_names()
    [rules] = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    alerts = yaml.safe_load(rules)["groups"][0]["rules"]
    assert {a["alert"] for a in alerts} == {"InStateAnswerRateLow", "FailSafeAnswer"}
    for alert in alerts:
        for name in re.findall(r"\b(ivr_\w+)", alert["expr"]):
            assert name in listed, name
        for outcome in re.findall(r'outcome="(\w+)"', alert["expr"]):
            assert outcome in CALL_OUTCOMES, outcome


async def test_a_requests_log_context_is_its_own_and_its_time_is_counted(
    settings: Settings, content: Content
) -> None:
    """The call a request's log lines are about: its form's CallSid, else its
    `call` query parameter; nothing left over from the previous request on
    the same connection; and each request timed under its route."""
    app = create_app(settings, content)

    async def context(request: web.Request) -> web.Response:
        return web.json_response({"sid": logs.call_sid.get()})

    app.router.add_post("/twilio/context", context)
    port = int(settings.public_url.rsplit(":", 1)[1])
    srv = TestServer(app, host="127.0.0.1", port=port)
    await srv.start_server()
    sid, other = new_sid(), new_sid()
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1)  # one connection: one task on the server
        ) as session:
            async def seen(query: str, params: dict[str, str]) -> object:
                url = f"{settings.public_url}/twilio/context{query}"
                signed = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
                async with session.post(url, data=params,
                                        headers={"X-Twilio-Signature": signed}) as resp:
                    assert resp.status == 200
                    return (await resp.json())["sid"]

            assert await seen("", {"CallSid": sid, "Digits": "1"}) == sid
            assert await seen("", {"Digits": "1"}) is None
            assert await seen(f"?call={other}", {"Digits": "1"}) == other
            assert await seen(f"?call={other}", {"CallSid": sid}) == sid
            assert await seen("", {}) is None
    finally:
        await bounded(srv.close(), "closing the server")
    count = app[keys.metrics].registry.get_sample_value(
        "ivr_webhook_seconds_count", {"endpoint": "/twilio/context"})
    assert count == 5
