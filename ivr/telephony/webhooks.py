"""aiohttp handlers for Twilio's voice webhooks.

A voice webhook never answers 500 and never leaves the caller in silence:
whatever goes wrong inside (database down, a bug, an unknown CallSid), the
caller is sent to the backup line.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import web

from ivr import keys, logs
from ivr.routing.location import caller_hash, locate
from ivr.storage.database import ping
from ivr.telephony.callflow import KEPT_PARAMS, CallerInfo
from ivr.telephony.signature import form_of
from ivr.telephony.spool import Spool, Spooled
from ivr.telephony.twiml import dial_caller_id, failsafe, hangup_only

log = logging.getLogger(__name__)

TWIML = "text/xml"
# What a CallSid can look like (Twilio's are CA and 32 hex digits): anything
# longer or with control characters is not one, and must not reach the database.
_PLAUSIBLE_SID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_ID = 2**63 - 1  # a PostgreSQL bigint
SPOOL: web.AppKey[Spool] = web.AppKey("callback_spool", Spool)
SPOOL_REPLAY_SECONDS = 1.0  # how often the spool is checked while it holds callbacks


def twiml(body: str) -> web.Response:
    return web.Response(text=body, content_type=TWIML)


VoiceHandler = Callable[[web.Request, str], Awaitable[str]]


def voice_webhook(handler: VoiceHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Wrap a voice handler: CallSid required, any failure answers the fail-safe TwiML."""

    async def wrapped(request: web.Request) -> web.Response:
        sid = form_of(request).get("CallSid", "").strip()
        try:
            if not _PLAUSIBLE_SID.fullmatch(sid):
                sid = sid[:40].encode("unicode_escape").decode()  # loggable as it came
                raise ValueError("webhook without a CallSid that could be one")
            return twiml(await handler(request, sid))
        except Exception:
            log.exception("call %s: %s failed; sending the caller to the backup line",
                          sid or "?", request.path)
            # Every webhook of a call carries its From: enough to choose the
            # callerId without the database (the caller's number is not kept).
            app = request.app
            app[keys.metrics].failsafe()
            if sid:
                # The caller is on the lifeline now: recorded once the database
                # answers, so nothing moves or rings for them afterwards.
                app[keys.transfers].lifeline(sid)
            caller_id = dial_caller_id(form_of(request).get("From"), app[keys.caller_id])
            return twiml(failsafe(backup_number(app), caller_id))

    return wrapped


def backup_number(app: web.Application) -> str:
    """The active content version's backup line (IVR_BACKUP_NUMBER wins)."""
    active = app.get(keys.active)
    return active.current.backup_number if active is not None else app[keys.backup_number]


def _seq(request: web.Request) -> int:
    return int(request.query.get("seq", ""))


@voice_webhook
async def voice(request: web.Request, sid: str) -> str:
    app = request.app
    params = form_of(request)
    plan = app[keys.active].current.content.plan
    location = locate(params, plan.georoute_param, plan.default_region)
    number = params.get("From", "")
    hashed = caller_hash(number, app[keys.hash_key]) if number else None
    return await app[keys.callflow].incoming(sid, params, CallerInfo(location, hashed))


@voice_webhook
async def gather(request: web.Request, sid: str) -> str:
    return await request.app[keys.callflow].gather(sid, _seq(request), form_of(request))


@voice_webhook
async def listen(request: web.Request, sid: str) -> str:
    return await request.app[keys.callflow].listened(sid, _seq(request), form_of(request))


@voice_webhook
async def conference_end(request: web.Request, sid: str) -> str:
    return await request.app[keys.callflow].conference_ended(sid, _seq(request), form_of(request))


@voice_webhook
async def resume(request: web.Request, sid: str) -> str:
    return await request.app[keys.callflow].resume(sid, _seq(request), form_of(request))


