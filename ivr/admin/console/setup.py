"""Wiring the console into the server: the sub-application, the hub's life."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp_jinja2
import jinja2
from aiohttp import web

from ivr import keys
from ivr.admin.console import views
from ivr.admin.console.assets import TEMPLATES
from ivr.admin.console.events import Hub
from ivr.admin.console.pictures import FlowPictures

log = logging.getLogger(__name__)


def create_console_app(admin_token: str, secure_cookie: bool) -> web.Application:
    """The /console sub-application; the hub it reads comes from `live_updates`."""
    console = web.Application(middlewares=[views.guard])
    console[views.admin_token_key] = admin_token
    console[views.secure_key] = secure_cookie
    console[views.pictures_key] = FlowPictures()
    # Autoescaping for every template: names from the routing plan are text.
    aiohttp_jinja2.setup(console, loader=jinja2.DictLoader(TEMPLATES), autoescape=True,
                         undefined=jinja2.StrictUndefined, trim_blocks=True,
                         lstrip_blocks=True, filters=views.template_filters())
    views.add_routes(console)
    return console


async def live_updates(app: web.Application) -> AsyncIterator[None]:
    """The console hub: the task that watches the database while event
    streams are open, and feeds them the board."""
    hub = Hub(app[keys.pool])
    task = asyncio.create_task(hub.run())
    app[keys.console_hub] = hub
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def close_event_streams(app: web.Application) -> None:
    """on_shutdown: end the open event streams, so the server stops at once."""
    hub = app.get(keys.console_hub)
    if hub is not None:
        hub.close()


async def to_console(request: web.Request) -> web.StreamResponse:
    """/console without its slash: the address people type."""
    raise web.HTTPPermanentRedirect("/console/")
