"""Warm transfer: from the end of the flow to a counselor, tier by tier.

The caller waits in a conference of their own (hold audio, reassurance in
their language). Counselors of the current tier are offered the call one at
a time; each offer rings the counselor's phone through the REST API, the
counselor hears a whisper and presses 1 to join the caller's conference. A
miss moves to the next counselor. Dial steps (external centers, the
national backup) take the caller out of the conference into a plain <Dial>.

Whom to ring next, and when a tier is over, is the pure progression's
alone (ivr.routing.progression): the call row stores its `Progress`, every
event is fed to `advance`, and this module only carries out the actions it
returns (`carry_out`). Events come from Twilio's callbacks (the caller's
webhooks, the counselor leg's whisper, answer and status), from timers (the
tier's end: the worker's) and from the dispatcher (ivr.telephony.dispatcher).
Only the dispatcher's events ring (Availability.ring): callers are served
longest waiting first, which no single caller's event knows, so a free
counselor is left to its next pass. A Ring is one guarded statement
(dispatch.ring): the offer is made only if the counselor is still free and
the caller still where the progression left them, and unique indexes keep
any counselor and any caller from holding two open offers across
instances. The counselor's presence stays the database's
(queue.offer_missed).

Only Twilio refusing a counselor's own address counts against them (their
leg 'failed', they go offline). Any other REST failure is nobody's on the
staff: the offer is withdrawn without blame, the API is marked degraded
(apihealth.py), and while it is, no counselor is rung and callers go on to
the dial steps at once.

Moving a holding caller to a dial step takes a REST redirect, which can
fail; the conference wait URL, which Twilio requests at every hold round,
asks the progression (HoldRound) whether a caller still holding should have
been moved (the move's intent is the progress's `moved_at`), and issues the
move again (`holding`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import asyncpg

from ivr import logs
from ivr.evolve import evolve
from ivr.languages import LANGUAGE_NAMES
from ivr.metrics import Metrics
from ivr.routing.model import RoutingPlan
from ivr.routing.progress import Phase, Progress
from ivr.routing.progression import Availability, advance, joined_conference
from ivr.routing.rules import MIN_RING
from ivr.routing.signals import (
    Action,
    Blame,
    CallerLeft,
    CancelLeg,
    Dequeue,
    DialLine,
    EndCall,
    Enqueue,
    Event,
    HoldRound,
    LegAccepted,
    LegAnswered,
    LegDeclined,
    LegFailed,
    LegMissed,
    MoveCaller,
    OfferWithdrawn,
    Outcome,
    RecordOutcome,
    Ring,
    ScheduleDeadline,
    SetTier,
)
from ivr.routing.steps import DialStep, Step, WarmStep
from ivr.storage import counselors as staff
from ivr.storage import queue, timers
from ivr.storage import transfers as outcomes
from ivr.storage.availability import snapshot as availability_now
from ivr.storage.holding import holder
from ivr.storage.preoffers import accepted_early, caller_on_the_way, early_languages
from ivr.telephony import dispatcher
from ivr.telephony.apihealth import ApiHealth
from ivr.telephony.rest import RestError, ServiceError, TwilioRest
from ivr.telephony.twiml import Renderer

if TYPE_CHECKING:
    from ivr.publishing.active import ActiveContent, Served

log = logging.getLogger(__name__)

REDIRECT_RETRIES = (0.5, 1.0, 2.0, 4.0)  # pauses after each failed attempt
HOLD_ROUNDS_BEFORE_CHECK = 2  # about a minute of holding before the database-down rescue
HOLD_QUERY_TIMEOUT = 2.0  # seconds: the wait URL must answer its hold music quickly
# Reads and compare-and-set writes of a progress another callback may change
# at the same moment (a leg event, a claim): each try reads it afresh.
UPDATE_TRIES = 3
# Calls whose content version this instance remembers (a call's never changes).
CALL_VERSIONS_KEPT = 4096
# Seconds the hold document waits for an older version to load before it
# plays the active one's (the load goes on: the next round has it).
HOLD_CONTENT_TIMEOUT = 5.0


class _Unread:
    """The call's content version is not known yet: read it (or the cache)."""