async def hold(request: web.Request) -> web.Response:
    """The conference wait URL: reassurance and hold audio, no database needed.

    It is also the caller's lifeline, requested again at every hold round:
    each round checks (one query) that this caller should still be holding,
    and moves them on when not: a caller whose move to a dial step failed is
    moved again, and one who has held a while while the database does not
    answer is sent, by the REST API, to the fallback (the backup line)
    rather than left to hold for nobody (Transfers.holding). The hold music
    is answered whatever that check finds.
    """
    transfers, renderer = request.app[keys.transfers], request.app[keys.active].current.renderer
    language = request.query.get("lang", "en")
    call_sid = request.query.get("call", "")
    try:
        rounds = int(request.query.get("n", "0"))
    except ValueError:
        rounds = 0
    if call_sid:
        await transfers.holding(call_sid, rounds)
        # The words of the version the call started on (`holding` read which).
        renderer = await transfers.hold_renderer(call_sid)
        logs.about_version(renderer.version)
    try:
        return twiml(renderer.hold(language, call_sid, rounds))
    except Exception:
        # A hold document that cannot be made (a prompt missing at run time) is
        # this URL's fail-safe case: never hold in silence, go to the backup line.
        log.exception("call %s: hold document failed; sending the caller to the backup line",
                      call_sid or "?")
        if call_sid:
            transfers.lifeline_out(call_sid)
        return twiml(renderer.hold_while_moved(language, call_sid, rounds))


def _offer(request: web.Request) -> int:
    """The offer id of a counselor-leg URL: ValueError unless a bigint we could have made."""
    raw = request.query.get("offer", "")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and 0 < int(raw) <= MAX_ID):
        raise ValueError(f"not an offer id: {raw[:40]!r}")
    return int(raw)


CounselorHandler = Callable[[web.Request, int], Awaitable[str]]


