"""Offering a caller to a counselor while the flow's menu still plays.

At every menu the flow runtime tells where the caller's silence leads
(`likely_transfer`) and in which languages any answer of theirs reaches that
same transfer. When it is a queue whose first step is a tier of counselors,
the caller joins that tier's line at once, among only the counselors who
speak all those languages (`early_steps`: Ana, English and Spanish, for a
Texas caller who may still press 2), so the dispatcher rings one while the
menu plays. The counselor hears the whisper (the languages the caller may
still choose), presses 1 and waits in the caller's conference; the caller
arrives with the transfer prompt, and the conference starts.

The caller answering anything else (another line, queue or need, a
language the counselor lacks) withdraws the offer (CallerWentElsewhere):
the leg is cancelled or hung up and the counselor is available again. The
progression decides all of it (ivr.routing.progression); this module turns
a flow turn into its early progress and runs the two actions only early
offers have (Arrive, AcceptEarly). The rest (the line, legs, the dispatcher)
is the warm transfer's (transfer.py).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime

import asyncpg

from ivr.evolve import evolve
from ivr.flow.model import Branch, Flow
from ivr.flow.runtime import Ask, CallState, LikelyTransfer, TransferTo, Turn, likely_transfer
from ivr.routing.progress import Phase, Progress
from ivr.routing.progression import Availability, Result, advance, begin_early, early_steps
from ivr.routing.signals import (
    AcceptEarly,
    Action,
    Arrive,
    CallerWentElsewhere,
    Outcome,
    RecordOutcome,
)
from ivr.routing.steps import Step, WarmStep
from ivr.storage import preoffers
from ivr.storage import transfers as outcomes
from ivr.telephony.onshift import OnShift
from ivr.telephony.rest import RestError
from ivr.telephony.transfer import Transfers

log = logging.getLogger(__name__)

StepsFor = Callable[[TransferTo, str | None], Sequence[Step]]


class LikelyTransfers:
    """`likely_transfer` remembered, for the menu turns of calls in the same place.

    Finding where a menu leads explores up to LIKELY_SEARCH turns of the flow:
    it was a third of the incoming call's CPU (py-spy, issue 12), and every
    caller at the same menu with the same answers so far gets the same result.
    The result depends on the flow and the caller's place in it only (their
    state but its seq: CallState.place, as the search itself tells places),
    and on the clock only through time branches: a flow with one is never
    remembered. Bounded, most recently used kept.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._found: OrderedDict[Hashable, LikelyTransfer | None] = OrderedDict()

    def __call__(self, flow: Flow, state: CallState, now: datetime) -> LikelyTransfer | None:
        if _follows_the_clock(flow):
            return likely_transfer(flow, state, now)
        key = (flow.id, flow.version, state.place())
        if key in self._found:
            self._found.move_to_end(key)
            return self._found[key]
        found = self._found[key] = likely_transfer(flow, state, now)
        while len(self._found) > self.size:
            self._found.popitem(last=False)
        return found

    def __len__(self) -> int:
        return len(self._found)


def _follows_the_clock(flow: Flow) -> bool:
    return any(isinstance(n.body, Branch) and n.body.on == "time" for n in flow.nodes.values())


