"""What may happen next in a transfer world, and making it happen.

`choices(world)` lists the happenings a world allows now: a counselor picks
up, accepts, declines, is busy or unreachable; a caller hangs up; a
caller's conference ends under them; a dialled line answers; the REST API
goes down or comes back; an offline counselor returns; the earliest timer
fires (each of several due at once in turn). `apply` makes one happen
through transfer_world.deliver, which checks the invariants.
"""

from __future__ import annotations

from dataclasses import replace

from ivr.routing import signals as sig
from ivr.routing.progress import Phase
from tests.routing.transfer_world import (
    HOLD_EVERY,
    WHISPER,
    Leg,
    World,
    arrive,
    deliver,
    drain,
    set_caller,
)

Choice = tuple[str, int]  # (kind, which leg / caller / counselor / timer)


def timers(world: World) -> list[tuple[float, int, sig.Event]]:
    """Every pending timer as (when, caller, event), earliest first."""
    due: list[tuple[float, int, sig.Event]] = [
        (when, index, sig.TierDeadline(stage)) for when, index, stage in world.timers]
    for leg in world.legs:
        if leg.answered_at is None:
            due.append((leg.ends, leg.caller, sig.LegMissed(leg.offer)))
        else:
            due.append((leg.answered_at + WHISPER, leg.caller, sig.LegDeclined(leg.offer)))
    for index, caller in enumerate(world.callers):
        if caller.where == "dial" and caller.dial is not None:
            due.append((caller.dial[1], index, sig.DialEnded(caller.dial[0], False)))
        if caller.where == "conference" and caller.next_hold is not None:
            due.append((caller.next_hold, index, sig.HoldRound()))
    return sorted(due, key=lambda d: (d[0], d[1], repr(d[2])))


def choices(world: World) -> list[Choice]:
    out: list[Choice] = []
    for n, leg in enumerate(world.legs):
        kinds = ("busy", "unreachable", "answer") if leg.answered_at is None else (
            "accept", "decline")
        out += [(kind, n) for kind in kinds]
    for index, caller in enumerate(world.callers):
        if caller.where in ("conference", "dial", "menu"):
            out.append(("hangup", index))
        if caller.where == "menu":
            out += [("arrive", index), ("elsewhere", index)]
            offer = caller.progress.offer
            if offer is not None and offer.accepted:
                out.append(("stops_waiting", index))  # the counselor waiting hangs up
        if caller.where == "dial":
            out.append(("answered", index))
        if caller.where == "conference" and caller.progress.phase is Phase.HOLDING:
            out.append(("hold_ends", index))
    out.append(("api_up", 0) if not world.api_up else ("api_down", 0))
    out += [("back", n) for n, k in enumerate(world.counselors) if k in world.offline]
    due = timers(world)
    out += [("tick", n) for n, d in enumerate(due) if d[0] == due[0][0]] if due else []
    return out


def apply(world: World, choice: Choice) -> World:
    kind, n = choice
    if kind in ("busy", "unreachable", "answer", "accept", "decline"):
        return _leg(world, kind, world.legs[n])
    if kind == "hangup":
        return deliver(set_caller(world, n, where="gone", dial=None, next_hold=None), n,
                       sig.CallerLeft())
    if kind == "arrive":
        return arrive(world, n)
    if kind == "elsewhere":
        return deliver(set_caller(world, n, where="elsewhere"), n, sig.CallerWentElsewhere())
    if kind == "stops_waiting":
        offer = world.callers[n].progress.offer
        assert offer is not None
        return deliver(world, n, sig.LegMissed(offer.number))
    if kind == "hold_ends":  # the caller awaits TwiML: only the answer can place them
        stage = world.callers[n].progress.stage
        return deliver(set_caller(world, n, where="between", next_hold=None), n,
                       sig.HoldEnded(stage))
    if kind == "answered":
        caller = world.callers[n]
        assert caller.dial is not None
        return deliver(world, n, sig.DialEnded(caller.dial[0], True))
    if kind == "api_down":
        return replace(world, api_up=False)
    if kind == "api_up":
        restored = replace(world, api_up=True, degraded=False)
        if not world.degraded:
            return restored
        return drain(restored, [(i, sig.ApiRestored()) for i in range(len(world.callers))])
    if kind == "back":
        back = replace(world, offline=world.offline - {world.counselors[n]})
        return drain(back, [(i, sig.CounselorFreed()) for i in range(len(world.callers))])
    if kind == "wait":
        return _pass(world, world.now + n)
    return _tick(world, timers(world)[n])


def _pass(world: World, until: float) -> World:
    return replace(world, now=until)


def _tick(world: World, due: tuple[float, int, sig.Event]) -> World:
    when, index, event = due
    world = _pass(world, when)
    match event:
        case sig.TierDeadline():
            world = replace(world, timers=world.timers - {(when, index, event.stage)})
        case sig.LegMissed() | sig.LegDeclined():
            leg = next(g for g in world.legs if (g.caller, g.offer) == (index, event.offer))
            return _leg(world, "busy" if isinstance(event, sig.LegMissed) else "decline", leg)
        case sig.HoldRound():
            world = set_caller(world, index, next_hold=when + HOLD_EVERY)
    return deliver(world, index, event)


def _leg(world: World, kind: str, leg: Leg) -> World:
    progress = world.callers[leg.caller].progress
    current = progress.offer is not None and progress.offer.number == leg.offer
    if kind == "answer":
        legs = tuple(replace(g, answered_at=world.now) if g == leg else g for g in world.legs)
        return deliver(replace(world, legs=legs), leg.caller, sig.LegAnswered(leg.offer))
    world = replace(world, legs=tuple(g for g in world.legs if g != leg))
    if kind in ("busy", "unreachable") and current:
        world = replace(world, offline=world.offline | {leg.counselor})  # not ready
    events: dict[str, sig.Event] = {
        "busy": sig.LegMissed(leg.offer),
        "unreachable": sig.LegFailed(leg.offer, sig.Blame.COUNSELOR),
        "accept": sig.LegAccepted(leg.offer),
        "decline": sig.LegDeclined(leg.offer),
    }
    event = events[kind]
    return deliver(world, leg.caller, event)


def next_timer(world: World) -> float | None:
    due = timers(world)
    return due[0][0] if due else None