def counselor_webhook(
    handler: CounselorHandler,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Wrap a counselor-leg handler: on any failure the leg is hung up, never
    sent to the backup line (that is the caller's fail-safe, not staff's)."""

    async def wrapped(request: web.Request) -> web.Response:
        try:
            return twiml(await handler(request, _offer(request)))
        except Exception:
            log.exception("counselor leg %s failed", request.path_qs)
            return twiml(hangup_only())

    return wrapped


@counselor_webhook
async def whisper(request: web.Request, offer: int) -> str:
    """A counselor answered: tell them who is waiting; they press 1 to accept."""
    return await request.app[keys.transfers].whisper(offer)


@counselor_webhook
async def whisper_answer(request: web.Request, offer: int) -> str:
    digits = form_of(request).get("Digits", "").strip()
    return await request.app[keys.transfers].whisper_answer(offer, digits)


@counselor_webhook
async def counselor_wait(request: web.Request, offer: int) -> str:
    """The wait URL of a counselor's conference: requested only while they are alone."""
    return await request.app[keys.transfers].counselor_alone(offer)


async def leg_status(request: web.Request) -> web.Response:
    try:
        offer = _offer(request)
    except ValueError:
        raise web.HTTPBadRequest(text="offer must be an offer id\n") from None
    form = form_of(request)
    leg = form.get("CallSid", "").strip()
    fields = {"offer": offer, "status": form.get("CallStatus", ""),
              "sid": leg if _PLAUSIBLE_SID.fullmatch(leg) else ""}
    return await _stored_or_spooled(request, Spooled("leg-status", fields))


@voice_webhook
async def dial(request: web.Request, sid: str) -> str:
    return await request.app[keys.callflow].dial_result(sid, _seq(request), form_of(request))


async def fallback(request: web.Request) -> web.Response:
    """For the number's Fallback URL: no database, no flow, just the backup line.

    The same fixed document to every request, signed or not (the signature
    middleware lets it through): it changes nothing and tells only the
    backup number. `ivr fallback` prints it, to host apart from the server.
    """
    request.app[keys.metrics].failsafe()  # Twilio's fallback, or our rescue of a holding caller
    return twiml(failsafe(backup_number(request.app), request.app[keys.caller_id]))


async def status(request: web.Request) -> web.Response:
    params = form_of(request)
    sid = params.get("CallSid", "").strip()
    if not _PLAUSIBLE_SID.fullmatch(sid):
        raise web.HTTPBadRequest(text="CallSid is required, as Twilio writes one\n")
    return await _stored_or_spooled(request, Spooled("status", {"sid": sid, **_kept(params)}))


def _kept(params: Mapping[str, str]) -> dict[str, str]:
    # The fields the call record keeps: never From or To (a caller's number).
    return {k: params[k] for k in KEPT_PARAMS if k in params}


async def _replay(app: web.Application, entry: Spooled) -> None:
    """Act on a status callback, live or from the spool (the same idempotent paths)."""
    fields = entry.fields
    if entry.kind == "leg-status":
        await app[keys.transfers].leg_status(int(fields["offer"]), str(fields["status"]),
                                             str(fields.get("sid", "")))
        return
    if entry.kind != "status":
        raise ValueError(f"unknown spooled callback kind {entry.kind!r}")
    params = {k: str(v) for k, v in fields.items() if k != "sid"}
    sid = str(fields["sid"])
    if not await app[keys.callflow].status(sid, params):
        log.info("status callback for unknown call %s", sid)


async def _stored_or_spooled(request: web.Request, entry: Spooled) -> web.Response:
    """Store a status callback; when the database cannot take it, keep it in
    the spool (replayed when it returns) and answer 204 all the same; when
    the spool cannot either, answer 503: the URL's connection overrides make
    Twilio retry (overrides.py)."""
    app = request.app
    try:
        await _replay(app, entry)
        return web.Response(status=204)
    except Exception as exc:
        failure = exc
    if await app[SPOOL].put(entry):
        log.warning("%s callback could not be stored (%s: %s); spooled for replay",
                    entry.kind, type(failure).__name__, failure)
        _wake_replay(app)
        return web.Response(status=204)
    log.error("%s callback could be neither stored (%s: %s) nor spooled; "
              "answering 503 for Twilio to retry", entry.kind, type(failure).__name__, failure)
    return web.Response(status=503, text="try again\n")


_REPLAY_WAKE: web.AppKey[asyncio.Event] = web.AppKey("spool_wake", asyncio.Event)


def _wake_replay(app: web.Application) -> None:
    wake = app.get(_REPLAY_WAKE)
    if wake is not None:
        wake.set()


async def _replay_spool(app: web.Application) -> None:
    """Replay spooled callbacks while there are any, every SPOOL_REPLAY_SECONDS."""
    spool, wake = app[SPOOL], app[_REPLAY_WAKE]

    async def database_up() -> bool:
        return await ping(app[keys.pool])

    async def handle(entry: Spooled) -> None:
        await _replay(app, entry)

    pending = await spool.pending() > 0  # left by an earlier run of this instance
    while True:
        if not pending:
            await wake.wait()
        wake.clear()
        await asyncio.sleep(SPOOL_REPLAY_SECONDS)
        try:
            await spool.replay(handle, database_up)
            pending = await spool.pending() > 0
        except Exception:
            log.exception("replaying the callback spool failed; trying again")
            pending = True


async def _callback_spool(app: web.Application) -> AsyncIterator[None]:
    """The spool under IVR_DATA_DIR/spool and the task that replays it."""
    app[SPOOL] = Spool(app[keys.settings].data_dir / "spool")
    app[_REPLAY_WAKE] = asyncio.Event()
    task = asyncio.create_task(_replay_spool(app))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def add_routes(app: web.Application) -> None:
    # After the call handling it replays into (create_app adds those first).
    app.cleanup_ctx.append(_callback_spool)
    app.router.add_post("/twilio/voice", voice)
    app.router.add_post("/twilio/gather", gather)
    app.router.add_post("/twilio/listen", listen)
    app.router.add_post("/twilio/dial", dial)
    app.router.add_post("/twilio/conference-end", conference_end)
    app.router.add_post("/twilio/resume", resume)
    app.router.add_post("/twilio/hold", hold)
    app.router.add_post("/twilio/whisper", whisper)
    app.router.add_post("/twilio/whisper-answer", whisper_answer)
    app.router.add_post("/twilio/counselor-wait", counselor_wait)
    app.router.add_post("/twilio/leg-status", leg_status)
    app.router.add_post("/twilio/fallback", fallback)
    app.router.add_post("/twilio/status", status)
