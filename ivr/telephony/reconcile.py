"""Reconciliation: what we believe against what Twilio says, after lost callbacks.

A callback answered 500 while the database was away, or sent to an instance
that died, is never sent again; an instance that died between two steps
leaves one half done. The sweep (at start, then every few seconds, from the
timer worker) repairs what that leaves:

- an offer made whose leg placement was never recorded: recorded now
  (place_leg), so a leg rings or the offer ends;
- a leg placed whose ring timeout was never recorded: recorded now;
- a leg whose offer ended (the caller left, the tier moved on) that may
  still ring, its cancel lost with an instance or refused: cancelled now,
  so the counselor's phone stops ringing for nobody (and their next leg
  need not wait for it);
- a counselor on a call whose leg Twilio says has ended (its 'completed'
  callback lost): wrap-up, then available, without an administrator;
- a call still open here that Twilio says has ended (its final status
  callback lost): closed as the callback would have, which frees whoever
  was being rung for the caller.

Only the Call resource is asked (GET Calls/{Sid}.json), and each leg or
call at most once per CHECK_EVERY: a long conversation costs one request a
minute.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Final

from ivr.routing.progress import Progress
from ivr.storage import timers
from ivr.storage.reconcile import (
    lost_cancels,
    lost_placements,
    lost_ring_timeouts,
    open_calls,
    open_legs,
)
from ivr.telephony.callflow import FINAL_STATUSES, CallFlow
from ivr.telephony.rest import RestError
from ivr.telephony.transfer import Transfers

log = logging.getLogger(__name__)

PLACE_GRACE: Final = 10.0  # seconds an offer may wait for its leg before the intent is renewed
CHECK_EVERY: Final = 60.0  # seconds between questions to Twilio about one call or leg
QUIET: Final = 60.0  # a call or leg without news this long is asked about
# Seconds after an offer ended before its leg's cancel is taken to be lost:
# the instance that ended it sends the cancel at once.
CANCEL_GRACE: Final = 3.0


class Reconciler:
    def __init__(self, transfers: Transfers, callflow: CallFlow) -> None:
        self.t = transfers
        self.callflow = callflow
        self.pool = transfers.pool
        self._asked: dict[str, datetime] = {}  # call or leg sid -> when Twilio was last asked

    async def sweep(self) -> None:
        now = self.t.clock()
        await self._placements(now)
        await self._ring_timeouts(now)
        await self._cancels(now)
        await self._legs(now)
        await self._calls(now)
        stale = now - timedelta(seconds=CHECK_EVERY * 2)
        self._asked = {sid: at for sid, at in self._asked.items() if at > stale}

    async def _placements(self, now: datetime) -> None:
        for offer_id, call_sid in await lost_placements(self.pool, now, PLACE_GRACE):
            if await timers.add(self.pool, "place_leg", str(offer_id), timers.AT_ONCE,
                                call_sid=call_sid):
                log.warning("call %s: offer %d had no leg and no placement pending: "
                            "placing it now", call_sid, offer_id)
                self.t.work.set()

    async def _ring_timeouts(self, now: datetime) -> None:
        for offer_id, call_sid, transfer in await lost_ring_timeouts(self.pool):
            due = now
            p = Progress.from_json(transfer) if transfer else None
            if p is not None and p.offer is not None:
                due = p.offer.made_at + timedelta(seconds=p.offer.ring_seconds)
            if await timers.add(self.pool, "ring_timeout", str(offer_id), due,
                                call_sid=call_sid):
                log.warning("call %s: offer %d rang with no timeout recorded: recorded",
                            call_sid, offer_id)

    async def _cancels(self, now: datetime) -> None:
        for offer_id, call_sid, leg_sid in await lost_cancels(self.pool, now, CANCEL_GRACE):
            if await self.t.end_leg(offer_id, leg_sid):
                log.warning("call %s: counselor leg %s of ended offer %d was never cancelled: "
                            "cancelled now", call_sid, leg_sid, offer_id)

    async def _legs(self, now: datetime) -> None:
        for counselor, call_sid, leg_sid in await open_legs(self.pool, now, QUIET):
            status = await self._ask(leg_sid, now)
            if status in FINAL_STATUSES and await self.t.call_ended(counselor, call_sid):
                log.warning("counselor %s: their leg %s ended (%s) with no callback: "
                            "wrap-up", counselor, leg_sid, status)

    async def _calls(self, now: datetime) -> None:
        for sid in await open_calls(self.pool, now, QUIET):
            status = await self._ask(sid, now)
            if status in FINAL_STATUSES:
                log.warning("call %s: ended (%s) with no final status callback: closed",
                            sid, status)
                await self.callflow.status(sid, {"CallSid": sid, "CallStatus": status,
                                                 "Reconciled": "true"})

    async def _ask(self, sid: str, now: datetime) -> str | None:
        last = self._asked.get(sid)
        if last is not None and (now - last).total_seconds() < CHECK_EVERY:
            return None
        self._asked[sid] = now
        try:
            return await self.t.rest.call_status(sid)
        except RestError as exc:
            log.info("could not ask Twilio about %s: %s", sid, exc)
            return None
