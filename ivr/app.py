"""create_app(settings): the one place where the server is wired together.

Each resource lives in one cleanup context (aiohttp's `cleanup_ctx`) that
opens it, publishes it under its key (ivr.keys) and closes it in a
`finally`: they start in the order listed in create_app and close in the
reverse order, and when one fails to start, the ones already started are
still closed (aiohttp runs their exits on cleanup).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from aiohttp import web

from ivr import keys, monitoring
from ivr.admin.api import create_admin_app
from ivr.admin.console.setup import (
    close_event_streams,
    create_console_app,
    live_updates,
    to_console,
)
from ivr.config import ConfigError, Settings, is_loopback_url
from ivr.content import Content, load_content
from ivr.publishing.active import UnknownVersion
from ivr.publishing.active import prompt_audio as prompt_audio
from ivr.publishing.wiring import content_listener, content_versions
from ivr.routing.location import area_code_table
from ivr.speech.asr import ENV_PREFIX, ListenConfig, SpeechEngine, SpeechModels
from ivr.speech.audio import GateConfig
from ivr.storage.database import open_pool, ping, start_embedded
from ivr.storage.queue import ROUTING_CHANNEL, Offer
from ivr.telephony import webhooks
from ivr.telephony.apihealth import ApiHealth
from ivr.telephony.callflow import CallFlow
from ivr.telephony.media import close_media_streams, media_stream
from ivr.telephony.onshift import OnShift
from ivr.telephony.reconcile import Reconciler
from ivr.telephony.rest import TwilioRest
from ivr.telephony.signature import SignatureChecker, middleware
from ivr.telephony.transfer import Transfers
from ivr.telephony.twiml import Renderer
from ivr.telephony.worker import POLL, TimerWorker

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0  # seconds for each resource to close at shutdown
# Twilio's webhook bodies are a few kilobytes; anything far larger is not Twilio.
MAX_BODY = 64 * 1024

# A menu word is decided this long after the caller stops speaking: short
# enough to answer within 300 ms, long enough for the pause inside a word.
LISTEN_CONFIG = ListenConfig(gate=GateConfig(end_silence_ms=200, hangover_ms=160))


def create_app(
    settings: Settings, content: Content | None = None, speech: SpeechEngine | None = None,
    clock: Callable[[], datetime] | None = None,
    poll: float | None = None,
) -> web.Application:
    """Build the server. Content and speech models are loaded here unless given.

    Raises ConfigError for a secret that is not configured, InvalidContent
    for flows that do not validate and SpeechConfigError for a model that
    cannot be loaded (its message names the variable).
    """
    secrets = settings.required_secrets()
    content = content or load_content(
        settings.flows_dir, settings.prompts_dir, settings.vosk_models
    )
    audio = prompt_audio(content)
    own_speech = speech is None and bool(settings.vosk_models)
    if own_speech:
        speech = load_speech(settings.vosk_models)
    checker = SignatureChecker(secrets.auth_token, settings.public_url)
    app = web.Application(middlewares=[middleware(checker)], client_max_size=MAX_BODY)
    # The one clock every deadline is read on (a test may drive a faster one).
    app[keys.clock] = clock or wall_clock
    # Seconds between the timer worker's looks at its table: a clock faster than
    # the wall's brings deadlines sooner, so it is looked at more often.
    app[keys.timer_poll] = POLL if poll is None else poll
    app[keys.settings] = settings
    app[keys.content] = content
    plan = content.plan
    app[keys.renderer] = Renderer(settings.public_url, content.flows.prompts, settings.caller_id)
    app[keys.backup_number] = settings.backup_number or plan.national_backup.number
    app[keys.caller_id] = settings.caller_id
    app[keys.georoute_param] = plan.georoute_param or ""
    app[keys.default_region] = plan.default_region
    app[keys.hash_key] = secrets.caller_hash_key
    if speech is not None:
        app[keys.speech] = speech
    app[keys.prompt_audio] = audio
    app[keys.open_streams] = weakref.WeakSet()
    monitoring.install(app)
    area_code_table()  # built now so the first caller does not pay for it
    # Started in this order, each using the ones before it; closed in reverse.
    if own_speech:
        # First in, last out: loaded above, so stopped whatever fails to start.
        app.cleanup_ctx.append(_speech_pool)
    app.cleanup_ctx.extend([_database, _twilio_api, content_versions, _call_handling,
                            _routing_listener, content_listener, _dispatcher])
    app.cleanup_ctx.append(_timer_worker)
    webhooks.add_routes(app)

    async def withdrawn(offer: Offer) -> None:
        # An admin took a counselor away while their phone rang: hang that leg up.
        await app[keys.transfers].withdrawn(offer)

    app.add_subapp("/admin", create_admin_app(secrets.admin_token, plan.centers,
                                              on_withdrawn=withdrawn))
    secure_cookie = settings.public_url.startswith("https://")
    app.router.add_get("/console", to_console)  # before the sub-app, which would claim it
    app.add_subapp("/console", create_console_app(secrets.admin_token, secure_cookie))
    app.cleanup_ctx.append(live_updates)
    app.on_shutdown.append(close_event_streams)
    app.router.add_get("/twilio/media", media_stream)
    app.on_shutdown.append(close_media_streams)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/prompts/{lang}/{name}", prompt_recording)
    return app


async def _speech_pool(app: web.Application) -> AsyncIterator[None]:
    """The decoding threads of the speech engine create_app loaded."""
    try:
        yield
    finally:
        # Waits for decodes in flight: off the loop, like the decoding itself.
        await asyncio.to_thread(app[keys.speech].shutdown)


async def _database(app: web.Application) -> AsyncIterator[None]:
    """The connection pool, migrated.

    Without IVR_DATABASE_URL, the embedded PostgreSQL in the data directory.
    """
    settings = app[keys.settings]
    dsn = settings.database_url
    if dsn is None:
        # pgserver blocks while PostgreSQL starts; keep the loop free meanwhile.
        dsn = await asyncio.to_thread(start_embedded, settings.data_dir)
    pool = await open_pool(dsn)
    try:
        # The counselors are synced with the plan of the content version served
        # (ivr.publishing.wiring.content_versions), which may not be this one's.
        app[keys.database_url] = dsn
        app[keys.pool] = pool
        yield
    finally:
        try:
            # Graceful close waits for every connection to come back: bounded, so
            # a stuck query can never keep the process from stopping.
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning("database connections still busy at shutdown: closing them")
            pool.terminate()


async def _twilio_api(app: web.Application) -> AsyncIterator[None]:
    """The REST API client, its credentials checked once, and the API's shared health."""
    settings = app[keys.settings]
    rest = TwilioRest(settings.account_sid, settings.required_secrets().auth_token,
                      settings.twilio_api_url, on_error=app[keys.metrics].rest_error)
    try:
        health = ApiHealth(app[keys.pool], rest)
        await _check_twilio(health, settings)
        app[keys.rest] = rest
        app[keys.api_health] = health
        yield
    finally:
        await rest.close()


