"""A call's life between webhooks: load its state, step the flow, store, answer.

The call row in PostgreSQL is the call's truth: a webhook computes the next
step from it and writes it back only if nobody else moved the call meanwhile.
A callback for a step already taken (a Twilio retry, an out-of-order request,
a second instance racing) gets the TwiML that step produced, so the caller
hears the same thing and the call moves once.

A menu answer usually comes back to the instance that wrote the menu: it
steps from the row it wrote (db.LastWritten) and pays one round trip, the
guarded write. The guard (seq and phase) makes that safe: when the kept row
is stale the write misses, and the webhook reads the row and answers as if
it had read it first. The status callback of a caller who hangs up while
their transfer's dial step rings steps from the kept transfer the same way
(one statement, guarded by the transfer it saw: `_ended_in_transfer`).
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ivr import logs
from ivr.errors import RequestError
from ivr.evolve import evolve
from ivr.flow.model import Flow
from ivr.flow.runtime import Answer, Ask, CallState, Start, TransferTo, Turn, new_call, step
from ivr.metrics import dial_outcome
from ivr.publishing.active import ActiveContent, Served
from ivr.routing.location import Location
from ivr.routing.progress import Phase, Progress
from ivr.routing.progression import Availability, advance, begin
from ivr.routing.signals import (
    AcceptEarly,
    Action,
    CallerLeft,
    DialEnded,
    DialLine,
    Enqueue,
    HoldEnded,
    Outcome,
    RecordOutcome,
)
from ivr.routing.steps import WarmStep
from ivr.storage import calls as db
from ivr.storage.callwrites import CallWrites
from ivr.telephony.onshift import OnShift
from ivr.telephony.preoffer import EarlyOffers
from ivr.telephony.transfer import Transfers, conference_name, is_ringing
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
# Tries at a menu answer whose call's early offer changed as it was taken.
EARLY_TRIES = 3
FINAL_STATUSES = db.FINAL_STATUSES


class UnknownCall(RequestError):
    """A callback for a CallSid we have no record of."""


@dataclass(frozen=True)
class CallerInfo:
    location: Location
    caller_hash: str | None


class CallFlow:
    def __init__(
        self,
        pool: asyncpg.Pool,
        contents: ActiveContent,
        transfers: Transfers,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        speech_languages: frozenset[str] = frozenset(),
        on_shift: OnShift | None = None,
    ) -> None:
        self.pool = pool
        self.writes = CallWrites(pool)  # the row writes of webhooks, grouped under load
        # A new call takes the active content version; every later webhook of
        # the call is served by the version its row names, whichever is active.
        self.contents = contents
        self.transfers = transfers
        self.clock = clock
        self.speech_languages = speech_languages  # languages with a Vosk model loaded
        # Rows this instance wrote, for the next menu answer, with their progress.
        self.written: db.LastWritten[Progress] = db.LastWritten()
        # The dispatcher's leg events change an early-offered caller's row under
        # the kept copy: forgotten then, and read again off the request path.
        transfers.progress_changed = self._progress_changed
        self._rereads: dict[str, int] = {}  # by call: the change whose row is being read
        self._changes = itertools.count(1)  # never reused: a read only lands for its own
        self.early = EarlyOffers(pool, transfers, clock, on_shift)

    @property
    def renderer(self) -> Renderer:
        """The active version's: for what does not depend on the content (goodbye)."""
        return self.contents.current.renderer

    # Incoming call ---------------------------------------------------------

    async def incoming(self, sid: str, params: Mapping[str, str], caller: CallerInfo) -> str:
        if caller_left(params):
            return await self._caller_gone(sid, "voice", params)
        served = self.contents.current
        logs.about_version(served.version)
        flow = served.content.flows.for_number(params.get("To"))
        loc = caller.location
        state = new_call(flow, loc.state, loc.source)
        turn = step(flow, state, Start(self.clock()))
        twiml, phase, progress, listen, begun = await self._render_turn(
            sid, served, flow, turn, params.get("From"))
        transfer = None if progress is None else progress.to_json()
        events = [
            _webhook_event("voice", params),
            ("located", {"state": loc.state, "source": loc.source, "area_code": loc.area_code}),
            *_turn_events(turn, twiml, progress, begun),
        ]
        line_up, begun = _early_line_up(progress, begun)
        created = await self.writes.create(db.NewCall(
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
            ringing=is_ringing(progress),
            content_version=served.version,
            line_up=line_up,
        ))
        if created:
            log.info("call %s started flow %s in %s", sid, flow.id, loc.state or "unknown state")
            if line_up is not None:
                self.transfers.kick()  # as carry_out does after an Enqueue
            self._keep(db.CallRow(sid, turn.state.seq, phase, turn.state.to_json(), transfer,
                                  twiml, loc.state, loc.source, listen), progress)
            await self._entered(sid, progress, begun, turn.state.seq)
            return twiml
        return await self._replay(sid, "voice", params)

    # Menu answers ----------------------------------------------------------

    async def gather(self, sid: str, seq: int, params: Mapping[str, str]) -> str:
        if caller_left(params):
            return await self._caller_gone(sid, "gather", params)
        digits = params.get("Digits", "").strip()
        return await self._answer(sid, seq, params, "gather", lambda _: {"digits": digits},
                                  kept=self.written.get(sid))

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
        kept: db.CallRow | None = None,
    ) -> str:
        """`kept`: the row as this instance last wrote it, used instead of a read
        when it is at the webhook's step (a listening menu's decision is written
        by its stream, so its answer always reads)."""
        row = kept if kept is not None and kept.seq == seq and kept.phase == "flow" else None
        row = row or await self._row(sid)
        for attempt in range(EARLY_TRIES):
            if row.seq != seq or row.phase != "flow":
                return await self._replay(sid, kind, params, row)
            # The first try may take the on-shift view's word that nobody of the
            # transfer could be free (its write checks it); a try again reads.
            twiml = await self._answer_once(sid, row, params, kind, decision,
                                            assume=attempt == 0)
            if twiml is not None:
                return twiml
            # The row changed before the answer could be stored (a counselor
            # offered early, or their accept; or the kept row was stale): the
            # answer is taken again over what the database holds.
            self.written.drop(sid)
            row = await self._row(sid)
        return await self._replay(sid, kind, params)

    async def _answer_once(
        self, sid: str, row: db.CallRow, params: Mapping[str, str], kind: str,
        decision: Callable[[db.CallRow], dict[str, Any]], assume: bool = False,
    ) -> str | None:
        """The caller's answer taken over `row`: its TwiML, or None when the row
        changed before it could be stored, or (`assume`) someone was free after all."""
        state = CallState.from_json(row.state)
        served = await self.contents.get(row.content_version)
        logs.about_version(served.version)  # a kept row was not read by _row
        flow = self._flow(served, state)
        heard = decision(row)
        event = Answer(
            self.clock(),
            digits=str(heard.get("digits", "")),
            word=heard.get("word"),
            word_language=heard.get("language"),
            unrecognised=bool(heard.get("unrecognised", False)),
        )
        turn = step(flow, state, event)
        early = self._progress(row)
        none_free: list[str] = []
        twiml, phase, progress, listen, begun = await self._render_turn(
            sid, served, flow, turn, params.get("From"), early,
            none_free=none_free if assume else None)
        transfer = None if progress is None else progress.to_json()
        events = [_webhook_event(kind, params), *_turn_events(turn, twiml, progress, begun)]
        state_json = turn.state.to_json()
        if await self.writes.advance(db.Advance(
            call_sid=sid, expected_seq=row.seq, expected_phase="flow",
            seq=turn.state.seq, state=state_json, phase=phase, transfer=transfer, twiml=twiml,
            expected_transfer=row.transfer,
            events=events, listen=listen, ringing=is_ringing(progress),
            none_free=none_free or None,
        )):
            self._keep(evolve(row, seq=turn.state.seq, phase=phase, state=state_json,
                              transfer=transfer, last_twiml=twiml, listen=listen), progress)
            await self._entered(sid, progress, begun, turn.state.seq)
            return twiml
        return None

    def _keep(self, row: db.CallRow, progress: Progress | None = None) -> None:
        """Keep a row this instance wrote (with the progress its `transfer`
        holds), while a menu answer may follow, or the status callback of a
        caller hanging up during their transfer."""
        self._rereads.pop(row.call_sid, None)  # newer than any read under way
        if row.phase in ("flow", "transfer"):
            self.written.put(row, progress)
        else:
            self.written.drop(row.call_sid)

    def _progress_changed(self, sid: str) -> None:
        """The dispatcher or a counselor's leg wrote a new progress (an offer, an
        accept) under the row kept for a caller offered early, still in the menu.
        The copy is forgotten (its guarded write would miss) and the row read
        again in the background: the counselor accepts seconds before the menu
        ends, so the answer then, the caller joining the counselor who waits,
        is the guarded write alone. An answer that comes before the read lands
        reads the row itself; a read that lands stale makes the write miss, and
        the answer reads (the guard, as for any kept row)."""
        kept = self.written.get(sid)
        if kept is None and sid not in self._rereads:
            return  # not a row this instance answers from
        self.written.drop(sid)
        if kept is not None and kept.phase != "flow":
            return  # in the transfer: a hang-up's status callback reads (record_end's guard)
        change = self._rereads[sid] = next(self._changes)
        self.transfers.spawn(self._reread(sid, change))

    async def _reread(self, sid: str, change: int) -> None:
        try:
            row = await db.load_call(self.pool, sid)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            row = None  # the answer reads it
        if self._rereads.get(sid) != change:
            return  # a later change, or a write of this instance's, came meanwhile
        del self._rereads[sid]
        if row is not None:
            self._keep(row)

    async def _entered(
        self, sid: str, p: Progress | None, begun: tuple[Action, ...], seq: int
    ) -> None:
        """The flow handed the caller over (or offered them early, or withdrew that)
        and the row holds it: the waiting line's side of the actions (the caller's
        TwiML went with the flow turn). A first dial step's ring was stamped by
        the row's own write (`ringing`): its DialLine asks for nothing more, and
        is not carried out again."""
        if p is not None and begun:
            # An early accept's answer is the early side's to record and count
            # once it stands (preoffer.py); counted here it would pass for a
            # dial step's (an external line).
            early_answer = any(isinstance(a, AcceptEarly) for a in begun)
            actions = tuple(a for a in begun if not isinstance(a, DialLine)
                            and not (early_answer and isinstance(a, RecordOutcome)))
            await self.transfers.carry_out(sid, p, actions, seq)
            await self.early.carry_out(sid, p, begun)

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
        p = Progress.from_json(row.transfer)
        state = CallState.from_json(row.state)
        new_seq = row.seq + 1
        events: list[db.Event] = [_webhook_event(kind, params)]
        event = (DialEnded(p.stage, answered) if p.phase is Phase.DIALING
                 else HoldEnded(p.stage))
        av = await self.transfers.availability(p.steps)
        current = p.step
        p, actions = advance(p, event, self.clock(), av)
        if not actions:  # not the event the progress waits for: nothing moves
            return await self._replay(sid, kind, params, row)
        served = await self.contents.get(row.content_version)  # the call's own version
        await self.transfers.record(sid, p, actions, row.location_state, served.content.plan)
        if not answered:
            events.append(("missed", {"tier": current.tier, "name": current.name,
                                      "status": params.get("DialCallStatus", "")}))
        if p.phase is Phase.UNREACHED:
            events.append(("unreached", {}))
        elif not p.phase.over:
            events.append(("dialing", {"tier": p.step.tier, "name": p.step.name}))
        twiml = (self.transfers.twiml_for(sid, p, actions, new_seq, served.renderer)
                 or served.renderer.goodbye())
        phase = "transfer" if not p.phase.over else "ended"
        transfer = p.to_json()
        events.append(("twiml", {"xml": twiml}))
        if await self.writes.advance(db.Advance(
            # No phase guard: recording an answer (above) has marked the row connected.
            call_sid=sid, expected_seq=row.seq, expected_phase=None, seq=new_seq,
            state=replace(state, seq=new_seq).to_json(), phase=phase, transfer=transfer,
            twiml=twiml, events=events, ringing=phase == "transfer" and is_ringing(p),
        )):
            self.written.drop(sid)  # a row kept for the status callback is behind now
            await self.transfers.carry_out(sid, p, actions, new_seq)
            return twiml
        return await self._replay(sid, kind, params)

    async def status(self, sid: str, params: Mapping[str, str]) -> bool:
        status = params.get("CallStatus", "")
        if status in FINAL_STATUSES:
            kept = self.written.get(sid)
            # Taken before the entry is dropped: the progress kept with the row.
            progress = None if kept is None else self._progress(kept)
            self.written.drop(sid)
            if kept is not None and kept.transfer and progress is not None:
                ended = await self._ended_in_transfer(sid, status, params, kept.transfer,
                                                      progress)
                if ended is not None:
                    return ended
        recorded = await db.record_status(self.pool, sid, status, _kept(params))
        if recorded is None:
            return False
        # 'flow' with a transfer: offered early while in the menu (preoffer.py).
        if recorded.phase in ("transfer", "flow") and status in FINAL_STATUSES and (
                recorded.transfer):
            # Hung up while waiting for a human: free whoever is being rung for them.
            await self.transfers.caller_gone(sid, recorded.transfer)
        return True

    async def _ended_in_transfer(
        self, sid: str, status: str, params: Mapping[str, str], seen: dict[str, Any],
        progress: Progress,
    ) -> bool | None:
        """A caller hung up while their transfer was, as this instance wrote it
        last, `seen`: when leaving it only counts them abandoned (a dial step
        ringing, nobody on the line to free), the status, the transfer left and
        the count are one statement (calls.record_end; they were four: issue
        12). The statement finds the transfer moved on since: the caller left
        the one the row holds, as any status callback has them (caller_gone).
        None when leaving `seen` (`progress`, decoded) asks more (a line, a
        leg): the usual way then."""
        p, actions = advance(progress, CallerLeft(), self.clock(), Availability())
        if not (len(actions) == 1 and isinstance(actions[0], RecordOutcome)
                and actions[0].outcome is Outcome.ABANDONED):
            return None
        recorded = await self.writes.end(db.End(sid, status, _kept(params), seen, p.to_json()))
        if recorded is None:
            return False
        if recorded.left:
            log.info("call %s: caller hung up during the transfer", sid)
            self.transfers.metrics.call_ended_as_read(
                dial_outcome(actions[0]), recorded.first_ring, recorded.answer)
        elif recorded.phase in ("transfer", "flow") and recorded.transfer:
            await self.transfers.caller_gone(sid, recorded.transfer)
        return True

    async def _caller_gone(self, sid: str, kind: str, params: Mapping[str, str]) -> str:
        """The one check every flow callback makes first: a callback that carries
        a final CallStatus comes after the caller hung up (Twilio still requests
        the Gather, Dial and Connect actions then, and ignores the answer). The
        call ends here: no next step, no tier, no counselor rung; a caller who
        was waiting for a human is counted as abandoned and whoever is being
        rung for them is freed. A call we never saw changes nothing."""
        self.written.drop(sid)
        if await db.load_call(self.pool, sid) is None:
            log.info("call %s: %s callback after the end of a call we never saw", sid, kind)
            return self.renderer.goodbye()
        detail = {"webhook": kind, **_kept(params)}
        recorded = await db.record_status(self.pool, sid, params.get("CallStatus", ""), detail)
        if recorded is not None and recorded.phase in ("transfer", "flow") and (
                recorded.transfer):
            await self.transfers.caller_gone(sid, recorded.transfer)
        return self.renderer.goodbye()

    # Helpers ---------------------------------------------------------------

    def _progress(self, row: db.CallRow) -> Progress | None:
        """The transfer progress `row` holds: as this instance wrote it, when
        the row is the one it kept (decoding it was 2% of the server's time
        under load, issue 12), else decoded."""
        if not row.transfer:
            return None
        return self.written.decoded(row) or Progress.from_json(row.transfer)

    async def _row(self, sid: str) -> db.CallRow:
        row = await db.load_call(self.pool, sid)
        if row is None:
            raise UnknownCall(sid)
        logs.about_version(row.content_version)  # this request's lines: the call's version
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

    def _flow(self, served: Served, state: CallState) -> Flow:
        flow = served.content.flows.flows.get(state.flow_id)
        if flow is None or state.node not in flow.nodes:
            raise UnknownCall(f"flow {state.flow_id!r} no longer has node {state.node!r}")
        return flow

    async def _render_turn(
        self, sid: str, served: Served, flow: Flow, turn: Turn, caller: str | None = None,
        early: Progress | None = None, none_free: list[str] | None = None,
    ) -> tuple[str, str, Progress | None, dict[str, Any] | None, tuple[Action, ...]]:
        """(TwiML, phase, transfer progress, listening-menu record, the transfer's
        first actions) for a turn.

        `caller` is the webhook's From: whether it may pass as the callerId of
        the transfer's <Dial>s is decided only for a turn that transfers or
        offers early (parsing the number was a sixth of the voice webhook's CPU,
        py-spy); the progress keeps which, so later tiers need no caller number.
        `early`: the caller's progress if they were offered early; a turn that
        waits at a menu keeps, withdraws or begins one.
        `none_free`: given, a transfer begun with nobody of its warm steps on
        shift, as this instance's view has it (onshift.py), assumes nobody is
        free rather than reading it, and fills in whom the write must find not
        available (with the REST API not degraded): the turn's TwiML is then what
        the read would have given (advance_call's `none_free`).
        """
        wait = turn.wait
        if isinstance(wait, TransferTo):
            dial_as = self.renderer.dial_caller_id(caller)
            steps = served.steps(wait, turn.state.caller_state)
            # A counselor who accepted early waits in the conference: the caller
            # joins them by TwiML alone, so nobody's availability is asked.
            waiting = early is not None and early.phase is Phase.EARLY and (
                early.offer is not None and early.offer.accepted)
            warm = [c for s in steps if isinstance(s, WarmStep) for c in s.counselors]
            on_shift = self.early.on_shift
            if waiting:
                av = Availability()
            elif (none_free is not None and early is None and warm and on_shift is not None
                  and not on_shift.may_ring(warm)):
                av = Availability()  # checked by the write instead (a read saved: issue 12)
                none_free.extend(warm)
            else:
                av = await self.transfers.availability(steps)
            p, actions = begin(
                steps, self.clock(), av,
                language=wait.language, queue=wait.queue, line=wait.line, need=wait.need,
                caller_state=turn.state.caller_state, pass_caller_id=dial_as is None,
                early=early,
            )
            first = next((self.transfers.dial_step(a) for a in actions
                          if isinstance(a, DialLine)), p.step)
            twiml = served.renderer.flow_turn(
                turn.actions, turn.state.seq, then=(conference_name(sid), first))
            return twiml, "transfer", p, None, actions
        listen = self._listen_record(served, wait) if isinstance(wait, Ask) else None
        token = listen["token"] if listen else None
        twiml = served.renderer.flow_turn(turn.actions, turn.state.seq, listen_token=token)
        found = self.early.at_menu(
            served.steps, flow, turn, early,
            lambda: self.renderer.dial_caller_id(caller) is None)
        kept, actions = found if found is not None else (None, ())
        return twiml, ("flow" if not turn.state.finished else "ended"), kept, listen, actions

    def _listen_record(self, served: Served, ask: Ask) -> dict[str, Any] | None:
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
            "content_version": served.version,  # whose recording the stream plays
        }


