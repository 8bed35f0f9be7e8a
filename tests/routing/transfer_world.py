"""A world for the transfer progression: callers sharing counselors, the legs and
<Dial>s Twilio would run, timers, hold rounds and REST outages.

A `World` is a frozen value (so walks can tell states apart). `deliver`
runs `advance` for one caller with the availability derived from the
world's own offers and presence (as the dispatcher derives it from the
database), carries out the actions as the adapters would, feeds back the
events they cause (a leg the REST API refused, a move that landed, the API
marked degraded), and checks after every delivery:

- a caller is in exactly one of: holding (in their conference, with a live
  offer or their tier's deadline pending), dialing (a <Dial> of the current
  stage runs, or a move to it is pending), connected, gone; never holding
  past the tier's deadline, never rung longer than the tier has left;
- no counselor holds two offers, or one while on a call; only a free
  counselor is rung, never for less than MIN_RING, and never twice for one
  caller in one tier; no phone rings for an
  offer that is over (unless the REST API refused to cancel it);
- the national backup rings within the bounds module's worst case (plus
  one hold round for each move out of the conference that the REST API
  refused), and nobody still waits past it;
- a caller who left is never rung for; a transfer that is over, an event
  delivered twice, and late events for an earlier offer or step change
  nothing and ask for nothing; one outcome per caller.

Some callers begin early (`early`): they are still in the flow's menu,
offered to the counselors of their first warm step (begin_early), and
later either arrive (begin with the early progress) or go elsewhere
(CallerWentElsewhere). Then also: an early caller is in the menu with at
most one offer, which counts against its counselor like any other (a
counselor who accepted early waits for them, held); one who went elsewhere
is never rung for again and no leg rings for them; neither has an outcome
until they arrive; and the bound to the backup counts from the arrival.

What may happen next is in transfer_happenings.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from ivr.routing import signals as sig
from ivr.routing.bounds import transfer_bounds
from ivr.routing.progress import Phase, Progress
from ivr.routing.progression import Availability, advance, begin, begin_early
from ivr.routing.rules import BACKUP_PROMPT, MIN_RING
from ivr.routing.steps import Step, WarmStep
from tests.routing.late_events import replays

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LEAD_IN = 4.0  # the flow's transfer prompt
PROMPTS = {BACKUP_PROMPT: 7.0}
HOLD_EVERY = 30.0  # a hold round: reassurance and a pause, then the wait URL again
WHISPER = 8.0  # a counselor who picked up and pressed nothing is a decline after this


class Violation(AssertionError):
    pass


def check(ok: bool, what: str, *values: object) -> None:
    """Formats its message only when it fails: the walks check millions of times."""
    if not ok:
        raise Violation(what.format(*values))


@dataclass(frozen=True)
class Leg:
    caller: int
    offer: int
    counselor: str
    ends: float  # rings out then
    answered_at: float | None = None
    orphan: bool = False  # cancelled while the REST API was down: it rings on


@dataclass(frozen=True)
class Caller:
    progress: Progress
    where: str  # "conference", "dial", "connected", "ended", "gone"; "between" two TwiMLs
    bound: float  # the bounds module's worst case to the backup
    dial: tuple[int, float] | None = None  # (stage, rings out at) of the <Dial> running
    next_hold: float | None = None
    pending: sig.DialLine | None = None  # where a move out of the conference lands
    backup_at: float | None = None
    national_dials: int = 0
    move_failures: int = 0  # moves out of the conference the REST API refused
    rung: frozenset[tuple[int, str]] = frozenset()  # (stage, counselor) offered this caller
    outcomes: tuple[sig.Outcome, ...] = ()
    steps: tuple[Step, ...] = ()  # the transfer's steps (an early caller arrives with them)
    arrived: bool = True  # reached the transfer (False: still in the menu, or went elsewhere)


@dataclass(frozen=True)
class World:
    counselors: tuple[str, ...]
    callers: tuple[Caller, ...]
    now: float = 0.0
    legs: tuple[Leg, ...] = ()
    offline: frozenset[str] = frozenset()
    on_call: frozenset[str] = frozenset()
    api_up: bool = True
    degraded: bool = False  # what the server believes
    timers: frozenset[tuple[float, int, int]] = frozenset()  # (at, caller, stage)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def start(
    counselors: tuple[str, ...], plans: tuple[tuple[Step, ...], ...],
    offline: frozenset[str] = frozenset(), early: frozenset[int] = frozenset(),
) -> World:
    """Every caller's transfer begins at 0 s, in order; the callers numbered in
    `early` (whose plan starts with a warm step) are offered early instead."""
    world = World(counselors, (), offline=offline)
    for steps in plans:
        index = len(world.callers)
        av = availability(world)
        if index in early and isinstance(steps[0], WarmStep):
            progress, actions = begin_early((steps[0], steps[-1]), at(0), av, language="en",
                                            languages=("en",), queue="crisis")
            caller = Caller(progress, "menu", float("inf"), steps=steps, arrived=False)
        else:
            bound = transfer_bounds(steps, PROMPTS, LEAD_IN).to_backup
            progress, actions = begin(steps, at(0), av, language="en", queue="crisis")
            caller = Caller(progress, "conference", bound, steps=steps)
        _rings(actions, av)
        world = replace(world, callers=(*world.callers, caller))
        world, feedback = execute(world, index, actions, from_flow=True)
        world = drain(world, feedback)
    invariants(world)
    return world


def arrive(world: World, index: int) -> World:
    """An early caller's flow reaches its transfer now (the same queue)."""
    caller = world.callers[index]
    av = availability(world)
    bound = world.now + transfer_bounds(caller.steps, PROMPTS, LEAD_IN).to_backup
    progress, actions = begin(caller.steps, at(world.now), av, language="en", queue="crisis",
                              early=caller.progress)
    check(not any(isinstance(a, sig.Ring) and a.counselor not in av.free for a in actions),
          "caller {} arrives ringing a counselor who is not free", index)
    _rings(actions, av)
    world = set_caller(world, index, progress=progress, where="between", bound=bound,
                       arrived=True)
    world, feedback = execute(world, index, actions, from_flow=True)
    return drain(world, feedback)


