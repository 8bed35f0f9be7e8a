"""Whether Twilio's REST API can be used now, as every instance sees it.

A counselor leg or a move that fails for a reason that is nobody's on the
staff (see rest.ServiceError) marks the API degraded in PostgreSQL for a
cool-off. While it is degraded no instance places counselor legs: callers go
on at once to the dial steps (external centers, the national backup), plain
`<Dial>` TwiML that needs no REST API. Once the cool-off is over, one
instance asks Twilio for our own Account resource (a cheap authenticated
GET): an answer ends the degradation, a failure starts another cool-off.

One log line when the API becomes degraded and one when it is usable again,
whichever instance notices first; never one per call.
"""

from __future__ import annotations

import logging

import asyncpg

from ivr.storage import apihealth as db
from ivr.telephony.rest import ServiceError, TwilioRest

log = logging.getLogger(__name__)

COOL_OFF = 45.0  # seconds without counselor legs after a failure, before asking again


class ApiHealth:
    def __init__(self, pool: asyncpg.Pool, rest: TwilioRest, cool_off: float = COOL_OFF) -> None:
        self.pool = pool
        self.rest = rest
        self.cool_off = cool_off

    async def failed(self, error: ServiceError) -> None:
        """A request met a service error: degraded from now on, for a cool-off at least.

        Never raises: whoever reports a failure goes on with its own rescue
        (a retry, the next tier) even when the database cannot record it.
        """
        try:
            fresh = await db.degrade(self.pool, str(error), self.cool_off)
        except Exception as exc:
            log.warning("could not record the REST API as degraded (%s): %s", exc, error)
            return
        if fresh:
            log.error(
                "Twilio REST API degraded: %s. No counselor is rung until it answers again "
                "(next check in %.0f s); callers go on to the dial steps, staff presence is "
                "left as it is.", error, self.cool_off)

    async def state(self) -> db.Degraded | None:
        return await db.current(self.pool)

    async def usable(self) -> bool:
        return await db.current(self.pool) is None

    async def probe(self) -> bool:
        """Whether the API is usable now; once a cool-off is over, one instance
        first asks Twilio whether it is back."""
        state = await db.current(self.pool)
        if state is None:
            return True
        if not state.probe_due or not await db.postpone_probe(self.pool, self.cool_off):
            return False  # cooling off, or another instance is asking
        try:
            await self.rest.check_account()
        except ServiceError as exc:
            await self.failed(exc)  # still degraded: the reason may have changed
            return False
        await self._recovered()
        return True

    async def check_at_start(self) -> ServiceError | None:
        """Fetch the Account once at start-up; the error, if Twilio refused or was unreachable."""
        try:
            await self.rest.check_account()
        except ServiceError as exc:
            return exc
        await self._recovered()
        return None

    async def _recovered(self) -> None:
        since = await db.recovered(self.pool)
        if since is not None:
            log.warning("Twilio REST API usable again (degraded since %s): counselors are "
                        "rung again", since.isoformat(timespec="seconds"))
