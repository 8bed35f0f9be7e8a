"""aiohttp handlers for Twilio's voice webhooks.

A voice webhook never answers 500 and never leaves the caller in silence:
whatever goes wrong inside (database down, a bug, an unknown CallSid), the
caller is sent to the backup line.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ivr import keys
from ivr.routing.location import caller_hash, locate
from ivr.telephony.callflow import CallerInfo
from ivr.telephony.signature import form_of
from ivr.telephony.twiml import dial_caller_id, failsafe, hangup_only

log = logging.getLogger(__name__)

TWIML = "text/xml"


def twiml(body: str) -> web.Response:
    return web.Response(text=body, content_type=TWIML)


VoiceHandler = Callable[[web.Request, str], Awaitable[str]]


def voice_webhook(handler: VoiceHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Wrap a voice handler: CallSid required, any failure answers the fail-safe TwiML."""

    async def wrapped(request: web.Request) -> web.Response:
        sid = form_of(request).get("CallSid", "").strip()
        try:
            if not sid:
                raise ValueError("webhook without CallSid")
            return twiml(await handler(request, sid))
        except Exception:
            log.exception("call %s: %s failed; sending the caller to the backup line",
                          sid or "?", request.path)
            # Every webhook of a call carries its From: enough to choose the
            # callerId without the database (the caller's number is not kept).
            app = request.app
            if sid:
                # The caller is on the lifeline now: recorded once the database
                # answers, so nothing moves or rings for them afterwards.
                app[keys.transfers].lifeline(sid)
            caller_id = dial_caller_id(form_of(request).get("From"), app[keys.caller_id])
            return twiml(failsafe(app[keys.backup_number], caller_id))

    return wrapped


def _seq(request: web.Request) -> int:
    return int(request.query.get("seq", ""))


@voice_webhook
async def voice(request: web.Request, sid: str) -> str:
    app = request.app
    params = form_of(request)
    location = locate(params, app[keys.georoute_param] or None, app[keys.default_region])
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
    transfers, renderer = request.app[keys.transfers], request.app[keys.renderer]
    language = request.query.get("lang", "en")
    call_sid = request.query.get("call", "")
    try:
        rounds = int(request.query.get("n", "0"))
    except ValueError:
        rounds = 0
    if call_sid:
        await transfers.holding(call_sid, rounds)
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
    return int(request.query.get("offer", ""))


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
    status = form_of(request).get("CallStatus", "")
    await request.app[keys.transfers].leg_status(_offer(request), status)
    return web.Response(status=204)


@voice_webhook
async def dial(request: web.Request, sid: str) -> str:
    return await request.app[keys.callflow].dial_result(sid, _seq(request), form_of(request))


async def fallback(request: web.Request) -> web.Response:
    """For the number's Fallback URL: no database, no flow, just the backup line.

    The same fixed document to every request, signed or not (the signature
    middleware lets it through): it changes nothing and tells only the
    backup number. `ivr fallback` prints it, to host apart from the server.
    """
    return twiml(failsafe(request.app[keys.backup_number], request.app[keys.caller_id]))


async def status(request: web.Request) -> web.Response:
    params = form_of(request)
    sid = params.get("CallSid", "").strip()
    if not sid:
        raise web.HTTPBadRequest(text="CallSid is required\n")
    known = await request.app[keys.callflow].status(sid, params)
    if not known:
        log.info("status callback for unknown call %s", sid)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
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
