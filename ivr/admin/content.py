"""The admin API's content endpoints: publish, list versions, activate.

    POST /admin/content/publish    empty body: the server's content folders as
                                   on disk now; or a tar (.tar, .tar.gz) or zip
                                   of the folders flows/ and prompts/
        200 {"version", "worst_case", "new", "warnings"}
        422 {"problems": [{"file", "line", "column", "message"}]}
        400 a damaged or unsafe archive, 413 a too large one, 409 another
        publish under way; nothing is activated on any refusal.
    GET  /admin/content/versions   {"active": version, "versions": [...]}
    POST /admin/content/activate   {"version": "..."}: 200 the version, 404 unknown

The handlers only translate HTTP: the work is `ivr.publishing.publish`'s.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from aiohttp import web

from ivr import keys
from ivr.content import InvalidContent
from ivr.publishing import archive
from ivr.publishing import publish as pub
from ivr.publishing.active import UnknownVersion
from ivr.publishing.archive import ArchiveError, read_archive
from ivr.publishing.wiring import serve_latest

log = logging.getLogger(__name__)

# Who published, as the versions list shows it: the name of the token used.
# The console's tokens (issue 11) put theirs on the request under this key.
TOKEN_NAME = "token_name"
UPLOAD_SECONDS = 120.0  # a 64 MiB archive over a slow link, not a body that never comes
ADMIN_TOKEN_NAME = "admin"


def add_routes(app: web.Application) -> None:
    app.router.add_post("/content/publish", publish)
    app.router.add_get("/content/versions", versions)
    app.router.add_post("/content/activate", activate)


def _who(request: web.Request) -> str:
    name = request.get(TOKEN_NAME)
    return name if isinstance(name, str) and name else ADMIN_TOKEN_NAME


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _pool(request: web.Request) -> asyncpg.Pool | None:
    return request.config_dict.get(keys.pool)


async def read_upload(request: web.Request, limit: int | None = None) -> bytes | None:
    """The request body, or None when it is larger than `limit`: judged by its
    Content-Length before reading a byte, and by the bytes read as they come
    (a chunked upload names no length)."""
    limit = archive.MAX_UPLOAD if limit is None else limit
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(UPLOAD_SECONDS):
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
    except TimeoutError:
        log.warning("content upload did not arrive within %g s; dropped", UPLOAD_SECONDS)
        raise web.HTTPRequestTimeout(text="the upload did not arrive in time\n",
                                     headers={"Connection": "close"}) from None
    return b"".join(chunks)


async def publish(request: web.Request) -> web.Response:
    pool = _pool(request)
    if pool is None or keys.publish_settings not in request.config_dict:
        return _error(503, "the server is still starting")
    how = request.config_dict[keys.publish_settings]
    body = await read_upload(request)
    if body is None:
        # Closing: the rest of an oversized upload is not worth reading.
        response = _error(413, f"the upload is larger than {archive.MAX_UPLOAD // 2**20} MiB")
        response.force_close()
        return response
    try:
        if body:
            # Decompressing is CPU work: off the event loop.
            files = await asyncio.to_thread(read_archive, body)
            result = await pub.publish(pool, files, _who(request), how)
        else:
            settings = request.config_dict[keys.settings]
            result = await pub.publish_folders(pool, settings.flows_dir, settings.prompts_dir,
                                               _who(request), how)
    except ArchiveError as exc:
        return _error(400, str(exc))
    except pub.PublishRefused as exc:
        return web.json_response({"problems": pub.problems_json(exc.problems)}, status=422)
    except pub.PublishConflict as exc:
        return _error(409, str(exc))
    await follow_now(request)
    return web.json_response(dict(pub.result_json(result)))


async def follow_now(request: web.Request) -> None:
    """This instance serves the new version before answering (the API's, the
    console's page reload); the others switch when they hear the announcement."""
    active = request.config_dict.get(keys.active)
    pool = _pool(request)
    if active is not None and pool is not None:
        await serve_latest(active, pool)


async def versions(request: web.Request) -> web.Response:
    pool = _pool(request)
    if pool is None:
        return _error(503, "the server is still starting")
    found = await pub.list_versions(pool)
    active = next((v.version for v in found if v.active), None)
    return web.json_response({"active": active,
                              "versions": [pub.version_json(v) for v in found]})


async def activate(request: web.Request) -> web.Response:
    pool = _pool(request)
    if pool is None or keys.publish_settings not in request.config_dict:
        return _error(503, "the server is still starting")
    body: Any
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the body must be JSON: {\"version\": \"...\"}")
    version = body.get("version") if isinstance(body, dict) else None
    if not isinstance(version, str) or not version:
        return _error(400, "version is required")
    try:
        info = await pub.activate(pool, version, _who(request),
                                  request.config_dict[keys.publish_settings])
    except UnknownVersion as exc:
        return _error(404, str(exc))
    except (pub.PublishRefused, InvalidContent) as exc:
        return _error(422, f"version {version} does not load on this instance: {exc}")
    await follow_now(request)
    return web.json_response(pub.version_json(info))
