"""The transfer progression: advance(progress, event, now, availability).

Pure and synchronous like flow.runtime.step: a transfer is a `Progress`
(stored with the call), an event (ivr.routing.signals) and what the
dispatcher sees of the counselors right now (`Availability`); the result is
the new progress and the actions for the adapters to carry out. The rules it
follows are in ivr.routing.rules, shared with the bounds.

How a transfer moves:
- `begin` enters the first step worth entering (rules.next_step). At a warm
  step the caller holds in their conference and the tier's clock starts at
  once: counselors are rung while the flow's transfer prompt still plays.
- At a warm step one counselor is rung at a time, the best free one the
  caller has not been offered in this tier (`best_free`: lowest rank, then
  longest idle). A miss, decline or failure
  charged to the counselor rings the next; the tier ends at its deadline
  (TierDeadline, or any event that finds it past), when nobody is left to
  ring (tried, or gone from the plan), when nobody could ring long enough,
  when nobody is free and the tier does not wait for them, and when the
  REST API is degraded and no leg is ringing. A counselor's phone never
  rings past the tier's deadline.
- Leaving a warm step for a dial step moves the caller out of their
  conference (MoveCaller); every hold round that finds them still there
  after MOVE_GRACE issues the move again. A conference that ends under a
  caller still on the line (HoldEnded) is answered with the next step.
- A dial step ends with its <Dial>: answered is the end of the transfer,
  anything else the next step; the national backup is dialled again
  BACKUP_REDIALS times, then the transfer is unreached.
- A caller who leaves is gone: legs cancelled, nobody rung for them again.
- Early (`begin_early`): while the flow still plays a menu whose silence
  leads to a queue, the caller joins the line of its first warm step, among
  only the counselors who fit every language the caller may still choose
  there (`early_steps`), and one of them is rung; no tier clock runs. A
  counselor who accepts waits in the caller's conference. The caller going
  anywhere else (CallerWentElsewhere) withdraws the offer and takes them off
  the line. Reaching the transfer (`begin(..., early=)`) starts the tier's
  clock as for any caller; the early offer stays, or, accepted, is the
  answer. The counselor rung early counts as tried in the tier, and offer
  numbers and stages go on from the early ones, so a late event of an
  early offer is never taken for a later one's.

An event for an offer or stage that is no longer current, or for a transfer
that is over, changes nothing and asks for nothing; so does any event
delivered twice in a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ivr.evolve import evolve
from ivr.routing.progress import Offer, Phase, Progress
from ivr.routing.rules import (
    MOVE_GRACE,
    can_ring,
    check_steps,
    may_redial,
    next_step,
    prompt_before,
    ring_seconds,
    tier_seconds,
)
from ivr.routing.signals import (
    AcceptEarly,
    Action,
    Arrive,
    Blame,
    CallerLeft,
    CallerWentElsewhere,
    CancelLeg,
    Dequeue,
    DialEnded,
    DialLine,
    EndCall,
    Enqueue,
    Event,
    HoldEnded,
    HoldRound,
    LegAccepted,
    LegAnswered,
    LegDeclined,
    LegFailed,
    LegMissed,
    MoveCaller,
    MoveLanded,
    OfferWithdrawn,
    Outcome,
    RecordOutcome,
    Ring,
    ScheduleDeadline,
    SetTier,
    TierDeadline,
)
from ivr.routing.steps import DialStep, Step, WarmStep


@dataclass(frozen=True)
class Availability:
    """What the dispatcher sees now, outside this transfer."""

    free: tuple[str, ...] = ()  # available counselor ids, best first (the one ordering)
    degraded: bool = False  # the REST API is in its cool-off: no counselor can be rung
    # Counselors gone from the routing plan (a publish removed them): never rung
    # again, so not left to try (a caller's steps name them until the tier ends).
    gone: frozenset[str] = frozenset()
    # Whether this event may ring someone. Callers are served longest waiting
    # first, an order no single caller's progress knows: only the dispatcher,
    # which advances the line in that order, rings (True); any other event
    # leaves a free counselor to its next pass (the caller waits for it).
    ring: bool = True


Result = tuple[Progress, tuple[Action, ...]]


def begin(
    steps: Sequence[Step],
    now: datetime,
    availability: Availability,
    *,
    language: str,
    queue: str | None = None,
    line: str | None = None,
    need: str | None = None,
    caller_state: str | None = None,
    pass_caller_id: bool = True,
    early: Progress | None = None,
) -> Result:
    """The flow hands the caller over at `now`: enter the first step worth entering.

    `early`: the caller's early progress, if they were offered early. Arriving
    where it was made for, it goes on (`_arrive`); anywhere else it is withdrawn
    first (its actions come first)."""
    check_steps(steps)
    withdrawn: tuple[Action, ...] = ()
    if early is not None and not early.phase.over:
        arrived = _arrive(early, steps, now, availability, language=language, queue=queue,
                          line=line, need=need)
        if arrived is not None:
            return arrived
        early, withdrawn = advance(early, CallerWentElsewhere(), now, availability)
    index = next_step(steps, 0, availability.free, availability.degraded)
    blank = Progress(
        steps=tuple(steps), index=index, phase=Phase.HOLDING, stage=early.stage if early else 0,
        started_at=now, stage_started_at=now, language=language, queue=queue, line=line,
        need=need, caller_state=caller_state, pass_caller_id=pass_caller_id,
        offers_made=early.offers_made if early else 0,
    )
    p, actions = _enter(blank, index, now, availability, holding=False, from_flow=True)
    return p, (*withdrawn, *actions)


def early_steps(choices: Sequence[Sequence[Step]]) -> tuple[Step, ...] | None:
    """The steps of an early offer: the first warm step of `choices[0]` (the steps
    for the caller's language now), keeping only the counselors who are in that
    same tier in every other choice (the steps for each language the caller may
    still choose), then the national backup. None when the transfer does not
    start with a warm step or nobody fits every choice."""
    first = choices[0][0] if choices and choices[0] else None
    if not isinstance(first, WarmStep):
        return None
    keep: list[int] = []
    for i, counselor in enumerate(first.counselors):
        if all(isinstance(c[0], WarmStep) and (c[0].tier, c[0].name) == (first.tier, first.name)
               and counselor in c[0].counselors for c in choices[1:]):
            keep.append(i)
    if not keep:
        return None
    ranks = tuple(first.ranks[i] for i in keep) if first.ranks else ()
    warm = evolve(first, counselors=tuple(first.counselors[i] for i in keep), ranks=ranks)
    return warm, choices[0][-1]


def begin_early(
    steps: Sequence[Step],
    now: datetime,
    availability: Availability,
    *,
    language: str,
    languages: Sequence[str],
    queue: str | None = None,
    line: str | None = None,
    need: str | None = None,
    caller_state: str | None = None,
    pass_caller_id: bool = True,
) -> Result:
    """While the flow still plays a menu whose silence leads to this transfer: join
    the line of its first step (a warm step: `early_steps`), and ring one of its
    counselors if one is free. No deadline: the tier starts when the caller arrives."""
    check_steps(steps)
    step = steps[0]
    if not isinstance(step, WarmStep):
        raise ValueError("an early offer needs a warm step first (early_steps)")
    blank = Progress(
        steps=tuple(steps), index=0, phase=Phase.EARLY, stage=1, started_at=now,
        stage_started_at=now, language=language, queued=True, queue=queue, line=line,
        need=need, caller_state=caller_state, pass_caller_id=pass_caller_id,
        languages=tuple(languages),
    )
    p, rung = _early_settle(blank, now, availability)
    return p, (Enqueue(0, 1, step.tier, step.counselors), *rung)


def joined_conference(p: Progress) -> Progress:
    """The caller's conference wait URL was requested: they are in it, no longer
    arriving (a counselor who then finds it empty finds them gone)."""
    return replace(p, arriving=False) if p.phase is Phase.HOLDING else p


def take_offer(p: Progress, counselor: str, now: datetime) -> Progress | None:
    """The progress taking an offer the dispatcher's claim made for this counselor,
    or None when the caller may not be rung now (not holding or early, or too
    little of the tier left for a full ring)."""
    if p.phase is Phase.HOLDING:
        left = p.seconds_left(now)
        if not can_ring(left):
            return None
        seconds = ring_seconds(left)
    elif p.phase is Phase.EARLY and p.offer is None:
        step = p.step
        assert isinstance(step, WarmStep)
        seconds = ring_seconds(tier_seconds(step))
    else:
        return None
    number = p.offers_made + 1
    return replace(p, offer=Offer(number, counselor, now, seconds), offers_made=number)


def advance(progress: Progress, event: Event, now: datetime, availability: Availability) -> Result:
    if _stale(progress, event):
        return progress, ()
    if progress.phase is Phase.EARLY:
        return _early(progress, event, now, availability)
    if progress.phase is Phase.HOLDING:
        return _holding(progress, event, now, availability)
    return _dialing(progress, event, now, availability)


def _stale(p: Progress, event: Event) -> bool:
    if p.phase.over:
        return True
    match event:
        case (LegAnswered() | LegAccepted() | LegDeclined() | LegMissed() | LegFailed()
              | OfferWithdrawn()):
            return p.offer is None or p.offer.number != event.offer
        case TierDeadline() | HoldEnded():
            return p.phase is not Phase.HOLDING or event.stage != p.stage
        case DialEnded() | MoveLanded():
            return p.phase is not Phase.DIALING or event.stage != p.stage
        case CallerWentElsewhere():
            return p.phase is not Phase.EARLY
    return False


# Offered early, while the flow still runs -----------------------------------------


def _early(p: Progress, event: Event, now: datetime, av: Availability) -> Result:
    match event:
        case CallerLeft():
            return _gone(p)
        case CallerWentElsewhere():
            cancel: tuple[Action, ...] = ()
            if p.offer is not None:
                cancel = (CancelLeg(p.offer.number, p.offer.counselor),)
            leave: tuple[Action, ...] = (Dequeue("backup"),) if p.queued else ()
            return replace(p, phase=Phase.WITHDRAWN, offer=None, queued=False), (*cancel, *leave)
        case LegAccepted():
            assert p.offer is not None
            return replace(p, offer=replace(p.offer, answered=True, accepted=True)), ()
    before = p.offer
    p, service_failed = _offer_news(p, event)
    if before is not None and p.offer is None and before.counselor not in p.tried:
        # Offered once, never again for this caller in this tier, whatever ended
        # it (as the dispatcher's look has it: any offer since the tier started).
        p = replace(p, tried=(*p.tried, before.counselor))
    if service_failed:
        return p, ()  # the API failed: nobody is rung early; the transfer will see it
    return _early_settle(p, now, av)


def _early_settle(p: Progress, now: datetime, av: Availability) -> Result:
    """Ring the first free counselor of the early step not tried yet, if none rings."""
    step = p.step
    assert isinstance(step, WarmStep)
    if p.offer is not None or av.degraded or not av.ring:
        return p, ()
    pick = best_free(step, av.free, p.tried)
    if pick is None:
        return p, ()
    return _ring(p, pick, now)


def best_free(step: WarmStep, free: Sequence[str], tried: Sequence[str]) -> str | None:
    """Whom to ring next at `step`: among its counselors free now and not `tried`,
    the lowest rank (ivr.routing.tiers.rank), then the first in `free` (the
    longest idle, then the id: the snapshot's order). The one ordering of
    counselors, decided here alone."""
    ranks = dict(zip(step.counselors, step.ranks, strict=True)) if step.ranks else {}
    order = {c: i for i, c in enumerate(free)}
    fits = [c for c in step.counselors if c in order and c not in tried]
    return min(fits, key=lambda c: (ranks.get(c, 0), order[c]), default=None)


def _ring(p: Progress, pick: str, now: datetime) -> Result:
    """Offer the caller to `pick` (free, and the caller may be rung now)."""
    q = take_offer(p, pick, now)
    assert q is not None and q.offer is not None
    return q, (Ring(q.offer.number, pick, q.offer.ring_seconds),)


def _arrive(
    early: Progress, steps: Sequence[Step], now: datetime, av: Availability, *,
    language: str, queue: str | None, line: str | None, need: str | None,
) -> Result | None:
    """The caller offered early reaches the transfer it was made for: the tier starts
    now, with the early offer and who was tried. None when this is not where the
    early offer was made for (another queue, need or language, or a first step
    other than its warm step)."""
    if (language not in early.languages
            or (queue, line, need) != (early.queue, early.line, early.need)):
        return None
    offer = early.offer
    # The early counselor is busy with this very caller, not unavailable to them.
    free = (*av.free, offer.counselor) if offer is not None else av.free
    index = next_step(steps, 0, free, av.degraded)
    step, was = steps[index], early.step
    if not (isinstance(step, WarmStep) and (step.tier, step.name) == (was.tier, was.name)):
        return None
    if offer is not None and offer.counselor not in step.counselors:
        return None
    stage = early.stage + 1
    deadline = now + timedelta(seconds=tier_seconds(step))
    p = replace(early, steps=tuple(steps), index=index, phase=Phase.HOLDING, stage=stage,
                started_at=now, stage_started_at=now, deadline=deadline, language=language,
                languages=(), moved_at=None, arriving=True)
    if offer is not None and offer.accepted:
        q = replace(p, phase=Phase.CONNECTED, queued=False)
        return q, (AcceptEarly(offer.number, offer.counselor),
                   _outcome(q, Outcome.ANSWERED, offer.counselor))
    q, rung = _settle(p, now, av)
    return q, (Arrive(index, stage, step.tier, step.counselors),
               ScheduleDeadline(stage, deadline), *rung)


# At a warm step ----------------------------------------------------------------


def _holding(p: Progress, event: Event, now: datetime, av: Availability) -> Result:
    assert p.deadline is not None and p.phase is Phase.HOLDING
    if isinstance(event, CallerLeft):
        return _gone(p)
    over = now >= p.deadline
    if isinstance(event, LegAccepted) and not over:
        offer = p.offer
        assert offer is not None
        if p.arriving and offer.made_at < p.started_at:
            # Offered early, accepted while the caller still hears the transfer
            # prompt: the counselor waits in their conference for them.
            offer = replace(offer, answered=True, accepted=True)
        return replace(p, phase=Phase.CONNECTED, queued=False, offer=offer), (
            _outcome(p, Outcome.ANSWERED, offer.counselor),)
    if isinstance(event, HoldEnded):  # out of the conference: answer with the next step
        return _move_on(p, now, av, holding=False)
    p, service_failed = _offer_news(p, event)
    if over:  # an accept too: the tier is over, the next one is under way
        return _move_on(p, now, av, degraded=service_failed)
    return _settle(p, now, av, degraded=service_failed)


def _offer_news(p: Progress, event: Event) -> tuple[Progress, bool]:
    """The current offer after a leg event; True when the REST API failed placing it."""
    offer = p.offer
    if offer is None:
        return p, False
    match event:
        case LegAnswered():
            return replace(p, offer=replace(offer, answered=True)), False
        case LegDeclined() | LegMissed() | LegFailed(blame=Blame.COUNSELOR):
            return replace(p, offer=None, tried=(*p.tried, offer.counselor)), False
        case LegFailed():
            return replace(p, offer=None), True  # withdrawn without blame
        case OfferWithdrawn():
            return replace(p, offer=None), False
    return p, False


def _settle(p: Progress, now: datetime, av: Availability, degraded: bool = False) -> Result:
    """Ring someone, wait, or move on: the one next-tier rule of a warm step."""
    step = p.step
    assert isinstance(step, WarmStep)
    if p.offer is not None:
        return p, ()  # a phone rings: even with the API degraded, it may be answered
    if degraded or av.degraded:
        return _move_on(p, now, av, degraded=True)
    untried = [c for c in step.counselors if c not in p.tried and c not in av.gone]
    left = p.seconds_left(now)
    if not untried or not can_ring(left):
        return _move_on(p, now, av)
    pick = best_free(step, av.free, p.tried)
    if pick is not None:
        return _ring(p, pick, now) if av.ring else (p, ())  # else the dispatcher's
    if step.skip_when_unavailable:
        return _move_on(p, now, av)
    return p, ()  # wait for a counselor to be free, or for the deadline


def _move_on(
    p: Progress, now: datetime, av: Availability, degraded: bool = False, holding: bool = True
) -> Result:
    """Leave the current warm step (the caller normally still in their conference)."""
    cancel: tuple[Action, ...] = ()
    if p.offer is not None:
        cancel = (CancelLeg(p.offer.number, p.offer.counselor),)
    index = next_step(p.steps, p.index + 1, av.free, av.degraded or degraded)
    q, actions = _enter(replace(p, offer=None), index, now, av, holding=holding,
                        from_flow=False)
    return q, (*cancel, *actions)


# At a dial step ------------------------------------------------------------------


def _dialing(p: Progress, event: Event, now: datetime, av: Availability) -> Result:
    step = p.step
    assert isinstance(step, DialStep) and p.phase is Phase.DIALING
    match event:
        case CallerLeft():
            return _gone(p)
        case DialEnded(answered=True):
            return replace(p, phase=Phase.CONNECTED), (_outcome(p, Outcome.ANSWERED), EndCall())
        case DialEnded() if step.last and may_redial(p.redials):
            return _enter(replace(p, redials=p.redials + 1), p.index, now, av,
                          holding=False, from_flow=False)
        case DialEnded() if step.last:
            return replace(p, phase=Phase.UNREACHED), (_outcome(p, Outcome.UNREACHED), EndCall())
        case DialEnded():
            index = next_step(p.steps, p.index + 1, av.free, av.degraded)
            return _enter(p, index, now, av, holding=False, from_flow=False)
        case MoveLanded():
            return replace(p, moved_at=None), ()
        case HoldRound() if p.moved_at is not None and (
            (now - p.moved_at).total_seconds() >= MOVE_GRACE
        ):
            # Still in the conference although moved: the move failed; again.
            return replace(p, moved_at=now), (MoveCaller(p.index, p.stage),)
    return p, ()


# Entering a step, leaving the transfer ------------------------------------------


def _enter(
    p: Progress, index: int, now: datetime, av: Availability, *, holding: bool, from_flow: bool
) -> Result:
    """Enter step `index`; `holding`: the caller is in their conference now."""
    step = p.steps[index]
    stage = p.stage + 1
    if isinstance(step, WarmStep):
        deadline = now + timedelta(seconds=tier_seconds(step))
        join: Action = (SetTier(index, stage, step.tier, step.counselors)
                        if p.queued and holding
                        else Enqueue(index, stage, step.tier, step.counselors))
        q = evolve(p, index=index, phase=Phase.HOLDING, stage=stage, stage_started_at=now,
                   deadline=deadline, offer=None, tried=(), queued=True, moved_at=None)
        q, rung = _settle(q, now, av)
        return q, (join, ScheduleDeadline(stage, deadline), *rung)
    leave: tuple[Action, ...] = (Dequeue("backup"),) if p.queued else ()
    q = evolve(p, index=index, phase=Phase.DIALING, stage=stage, stage_started_at=now,
               deadline=None, offer=None, tried=(), queued=False,
               moved_at=now if holding else None)
    dial = DialLine(index, stage, step, prompt_before(step, from_flow), p.pass_caller_id)
    move: tuple[Action, ...] = (MoveCaller(index, stage),) if holding else ()
    return q, (*leave, dial, *move)


def _gone(p: Progress) -> Result:
    actions: list[Action] = []
    if p.offer is not None:
        actions.append(CancelLeg(p.offer.number, p.offer.counselor))
    if p.queued:
        actions.append(Dequeue("abandoned"))
    if p.phase is not Phase.EARLY:  # offered early, they never reached the transfer
        actions.append(_outcome(p, Outcome.ABANDONED))
    return evolve(p, phase=Phase.GONE, offer=None, queued=False, moved_at=None), tuple(actions)


def _outcome(p: Progress, outcome: Outcome, counselor: str | None = None) -> RecordOutcome:
    return RecordOutcome(outcome, p.step.tier, p.step.name, counselor)
