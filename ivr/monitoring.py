"""The metrics and the logs' call context, wired into the application.

`install(app)` adds `GET /metrics` (Prometheus exposition; a bearer token
when IVR_METRICS_TOKEN is set) and the outermost middleware, which times
every request by route name (bounded cardinality: `/twilio/gather`, never
`/twilio/gather?seq=3` or a path a client made up) and scopes the logs'
call context (ivr.logs) to the request: the hold URL's `call`, or the
CallSid of the form once the signature check has parsed it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ivr import keys, logs
from ivr.content import Content
from ivr.metrics import Metrics
from ivr.storage.linegauges import LineSnapshot, line_snapshot

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SCRAPE_QUERY_TIMEOUT = 2.0  # seconds: Prometheus's own scrape timeout is 10 s by default
_REALM = 'Bearer realm="ivr-metrics"'
_scrape_lock = web.AppKey("metrics_scrape_lock", asyncio.Lock)


def content_version(content: Content) -> str:
    """What identifies the content this instance serves.

    Each flow's own version (a hash of its file), joined: what identifies the
    start-up folders before the stored content versions are loaded.
    """
    flows = sorted(content.flows.flows.values(), key=lambda f: f.id)
    return ",".join(f"{f.id}@{f.version}" for f in flows)


def install(app: web.Application) -> Metrics:
    """Give `app` its metrics, GET /metrics and the middleware; call it
    in create_app once the content is set, before the other cleanup contexts."""
    metrics = Metrics()
    app[keys.metrics] = metrics
    app[_scrape_lock] = asyncio.Lock()
    version = content_version(app[keys.content])
    metrics.serving(version)
    logs.set_version(version)

    app.middlewares.insert(0, _observed)  # outermost: refusals are timed too
    app.router.add_get("/metrics", scrape)
    return metrics


def endpoint(request: web.Request) -> str:
    """The route that matched, by its pattern; 'unmatched' for anything else."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def _observed(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time the request by route, and scope its log lines' call context to it.

    The context starts as the hold URL's `call` (or none) and the version
    served to new calls (ivr.logs falls back to it); the signature check sets
    the form's CallSid, a call's webhook its own version (logs.about_version).
    aiohttp answers the requests of one connection in one task: reset, so the
    next request on it does not inherit this one's call. One middleware, not
    two: each costs aiohttp a wrapper per request (issue 12)."""
    sid_token = logs.call_sid.set(request.query.get("call"))
    version_token = logs.content_version.set(None)
    # A media stream lasts as long as its menu: not timed.
    timed = request.headers.get("Upgrade", "").lower() != "websocket"
    started = time.perf_counter()
    try:
        return await handler(request)
    finally:
        if timed:
            request.app[keys.metrics].webhook_timer(endpoint(request)).observe(
                time.perf_counter() - started)
        logs.call_sid.reset(sid_token)
        logs.content_version.reset(version_token)


async def scrape(request: web.Request) -> web.Response:
    """Prometheus exposition: this process's counters, and the line-wide gauges
    read from the database now (so any one instance's scrape is right)."""
    app = request.app
    token = app[keys.settings].metrics_token
    if token is not None and not _bearer_ok(request, token):
        raise web.HTTPUnauthorized(text="missing or wrong bearer token\n",
                                   headers={"WWW-Authenticate": _REALM})
    metrics = app[keys.metrics]
    # One scrape at a time: the snapshot read is the one exposed.
    async with app[_scrape_lock]:
        metrics.line.snapshot = await _read_line(app)
        body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _read_line(app: web.Application) -> LineSnapshot | None:
    pool = app.get(keys.pool)
    if pool is None:
        return None
    try:
        async with asyncio.timeout(SCRAPE_QUERY_TIMEOUT):
            return await line_snapshot(pool)
    except Exception as exc:
        log.warning("metrics scrape: the line-wide gauges could not be read (%s)", exc)
        return None


def _bearer_ok(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest keeps the comparison's time independent of the token.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())