async def _call_handling(app: web.Application) -> AsyncIterator[None]:
    """The transfers (counselor legs, tiers, moves) and the call flow that starts them."""
    settings, active = app[keys.settings], app[keys.active]
    pool, served = app[keys.pool], active.current
    transfers = Transfers(pool, served.content.plan, served.renderer, app[keys.rest],
                          app[keys.api_health], wrap_up_seconds=settings.wrap_up_seconds,
                          metrics=app[keys.metrics], clock=app[keys.clock])
    try:
        speech = app.get(keys.speech)
        languages = frozenset(speech.models.languages) if speech else frozenset()
        app[keys.transfers] = transfers
        app[keys.callflow] = CallFlow(pool, active, transfers, clock=app[keys.clock],
                                      speech_languages=languages, on_shift=OnShift(pool))
        yield
    finally:
        await transfers.close()  # cancels the legs and moves still in flight


async def _routing_listener(app: web.Application) -> AsyncIterator[None]:
    """A connection of its own, LISTENing on the routing channel.

    Any instance's change that may allow a match (a counselor freed, a
    caller waiting) is announced with NOTIFY: every dispatcher wakes at once,
    and the call flow's view of who is on shift (onshift.py) reads again.
    """
    transfers, on_shift = app[keys.transfers], app[keys.callflow].early.on_shift
    assert on_shift is not None
    listener = await asyncpg.connect(app[keys.database_url])
    watching: asyncio.Task[None] | None = None

    def heard(*_: object) -> None:
        transfers.kick()
        on_shift.heard()  # a counselor may have become available

    try:
        await listener.add_listener(ROUTING_CHANNEL, heard)
        app[keys.listener] = listener
        # Read first once LISTENing: a change made between the two is not missed.
        await on_shift.refresh()  # the first read, before the first caller
        watching = asyncio.create_task(on_shift.run())
        yield
    finally:
        if watching is not None:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        try:
            await listener.close(timeout=CLOSE_TIMEOUT)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("the LISTEN connection did not close cleanly (%s): dropping it", exc)
            listener.terminate()


