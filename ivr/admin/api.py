"""The admin API: counselors' presence, centers and the waiting line, as JSON
(and content publishing: ivr.admin.content).

Mounted by the server under /admin:

    admin = create_admin_app(admin_token, plan.centers, on_withdrawn)
    app.add_subapp("/admin", admin)

Every request needs `Authorization: Bearer <IVR_ADMIN_TOKEN>` (401 otherwise,
before anything else is looked at). Answers and errors are JSON; an error
is {"error": message} plus "field" when a request field is at fault: 400
for malformed JSON or an invalid value, 404 for an unknown counselor or
center, 409 when the counselor's state forbids the change. Nothing here
carries a caller's phone number: the line lists CallSids, languages and
states only.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler

from ivr import keys
from ivr.admin import content as content_api
from ivr.errors import RequestError
from ivr.storage import counselors, queue
from ivr.storage.counselors import CounselorRow, PresenceConflict, UnknownCounselor
from ivr.storage.queue import Offer, WaitingCaller

log = logging.getLogger(__name__)

OnWithdrawn = Callable[[Offer], Awaitable[None]]

_REALM = 'Bearer realm="ivr-admin"'


class _Problem(RequestError):
    """A request the API refuses; becomes a JSON error response."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, str] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status)


def create_admin_app(
    admin_token: str,
    centers: Iterable[str],
    on_withdrawn: OnWithdrawn | None = None,
) -> web.Application:
    """The /admin sub-application.

    The pool is the parent application's (`keys.pool`, looked up through the
    request's config chain, so it may be opened after mounting); centers are
    the routing plan's center ids; on_withdrawn is awaited with every ringing
    offer a presence change cancelled, to hang its leg up.
    """
    admin = _Admin(admin_token, frozenset(centers), on_withdrawn)
    app = web.Application(middlewares=[admin.authenticate, _json_errors])
    app.router.add_get("/counselors", admin.counselors)
    app.router.add_get("/counselors/{id}", admin.counselor)
    app.router.add_put("/counselors/{id}/presence", admin.presence)
    app.router.add_post("/counselors/{id}/presence", admin.presence)
    app.router.add_get("/centers", admin.centers)
    app.router.add_get("/centers/{id}", admin.center)
    app.router.add_get("/queue", admin.waiting)
    content_api.add_routes(app)
    return app


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except _Problem as exc:
        return _error(exc.status, exc.message, exc.field)
    except asyncpg.DataError as exc:
        # A value PostgreSQL cannot hold (a NUL in an id): the request's fault.
        log.info("admin request with a value the database refuses: %s", exc)
        return _error(400, "a value in the request cannot be stored", "id")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("admin request failed on the database: %s", exc)
        return _error(503, "database unavailable")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error(exc.status, exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response


class _Admin:
    def __init__(
        self,
        token: str,
        centers: frozenset[str],
        on_withdrawn: OnWithdrawn | None,
    ) -> None:
        self._token = token.encode()
        self._centers = centers
        self._on_withdrawn = on_withdrawn

    def _pool(self, request: web.Request) -> asyncpg.Pool:
        pool = request.config_dict.get(keys.pool)
        if pool is None:  # still starting
            raise _Problem(503, "database not ready")
        return pool

    @web.middleware
    async def authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # compare_digest keeps the comparison's time independent of the token.
        if (
            not self._token
            or scheme.lower() != "bearer"
            # Header bytes that are not UTF-8 arrive as surrogates: they must
            # compare unequal, not fail to encode.
            or not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"),
                                       self._token)
        ):
            challenge = _REALM if not scheme else _REALM + ', error="invalid_token"'
            response = _error(401, "missing or wrong bearer token")
            response.headers["WWW-Authenticate"] = challenge
            return response
        return await handler(request)

    def _center_ids(self, request: web.Request) -> frozenset[str]:
        """The active content version's centers (a publish may add or remove some)."""
        active = request.config_dict.get(keys.active)
        if active is None:
            return self._centers
        return frozenset(active.current.content.plan.centers)

    def _known_center(self, request: web.Request, center: str, field: str) -> None:
        if center not in self._center_ids(request):
            raise _Problem(404, f"unknown center '{center}'", field)

    async def counselors(self, request: web.Request) -> web.Response:
        center = request.query.get("center")
        if center is not None:
            self._known_center(request, center, "center")
        rows = await counselors.list_counselors(self._pool(request), center)
        return web.json_response({"counselors": [_counselor(r) for r in rows]})

    async def counselor(self, request: web.Request) -> web.Response:
        counselor_id = request.match_info["id"]
        try:
            row = await counselors.get_counselor(self._pool(request), counselor_id)
        except UnknownCounselor:
            raise _unknown(counselor_id) from None
        return web.json_response(_counselor(row))

    async def presence(self, request: web.Request) -> web.Response:
        counselor_id = request.match_info["id"]
        body = await _json_object(request)
        for key in body:
            if key != "presence":
                raise _Problem(400, f"unknown field '{key}' (expected: presence)", key)
        presence = body.get("presence")
        if not isinstance(presence, str):
            raise _Problem(
                400, "presence is required: one of " + ", ".join(counselors.SETTABLE), "presence"
            )
        try:
            change = await counselors.set_presence(self._pool(request), counselor_id, presence)
        except counselors.InvalidPresence as exc:
            raise _Problem(400, str(exc), "presence") from None
        except UnknownCounselor:
            raise _unknown(counselor_id) from None
        except PresenceConflict as exc:
            raise _Problem(409, str(exc), "presence") from None
        log.info("admin set counselor %s %s", counselor_id, change.counselor.presence)
        withdrawn = change.withdrawn
        if withdrawn is not None and self._on_withdrawn is not None:
            try:
                await self._on_withdrawn(withdrawn)
            except Exception:
                # The database is already consistent; an uncancelled leg ends as a miss.
                log.exception("could not hang up the withdrawn offer %d", withdrawn.id)
        body_out = _counselor(change.counselor)
        body_out["withdrawn_offer"] = None if withdrawn is None else withdrawn.id
        return web.json_response(body_out)

    async def centers(self, request: web.Request) -> web.Response:
        counts = await counselors.presence_counts(self._pool(request))
        empty = dict.fromkeys(counselors.PRESENCES, 0)
        return web.json_response({
            "centers": [
                {"id": c, "presence": counts.get(c, empty)}
                for c in sorted(self._center_ids(request))
            ]
        })

    async def center(self, request: web.Request) -> web.Response:
        center = request.match_info["id"]
        self._known_center(request, center, "id")
        rows = await counselors.list_counselors(self._pool(request), center)
        presence = dict.fromkeys(counselors.PRESENCES, 0)
        for r in rows:
            if not r.removed:
                presence[r.presence] += 1
        return web.json_response({
            "id": center,
            "presence": presence,
            "counselors": [_counselor(r) for r in rows],
        })

    async def waiting(self, request: web.Request) -> web.Response:
        callers = await queue.waiting_callers(self._pool(request))
        return web.json_response({"callers": [_caller(c) for c in callers]})


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Problem(400, f"malformed JSON: {exc}", "body") from None
    except RecursionError:
        raise _Problem(400, "malformed JSON: nested too deep", "body") from None
    if not isinstance(body, dict):
        raise _Problem(400, "the body must be a JSON object", "body")
    return body


def _unknown(counselor_id: str) -> _Problem:
    return _Problem(404, f"unknown counselor '{counselor_id}'", "id")


def _time(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _counselor(row: CounselorRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "center": row.center_id,
        "name": row.name,
        "address": row.address,
        "languages": list(row.languages),
        "skills": list(row.skills),
        "presence": row.presence,
        "presence_since": _time(row.presence_since),
        "idle_since": _time(row.idle_since),
        "current_call": row.current_call,
        "removed": row.removed,
    }


def _caller(c: WaitingCaller) -> dict[str, Any]:
    return {
        "call_sid": c.call_sid,
        "queue": c.queue,
        "language": c.language,
        "need": c.need,
        "caller_state": c.caller_state,
        "status": c.status,
        "waited_seconds": round(c.waited_seconds, 1),
        "tier": {"index": c.tier_index, "kind": c.tier_kind, "seconds": round(c.tier_seconds, 1)},
        "attempts": c.attempts,
        "offered_counselor": c.offered_counselor,
    }
