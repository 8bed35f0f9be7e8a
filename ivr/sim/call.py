"""Simulate one inbound call the way Twilio runs it against a voice app.

Twilio requests the voice URL, executes the returned TwiML verb by verb,
moves to a new document whenever an action or `<Redirect>` is answered,
and when the call is over posts the status callback. Everything here goes
over HTTP only, signed with the account's auth token, so the server cannot
tell the simulator from Twilio.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING

import aiohttp

from ivr.sim.config import SimConfig
from ivr.sim.errors import SimError
from ivr.sim.script import CallScript
from ivr.sim.session import END, CallSession, Document, Step
from ivr.sim.transcript import Transcript
from ivr.sim.twiml import Reject, Verb
from ivr.sim.verbs import VerbHandler, default_handlers
from ivr.sim.webhook import WebhookClient

if TYPE_CHECKING:
    from ivr.sim.world import TwilioWorld


async def simulate_call(
    cfg: SimConfig,
    script: CallScript,
    *,
    handlers: Mapping[type[Verb], VerbHandler] | None = None,
    http: aiohttp.ClientSession | None = None,
    world: TwilioWorld | None = None,
) -> Transcript:
    """Place one simulated call and return what happened.

    `handlers` replaces how verbs are executed (see `default_handlers`);
    `http` reuses a client session (one is created and closed otherwise);
    `world` (started) is the Twilio account the call lives in: its REST API
    can see and change the call, and conferences meet its counselors (its
    handlers are used unless `handlers` is given).
    """
    if handlers is None:
        handlers = world.handlers() if world is not None else default_handlers()
    if http is None:
        async with aiohttp.ClientSession() as own:
            return await _run(cfg, script, handlers, own, world)
    return await _run(cfg, script, handlers, http, world)


async def _run(
    cfg: SimConfig,
    script: CallScript,
    handlers: Mapping[type[Verb], VerbHandler],
    http: aiohttp.ClientSession,
    world: TwilioWorld | None = None,
) -> Transcript:
    session = CallSession(cfg, script, WebhookClient(http, cfg))
    if world is not None:
        world.attach(session)
    try:
        document = await session.fetch_document(cfg.public(cfg.voice_path), "POST", "voice")
        while document is not None and not session.ended:
            step = await run_document(session, document, handlers)
            document = step.document if step.kind == "goto" else None
        if not session.ended:
            session.end("server", "call ended")
        await _status_callback(session)
    finally:
        if world is not None:
            # Legs the server placed for this call end (or are canceled) now.
            await world.settle(session)
    return session.transcript()


async def run_document(
    session: CallSession, document: Document, handlers: Mapping[type[Verb], VerbHandler]
) -> Step:
    verbs = document.twiml.verbs
    if not session.answered:
        if verbs and isinstance(verbs[0], Reject):
            # A first <Reject> is the only way not to answer the call.
            reason = verbs[0].reason
            status = "busy" if reason == "busy" else "no-answer"
            session.end("server", f"<Reject reason={reason}>, call not answered", status)
            return END
        session.answer()
    for verb in verbs:
        if session.ended:
            return END
        handler = handlers.get(type(verb))
        if handler is None:
            raise SimError(f"no handler for <{type(verb).__name__}>")
        step = await handler(session, document, verb)
        if step.kind != "continue":
            return step
    session.end("server", "end of TwiML document")
    return END


async def _status_callback(session: CallSession) -> None:
    path = session.cfg.status_callback_path
    if path is None:
        return
    answered_at = session.answered_at
    duration = 0.0 if answered_at is None else session.now - answered_at
    extra = {
        "CallDuration": str(round(duration)),
        "Timestamp": format_datetime(datetime.now(UTC)),
        "CallbackSource": "call-progress-events",
        "SequenceNumber": "0",
    }
    await session.notify(
        session.cfg.public(path), "POST", "status callback", extra, callback=True
    )