def _early_line_up(
    p: Progress | None, begun: tuple[Action, ...]
) -> tuple[db.LineUp | None, tuple[Action, ...]]:
    """A new call lined up early at its first menu (an early progress whose only
    action is its Enqueue): the line-up the call's own insert writes, and the
    actions left to carry out after it (none)."""
    if p is None or len(begun) != 1 or not isinstance(begun[0], Enqueue):
        return None, begun
    step = p.steps[begun[0].index]
    if p.phase is not Phase.EARLY or not isinstance(step, WarmStep):
        return None, begun
    return db.LineUp(p.queue or "", p.language, p.need, p.caller_state, begun[0].index,
                     step.tier, tuple(step.counselors), tuple(step.ranks)), ()


def caller_left(params: Mapping[str, str]) -> bool:
    """Whether a webhook says the caller's own call is over (its CallStatus is final)."""
    return params.get("CallStatus", "") in FINAL_STATUSES


def _kept(params: Mapping[str, str]) -> dict[str, str]:
    return {k: params[k] for k in KEPT_PARAMS if k in params}


def _webhook_event(kind: str, params: Mapping[str, str]) -> db.Event:
    return ("webhook", {"webhook": kind, **_kept(params)})


def _turn_events(
    turn: Turn, twiml: str, p: Progress | None, begun: tuple[Action, ...] = ()
) -> list[db.Event]:
    events: list[db.Event] = [
        ("node", {"node": v.node, "detail": v.detail} if v.detail else {"node": v.node})
        for v in turn.visited
    ]
    if p is not None and p.phase is Phase.EARLY and begun:
        events.append(("early_offer", {"queue": p.queue, "tier": p.step.tier,
                                       "languages": list(p.languages)}))
    elif p is not None and p.phase is Phase.WITHDRAWN and begun:
        events.append(("early_withdrawn", {"queue": p.queue}))
    if p is not None and isinstance(turn.wait, TransferTo):
        events.append(("transfer", {
            "queue": p.queue, "line": p.line, "tier": p.steps[0].tier, "name": p.steps[0].name,
            "language": turn.state.language, "need": turn.state.need,
        }))
    events.append(("twiml", {"xml": twiml}))
    return events
