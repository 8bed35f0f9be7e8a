"""The dispatcher: a loop any instance may run, whose passes advance the line.

Whom to ring and when a tier is over are the transfer progression's
(ivr.routing.progression); a pass only asks it, for the callers who could
have a free counselor, and carries out what it returns (Transfers). It is
the only thing that rings. One look at the line (dispatch.look): each
caller found, longest waiting first, is advanced with CounselorFreed
against one snapshot of who is free, a counselor rung leaving the snapshot
for the callers after. The offers that only change the progress are made
together, each guarded on its own (dispatch.ring_all); a caller refused
(another instance took the counselor, or the caller's progress changed) is
advanced again at once with fresh availability: their tier may not wait
for anyone, and the progression says so. A result that moves the
caller on (the REST API degraded, a publish left their tier with nobody)
is the tier's move (`Transfers.tier_moved`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from ivr.routing.progress import Progress
from ivr.routing.progression import Availability, advance
from ivr.routing.signals import CounselorFreed, Ring
from ivr.storage import dispatch
from ivr.storage import transfers as outcomes

if TYPE_CHECKING:
    from ivr.telephony.transfer import Transfers

log = logging.getLogger(__name__)

# Seconds between the dispatcher's looks for wrap-ups over by the database's
# clock (those set by hand: a call's own wrap-up ends by its timer), rather
# than one more statement at every wake-up.
WRAP_UP_SWEEP_EVERY = 1.0
# Callers one pass advances at most; a pass that read this many, and did
# something, is followed by another at once.
LOOK_LIMIT = 50


async def run(t: Transfers, tick: float = 0.5) -> None:
    """Passes until cancelled; one at each kick() or every tick. A pass that
    fails (the database away) is logged with its traceback once per outage,
    not at every tick: the next passes retry quietly until one works again."""
    failing = False
    while True:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
        # cancellation that arrives as the event fires, and the dispatcher
        # would then never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(tick):
                await t.wake.wait()
        t.wake.clear()
        try:
            await t.dispatch_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if failing:
                log.debug("dispatcher pass failed again: %s", exc)
            else:
                failing = True
                log.exception("dispatcher pass failed; retrying (quietly until a pass "
                              "works again)")
        else:
            if failing:
                failing = False
                log.info("dispatcher pass works again")


async def pass_once(t: Transfers) -> None:
    """One pass (see the module)."""
    if time.monotonic() - t.wrap_ups_swept >= WRAP_UP_SWEEP_EVERY:
        await outcomes.end_wrap_up(t.pool, t.wrap_up_seconds)
        t.wrap_ups_swept = time.monotonic()
    api_usable = await t.health.probe()
    now = t.clock()
    line = await dispatch.look(t.pool, not api_usable, LOOK_LIMIT)
    free = list(line.free)
    decided: list[dispatch.Decided] = []
    moved = False
    for caller in line.callers:
        if not (line.degraded or caller.eligible & line.gone
                or caller.eligible.intersection(free)):
            continue  # those before took whom they could have had
        av = (Availability(degraded=True) if line.degraded
              else Availability(free=tuple(free), gone=line.gone))
        p = Progress.from_json(caller.transfer)
        q, actions = advance(p, CounselorFreed(), now, av)
        match actions:
            case ():
                continue
            case (Ring(offer=number, counselor=counselor),) if q.stage == p.stage:
                decided.append(dispatch.Decided(caller.call_sid, counselor, number,
                                                caller.transfer, q.to_json()))
            case _:
                # The tier is over: the next one is entered, its counselors rung
                # by the next pass, in the order of waiting, like anyone's.
                q, actions = advance(p, CounselorFreed(), now, replace(av, ring=False))
                why = "Twilio REST API degraded" if av.degraded else "tier over"
                moved |= await t.tier_moved(caller.call_sid, caller.seq, q, actions, why,
                                            caller.content_version)
        taken = {a.counselor for a in actions if isinstance(a, Ring)}
        free = [c for c in free if c not in taken]
    made = await dispatch.ring_all(t.pool, decided)
    for offer in made:
        t.progress_changed(offer.call_sid)
    if made:
        await t.claimed(made)
    rung = {o.call_sid for o in made}
    for refused in (d for d in decided if d.call_sid not in rung):
        # Another instance took the counselor, or the caller's progress changed
        # meanwhile (and the callers after the first refused were not rung, so
        # that none overtakes it: ivr_ring_all): advanced again with who is free
        # now (a tier that does not wait may be over), rung by the next pass.
        await t.leg_event(refused.call_sid, CounselorFreed())
        t.kick()
    if line.full and (made or moved):
        t.kick()  # more callers may be waiting than one look reads
