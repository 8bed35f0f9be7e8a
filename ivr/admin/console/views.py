"""The console's pages and form posts (mounted under /console by create_app).

Every page but sign-in needs a session (cookie); a missing, ended or
expired one sends the browser back to sign-in with a message, never to an
error page. Every state-changing request is a POST carrying the session's
CSRF token in its form: a missing or wrong one is refused with 403 before
anything is looked at. Form posts answer with a redirect back to the page
(post/redirect/get), so the page works without scripts; with them, the
board is redrawn live by Server-Sent Events.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import aiohttp_jinja2
import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler

from ivr import keys
from ivr.admin.console import sessions, tokens
from ivr.admin.console.assets import STATIC
from ivr.admin.console.board import IN_STATE_GOAL, Board
from ivr.admin.console.events import Ended, sse_message
from ivr.admin.console.pictures import FlowPictures
from ivr.admin.console.sessions import Session
from ivr.admin.console.tokens import Holder
from ivr.admin.content import follow_now
from ivr.content import Content, InvalidContent
from ivr.publishing import publish as publishing
from ivr.publishing.active import UnknownVersion
from ivr.storage import counselors
from ivr.storage.counselors import PresenceConflict, UnknownCounselor
from ivr.yamlsrc import Problem

log = logging.getLogger(__name__)

COOKIE: Final = "ivr_console"
PATH: Final = "/console"
# A wrong token costs this long: guessing stays slow even below the rate limit.
FAILURE_DELAY: Final = 1.0
# Presences each role may set (a counselor: only their own).
SUPERVISOR_SETS: Final = ("available", "wrap-up", "offline")
COUNSELOR_SETS: Final = ("available", "offline")

# Messages shown on a page, chosen by code: nothing from the URL is echoed.
MESSAGES: Final = {
    "wrong": "That token was not accepted. Check it and try again.",
    "limited": "Too many failed sign-ins from this address. Wait a few minutes, then try again.",
    "expired": "Your session has ended. Sign in again to continue.",
    "out": "You are signed out.",
    "busy": "That counselor is offered a call or on one: not changed.",
    "set": "Presence changed.",
    "published": "The content folders are published: this version is active on every instance.",
    "unchanged": "The content folders are already the active version: nothing to publish.",
    "rolledback": "Rolled back: that version is active on every instance.",
    "conflict": "Another publish is under way: try again when it is done.",
}

session_key = web.RequestKey("console_session", Session)
pictures_key = web.AppKey("console_pictures", FlowPictures)
secure_key = web.AppKey("console_secure_cookie", bool)
admin_token_key = web.AppKey("console_admin_token", str)

_SECURITY_HEADERS: Final = {
    # Scripts and styles only from our own files: markup injected into a
    # name could not run even if it escaped the templates.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def add_routes(console: web.Application) -> None:
    console.router.add_get("/", page)
    console.router.add_get("/signin", signin_page)
    console.router.add_post("/signin", signin)
    console.router.add_post("/signout", signout)
    console.router.add_post("/counselors/{id}/presence", presence)
    console.router.add_post("/content/publish", publish)
    console.router.add_post("/content/activate", activate)
    console.router.add_get("/events", events)
    console.router.add_get("/flows/{id}.svg", flow_picture)
    console.router.add_get("/static/{name}", static)


def _pool(request: web.Request) -> asyncpg.Pool:
    pool = request.config_dict.get(keys.pool)
    if pool is None:
        raise web.HTTPServiceUnavailable(text="starting: try again in a moment\n")
    return pool


def _to_signin(request: web.Request, message: str) -> web.HTTPSeeOther:
    redirect = web.HTTPSeeOther(f"{PATH}/signin?m={message}")
    redirect.del_cookie(COOKIE, path=PATH)
    return redirect


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Session for every page but sign-in; CSRF for every POST but sign-in."""
    try:
        response = await _guarded(request, handler)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("console: %s failed on the database: %s", request.path, exc)
        response = web.Response(status=503, text="The database does not answer: the line "
                                "keeps running; try this page again in a moment.\n")
    if not response.prepared:
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    tail = request.path.removeprefix(PATH)
    if tail == "/signin" or tail.startswith("/static/"):
        return await handler(request)
    cookie = request.cookies.get(COOKIE)
    session = await sessions.find_session(_pool(request), cookie) if cookie else None
    if session is None:
        message = "expired" if cookie else "out"
        if tail == "/events":
            # EventSource cannot follow a redirect to a page: say so in the stream.
            raise web.HTTPUnauthorized(text="signed out\n")
        raise _to_signin(request, message)
    if request.method == "POST":
        form = await request.post()
        given = form.get("csrf")
        if not isinstance(given, str) or not hmac.compare_digest(
                given.encode(), session.csrf.encode()):
            log.warning("console: %s without a valid CSRF token, refused", request.path)
            raise web.HTTPForbidden(text="missing or wrong CSRF token: nothing changed\n")
    request[session_key] = session
    return await handler(request)