class EarlyOffers:
    def __init__(self, pool: asyncpg.Pool, transfers: Transfers,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_shift: OnShift | None = None) -> None:
        self.pool = pool
        self.transfers = transfers
        self.clock = clock
        self.likely = LikelyTransfers()
        # Who may be rung early; without a view, anyone (every caller lined up).
        self.on_shift = on_shift

    def at_menu(
        self, steps_for: StepsFor, flow: Flow, turn: Turn, early: Progress | None,
        caller_id_passes: Callable[[], bool],
    ) -> Result | None:
        """A flow turn that did not reach a transfer: the caller's early progress
        after it (kept, withdrawn, or begun), or None when they have none.
        `steps_for`: the transfer steps of the call's content version;
        `caller_id_passes`: whether the caller's number may be the callerId of
        the <Dial>s (asked only when an early offer begins: it parses the number)."""
        now = self.clock()
        wait = turn.wait
        likely = self.likely(flow, turn.state, now) if isinstance(wait, Ask) else None
        live = early is not None and not early.phase.over
        if live and early is not None:
            if likely is not None and _same(early, likely.transfer) and set(
                    likely.languages) <= set(early.languages):
                return early, ()  # still on the way there: the offer stays
            early, withdrawn = advance(early, CallerWentElsewhere(), now, Availability())
        else:
            withdrawn = ()
        if likely is None or likely.transfer.queue is None or (
                early is not None and early.phase is Phase.WITHDRAWN):
            # Once withdrawn, never again in this call: the caller has shown
            # they are choosing, and the counselor was let go once already.
            return None if early is None else (early, withdrawn)
        caller_state = turn.state.caller_state
        language = likely.transfer.language
        order = [language, *(lang for lang in likely.languages if lang != language)]
        choices = [steps_for(evolve(likely.transfer, language=lang), caller_state)
                   for lang in order]
        steps = early_steps(choices)
        if steps is None:
            return None
        first = steps[0]  # the warm step the caller would be lined up at
        if isinstance(first, WarmStep) and self.on_shift is not None and (
                not self.on_shift.may_ring(first.counselors)):
            # Nobody who could be rung early is on shift: no line-up to write,
            # claim for, and leave again at the menu answer (onshift.py).
            return None
        # Nobody's availability is read (a read per menu turn saved: issue 12):
        # the one thing it could change is a counselor rung at once, and the
        # dispatcher's next pass, woken by the line-up, rings them (a Ring like
        # any other, CounselorFreed), so the line-up is the same whoever is free.
        return begin_early(
            steps, now, Availability(), language=language, languages=likely.languages,
            queue=likely.transfer.queue, line=likely.transfer.line, need=likely.transfer.need,
            caller_state=caller_state, pass_caller_id=caller_id_passes())

    async def carry_out(self, sid: str, p: Progress, actions: Sequence[Action]) -> None:
        """The actions only an early offer has, once the call row holds `p`."""
        for action in actions:
            match action:
                case Arrive(index=index):
                    step = p.steps[index]
                    assert isinstance(step, WarmStep)
                    await preoffers.arrived(self.pool, sid, index, step.tier, step.counselors,
                                            step.ranks, p.language)
                    self.transfers.kick()
                case AcceptEarly(offer=number, counselor=counselor):
                    # After the caller's TwiML has gone: they hear the transfer
                    # prompt first, so the accept is recorded before they join,
                    # and the webhook answers without these round trips. The
                    # stored progress already says connected; a confirm lost
                    # with this process leaves an offer row that the leg's end
                    # closes (Transfers.leg_status).
                    self.transfers.spawn(self._confirm(sid, p, actions, number, counselor))

    async def _confirm(self, sid: str, p: Progress, actions: Sequence[Action], number: int,
                       counselor: str) -> None:
        if await preoffers.confirm_accept(self.pool, sid, number):
            for action in actions:
                if isinstance(action, RecordOutcome) and action.outcome is Outcome.ANSWERED:
                    plan = await self.transfers.plan_for(sid)  # the call's own version's
                    in_state = self.transfers.in_state(p.step, p.caller_state, plan)
                    await outcomes.answered(self.pool, sid, action.tier, action.name, in_state)
                    await self.transfers.metrics.counselor_answered(self.pool, sid, in_state)
            log.info("call %s: counselor %s, who accepted early, has the caller", sid, counselor)
            return
        # The counselor's leg ended as the caller arrived: their conference would
        # wait for nobody. Any failure sends a caller to the backup line.
        log.warning("call %s: counselor %s accepted early but is gone: sending the caller "
                    "to the backup line", sid, counselor)
        try:
            await self.transfers.rest.redirect(sid, self.transfers.renderer.url("/twilio/fallback"))
        except RestError:
            log.exception("call %s: could not send the caller to the backup line", sid)


def _same(early: Progress, transfer: TransferTo) -> bool:
    return (early.queue, early.line, early.need) == (transfer.queue, transfer.line, transfer.need)
