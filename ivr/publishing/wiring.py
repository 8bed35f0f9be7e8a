"""The server's side of content versions: what it serves at start-up, the
announcements it follows, and `kill -HUP`.

At start-up an instance publishes its own folders when the database has
never seen them (a first start, or folders edited since), then serves the
active version, which may be another's: an instance started after a publish
serves what the others serve.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import asyncpg
from aiohttp import web

from ivr import keys, logs
from ivr.content import InvalidContent
from ivr.errors import ContentError
from ivr.publishing import versions
from ivr.publishing.active import ActiveContent, Served, ServeSettings, load, serve
from ivr.publishing.archive import read_folders
from ivr.publishing.publish import PublishConflict, PublishRefused, publish_checked
from ivr.publishing.publish import publish_folders as publish_folders
from ivr.storage.counselors import sync_counselors

log = logging.getLogger(__name__)

HUP_BY = "ivr serve (SIGHUP)"
RECONCILE_SECONDS = 30.0
START_BY = "ivr serve (start-up)"


def serve_settings(app: web.Application) -> ServeSettings:
    settings = app[keys.settings]
    return ServeSettings(
        public_url=settings.public_url,
        caller_id=settings.caller_id,
        backup_number=settings.backup_number,
        models=dict(settings.vosk_models),
        work_dir=settings.data_dir / "content",
    )


async def content_versions(app: web.Application) -> AsyncIterator[None]:
    """The active content of this instance (keys.active), ready before calls are taken."""
    content, pool = app[keys.content], app[keys.pool]
    settings = app[keys.settings]
    how = serve_settings(app)
    flows_dir = content.flows_dir or settings.flows_dir
    prompts_dir = content.prompts_dir or settings.prompts_dir
    files = await asyncio.to_thread(read_folders, flows_dir, prompts_dir)
    own = versions.content_hash(files)
    if not await versions.is_stored(pool, own):
        await publish_checked(pool, files, content, START_BY)
    active = await versions.active(pool)
    if active is None:  # stored but never activated: a start-up that died mid-publish
        await publish_checked(pool, files, content, START_BY)
        active = await versions.active(pool)
        if active is None:
            raise ContentError("no content version is active after publishing one")
    first: Served | None = None
    if active.version != own:
        try:
            first = await load(pool, active.version, how)
            log.info("serving content version %s, active in the database", active.version)
        except InvalidContent as exc:
            log.error("the active content version %s does not load on this instance; "
                      "serving this instance's folders (%s) until the next publish:\n%s",
                      active.version, own, exc)
    if first is None:
        first = serve(own, content, how, app[keys.prompt_audio])
    synced = await sync_counselors(pool, first.content.plan)
    log.info("counselors from the routing plan of content version %s: %s",
             first.version, synced)
    app[keys.publish_settings] = how
    app[keys.active] = ActiveContent(first, active.seq, partial(load, pool, how=how))
    yield


async def content_listener(app: web.Application) -> AsyncIterator[None]:
    """Follow activations (NOTIFY on the routing listener's connection); the
    transfers take the active plan and prompts for calls they start next."""
    active, transfers = app[keys.active], app[keys.transfers]
    transfers.contents = active  # a call's transfer renders with the version it started on

    async def follow(served: Served) -> None:
        # The active plan and words, for what is not a call's own (a call's
        # transfer takes its version's: Transfers.served_for).
        transfers.plan = served.content.plan
        transfers.renderer = served.renderer
        transfers.kick()  # a center gone: its waiting callers move on now
        app[keys.metrics].serving(served.version)
        logs.set_version(served.version)

    app[keys.metrics].serving(active.current.version)
    logs.set_version(active.current.version)
    active.on_switch.append(follow)
    tasks: set[asyncio.Task[Any]] = set()

    def heard(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        found = versions.parse_announcement(payload)
        if found is not None:
            task = asyncio.create_task(_switch(active, found))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    listener: asyncpg.Connection = app[keys.listener]
    await listener.add_listener(versions.CONTENT_CHANNEL, heard)
    pool = app[keys.pool]
    try:
        # An activation between start-up and LISTEN would not be heard: read it.
        await serve_latest(active, pool)
        tasks.add(asyncio.create_task(_reconcile(active, pool)))
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _reconcile(active: ActiveContent, pool: asyncpg.Pool) -> None:
    """Read the active version now and then: an announcement lost with a
    dropped connection delays a switch by RECONCILE_SECONDS, not forever."""
    while True:
        await asyncio.sleep(RECONCILE_SECONDS)
        try:
            await serve_latest(active, pool)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("could not read the active content version: %s", exc)


async def serve_latest(active: ActiveContent, pool: asyncpg.Pool) -> bool:
    """Serve the database's active version now (after this instance published
    or activated one: its next call must not wait for the announcement)."""
    latest = await versions.active(pool)
    return latest is not None and await _switch(active, latest)


async def _switch(active: ActiveContent, to: versions.Active) -> bool:
    try:
        return await active.switch(to)
    except Exception:
        # Calls go on with the version served so far; the log says why.
        log.exception("could not switch to content version %s", to.version)
        return False


async def publish_on_hup(app: web.Application) -> None:
    """on_startup of `ivr serve`: SIGHUP publishes the content folders."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def hup() -> None:
        task = asyncio.create_task(_publish_own(app))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGHUP, hup)

    async def remove(_: web.Application) -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    app.on_cleanup.append(remove)


async def _publish_own(app: web.Application) -> None:
    settings = app[keys.settings]
    try:
        result = await publish_folders(app[keys.pool], settings.flows_dir, settings.prompts_dir,
                                       HUP_BY, app[keys.publish_settings])
    except PublishRefused as exc:
        log.error("SIGHUP: the content folders are not valid; nothing changed:\n%s", exc)
    except PublishConflict as exc:
        log.error("SIGHUP: %s", exc)
    except Exception:
        log.exception("SIGHUP: publishing the content folders failed; nothing changed")
    else:
        log.warning("SIGHUP: content version %s published", result.version)
        await serve_latest(app[keys.active], app[keys.pool])