def availability(world: World) -> Availability:
    offered = {c.progress.offer.counselor for c in world.callers
               if c.progress.phase in (Phase.HOLDING, Phase.EARLY)
               and c.progress.offer is not None}
    free = tuple(k for k in world.counselors
                 if k not in world.offline and k not in world.on_call and k not in offered)
    return Availability(free, world.degraded)


def deliver(world: World, index: int, event: sig.Event) -> World:
    caller = world.callers[index]
    before = caller.progress
    av = availability(world)
    progress, actions = advance(before, event, at(world.now), av)
    if before.phase.over:
        check((progress, actions) == (before, ()),
              "caller {} over, yet {} -> {}", index, event, actions)
    if caller.where in ("gone", "elsewhere"):
        check(not any(isinstance(a, sig.Ring) for a in actions),
              "caller {} left or went elsewhere, yet rung for", index)
    _rings(actions, av)
    world = set_caller(world, index, progress=progress)
    world, feedback = execute(world, index, actions)
    now, av = at(world.now), availability(world)
    for late in (event, *replays(progress)):
        again = advance(progress, late, now, av)
        check(again == (progress, ()), "{} after {} acts: {}", late, event, again[1])
    return drain(world, feedback)


def _rings(actions: tuple[sig.Action, ...], av: Availability) -> None:
    for action in actions:
        if isinstance(action, sig.Ring):
            check(action.counselor in av.free, "{} rings a counselor who is not free", action)
            check(action.ring_seconds >= MIN_RING, "{} rings less than MIN_RING", action)


def drain(world: World, feedback: list[tuple[int, sig.Event]]) -> World:
    for index, event in feedback:
        world = deliver(world, index, event)
    invariants(world)
    return world


def set_caller(world: World, index: int, **changes: object) -> World:
    callers = list(world.callers)
    callers[index] = Caller(**{**vars(callers[index]), **changes})
    return World(**{**vars(world), "callers": tuple(callers)})


def _degrade(world: World, feedback: list[tuple[int, sig.Event]]) -> World:
    if not world.degraded:
        feedback.extend((i, sig.ApiDegraded()) for i in range(len(world.callers)))
    return replace(world, degraded=True)


def execute(
    world: World, index: int, actions: tuple[sig.Action, ...], from_flow: bool = False
) -> tuple[World, list[tuple[int, sig.Event]]]:
    """Carry out a caller's actions as the adapters would; the events they cause."""
    feedback: list[tuple[int, sig.Event]] = []
    moved = any(isinstance(a, sig.MoveCaller) for a in actions)
    for action in actions:
        caller = world.callers[index]
        match action:
            case sig.Ring():
                once = (caller.progress.stage, action.counselor)
                check(once not in caller.rung, "caller {}: {} again in one tier", index, action)
                world = set_caller(world, index, rung=caller.rung | {once})
                if world.api_up:
                    ends = world.now + action.ring_seconds
                    leg = Leg(index, action.offer, action.counselor, ends)
                    world = replace(world, legs=(*world.legs, leg))
                else:
                    world = _degrade(world, feedback)
                    feedback.append((index, sig.LegFailed(action.offer, sig.Blame.SERVICE)))
            case sig.CancelLeg():
                if world.api_up:
                    world = replace(world, legs=tuple(
                        g for g in world.legs if (g.caller, g.offer) != (index, action.offer)))
                else:
                    world = replace(_degrade(world, feedback), legs=tuple(
                        replace(g, orphan=True) if (g.caller, g.offer) == (index, action.offer)
                        else g for g in world.legs))
            case sig.Enqueue() if caller.progress.phase is Phase.EARLY:
                pass  # on the line while the menu plays: the conference comes on arrival
            case sig.Enqueue() | sig.Arrive():
                joins = world.now + (LEAD_IN if from_flow else 0.0)
                world = set_caller(world, index, where="conference", dial=None, next_hold=joins)
            case sig.DialLine():
                world = set_caller(world, index, pending=action)
                if not moved:
                    world = _dial(world, index, action, LEAD_IN if from_flow else 0.0)
            case sig.MoveCaller():
                check(caller.pending is not None and caller.pending.stage == action.stage,
                      "{} without its DialLine", action)
                if world.api_up and caller.where == "conference":
                    assert caller.pending is not None
                    world = _dial(world, index, caller.pending, 0.0)
                    feedback.append((index, sig.MoveLanded(action.stage)))
                elif not world.api_up:
                    failures = caller.move_failures + 1
                    world = set_caller(_degrade(world, feedback), index, move_failures=failures)
            case sig.ScheduleDeadline():
                seconds = (action.at - T0).total_seconds()
                world = replace(world, timers=world.timers | {(seconds, index, action.stage)})
            case sig.RecordOutcome():
                check(caller.arrived, "caller {}: an outcome before reaching the transfer", index)
                world = set_caller(world, index, outcomes=(*caller.outcomes, action.outcome))
                if action.outcome is sig.Outcome.ANSWERED and action.counselor is not None:
                    world = replace(world, on_call=world.on_call | {action.counselor})
                    world = set_caller(world, index, where="connected", next_hold=None)
            case sig.EndCall():
                world = set_caller(world, index, where="ended", dial=None, next_hold=None)
    return world, feedback