async def _dispatcher(app: web.Application) -> AsyncIterator[None]:
    """The task that offers waiting callers to free counselors (Transfers.run)."""
    task = asyncio.create_task(app[keys.transfers].run())
    app[keys.dispatcher] = task
    try:
        yield
    finally:
        task.cancel()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.gather(task, return_exceptions=True)
        except TimeoutError:
            log.error("the dispatcher did not stop within %.0f s of being cancelled",
                      CLOSE_TIMEOUT)


async def _timer_worker(app: web.Application) -> AsyncIterator[None]:
    """The task that carries out due timers and pending work, and reconciles
    (ivr.telephony.worker): whichever instance is alive does it."""
    transfers = app[keys.transfers]
    reconciler = Reconciler(transfers, app[keys.callflow])
    worker = TimerWorker(transfers, sweep=reconciler.sweep, poll=app[keys.timer_poll],
                         lease=app[keys.settings].timer_lease_seconds)
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        task.cancel()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.gather(task, return_exceptions=True)
                await worker.close()
        except TimeoutError:
            log.error("the timer worker did not stop within %.0f s of being cancelled",
                      CLOSE_TIMEOUT)


def wall_clock() -> datetime:
    return datetime.now(UTC)


async def _check_twilio(health: ApiHealth, settings: Settings) -> None:
    """Check the REST API credentials once, with one authenticated GET.

    Refused credentials are a configuration mistake that would route every
    caller past the counselors: off loopback the server refuses to start
    (the deploy fails where an operator is looking). On loopback, and when
    Twilio cannot be reached at all (a passing outage must not keep a crisis
    line from answering: the voice webhooks and dial steps need no REST API),
    it starts with the API marked degraded when the credentials were
    refused, or with a warning when Twilio did not answer: the first leg that
    fails then marks it degraded.
    """
    error = await health.check_at_start()
    if error is None:
        log.info("Twilio REST API credentials accepted (account %s)", settings.account_sid)
        return
    if not error.credentials:
        log.warning("Twilio REST API did not answer at start-up (%s); counselor legs will "
                    "be tried and the API marked degraded if they fail", error)
        return
    message = (f"Twilio refused the REST API credentials: check TWILIO_ACCOUNT_SID "
               f"({settings.account_sid}) and TWILIO_AUTH_TOKEN ({error})")
    if not is_loopback_url(settings.public_url):
        raise ConfigError(message)
    log.error("%s; on a loopback address the server starts anyway, with the REST API "
              "degraded", message)
    await health.failed(error)


def load_speech(models: Mapping[str, Path]) -> SpeechEngine:
    origins = {lang: f"{ENV_PREFIX}{lang.upper()}" for lang in models}
    return SpeechEngine(SpeechModels(models, origins=origins), config=LISTEN_CONFIG)


async def healthz(request: web.Request) -> web.Response:
    """200 when this instance can answer calls: the database answers and flows are loaded.

    A degraded Twilio REST API is reported (`"twilio_api": "degraded"` with
    its reason) but does not make it 503: calls are still answered, routed
    and dialled without it, and a load balancer taking every instance out
    for an account problem would drop callers that the instances can serve.
    """
    app = request.app
    pool = app.get(keys.pool)
    db_ok = pool is not None and await ping(pool)
    active = app.get(keys.active)
    served = active.current.content if active is not None else app[keys.content]
    flows_ok = bool(served.flows.flows)
    body: dict[str, object] = {"database": db_ok, "flows": flows_ok}
    if active is not None:
        body["content_version"] = active.current.version
    health = app.get(keys.api_health)
    if health is not None and db_ok:
        try:
            degraded = await health.state()
        except Exception:
            degraded = None
        body["twilio_api"] = "ok" if degraded is None else "degraded"
        if degraded is not None:
            body["twilio_api_reason"] = degraded.reason
            body["twilio_api_since"] = degraded.since.isoformat(timespec="seconds")
    else:
        body["twilio_api"] = "unknown"
    return web.json_response(body, status=200 if db_ok and flows_ok else 503)


async def prompt_recording(request: web.Request) -> web.StreamResponse:
    """Serve a prompt recording for <Play>, only ones the catalog knows: the
    catalog of the content version the URL names (`v`), else the active one."""
    lang = request.match_info["lang"]
    name = request.match_info["name"]
    active = request.app.get(keys.active)
    if active is None:
        content = request.app[keys.content]
    else:
        try:
            content = (await active.get(request.query.get("v"))).content
        except UnknownVersion:
            raise web.HTTPNotFound() from None
    prompt = content.flows.prompts.get(lang, name.removesuffix(".wav"))
    if prompt is None or prompt.recording is None or not name.endswith(".wav"):
        raise web.HTTPNotFound()
    return web.FileResponse(prompt.recording, headers={"Content-Type": "audio/wav"})
