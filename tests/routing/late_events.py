"""Events that arrive late, twice or out of order, as Twilio's callbacks and our
timers can: the test's own reading of which no longer concern a transfer."""

from __future__ import annotations

from ivr.routing import signals as sig
from ivr.routing.progress import Phase, Progress


def replays(p: Progress) -> list[sig.Event]:
    """Events that arrive again, late or out of order, and must change nothing: an
    accept or a miss for an earlier offer, the <Dial> or the timer of an earlier
    step, anything once the transfer is over."""
    late: list[sig.Event] = [sig.LegAccepted(p.offers_made - 1), sig.LegMissed(p.offers_made - 1),
                             sig.DialEnded(p.stage - 1, True), sig.TierDeadline(p.stage - 1),
                             sig.MoveLanded(p.stage - 1), sig.HoldEnded(p.stage - 1)]
    if p.offer is None:
        late.append(sig.LegAccepted(p.offers_made))
    if p.phase.over:
        late += [sig.HoldRound(), sig.CounselorFreed(), sig.ApiDegraded(), sig.CallerLeft()]
    return [e for e in late if stale(p, e)]


def stale(progress: Progress, event: sig.Event) -> bool:
    """The test's own reading of 'no longer current'."""
    if progress.phase.over:
        return True
    if isinstance(event, sig.LegAnswered | sig.LegAccepted | sig.LegDeclined | sig.LegMissed
                  | sig.LegFailed | sig.OfferWithdrawn):
        return progress.offer is None or progress.offer.number != event.offer
    if isinstance(event, sig.TierDeadline | sig.HoldEnded):
        return progress.phase is not Phase.HOLDING or progress.stage != event.stage
    if isinstance(event, sig.DialEnded | sig.MoveLanded):
        return progress.phase is not Phase.DIALING or progress.stage != event.stage
    return False