def _dial(world: World, index: int, line: sig.DialLine, lead: float) -> World:
    caller = world.callers[index]
    said = PROMPTS[line.prompt] if line.prompt else 0.0
    rings = world.now + lead + said
    changes: dict[str, object] = {"where": "dial", "next_hold": None,
                                  "dial": (line.stage, rings + line.step.timeout)}
    if line.step.last:
        changes["national_dials"] = caller.national_dials + 1
        if caller.backup_at is None:
            changes["backup_at"] = rings
            check(rings <= caller.bound + allowance(caller) + 1e-9,
                  "caller {} reaches the backup at {} s, over {}", index, rings, caller.bound)
    return set_caller(world, index, **changes)


def allowance(caller: Caller) -> float:
    """What REST failures may add to the bound: a move the REST API refused is
    issued again at the next hold round, at most HOLD_EVERY later."""
    return caller.move_failures * HOLD_EVERY


def invariants(world: World) -> None:
    holders: dict[str, int] = {}
    for index, caller in enumerate(world.callers):
        p = caller.progress
        where = caller.where
        check(len(caller.outcomes) <= 1, "caller {} recorded {}", index, caller.outcomes)
        check(where != "between", "caller {} was given no TwiML", index)
        if p.phase is Phase.EARLY:
            check(where == "menu" and not caller.arrived, "caller {} early while {}", index, where)
            if p.offer is not None:
                holders[p.offer.counselor] = holders.get(p.offer.counselor, 0) + 1
        elif p.phase is Phase.WITHDRAWN:
            check(where == "elsewhere", "caller {} withdrawn while {}", index, where)
        elif p.phase is Phase.HOLDING:
            assert p.deadline is not None
            due = (p.deadline - T0).total_seconds()
            check(where == "conference", "caller {} holding while {}", index, where)
            check((due, index, p.stage) in world.timers,
                  "caller {}: no deadline pending", index)
            check(world.now <= due, "caller {}: tier past its deadline", index)
            if p.offer is not None:
                holders[p.offer.counselor] = holders.get(p.offer.counselor, 0) + 1
                ends = (p.offer.made_at - T0).total_seconds() + p.offer.ring_seconds
                check(ends <= due + 1e-9, "caller {}: a ring outlasts its tier", index)
        elif p.phase is Phase.DIALING:
            running = where == "dial" and caller.dial is not None and caller.dial[0] == p.stage
            moving = where == "conference" and p.moved_at is not None
            check(running or moving, "caller {} dialing while {}", index, where)
        elif p.phase is Phase.CONNECTED:
            check(where in ("connected", "ended"),
                  "caller {} connected while {}", index, where)
        elif p.phase is Phase.GONE:
            check(where == "gone", "caller {} gone while {}", index, where)
        else:
            check(where == "ended" and caller.national_dials == 3,
                  "caller {} unreached", index)
        if p.phase.over:
            check(len(caller.outcomes) == (1 if caller.arrived else 0),
                  "caller {} over with outcomes {}", index, caller.outcomes)
        elif caller.backup_at is None:
            check(world.now <= caller.bound + allowance(caller),
                  "caller {} still waits past the bound", index)
    for leg in world.legs:
        offer = world.callers[leg.caller].progress.offer
        check(leg.orphan or (offer is not None and offer.number == leg.offer),
              "a leg rings for nothing: {}", leg)
    check(all(n == 1 for n in holders.values()),
          "a counselor holds two offers: {}", holders)
    check(not set(holders) & world.on_call, "a counselor on a call is offered another")