UNREAD: Final = _Unread()

# Leg statuses that end an offer without a conversation, and what they mean
# for the counselor (queue.offer_missed decides their presence from it).
MISSED: dict[str, queue.EndState] = {
    "busy": "declined",
    "no-answer": "missed",
    "failed": "failed",
    "canceled": "canceled",
    "completed": "missed",
}


# ... and the progression's event for each.
LEG_EVENTS: dict[str, Callable[[int], Event]] = {
    "busy": LegDeclined,
    "no-answer": LegMissed,
    "failed": lambda number: LegFailed(number, Blame.COUNSELOR),
    "canceled": OfferWithdrawn,
    "completed": LegMissed,  # hung up during the whisper, before accepting
}


def conference_name(call_sid: str) -> str:
    return f"call-{call_sid}"


class Transfers:
    def __init__(
        self,
        pool: asyncpg.Pool,
        plan: RoutingPlan,
        renderer: Renderer,
        rest: TwilioRest,
        health: ApiHealth,
        wrap_up_seconds: float = 60.0,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pool = pool
        self.metrics = metrics or Metrics()
        self.plan = plan
        self.renderer = renderer
        self.rest = rest
        self.health = health
        self.wrap_up_seconds = wrap_up_seconds
        self.clock = clock  # the app's one clock: timers and the progression read it
        self.wake = asyncio.Event()
        self.work = asyncio.Event()  # a timer was recorded: the worker looks at once
        self.lifelines: set[str] = set()  # sent to the backup line, not yet recorded so
        # Records the placements of offers made and starts them (the worker's).
        self.claimed: Callable[[Sequence[queue.Offer]], Awaitable[None]] = self._intend_legs
        self._tasks: set[asyncio.Task[None]] = set()
        self.wrap_ups_swept = -1e9  # time.monotonic() of the dispatcher's last look at them
        self._moving: set[str] = set()  # callers this instance is taking to the backup line now
        # The content versions (ivr.publishing.wiring sets them): what the stage
        # renders for a call, and the plan it reads for it, are those of the
        # version the call started on; `plan` and `renderer` are the active's.
        self.contents: ActiveContent | None = None
        self._call_versions: OrderedDict[str, str | None] = OrderedDict()
        # Told of each call whose progress this instance stored (store_progress,
        # a tier moved on): the call flow forgets the row it kept for the
        # caller's next menu answer (a caller offered early is still in the
        # menu), whose guarded write would otherwise miss.
        self.progress_changed: Callable[[str], None] = lambda sid: None

    async def store_progress(
        self, sid: str, seen: dict[str, Any], transfer: dict[str, Any]
    ) -> int | None:
        """outcomes.store_progress, and the call flow told (`progress_changed`)."""
        seq = await outcomes.store_progress(self.pool, sid, seen, transfer)
        if seq is not None:
            self.progress_changed(sid)
        return seq

    def kick(self) -> None:
        """Something changed: let the dispatcher look for matches now."""
        self.wake.set()

    # The content version of a call ----------------------------------------------

    def note_version(self, sid: str, version: str | None) -> None:
        """Remember the version call `sid` started on (read with its row elsewhere)."""
        self._call_versions[sid] = version
        self._call_versions.move_to_end(sid)
        while len(self._call_versions) > CALL_VERSIONS_KEPT:
            self._call_versions.popitem(last=False)

    async def served_for(self, sid: str, version: str | _Unread | None = UNREAD, *,
                         read: bool = True) -> Served | None:
        """The content version call `sid` started on: `version` when the caller
        read it, else remembered, else read from its row (unless not `read`: the
        active one then). None without content versions (then `plan` and
        `renderer` serve). A version that cannot be had (a load failing on this
        instance) gives the active one: the caller hears newer words, never none."""
        contents = self.contents
        if contents is None:
            return None
        if isinstance(version, _Unread):
            if sid in self._call_versions:
                version = self._call_versions[sid]
            elif not read:
                return contents.current
            else:
                found = await outcomes.content_version_of(self.pool, sid)
                if found is None:
                    return contents.current  # no such call: nothing to be consistent with
                version = found[0]
        self.note_version(sid, version)
        try:
            return await contents.get(version)
        except Exception:
            log.exception("call %s: its content version %s cannot be loaded; serving the "
                          "active one", sid, version)
            return contents.current

    async def renderer_for(self, sid: str, version: str | _Unread | None = UNREAD) -> Renderer:
        served = await self.served_for(sid, version)
        return served.renderer if served is not None else self.renderer

    async def plan_for(self, sid: str, version: str | _Unread | None = UNREAD) -> RoutingPlan:
        served = await self.served_for(sid, version)
        return served.content.plan if served is not None else self.plan

    async def hold_renderer(self, sid: str) -> Renderer:
        """The hold document's renderer: the version `holding` found for the call
        (no query of its own), within HOLD_CONTENT_TIMEOUT."""
        try:
            async with asyncio.timeout(HOLD_CONTENT_TIMEOUT):
                served = await self.served_for(sid, read=False)
        except TimeoutError:
            log.warning("call %s: its content version is still loading; this hold round "
                        "plays the active one's", sid)
            return self.renderer
        return served.renderer if served is not None else self.renderer

    # Carrying out the progression's actions ------------------------------------

    async def availability(self, steps: Sequence[Step]) -> Availability:
        """What the progression sees when it chooses a step: who is free, and
        whether the REST API is usable (asked only when a warm step could use it).
        Nobody is rung by these events: that is the dispatcher's, in the order
        of waiting (Availability.ring)."""
        if not any(isinstance(s, WarmStep) for s in steps):
            return Availability(ring=False)
        degraded, free = await availability_now(self.pool)  # one round trip for both
        return Availability(free=() if degraded else free, degraded=degraded, ring=False)

    def dial_step(self, action: DialLine) -> DialStep:
        """The step of a DialLine as rendered: our own number as callerId unless the
        caller's may pass through."""
        caller_id = None if action.pass_caller_id else self.renderer.caller_id
        return evolve(action.step, caller_id=caller_id)

    def twiml_for(self, sid: str, p: Progress, actions: Sequence[Action], seq: int,
                  renderer: Renderer) -> str | None:
        """The caller's next TwiML, if `actions` ask for one, by `renderer`: that
        of the content version the call started on (`renderer_for`)."""
        for action in actions:
            match action:
                case DialLine():
                    return renderer.step(conference_name(sid), self.dial_step(action), seq,
                                         p.language, action.prompt)
                case Enqueue() | SetTier():
                    return renderer.step(conference_name(sid), p.steps[action.index], seq,
                                         p.language)
                case EndCall():
                    return renderer.goodbye()
        return None

    async def record(
        self, sid: str, p: Progress, actions: Sequence[Action], location_state: str | None,
        plan: RoutingPlan | None = None,
    ) -> None:
        """The outcomes among `actions` (before the call row moves on: an answer
        marks the row connected, and the row's own write says where it ends)."""
        for action in actions:
            if isinstance(action, RecordOutcome) and action.outcome is Outcome.ANSWERED:
                step = p.step
                await outcomes.answered(self.pool, sid, action.tier, action.name,
                                        self.in_state(step, location_state, plan))

    def in_state(self, step: Step, state: str | None,
                 plan: RoutingPlan | None = None) -> bool | None:
        """`plan`: that of the call's content version, whose centers its steps name."""
        if state is None:
            return None
        plan = plan or self.plan
        centers = [plan.centers[c] for c in step.centers if c in plan.centers]
        return any(state in c.serves for c in centers)

    async def carry_out(self, sid: str, p: Progress, actions: Sequence[Action], seq: int) -> None:
        """The waiting line and REST side of `actions`, once the call row holds `p`
        at `seq` (so a move's resume URL names a step that is recorded)."""
        for action in actions:
            match action:
                case Enqueue() | SetTier():
                    step = p.steps[action.index]
                    assert isinstance(step, WarmStep)
                    if isinstance(action, SetTier) or not await queue.enqueue(
                        self.pool, sid, p.queue or "", p.language, p.need, p.caller_state,
                        action.index, step.tier, step.counselors, step.ranks,
                    ):
                        await self.cancel(await queue.set_tier(
                            self.pool, sid, action.index, step.tier, step.counselors,
                            step.ranks))
                    self.kick()
                case Dequeue(status=status):
                    await self.cancel(await queue.dequeue(self.pool, sid, status))
                    self.kick()
                case DialLine():
                    await outcomes.ringing(self.pool, sid)
                case Ring(offer=number, counselor=counselor):
                    # Only a dispatcher pass rings (its own guarded statement,
                    # dispatch.ring_all); every other event advances with
                    # Availability(ring=False). A Ring here is a programming
                    # error: nobody is rung, and the offer the stored progress
                    # now holds is withdrawn, or the caller would wait for it.
                    log.error("call %s: a Ring of offer %d to counselor %s reached carry_out, "
                              "which never rings; withdrawn", sid, number, counselor)
                    await self.leg_event(sid, OfferWithdrawn(number))
                    self.kick()
                case CancelLeg():
                    # Never alone: the line's change beside it (Dequeue, SetTier)
                    # ends the caller's open offer and its leg, in one statement.
                    pass
                case RecordOutcome(outcome=Outcome.ABANDONED):
                    await outcomes.mark_abandoned(self.pool, sid)
                case MoveCaller(index=index, stage=stage):
                    await self.intend_move(sid, stage, seq, p.steps[index].name)
                case ScheduleDeadline(stage=stage, at=at):
                    # Due when too little of the tier is left for a full ring:
                    # the tier may be over then (the worker asks the progression).
                    await timers.add(self.pool, "tier_deadline", f"{sid}:{stage}",
                                     at - timedelta(seconds=MIN_RING), call_sid=sid,
                                     detail={"stage": stage})
                    self.work.set()
        await self.metrics.outcomes(self.pool, sid, actions)

    async def _intend_legs(self, offers: Sequence[queue.Offer]) -> None:
        for offer in offers:
            await timers.add(self.pool, "place_leg", str(offer.id), timers.AT_ONCE,
                             call_sid=offer.call_sid)
        self.work.set()

    async def intend_move(self, sid: str, stage: int, seq: int, where: str) -> None:
        """Record the move of a holding caller to a dial step; the timer worker
        carries it out (a REST redirect, retried with backoff), whichever
        instance is alive."""
        url = self.renderer.url("/twilio/resume", seq=seq)
        await timers.add(self.pool, "move_caller", f"{sid}:{stage}", timers.AT_ONCE,
                         call_sid=sid, detail={"stage": stage, "url": url, "where": where})
        self.work.set()

    # The dispatcher ------------------------------------------------------------

    async def run(self, tick: float = 0.5) -> None:
        """The dispatcher's loop (ivr.telephony.dispatcher), until cancelled."""
        await dispatcher.run(self, tick)

    async def dispatch_once(self) -> None:
        """One dispatcher pass (ivr.telephony.dispatcher.pass_once)."""
        await dispatcher.pass_once(self)

    async def leg_ended(self, offer: queue.Offer, end: queue.EndState, event: Event) -> None:
        """An offer ended without a conversation: the counselor's presence is the
        database's (queue.offer_missed), what comes next the progression's. Who
        is free is read first: the counselor of the ended offer, still offered
        then, is not rung again for this caller (they are tried anyway)."""
        context = await outcomes.call_context(self.pool, offer.call_sid)
        transfer = context["transfer"] if context else None
        av = await self.availability(Progress.from_json(transfer).steps) if transfer else None
        if await queue.offer_missed(self.pool, offer.id, end):
            self.metrics.offer_ended(end)
            await self.leg_event(offer.call_sid, event, av)
        self.kick()

    async def leg_event(
        self, sid: str, event: Event, av: Availability | None = None
    ) -> Progress | None:
        """Advance the caller's stored progress with an event of one of its offers
        and carry out what it asks; the progress stored, None when the event
        changed nothing (stale: the transfer is past this offer) or the call moved
        first. An accept is returned unstored: the database has the last word
        (_accept)."""
        for _ in range(UPDATE_TRIES):
            context = await outcomes.call_context(self.pool, sid)
            # 'flow': offered early (preoffer.py), the caller still in the menu.
            if context is None or context["phase"] not in ("transfer", "flow") or not (
                    context["transfer"]):
                return None
            seen = context["transfer"]
            p = Progress.from_json(seen)
            av = av or await self.availability(p.steps)
            q, actions = advance(p, event, self.clock(), av)
            if q == p:
                return None
            if q.phase.over:
                return q
            if q.stage == p.stage:
                # The same step: the offer changed (answered, ended), maybe the next rung.
                seq = await self.store_progress(sid, seen, q.to_json())
                if seq is None:
                    continue
                await self.carry_out(sid, q, actions, seq)
                return q
            # The tier is over (nobody left to ring, too little time): the next step.
            if await self.tier_moved(sid, int(context["seq"]), q, actions, type(event).__name__,
                                     context["content_version"]):
                return q
        return None

    async def tier_moved(
        self, sid: str, seq: int, p: Progress, actions: Sequence[Action], why: str,
        version: str | _Unread | None = UNREAD,
    ) -> bool:
        """`version`: the call's content version when the caller read it with the
        call row (else remembered, or read: `served_for`)."""
        twiml = self.twiml_for(sid, p, actions, seq + 1, await self.renderer_for(sid, version))
        step = p.step
        event = ("next_tier", {"tier": step.tier, "name": step.name, "why": why})
        new_seq = await outcomes.move_transfer(self.pool, sid, seq, p.to_json(), twiml, event)
        if new_seq is None:
            return False  # another instance (or a callback) moved this call first
        self.progress_changed(sid)
        log.info("call %s: %s, moving to the %s tier (%s)", sid, why, step.tier, step.name)
        await self.carry_out(sid, p, actions, new_seq)
        return True

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def lifeline_out(self, sid: str) -> None:
        """Our own fail-safe sends a holding caller to the backup line (the database
        does not answer, or their hold document cannot be made): the REST
        redirect, in the background unless this instance is already doing it,
        and the note that they are on the lifeline, written to their call as
        soon as the database answers (the timer worker's every pass). Every
        other move of a caller is a timer (`intend_move`); this one cannot be,
        the database being away."""
        self.lifeline(sid)
        if sid not in self._moving:
            self._moving.add(sid)
            self.spawn(self._to_backup(sid))

    def lifeline(self, sid: str) -> None:
        """A caller was sent to the backup line by a fail-safe: remember it until
        the database has it (the worker's every pass tries)."""
        self.lifelines.add(sid)
        self.work.set()

    async def _to_backup(self, sid: str) -> None:
        """Redirect a holding caller to the backup line, retrying: a caller left
        alone in their conference would wait for nobody. When every attempt
        fails the caller's next hold round tries again."""
        url = self.renderer.url("/twilio/fallback")
        try:
            for attempt, pause in enumerate(REDIRECT_RETRIES):
                try:
                    if not await self.rest.redirect(sid, url):
                        log.info("call %s: caller already gone", sid)
                    return
                except RestError as exc:
                    # One line when every attempt failed (below), not one per attempt.
                    log.info("call %s: could not take the caller to the backup line "
                             "(attempt %d): %s", sid, attempt + 1, exc)
                    await self.health.failed(as_service_error(exc))
                await asyncio.sleep(pause)
            log.error("call %s: could not take the caller to the backup line; they are still "
                      "holding and their next hold round tries again", sid)
        finally:
            self._moving.discard(sid)

    async def holding(self, sid: str, rounds: int) -> None:
        """A hold round: Twilio asks the wait URL what a caller alone in their
        conference hears next. Reconcile: a caller whose row says they should no
        longer hold (their step is a dial step: the move failed) is moved again;
        one whose tier is over wakes the dispatcher. Never raises.

        Twilio's documents allow only <Say>, <Play>, <Pause> and <Redirect> in a
        conference wait document (error 13238; <Leave> belongs to <Enqueue>), so
        the wait URL cannot take the caller out by TwiML: the move is the REST
        redirect, issued again at each round until it works.
        """
        try:
            async with asyncio.timeout(HOLD_QUERY_TIMEOUT):
                found = await holder(self.pool, sid)
        except Exception:
            # Nobody can offer this caller to a counselor without the database:
            # after a while on hold they are sent to the backup line.
            if rounds >= HOLD_ROUNDS_BEFORE_CHECK:
                log.error("call %s: database down while holding: sending the caller to the "
                          "backup", sid)
                self.lifeline_out(sid)
            return
        try:
            if found is not None:
                self.note_version(sid, found.content_version)  # for its hold document
            if found is None or found.phase != "transfer" or found.transfer is None:
                return  # unknown, connected (a counselor is joining), over, or lifeline
            p = Progress.from_json(found.transfer)
            if p.phase is Phase.DIALING:
                # The move's intent is in the progress (moved_at): a hold round
                # past MOVE_GRACE means it failed, and the progression repeats it
                # (recorded again unless an attempt is still pending).
                _, actions = advance(p, HoldRound(), self.clock(), Availability())
                if any(isinstance(a, MoveCaller) for a in actions):
                    log.info("call %s: still holding although their transfer is at %s: "
                             "taking them out again", sid, p.step.name)
                    await self.intend_move(sid, p.stage, found.seq, p.step.name)
            elif p.phase is Phase.HOLDING and p.arriving:
                # Offered early, the caller is now in their conference (preoffer.py).
                await self.store_progress(sid, found.transfer, joined_conference(p).to_json())
            elif p.phase is Phase.HOLDING and found.waiting and (
                    p.deadline is None or self.clock() >= p.deadline
                    or not await self.health.usable()):
                self.kick()
        except Exception:
            log.exception("call %s: hold round check failed", sid)

    # Counselor legs --------------------------------------------------------------

    async def whisper(self, offer_id: int) -> str:
        offer = await queue.get_offer(self.pool, offer_id)
        if offer is None:
            return self.renderer.counselor_goodbye("whisper_gone")
        renderer = await self.renderer_for(offer.call_sid)
        logs.about_version(renderer.version)  # this leg's lines: its caller's version
        if offer.state != "ringing":
            return renderer.counselor_goodbye("whisper_gone")
        if offer.number is not None:
            await self.leg_event(offer.call_sid, LegAnswered(offer.number))
        region = offer.caller_state or "an unknown state"
        # Offered early, the caller may still choose any of these.
        languages = await early_languages(self.pool, offer.call_sid) or (offer.language,)
        values = {
            "language": " or ".join(LANGUAGE_NAMES.get(lang, lang) for lang in languages),
            "need": offer.need or "general",
            "region": region,
            "wait": round(offer.waited_seconds),
        }
        return renderer.whisper(offer_id, values)

    async def whisper_answer(self, offer_id: int, digits: str) -> str:
        offer = await queue.get_offer(self.pool, offer_id)
        if offer is None or offer.number is None:
            return self.renderer.counselor_goodbye("whisper_gone")
        number = offer.number
        served = await self.served_for(offer.call_sid)
        logs.about_version(served.version if served is not None else None)
        if digits == "1":
            return await self._accept(offer, number, served)
        await self.leg_ended(offer, "declined" if digits else "missed",
                              LegDeclined(number) if digits else LegMissed(number))
        renderer = served.renderer if served is not None else self.renderer
        return renderer.counselor_goodbye("whisper_declined")

    async def _accept(self, offer: queue.Offer, number: int, served: Served | None) -> str:
        """The counselor pressed 1. The progression says whether the accept stands
        (not past the tier, the offer still current); the database then checks,
        in one transaction, that the caller still waits for a human. `served`:
        the call's content version (None: `renderer` and `plan`)."""
        renderer = served.renderer if served is not None else self.renderer
        plan = served.content.plan if served is not None else self.plan
        at = self.clock()
        accepted = await self.leg_event(offer.call_sid, LegAccepted(number))
        if accepted is not None and accepted.phase is Phase.EARLY:
            # Accepted before the caller arrived: wait for them in their conference.
            log.info("call %s: counselor %s accepted early", offer.call_sid, offer.counselor_id)
            return renderer.join_conference(conference_name(offer.call_sid), offer.id)
        if accepted is None or accepted.phase is not Phase.CONNECTED:
            return renderer.counselor_goodbye("whisper_gone")
        # The call's steps name the centers of its version; a center added since
        # is found in the active plan.
        center = plan.centers.get(offer.center_id) or self.plan.centers.get(offer.center_id)
        context = await outcomes.call_context(self.pool, offer.call_sid)
        state = context["location_state"] if context else None
        in_state = bool(center and state and state in center.serves) if state else None
        # Refused when the caller is known to be gone; a caller leaving
        # after this check is caught by the conference's wait URL.
        if not await outcomes.accept_offer(self.pool, offer.id, offer.tier_kind,
                                           offer.center_id, in_state):
            return renderer.counselor_goodbye("whisper_gone")
        await self.metrics.counselor_answered(self.pool, offer.call_sid, in_state)
        await self._store_accepted(offer.call_sid, number, at,
                                   context["transfer"] if context else None)
        log.info("call %s: counselor %s accepted", offer.call_sid, offer.counselor_id)
        return renderer.join_conference(conference_name(offer.call_sid), offer.id)

    async def _store_accepted(self, sid: str, number: int, at: datetime,
                              seen: dict[str, Any] | None) -> None:
        """The accept the database took, into the stored progress (`seen`, or read
        again): advanced from what is stored, as of `at`, since a hold round may
        have changed it meanwhile (the caller, offered early, now in their
        conference)."""
        for _ in range(UPDATE_TRIES):
            if seen is None:
                return
            q, _ = advance(Progress.from_json(seen), LegAccepted(number), at, Availability())
            if q.phase is not Phase.CONNECTED:
                return  # stored already
            if await self.store_progress(sid, seen, q.to_json()) is not None:
                return
            context = await outcomes.call_context(self.pool, sid)
            seen = context["transfer"] if context else None

    async def counselor_alone(self, offer_id: int) -> str:
        """The wait URL of a counselor's conference: Twilio requests it only while
        the counselor waits alone, which after an acceptance means the caller
        hung up as they accepted (a caller waits in their conference from the
        first warm tier on, and nothing moves them once connected). Nobody is
        coming: the leg is sent to its goodbye and the call counted abandoned.
        A wait document may not hang up (error 13238), so the leg is moved by
        the REST API; the silence it plays meanwhile repeats the request if
        that move fails."""
        offer = await queue.get_offer(self.pool, offer_id)
        if offer is not None and await caller_on_the_way(self.pool, offer.call_sid, offer.number):
            return self.renderer.counselor_waiting()  # accepted early: the caller is coming
        if offer is not None:
            if await outcomes.nobody_there(self.pool, offer.call_sid):
                await self.metrics.call_ended(self.pool, offer.call_sid, "abandoned")
                log.info("call %s: counselor %s accepted as the caller left",
                         offer.call_sid, offer.counselor_id)
            if offer.leg_sid:
                url = self.renderer.url("/twilio/whisper", offer=offer_id)
                self.spawn(self._send_off(offer.leg_sid, url))
        return self.renderer.counselor_waiting()

    async def _send_off(self, leg_sid: str, url: str) -> None:
        try:
            await self.rest.redirect(leg_sid, url)
        except RestError:
            log.exception("could not send counselor leg %s to its goodbye", leg_sid)

    async def leg_status(self, offer_id: int, status: str, leg_sid: str = "") -> None:
        if status in MISSED:  # a final status: the leg rings no more
            await queue.leg_over(self.pool, offer_id)
        offer = await queue.get_offer(self.pool, offer_id)
        if offer is None:
            return
        if leg_sid and offer.leg_sid is None:
            # The create's answer was lost (its instance died): kept, so that
            # the leg can still be cancelled.
            await queue.leg_seen(self.pool, offer_id, leg_sid)
        if status == "ringing":
            await outcomes.ringing(self.pool, offer.call_sid)
            return
        if status == "completed" and offer.state == "accepted":
            await self.call_ended(offer.counselor_id, offer.call_sid)
            return
        end = MISSED.get(status)
        number = offer.number
        if status == "completed" and await accepted_early(self.pool, offer.call_sid, number):
            end = "declined"  # accepted, waited for the caller, gave up: not an empty desk
        if end is not None and number is not None:
            if status == "completed" and not await self._whisper_heard(offer, number):
                # Answered, yet its whisper never reached us (an instance down,
                # our outage): ours to answer for, so they stay available.
                end = "canceled"
            log.info("call %s: counselor %s %s", offer.call_sid, offer.counselor_id, status)
            await self.leg_ended(offer, end, LEG_EVENTS[status](number))

    async def call_ended(self, counselor: str, call_sid: str) -> bool:
        """A counselor's call ended: wrap-up, whose end is a timer (on the app's
        clock, carried out by any instance). False when nothing changed."""
        row = await staff.call_ended_for_counselor(self.pool, counselor, call_sid)
        if row is None:
            return False
        due = self.clock() + timedelta(seconds=self.wrap_up_seconds)
        await timers.add(self.pool, "wrap_up", f"{counselor}:{row.presence_since.isoformat()}",
                         due, detail={"counselor": counselor,
                                      "since": row.presence_since.isoformat()})
        self.work.set()
        self.kick()
        return True

    async def _whisper_heard(self, offer: queue.Offer, number: int) -> bool:
        """Whether the whisper of this offer was served (its LegAnswered stored)."""
        context = await outcomes.call_context(self.pool, offer.call_sid)
        if context is None or not context["transfer"]:
            return True  # nothing to tell by: as before
        current = Progress.from_json(context["transfer"]).offer
        return current is None or current.number != number or current.answered

    # The caller ------------------------------------------------------------------

    async def caller_gone(self, sid: str, transfer: dict[str, Any]) -> None:
        """The caller hung up mid-transfer (the call row already says so): their
        progress is gone, and its actions free whoever was being rung for them
        and count the call abandoned."""
        seen: dict[str, Any] | None = transfer
        while seen is not None:
            p, actions = advance(Progress.from_json(seen), CallerLeft(), self.clock(),
                                 Availability())
            if not actions:
                return  # over already: connected, unreached, or gone before
            seq = await self.store_progress(sid, seen, p.to_json())
            if seq is not None:
                log.info("call %s: caller hung up during the transfer", sid)
                await self.carry_out(sid, p, actions, seq)
                return
            # A callback moved the transfer meanwhile: the caller left that one.
            context = await outcomes.call_context(self.pool, sid)
            seen = context["transfer"] if context else None

    async def withdrawn(self, offer: queue.Offer) -> None:
        """An administrator's presence change ended a ringing offer (the database
        did): hang its leg up and let the caller's progress go on."""
        await self.cancel([offer])
        # Read afresh: a placement may have numbered the offer since the
        # presence change ended it (offer.number is as of that change).
        number = await queue.offer_number(self.pool, offer.id)
        if number is not None:
            await self.leg_event(offer.call_sid, OfferWithdrawn(number))
        self.kick()

    async def cancel(self, offers: Sequence[queue.Offer]) -> None:
        self.metrics.offer_ended("canceled", len(offers))
        for offer in offers:
            if offer.leg_sid:
                await self.end_leg(offer.id, offer.leg_sid)

    async def end_leg(self, offer_id: int, leg_sid: str) -> bool:
        """Cancel (or hang up, if answered) offer `offer_id`'s counselor leg, and
        record it over. False when Twilio could not be told: the leg may still
        ring, and its counselor's next leg waits for it (queue.placing)."""
        try:
            await self.rest.end_call(leg_sid)
        except RestError as exc:
            log.warning("could not end counselor leg %s: %s", leg_sid, exc)
            await self.health.failed(as_service_error(exc))
            return False
        await queue.leg_over(self.pool, offer_id)
        return True

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def as_service_error(exc: RestError) -> ServiceError:
    if isinstance(exc, ServiceError):
        return exc
    return ServiceError(str(exc), status=exc.status, code=exc.code)


def is_ringing(p: Progress | None) -> bool:
    """A dial step rings at once; a warm step rings when a counselor is offered."""
    return p is not None and p.phase is Phase.DIALING
