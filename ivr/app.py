"""create_app(settings): the one place where the server is wired together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from functools import partial

import asyncpg
from aiohttp import web

from ivr.config import Settings
from ivr.content import Content, load_content
from ivr.flow.runtime import TransferTo
from ivr.storage.database import open_pool, ping, start_embedded
from ivr.telephony import webhooks
from ivr.telephony.callflow import CallFlow
from ivr.telephony.dialplan import dial_steps
from ivr.telephony.signature import SignatureChecker, middleware
from ivr.telephony.twiml import DialStep, Renderer
from ivr.telephony.webhooks import Keys

log = logging.getLogger(__name__)

# Twilio's webhook bodies are a few kilobytes; anything far larger is not Twilio.
MAX_BODY = 64 * 1024

settings_key = web.AppKey("settings", Settings)
content_key = web.AppKey("content", Content)
pool_key = web.AppKey("pool", asyncpg.Pool)


def create_app(settings: Settings, content: Content | None = None) -> web.Application:
    """Build the server. Content is loaded (and validated) here unless given."""
    content = content or load_content(settings.flows_dir, settings.prompts_dir)
    checker = SignatureChecker(settings.auth_token, settings.public_url)
    app = web.Application(middlewares=[middleware(checker)], client_max_size=MAX_BODY)
    app[settings_key] = settings
    app[content_key] = content
    plan = content.plan
    app[Keys.backup_number] = settings.backup_number or plan.national_backup.number
    app[Keys.georoute_param] = plan.georoute_param or ""
    app[Keys.default_region] = plan.default_region
    app[Keys.hash_key] = settings.caller_hash_key
    app.cleanup_ctx.append(_database)
    webhooks.add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/prompts/{lang}/{name}", prompt_recording)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    dsn = settings.database_url
    if dsn is None:
        # pgserver blocks while PostgreSQL starts; keep the loop free meanwhile.
        dsn = await asyncio.to_thread(start_embedded, settings.data_dir)
    pool = await open_pool(dsn)
    app[pool_key] = pool
    content = app[content_key]
    renderer = Renderer(settings.public_url, content.flows.prompts)
    steps_for = partial(_steps, content, app[Keys.backup_number])
    app[Keys.callflow] = CallFlow(pool, content.flows, renderer, steps_for)
    yield
    await pool.close()


def _steps(
    content: Content, backup: str, transfer: TransferTo, caller_state: str | None
) -> Sequence[DialStep]:
    return dial_steps(content.plan, transfer, caller_state, backup)


async def healthz(request: web.Request) -> web.Response:
    app = request.app
    pool = app.get(pool_key)
    db_ok = pool is not None and await ping(pool)
    flows_ok = bool(app[content_key].flows.flows)
    body = {"database": db_ok, "flows": flows_ok}
    return web.json_response(body, status=200 if db_ok and flows_ok else 503)


async def prompt_recording(request: web.Request) -> web.StreamResponse:
    """Serve a prompt recording for <Play>, only ones the catalog knows."""
    lang = request.match_info["lang"]
    name = request.match_info["name"]
    prompt = request.app[content_key].flows.prompts.get(lang, name.removesuffix(".wav"))
    if prompt is None or prompt.recording is None or not name.endswith(".wav"):
        raise web.HTTPNotFound()
    return web.FileResponse(prompt.recording, headers={"Content-Type": "audio/wav"})
