"""The timer worker: carries out the timers any instance recorded (ivr.storage.timers).

Each instance runs one. Every pass (at once when this instance records a
timer, else every POLL seconds, so a timer is acted on well within 2 s of
falling due) it first writes down callers sent to the backup line while the
database was away (`record_lifelines`), then leases the due timers
and carries each out in a task of its own, so a slow REST request holds up
nobody else:

- place_leg: ring the counselor of an offer made (the REST create), then
  record the leg and its ring_timeout;
- ring_timeout: an offer still ringing past its time: what Twilio says of
  the leg (GET Calls/{Sid}) stands in for the callback that never came, and
  a leg still ringing is cancelled; either way the caller moves on;
- tier_deadline: TierDeadline into the progression (Transfers.deadline);
- move_caller: the REST redirect of a holding caller to their dial step;
- wrap_up: a counselor's wrap-up after a call is over: available again.

A timer whose work fails (a REST or database error) is put back with a
backoff; one whose instance dies is taken over when its lease ends; one an
instance stopping was carrying out is given back at once. Every outcome is
recorded on the row. The reconciliation sweep (ivr.telephony.reconcile)
runs from here too, every RECONCILE_EVERY seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from ivr.routing.progress import Phase, Progress
from ivr.routing.progression import advance
from ivr.routing.rules import MIN_RING, can_ring, ring_seconds
from ivr.routing.signals import (
    Blame,
    CounselorFreed,
    LegFailed,
    LegMissed,
    OfferWithdrawn,
    TierDeadline,
)
from ivr.storage import counselors as staff
from ivr.storage import holding as holding_db
from ivr.storage import queue, timers
from ivr.storage import transfers as outcomes
from ivr.telephony.overrides import with_overrides
from ivr.telephony.rest import AddressError, RestError
from ivr.telephony.transfer import MISSED, Transfers, as_service_error

log = logging.getLogger(__name__)

POLL: Final = 0.25  # seconds between looks at the timers table when nothing wakes us
LEASE: Final = 30.0  # seconds a claimed timer is ours: longer than any one REST request
RECONCILE_EVERY: Final = 5.0  # seconds between reconciliation sweeps
# A leg's status callback comes a moment after its ring timeout: this long
# past it, the offer is ended without waiting for the callback any longer.
RING_GRACE: Final = 0.75
# A leg answered (the whisper plays) when its ring time ran out: the
# counselor gets this much longer to press a key before the leg is ended.
WHISPER_GRACE: Final = 20.0
# How long past its ring timeout a leg may still ring (Twilio queues and
# dials it first): a counselor's next leg waits no longer for one whose end
# nobody heard of.
LEG_SLACK: Final = 5.0
LEG_WAIT: Final = 0.25  # seconds between looks at a counselor's earlier leg
MOVE_ATTEMPTS: Final = 8  # then the caller's next hold round records the move again


@dataclass(frozen=True)
class Later:
    """Not done: look at this timer again at `at`, noting why."""

    at: datetime
    why: str


Outcome = str | Later


class TimerWorker:
    def __init__(
        self,
        transfers: Transfers,
        *,
        sweep: Callable[[], Awaitable[None]] | None = None,
        lease: float | None = None,
        poll: float = POLL,
    ) -> None:
        self.t = transfers
        self.pool = transfers.pool
        self.sweep = sweep
        self.lease = LEASE if lease is None else lease
        self.poll = poll
        self.owner = f"worker-{uuid.uuid4().hex[:12]}"
        self._tasks: set[asyncio.Task[None]] = set()
        self._swept: datetime | None = None
        transfers.claimed = self.claimed

    async def run(self) -> None:
        sweeping = asyncio.create_task(self._sweep_now_and_then())
        try:
            await self._timers()
        finally:
            sweeping.cancel()
            await asyncio.gather(sweeping, return_exceptions=True)

    async def _timers(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll):
                    await self.t.work.wait()
            self.t.work.clear()
            try:
                await self.pass_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: the next pass tries again
                log.debug("timer pass failed: %s", exc)

    async def pass_once(self) -> None:
        if self.t.lifelines:
            await self.record_lifelines()
        now = self.t.clock()
        for timer in await timers.claim_due(self.pool, now, self.owner, self.lease):
            self._start(timer)

    async def claimed(self, offers: Sequence[queue.Offer]) -> None:
        """These offers were made (a Ring): their placements recorded, leased to
        this instance, and started at once (no trip through the timers table)."""
        known = {str(o.id): o for o in offers}
        for timer in await timers.add_leased(
                self.pool, "place_leg", [(str(o.id), o.call_sid) for o in offers],
                self.t.clock(), self.owner, self.lease):
            self._start(timer, known.get(timer.subject))

    def _start(self, timer: timers.Timer, offer: queue.Offer | None = None) -> None:
        task = asyncio.create_task(self._carry_out(timer, offer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep_now_and_then(self) -> None:
        """The reconciliation, at start and then every RECONCILE_EVERY seconds of
        the app's clock; beside the timers, so a slow sweep delays none of them."""
        while self.sweep is not None:
            now = self.t.clock()
            if self._swept is None or (now - self._swept).total_seconds() >= RECONCILE_EVERY:
                self._swept = now
                try:
                    await self.sweep()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database away: the next sweep tries again
                    log.info("reconciliation sweep failed (%s); the next one tries again", exc)
            await asyncio.sleep(self.poll)

    async def _carry_out(self, timer: timers.Timer, offer: queue.Offer | None = None) -> None:
        if offer is not None:
            outcome = await self._attempt(timer, lambda _: self.place_leg(timer, offer))
        else:
            outcome = await self._attempt(timer, self._handler(timer.kind))
        await self._record(timer, outcome)

    def _handler(self, kind: str) -> Callable[[timers.Timer], Awaitable[Outcome]] | None:
        return {
            "place_leg": self.place_leg,
            "ring_timeout": self.ring_timeout,
            "tier_deadline": self.tier_deadline,
            "move_caller": self.move_caller,
            "wrap_up": self.wrap_up,
        }.get(kind)

    async def _attempt(
        self, timer: timers.Timer, handler: Callable[[timers.Timer], Awaitable[Outcome]] | None
    ) -> Outcome:
        try:
            return "unknown kind" if handler is None else await handler(timer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            pause = timers.backoff(timer.attempts)
            log.warning("timer %d (%s %s) failed (attempt %d), again in %.1f s: %s",
                        timer.id, timer.kind, timer.subject, timer.attempts,
                        pause.total_seconds(), exc)
            return Later(self.t.clock() + pause, f"failed: {exc}")

    async def _record(self, timer: timers.Timer, outcome: Outcome) -> None:
        try:
            if isinstance(outcome, Later):
                await timers.retry(self.pool, timer.id, outcome.at, outcome.why)
                delay = (outcome.at - self.t.clock()).total_seconds()
                if delay <= 0:
                    self.t.work.set()
            else:
                await timers.finish(self.pool, timer.id, self.t.clock(), outcome)
        except Exception as exc:  # the lease runs out and another attempt comes
            log.warning("could not record the outcome of timer %d: %s", timer.id, exc)

    # The kinds ----------------------------------------------------------------------

    async def record_lifelines(self) -> None:
        """Write down the callers a fail-safe sent to the backup line meanwhile:
        their call leaves the transfer for good (the line, any ringing offer and
        its leg, pending timers). Raises while the database does not answer."""
        t = self.t
        for sid in sorted(t.lifelines):
            ended = await holding_db.record_lifeline(self.pool, sid, t.clock())
            t.lifelines.discard(sid)
            if ended is None:
                continue
            log.warning("call %s: recorded on the backup line (sent there by a fail-safe); "
                        "nobody is rung for them and they are not moved again", sid)
            await t.cancel(ended)
            t.kick()

    async def tier_deadline(self, timer: timers.Timer) -> Outcome:
        """The end of a tier, for the stage the timer was set for: from the moment
        too little of it is left for a full ring, CounselorFreed (nobody rings:
        the tier is over; a phone rings: it may still be answered, until the
        deadline), then TierDeadline at the deadline itself."""
        sid, stage, t = timer.call_sid, int(timer.detail["stage"]), self.t
        assert sid is not None
        for _ in range(3):
            context = await outcomes.call_context(self.pool, sid)
            if context is None or context["phase"] != "transfer" or not context["transfer"]:
                return "the transfer is over"
            p = Progress.from_json(context["transfer"])
            if p.phase is not Phase.HOLDING or p.stage != stage:
                return "stale: the transfer moved on"
            now = t.clock()
            assert p.deadline is not None
            ring_by = p.deadline - timedelta(seconds=MIN_RING)
            if now < ring_by:
                return Later(ring_by, "not due yet")
            event = TierDeadline(stage) if now >= p.deadline else CounselorFreed()
            q, actions = advance(p, event, now, await t.availability(p.steps))
            if q.stage == p.stage:
                if q != p:  # someone rung after all (the last full ring of the tier)
                    seq = await t.store_progress(sid, context["transfer"], q.to_json())
                    if seq is None:
                        continue
                    await t.carry_out(sid, q, actions, seq)
                if now < p.deadline:
                    return Later(p.deadline, "a phone rings: it may be answered until the "
                                             "deadline")
                return "nothing to do"
            if await t.tier_moved(sid, int(context["seq"]), q, actions, "tier deadline",
                                  context["content_version"]):
                return f"moved to {q.step.name}"
        return "the call kept changing"

    async def wrap_up(self, timer: timers.Timer) -> Outcome:
        since = datetime.fromisoformat(str(timer.detail["since"]))
        if await staff.end_wrap_up_of(self.pool, str(timer.detail["counselor"]), since):
            self.t.kick()
            return "available"
        return "no longer in that wrap-up"

    async def move_caller(self, timer: timers.Timer) -> Outcome:
        sid, detail = timer.call_sid, timer.detail
        assert sid is not None
        context = await outcomes.call_context(self.pool, sid)
        if context is None or context["phase"] != "transfer" or not context["transfer"]:
            return "the transfer is over (or the caller is on the lifeline)"
        p = Progress.from_json(context["transfer"])
        if p.phase is not Phase.DIALING or p.stage != int(detail["stage"]):
            return "stale: the transfer moved on"
        try:
            moved = await self.t.rest.redirect(sid, str(detail["url"]))
        except RestError as exc:
            await self.t.health.failed(as_service_error(exc))
            if timer.attempts >= MOVE_ATTEMPTS:
                log.error("call %s: could not take the caller to %s after %d attempts; their "
                          "next hold round tries again", sid, detail["where"], timer.attempts)
                return f"gave up: {exc}"
            log.info("call %s: could not take the caller to %s (attempt %d): %s",
                     sid, detail["where"], timer.attempts, exc)
            return Later(self.t.clock() + timers.backoff(timer.attempts), f"failed: {exc}")
        return "moved" if moved else "the caller had hung up"

    async def place_leg(
        self, timer: timers.Timer, claimed: queue.Offer | None = None
    ) -> Outcome:
        """Ring the counselor of an offer made (the progress's Ring, its number on
        the offers row). Safe to run again after an instance died half-way: an
        offer that has its leg, or is over, is left alone."""
        t = self.t
        offer = claimed or await queue.get_offer(self.pool, int(timer.subject))
        if offer is None or offer.state != "ringing":
            return "the offer is over"
        if offer.leg_sid:
            return "placed already"
        made = await self._offered(offer)
        if made is None:
            log.info("call %s: offer to counselor %s withdrawn: too little of the tier left, "
                     "or the transfer moved on", offer.call_sid, offer.counselor_id)
            # The progress, if it still holds the offer, moves on without it.
            await t.leg_ended(offer, "canceled", OfferWithdrawn(offer.number or 0))
            return "withdrawn: the transfer moved on"
        number, seconds = made
        marked = await queue.placing(self.pool, offer.id, offer.counselor_id,
                                     seconds + LEG_SLACK)
        if isinstance(marked, list) and await self._end_earlier(offer, marked):
            marked = await queue.placing(self.pool, offer.id, offer.counselor_id,
                                         seconds + LEG_SLACK)
        if isinstance(marked, list):
            return Later(t.clock() + timedelta(seconds=LEG_WAIT),
                         "the counselor's phone still rings with an earlier leg")
        if not marked:
            return "the offer is over"
        try:
            leg = await t.rest.place_call(
                to=offer.address,
                from_=t.renderer.caller_id,
                url=t.renderer.url("/twilio/whisper", offer=offer.id),
                # Twilio retries it if we cannot take it (connection overrides).
                status_callback=with_overrides(
                    t.renderer.url("/twilio/leg-status", offer=offer.id)),
                ring_seconds=seconds,
            )
        except AddressError as exc:
            # About this counselor's own number or address: they are not
            # reachable there, so they go offline like a leg that failed.
            log.warning("call %s: counselor %s could not be rung: %s",
                        offer.call_sid, offer.counselor_id, exc)
            await queue.leg_over(self.pool, offer.id)  # refused: no call was made
            await t.leg_ended(offer, "failed", LegFailed(number, Blame.COUNSELOR))
            return f"address refused: {exc}"
        except RestError as exc:
            # Nobody's fault on the staff (credentials, outage, network): the
            # offer is withdrawn as if never made and the API marked degraded,
            # so the caller goes on at once instead of waiting on a dead API.
            await t.health.failed(as_service_error(exc))
            if exc.status is not None and exc.status < 500:
                await queue.leg_over(self.pool, offer.id)  # refused: no call was made
            log.info("call %s: offer to counselor %s withdrawn, the REST API failed",
                     offer.call_sid, offer.counselor_id)
            await t.leg_ended(offer, "canceled", LegFailed(number, Blame.SERVICE))
            return f"REST API failed: {exc}"
        if not await queue.set_leg(self.pool, offer.id, leg.sid):
            # The caller left (or the tier moved on) while the leg was being placed.
            await t.end_leg(offer.id, leg.sid)
            return "placed, then cancelled: the offer ended meanwhile"
        due = t.clock() + timedelta(seconds=seconds + RING_GRACE)
        await timers.add(self.pool, "ring_timeout", str(offer.id), due, call_sid=offer.call_sid)
        log.info("call %s: ringing counselor %s (offer %d)",
                 offer.call_sid, offer.counselor_id, offer.id)
        return f"placed {leg.sid}"

    async def _end_earlier(self, offer: queue.Offer, legs: list[queue.OpenLeg]) -> bool:
        """Whether these earlier legs to the counselor's phone are over now. A
        leg whose offer ended (its cancel on its way, or lost with an instance
        that died) is cancelled here by whoever needs the phone next; one still
        being placed, or that Twilio would not cancel, is waited for (at most
        until it must have rung out: queue.placing)."""
        clear = True
        for earlier in legs:
            if earlier.leg_sid is None:
                clear = False
            elif await self.t.end_leg(earlier.offer_id, earlier.leg_sid):
                log.info("call %s: cancelled counselor %s's earlier leg %s (offer %d) first",
                         offer.call_sid, offer.counselor_id, earlier.leg_sid, earlier.offer_id)
            else:
                clear = False
        return clear

    async def _offered(self, offer: queue.Offer) -> tuple[int, int] | None:
        """(the offer's number, seconds the phone may ring), or None when the
        caller's progress no longer holds this offer (it moved on) or too little
        of the tier is left for a full ring (the tier ends: its deadline, or the
        dispatcher's next look, moves the caller on)."""
        number = offer.number
        context = await outcomes.call_context(self.pool, offer.call_sid)
        if number is None or context is None or not context["transfer"]:
            return None
        p = Progress.from_json(context["transfer"])
        mine = p.offer
        if mine is None or mine.number != number or mine.counselor != offer.counselor_id:
            return None
        if p.phase is Phase.EARLY:
            return number, mine.ring_seconds
        left = p.seconds_left(self.t.clock())
        ok = p.phase is Phase.HOLDING and can_ring(left)
        return (number, ring_seconds(left)) if ok else None

    async def ring_timeout(self, timer: timers.Timer) -> Outcome:
        """An offer's ring time is over and no callback ended it (lost to our
        outage, or to an instance that died): ask Twilio about the leg."""
        t = self.t
        offer = await queue.get_offer(self.pool, int(timer.subject))
        if offer is None or offer.state != "ringing":
            return "ended in time"
        status: str | None = None
        if offer.leg_sid:
            try:
                status = await t.rest.call_status(offer.leg_sid)
            except RestError as exc:
                log.info("call %s: could not fetch counselor leg %s: %s",
                         offer.call_sid, offer.leg_sid, exc)
        if status in MISSED:
            log.info("call %s: the %s callback of counselor %s's leg never came; Twilio "
                     "says so", offer.call_sid, status, offer.counselor_id)
            await t.leg_status(offer.id, status)
            return f"callback made up: {status}"
        if status == "in-progress" and timer.attempts <= 1:
            return Later(t.clock() + timedelta(seconds=WHISPER_GRACE), "the whisper plays")
        if offer.leg_sid:
            await t.end_leg(offer.id, offer.leg_sid)
        number = offer.number
        log.info("call %s: counselor %s's phone rang past its time (leg %s); ended, "
                 "the caller moves on", offer.call_sid, offer.counselor_id, status or "unknown")
        # Nobody knows why no callback came (ours to answer for): the counselor
        # stays available, and is not rung for this caller again in this tier.
        await t.leg_ended(offer, "canceled", LegMissed(number or 0))
        return f"rang out (leg {status or 'unknown'})"

    async def close(self) -> None:
        """Stop, and give the leases of what was cut short back at once."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            async with asyncio.timeout(2.0):
                await timers.release(self.pool, self.owner)
        except Exception as exc:  # the leases run out by themselves
            log.info("could not give back the timers in hand: %s", exc)