def _message(request: web.Request) -> str | None:
    return MESSAGES.get(request.query.get("m", ""))


async def signin_page(request: web.Request) -> web.Response:
    return _signin(request, _message(request))


def _signin(request: web.Request, message: str | None, status: int = 200) -> web.Response:
    return aiohttp_jinja2.render_template(
        "signin.html", request, {"message": message, "title": "Sign in"}, status=status)


async def signin(request: web.Request) -> web.StreamResponse:
    pool = _pool(request)
    # Behind a load balancer every client shares its address: the limit then
    # holds for the line as a whole, still shared by every instance.
    source = request.remote or "unknown"
    if await sessions.too_many_failures(pool, source):
        await asyncio.sleep(FAILURE_DELAY)
        return _signin(request, MESSAGES["limited"], status=429)
    form = await request.post()
    given = form.get("token")
    holder = await _holder(request, pool, given.strip() if isinstance(given, str) else "")
    if holder is None:
        await sessions.record_failure(pool, source)
        await asyncio.sleep(FAILURE_DELAY)
        log.warning("console: failed sign-in from %s", source)
        return _signin(request, MESSAGES["wrong"], status=401)
    cookie, _ = await sessions.open_session(pool, holder)
    log.info("console: %s %s signed in", holder.role, holder.subject)
    response = web.HTTPSeeOther(f"{PATH}/")
    response.set_cookie(
        COOKIE, cookie, path=PATH, httponly=True, samesite="Strict",
        secure=request.app[secure_key], max_age=int(sessions.SESSION_LIFETIME.total_seconds()))
    raise response


async def _holder(request: web.Request, pool: asyncpg.Pool, given: str) -> Holder | None:
    if not given:
        return None
    admin = request.app[admin_token_key]
    if admin and hmac.compare_digest(given.encode(), admin.encode()):
        return Holder("supervisor", "admin", None)
    return await tokens.holder_of(pool, given)


async def signout(request: web.Request) -> web.StreamResponse:
    session = request[session_key]
    await sessions.end_session(_pool(request), session.digest)
    log.info("console: %s %s signed out", session.holder.role, session.holder.subject)
    raise _to_signin(request, "out")


async def page(request: web.Request) -> web.Response:
    return await _page(request, _message(request))


async def _page(
    request: web.Request, message: str | None, problems: Sequence[Problem] = (),
    status: int = 200,
) -> web.Response:
    session = request[session_key]
    board = await request.config_dict[keys.console_hub].board()
    context = _context(request, session, board)
    context["message"] = message
    if session.holder.role == "supervisor":
        context["versions"] = await publishing.list_versions(_pool(request))
        context["problems"] = problems
        name = "supervisor.html"
    else:
        name = "counselor.html"
    return aiohttp_jinja2.render_template(name, request, context, status=status)


def _served(request: web.Request) -> tuple[str, Content]:
    """The content version this instance serves now, and its content."""
    active = request.config_dict.get(keys.active)
    if active is None:  # still starting
        return "", request.config_dict[keys.content]
    return active.current.version, active.current.content


def _context(request: web.Request, session: Session, board: Board) -> dict[str, Any]:
    version, content = _served(request)
    plan = content.plan
    holder = session.holder
    context: dict[str, Any] = {
        "holder": holder,
        "csrf": session.csrf,
        "board": board,
        "goal": IN_STATE_GOAL,
        "center_names": {cid: c.name for cid, c in plan.centers.items()},
        "names": {c.id: c.name for c in board.counselors},
        "title": "Supervisor console" if holder.role == "supervisor" else "Counselor console",
    }
    if holder.role == "supervisor":
        context["settable"] = SUPERVISOR_SETS
        context["flows"] = [
            (flow_id, content.analyses[flow_id]) for flow_id in sorted(content.flows.flows)
        ]
        context["version"] = version
    else:
        context["me"] = board.counselor(holder.subject)
        context["offer"] = board.offer_for(holder.subject)
        context["settable"] = COUNSELOR_SETS
    return context


def _may_set(holder: Holder, counselor_id: str, value: str) -> bool:
    if holder.role == "supervisor":
        return value in SUPERVISOR_SETS
    return counselor_id == holder.subject and value in COUNSELOR_SETS


