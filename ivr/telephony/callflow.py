"""A call's life between webhooks: load its state, step the flow, store, answer.

No call state stays in process memory: every webhook reads the call row,
computes the next step, and writes it back only if nobody else moved the
call meanwhile. A callback for a step already taken (a Twilio retry, an
out-of-order request, a second instance racing) gets the TwiML that step
produced, so the caller hears the same thing and the call moves once.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ivr.errors import RequestError
from ivr.flow.model import Flow, FlowSet
from ivr.flow.runtime import Answer, Ask, CallState, Start, TransferTo, Turn, new_call, step
from ivr.routing.location import Location
from ivr.routing.steps import DialStep, Step, step_from_json
from ivr.storage import calls as db
from ivr.storage import transfers as outcomes
from ivr.telephony.transfer import Transfers, conference_name, is_ringing, transfer_record
from ivr.telephony.twiml import Renderer

log = logging.getLogger(__name__)

# Webhook parameters worth keeping in the event trail. From, Caller and the
# caller's city or ZIP are left out on purpose: the trail must not identify
# the caller.
KEPT_PARAMS = (
    "CallStatus", "Direction", "Digits", "DialCallStatus", "DialCallDuration",
    "FromState", "CallDuration", "ErrorCode", "StirVerstat", "AnsweredBy",
)
ANSWERED = ("completed", "answered")
FINAL_STATUSES = db.FINAL_STATUSES
# After the national backup itself went unanswered, ring it again this many
# times before giving up: there is nowhere further to fail over to.
BACKUP_REDIALS = 2


class UnknownCall(RequestError):
    """A callback for a CallSid we have no record of."""


@dataclass(frozen=True)
class CallerInfo:
    location: Location
    caller_hash: str | None


StepsFor = Callable[[TransferTo, str | None], Sequence[Step]]


class CallFlow:
    def __init__(
        self,
        pool: asyncpg.Pool,
        flows: FlowSet,
        renderer: Renderer,
        steps_for: StepsFor,
        transfers: Transfers,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        speech_languages: frozenset[str] = frozenset(),
    ) -> None:
        self.pool = pool
        self.flows = flows
        self.renderer = renderer
        self.steps_for = steps_for
        self.transfers = transfers
        self.clock = clock
        self.speech_languages = speech_languages  # languages with a Vosk model loaded

    # Incoming call ---------------------------------------------------------

    async def incoming(self, sid: str, params: Mapping[str, str], caller: CallerInfo) -> str:
        if caller_left(params):
            return await self._caller_gone(sid, "voice", params)
        flow = self.flows.for_number(params.get("To"))
        loc = caller.location
        state = new_call(flow, loc.state, loc.source)
        turn = step(flow, state, Start(self.clock()))
        dial_as = self.renderer.dial_caller_id(params.get("From"))
        twiml, phase, transfer, listen = await self._render_turn(sid, turn, dial_as)
        events = [
            _webhook_event("voice", params),
            ("located", {"state": loc.state, "source": loc.source, "area_code": loc.area_code}),
            *_turn_events(turn, twiml, transfer),
        ]
        created = await db.create_call(
            self.pool,
            call_sid=sid,
            caller_hash=caller.caller_hash,
            caller_area_code=loc.area_code,
            called=params.get("To"),
            flow_id=flow.id,
            flow_version=flow.version,
            seq=turn.state.seq,
            state=turn.state.to_json(),
            location_state=loc.state,
            location_source=loc.source,
            phase=phase,
            transfer=transfer,
            twiml=twiml,
            events=events,
            listen=listen,
            ringing=is_ringing(transfer),
        )
        if created:
            log.info("call %s started flow %s in %s", sid, flow.id, loc.state or "unknown state")
            if transfer is not None:
                await self.transfers.entered(sid, transfer)
            return twiml
        return await self._replay(sid, "voice", params)

    # Menu answers ----------------------------------------------------------

    async def gather(self, sid: str, seq: int, params: Mapping[str, str]) -> str:
        if caller_left(params):
            return await self._caller_gone(sid, "gather", params)
        digits = params.get("Digits", "").strip()
        return await self._answer(sid, seq, params, "gather", lambda _: {"digits": digits})

    async def listened(self, sid: str, seq: int, params: Mapping[str, str]) -> str:
        """The Connect action after a listening menu's stream closed."""
        if caller_left(params):
            # Twilio requests the action when the caller hangs up mid-stream
            # too: no decision was reached, and nobody is left to hear one.
            return await self._caller_gone(sid, "listen", params)

        def decision(row: db.CallRow) -> dict[str, Any]:
            found = (row.listen or {}).get("decision")
            return found if isinstance(found, dict) else {}  # no decision: no input

        return await self._answer(sid, seq, params, "listen", decision)

    async def _answer(
        self,
        sid: str,
        seq: int,
        params: Mapping[str, str],
        kind: str,
        decision: Callable[[db.CallRow], dict[str, Any]],
    ) -> str:
        row = await self._row(sid)
        if row.seq != seq or row.phase != "flow":
            return await self._replay(sid, kind, params, row)
        state = CallState.from_json(row.state)
        flow = self._flow(state)
        heard = decision(row)
        event = Answer(
            self.clock(),
            digits=str(heard.get("digits", "")),
            word=heard.get("word"),
            word_language=heard.get("language"),
            unrecognised=bool(heard.get("unrecognised", False)),
        )
        turn = step(flow, state, event)
        dial_as = self.renderer.dial_caller_id(params.get("From"))
        twiml, phase, transfer, listen = await self._render_turn(sid, turn, dial_as)
        events = [_webhook_event(kind, params), *_turn_events(turn, twiml, transfer)]
        if await db.advance_call(
            self.pool, call_sid=sid, expected_seq=row.seq, seq=turn.state.seq,
            state=turn.state.to_json(), phase=phase, transfer=transfer, twiml=twiml,
            events=events, listen=listen, ringing=is_ringing(transfer),
        ):
            if transfer is not None:
                await self.transfers.entered(sid, transfer)
            return twiml
        return await self._replay(sid, kind, params)

    # Transfer progress -----------------------------------------------------

    async def dial_result(self, sid: str, seq: int, params: Mapping[str, str]) -> str:
        """A dial step ended: answered is the end of the call, anything else the next
        step, unless the caller hung up while it rang (then there is nobody to move)."""
        answered = params.get("DialCallStatus", "") in ANSWERED
        if not answered and caller_left(params):
            return await self._caller_gone(sid, "dial", params)
        return await self._step_ended(sid, seq, params, "dial", answered=answered)

    async def conference_ended(self, sid: str, seq: int, params: Mapping[str, str]) -> str:
        """The caller's conference ended: after a counselor, the call is over."""
        if caller_left(params):
            # An abandoned wait, not a failed tier.
            return await self._caller_gone(sid, "conference-end", params)
        row = await self._row(sid)
        if row.phase in ("connected", "ended"):
            await db.add_events(self.pool, sid, [_webhook_event("conference-end", params)])
            return self.renderer.goodbye()
        return await self._step_ended(sid, seq, params, "conference-end", answered=False, row=row)

    async def resume(self, sid: str, seq: int, params: Mapping[str, str]) -> str:
        """Where a caller taken out of the conference by the REST API lands."""
        if caller_left(params):
            return await self._caller_gone(sid, "resume", params)
        return await self._replay(sid, "resume", params)

    async def _step_ended(
        self, sid: str, seq: int, params: Mapping[str, str], kind: str, *,
        answered: bool, row: db.CallRow | None = None,
    ) -> str:
        row = row or await self._row(sid)
        if row.seq != seq or row.phase != "transfer" or row.transfer is None:
            return await self._replay(sid, kind, params, row)
        transfer = dict(row.transfer)
        steps = [step_from_json(s) for s in transfer["steps"]]
        current = steps[int(transfer["index"])]
        state = CallState.from_json(row.state)
        new_seq = row.seq + 1
        events: list[db.Event] = [_webhook_event(kind, params)]
        if answered:
            phase = "ended"
            twiml = self.renderer.goodbye()
            await outcomes.answered(self.pool, sid, current.tier, current.name,
                                    self._in_state(current, row.location_state))
        else:
            phase = "transfer"
            events.append(("missed", {"tier": current.tier, "name": current.name,
                                      "status": params.get("DialCallStatus", "")}))
            nxt: int | None
            if isinstance(current, DialStep) and current.last:
                transfer["redials"] = transfer.get("redials", 0) + 1
                nxt = int(transfer["index"]) if transfer["redials"] <= BACKUP_REDIALS else None
            else:
                nxt = await self.transfers.usable(steps, int(transfer["index"]) + 1)
            if nxt is None:
                phase = "ended"
                twiml = self.renderer.goodbye()
                events.append(("unreached", {}))
            else:
                transfer["index"] = nxt
                twiml = self.transfers.render_step(sid, steps[nxt], new_seq, state.language)
                events.append(("dialing", {"tier": steps[nxt].tier, "name": steps[nxt].name}))
        events.append(("twiml", {"xml": twiml}))
        if await db.advance_call(
            self.pool, call_sid=sid, expected_seq=row.seq, seq=new_seq,
            state=replace(state, seq=new_seq).to_json(), phase=phase, transfer=transfer,
            twiml=twiml, events=events, ringing=phase == "transfer" and is_ringing(transfer),
        ):
            if phase == "transfer":
                await self.transfers.entered(sid, transfer)
            return twiml
        return await self._replay(sid, kind, params)

    def _in_state(self, step: Step, state: str | None) -> bool | None:
        if state is None:
            return None
        centers = [self.transfers.plan.centers[c] for c in step.centers
                   if c in self.transfers.plan.centers]
        return any(state in c.serves for c in centers)

    async def status(self, sid: str, params: Mapping[str, str]) -> bool:
        status = params.get("CallStatus", "")
        recorded = await db.record_status(self.pool, sid, status, _kept(params))
        if recorded is None:
            return False
        if recorded.phase == "transfer" and status in FINAL_STATUSES and recorded.transfer:
            # Hung up while waiting for a human: free whoever is being rung for them.
            await self.transfers.caller_gone(sid, recorded.transfer)
        return True

    async def _caller_gone(self, sid: str, kind: str, params: Mapping[str, str]) -> str:
        """The one check every flow callback makes first: a callback that carries
        a final CallStatus comes after the caller hung up (Twilio still requests
        the Gather, Dial and Connect actions then, and ignores the answer). The
        call ends here: no next step, no tier, no counselor rung; a caller who
        was waiting for a human is counted as abandoned and whoever is being
        rung for them is freed. A call we never saw changes nothing."""
        if await db.load_call(self.pool, sid) is None:
            log.info("call %s: %s callback after the end of a call we never saw", sid, kind)
            return self.renderer.goodbye()
        detail = {"webhook": kind, **_kept(params)}
        recorded = await db.record_status(self.pool, sid, params.get("CallStatus", ""), detail)
        if recorded is not None and recorded.phase == "transfer" and recorded.transfer:
            await self.transfers.caller_gone(sid, recorded.transfer)
            log.info("call %s: caller hung up while waiting (%s callback)", sid, kind)
        return self.renderer.goodbye()

    # Helpers ---------------------------------------------------------------

    async def _row(self, sid: str) -> db.CallRow:
        row = await db.load_call(self.pool, sid)
        if row is None:
            raise UnknownCall(sid)
        return row

    async def _replay(
        self, sid: str, kind: str, params: Mapping[str, str], row: db.CallRow | None = None
    ) -> str:
        """Answer a repeated or stale callback with what the call's current step said."""
        row = row or await self._row(sid)
        detail = {"webhook": kind, **_kept(params), "at_seq": row.seq}
        await db.add_events(self.pool, sid, [("replayed", detail)])
        log.info("call %s: %s callback replayed (call is at step %d)", sid, kind, row.seq)
        return row.last_twiml

    def _flow(self, state: CallState) -> Flow:
        flow = self.flows.flows.get(state.flow_id)
        if flow is None or state.node not in flow.nodes:
            raise UnknownCall(f"flow {state.flow_id!r} no longer has node {state.node!r}")
        return flow

    async def _render_turn(
        self, sid: str, turn: Turn, dial_as: str | None = None
    ) -> tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]:
        """(TwiML, phase, transfer progress, listening-menu record) for a turn.

        `dial_as` is the callerId the transfer's <Dial>s use: kept in each dial
        step of the transfer record, so later tiers need no caller number.
        """
        wait = turn.wait
        if isinstance(wait, TransferTo):
            steps = [
                replace(s, caller_id=dial_as) if isinstance(s, DialStep) else s
                for s in self.steps_for(wait, turn.state.caller_state)
            ]
            index = await self.transfers.usable(steps, 0)
            transfer = transfer_record(
                steps, index, queue_name=wait.queue, line=wait.line, language=wait.language,
                need=wait.need, caller_state=turn.state.caller_state,
            )
            twiml = self.renderer.flow_turn(
                turn.actions, turn.state.seq, then=(conference_name(sid), steps[index]))
            return twiml, "transfer", transfer, None
        listen = self._listen_record(wait) if isinstance(wait, Ask) else None
        token = listen["token"] if listen else None
        twiml = self.renderer.flow_turn(turn.actions, turn.state.seq, listen_token=token)
        return twiml, ("flow" if not turn.state.finished else "ended"), None, listen

    def _listen_record(self, ask: Ask) -> dict[str, Any] | None:
        """What a listening menu's stream needs; None when the menu cannot listen."""
        if not ask.speech or not self.speech_languages:
            return None
        grammars = {
            lang: list(words)
            for lang, words in ask.grammars
            if words and lang in self.speech_languages
            and (lang == ask.language or ask.language_open)
        }
        if not grammars:
            return None
        return {
            "token": secrets.token_urlsafe(18),
            "node": ask.node,
            "language": ask.language,
            "prompt": ask.prompt,
            "timeout": ask.timeout,
            "grammars": grammars,
        }


def caller_left(params: Mapping[str, str]) -> bool:
    """Whether a webhook says the caller's own call is over (its CallStatus is final)."""
    return params.get("CallStatus", "") in FINAL_STATUSES


def _kept(params: Mapping[str, str]) -> dict[str, str]:
    return {k: params[k] for k in KEPT_PARAMS if k in params}


def _webhook_event(kind: str, params: Mapping[str, str]) -> db.Event:
    return ("webhook", {"webhook": kind, **_kept(params)})


def _turn_events(turn: Turn, twiml: str, transfer: dict[str, Any] | None) -> list[db.Event]:
    events: list[db.Event] = [
        ("node", {"node": v.node, "detail": v.detail} if v.detail else {"node": v.node})
        for v in turn.visited
    ]
    if transfer is not None:
        first = transfer["steps"][0] if transfer["steps"] else {}
        events.append(("transfer", {
            "queue": transfer["queue"], "line": transfer["line"],
            "tier": first.get("tier"), "name": first.get("name"),
            "language": turn.state.language, "need": turn.state.need,
        }))
    events.append(("twiml", {"xml": twiml}))
    return events