async def presence(request: web.Request) -> web.StreamResponse:
    session = request[session_key]
    counselor_id = request.match_info["id"]
    form = await request.post()
    value = form.get("presence")
    if not isinstance(value, str) or value not in SUPERVISOR_SETS:
        raise web.HTTPBadRequest(text="presence must be one of " + ", ".join(SUPERVISOR_SETS))
    if not _may_set(session.holder, counselor_id, value):
        log.warning("console: %s %s may not set %s %s", session.holder.role,
                    session.holder.subject, counselor_id, value)
        raise web.HTTPForbidden(text="you may set only your own presence: nothing changed\n")
    try:
        change = await counselors.set_presence(_pool(request), counselor_id, value)
    except UnknownCounselor:
        raise web.HTTPNotFound(text=f"no counselor {counselor_id}\n") from None
    except PresenceConflict:
        raise web.HTTPSeeOther(f"{PATH}/?m=busy") from None
    log.info("console: %s %s set counselor %s %s", session.holder.role, session.holder.subject,
             counselor_id, value)
    if change.withdrawn is not None:
        try:
            # Their phone was ringing: hang that leg up, as the admin API does.
            await request.config_dict[keys.transfers].withdrawn(change.withdrawn)
        except Exception:
            log.exception("could not hang up the withdrawn offer %d", change.withdrawn.id)
    raise web.HTTPSeeOther(f"{PATH}/?m=set")


async def events(request: web.Request) -> web.StreamResponse:
    """The board, re-rendered for this session at every change (Server-Sent Events)."""
    session = request[session_key]
    hub = request.config_dict[keys.console_hub]
    name = ("supervisor_board.html" if session.holder.role == "supervisor"
            else "counselor_board.html")
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",  # proxies must pass each event on at once
    })
    await response.prepare(request)
    async with hub.subscribe(session.digest) as boards:
        try:
            while True:
                board = await boards.get()
                if board is None:  # shutting down
                    break
                # Signed out elsewhere, expired or revoked: the page says so and stops.
                if isinstance(board, Ended):
                    html = aiohttp_jinja2.render_string("ended.html", request, {})
                    await response.write(sse_message("board", html))
                    break
                html = aiohttp_jinja2.render_string(name, request,
                                                    _context(request, session, board))
                await response.write(sse_message("board", html))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The page went away, or the database did: the browser reconnects by itself.
            log.debug("console: event stream ended: %s", exc)
    return response


def _supervisor_only(request: web.Request) -> None:
    if request[session_key].holder.role != "supervisor":
        raise web.HTTPForbidden(text="supervisors only: nothing changed\n")


async def publish(request: web.Request) -> web.StreamResponse:
    """Publish the content folders (as `kill -HUP` does); refused problems are
    shown in place on the page, the version served stays."""
    _supervisor_only(request)
    pool, settings = _pool(request), request.config_dict[keys.settings]
    how = request.config_dict.get(keys.publish_settings)
    if how is None:
        raise web.HTTPServiceUnavailable(text="starting: try again in a moment\n")
    who = _who(request)
    try:
        result = await publishing.publish_folders(pool, settings.flows_dir, settings.prompts_dir,
                                                  who, how)
    except publishing.PublishRefused as exc:
        log.warning("console: %s's publish refused: %d problems", who, len(exc.problems))
        return await _page(request, "The content folders were not published: they have "
                           "problems (below). The active version is unchanged.",
                           problems=exc.problems, status=422)
    except publishing.PublishConflict:
        raise web.HTTPSeeOther(f"{PATH}/?m=conflict") from None
    await follow_now(request)
    raise web.HTTPSeeOther(f"{PATH}/?m={'published' if result.created else 'unchanged'}")


async def activate(request: web.Request) -> web.StreamResponse:
    """Make a stored version active again: a rollback."""
    _supervisor_only(request)
    how = request.config_dict.get(keys.publish_settings)
    if how is None:
        raise web.HTTPServiceUnavailable(text="starting: try again in a moment\n")
    form = await request.post()
    version = form.get("version")
    if not isinstance(version, str) or not version:
        raise web.HTTPBadRequest(text="version is required\n")
    try:
        await publishing.activate(_pool(request), version, _who(request), how)
    except UnknownVersion:
        raise web.HTTPNotFound(text="no such content version\n") from None
    except (publishing.PublishRefused, InvalidContent) as exc:
        return await _page(request, f"Version {version[:12]} does not load on this "
                           "instance: not activated.", problems=getattr(exc, "problems", ()),
                           status=422)
    await follow_now(request)
    raise web.HTTPSeeOther(f"{PATH}/?m=rolledback")


def _who(request: web.Request) -> str:
    holder = request[session_key].holder
    return f"console ({holder.subject})"


async def flow_picture(request: web.Request) -> web.Response:
    _supervisor_only(request)
    version, content = _served(request)
    svg = await request.app[pictures_key].svg(version, content, request.match_info["id"])
    if svg is None:
        raise web.HTTPNotFound(text="no picture of that flow\n")
    return web.Response(body=svg, content_type="image/svg+xml")


async def static(request: web.Request) -> web.Response:
    found = STATIC.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    content_type, body = found
    # Versioned file names: a new version is a new name, so caching is safe.
    return web.Response(body=body, content_type=content_type,
                        headers={"Cache-Control": "public, max-age=86400"})


def template_filters() -> Mapping[str, Any]:
    return {"duration": duration, "pct": pct, "secs": secs}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"
