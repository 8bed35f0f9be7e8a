"""A caller's call as the world sees it: what the REST API shows and may
change about it, and how its clock follows the world's while it waits.

The caller's session keeps its own clock (the IVR runs as fast as the
server answers). While the caller waits in a conference, the call is
*paced*: its clock follows the world's clock (an offset apart), so that
counselor legs, REST requests and the caller's hang-up happen in one
consistent order. Outside paced stretches, world events are stamped with
the caller's current time, unless the world paces the whole IVR
(`paced_ivr`): then each verb's time also passes in world time before the
next one runs (and before the webhook it ends with), and world events are
stamped with the world's time, so what the server does by REST while the
caller still hears the menu (a counselor rung early) shows when it happens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from ivr.sim.errors import TwimlError
from ivr.sim.rest import CallUpdate, RestFault, call_resource, not_in_progress
from ivr.sim.session import END, CallSession, Document, Step, goto, url_path
from ivr.sim.transcript import Entry, Note, TwimlWarning
from ivr.sim.twiml import Twiml, parse_twiml

if TYPE_CHECKING:
    from ivr.sim.world import TwilioWorld


@dataclass(frozen=True)
class ApiRedirect:
    """New instructions for a call, given through the REST API."""

    url: str | None
    method: str
    twiml: Twiml | None


def redirect_from(update: CallUpdate) -> ApiRedirect:
    """Validate an update's Url/Twiml now: Twilio refuses bad TwiML at once."""
    if update.twiml is None:
        return ApiRedirect(update.url, update.method, None)
    try:
        return ApiRedirect(None, update.method, parse_twiml(update.twiml))
    except TwimlError as exc:
        raise RestFault(400, exc.code, f"Twiml is not valid: {exc}") from exc


class CallerCall:
    """The caller's live call, registered in a world by `simulate_call`."""

    is_counselor = False
    who = "caller"

    def __init__(self, world: TwilioWorld, session: CallSession, paced_ivr: bool = False) -> None:
        self.world = world
        self.paced_ivr = paced_ivr
        self.session = session
        self.sid = session.call_sid
        self.wake = asyncio.Event()
        self.pending: ApiRedirect | None = None
        self.ended_via_api = False
        self._created = world.wall(world.clock.now())
        self._paced = False
        self._offset = world.clock.now() - session.now
        self._after_end: float | None = None

    @property
    def status(self) -> str:
        return self.session.status

    def poke(self) -> None:
        self.wake.set()

    # -- clock -------------------------------------------------------------

    def begin_paced(self) -> None:
        self._offset = self.world.clock.now() - self.session.now
        self._paced = True

    def end_paced(self) -> None:
        self.sync()
        self._paced = False

    def sync(self) -> None:
        """Bring the caller's clock up to world time (may reach the moment
        the caller hangs up)."""
        if not self._paced or self.session.ended:
            return
        lag = self.world.clock.now() - self._offset - self.session.now
        if lag > 0:
            self.session.advance(lag)
        self._offset = self.world.clock.now() - self.session.now

    def detach(self) -> None:
        """The call is over: later world events are stamped as time passing
        after its end."""
        self.end_paced()
        self._after_end = self.world.clock.now() - self.session.now

    async def keep_pace(self) -> None:
        """With `paced_ivr`, after a verb: let the time the verb took pass in the
        world too (cut short by a REST change), then catch the caller's clock up
        with the world's (the server's time answering webhooks). Twilio plays a
        call's TwiML in real time: a <Gather> waits `timeout` seconds after its
        nested <Say>/<Play> before requesting its action URL
        (https://www.twilio.com/docs/voice/twiml/gather)."""
        if not self.paced_ivr or self._paced or self.session.ended:
            return
        ahead = self.session.now - (self.world.clock.now() - self._offset)
        if ahead > 0:
            self.wake.clear()
            if self.pending is None:
                await self.world.clock.wait(self.wake, self.world.clock.now() + ahead)
        lag = self.world.clock.now() - self._offset - self.session.now
        if lag > 0 and not self.session.ended:
            self.session.advance(lag)

    def now(self) -> float:
        """The caller's time for something happening now in the world."""
        if self.paced_ivr and not self._paced and not self.session.ended and (
                self._after_end is None):
            return self.world.clock.now() - self._offset
        if self._paced and not self.session.ended:
            return max(self.session.now, self.world.clock.now() - self._offset)
        if self._after_end is not None:
            return max(self.session.now, self.world.clock.now() - self._after_end)
        return self.session.now

    def record(self, make: Callable[[float], Entry]) -> None:
        self.session.record(make(self.now()))

    async def pause(self, seconds: float | None, stop: Callable[[], bool]) -> bool:
        """Let up to `seconds` (None: as long as it takes) of world time pass,
        until `stop()` or the call ends. True when the whole time passed."""
        self.sync()
        left = self.session.time_left()
        span = left if seconds is None else min(max(0.0, seconds), left)
        self.wake.clear()
        if self.session.ended or stop():
            return False
        woke = await self.world.clock.wait(self.wake, self.world.clock.now() + span)
        self.sync()
        return not woke and not self.session.ended

    # -- REST ----------------------------------------------------------------

    def resource(self) -> dict[str, object]:
        session = self.session
        answered = session.answered_at
        ended = self._created + timedelta(seconds=session.now) if session.ended else None
        duration = None
        if session.ended:
            duration = 0.0 if answered is None else session.now - answered
        return call_resource(
            account_sid=session.cfg.account_sid,
            sid=self.sid,
            to=session.script.to_number,
            from_=session.script.from_number,
            status=session.status,
            direction="inbound",
            created=self._created,
            updated=self._wall_now(),
            started=self._created,
            ended=ended,
            duration=duration,
        )

    def _wall_now(self) -> datetime:
        return self._created + timedelta(seconds=self.now())

    def update(self, update: CallUpdate) -> None:
        session = self.session
        if session.ended:
            raise not_in_progress()
        if update.status is not None:
            unanswered = session.status in ("queued", "ringing")
            if update.status == "completed" or unanswered:
                self.sync()
                self.ended_via_api = True
                final = "canceled" if unanswered else "completed"
                session.end("server", "ended through the REST API", final)
            # Status=canceled leaves an in-progress call alone, as on Twilio.
        else:
            self.pending = redirect_from(update)
        self.poke()

    async def apply_update(self) -> Step | None:
        """Follow a pending REST redirect (None when there is none)."""
        if self.session.ended:
            return END
        redirect, self.pending = self.pending, None
        if redirect is None:
            return None
        session = self.session
        if redirect.twiml is not None:
            self.record(lambda at: Note(at, "redirected by the REST API to new TwiML"))
            for warning in redirect.twiml.warnings:
                self.record(partial(TwimlWarning, message=warning))
            # Relative URLs in inline TwiML resolve against the voice URL.
            base = session.cfg.public(session.cfg.voice_path)
            return goto(Document(url=base, twiml=redirect.twiml))
        assert redirect.url is not None
        url = redirect.url
        self.record(lambda at: Note(at, f"redirected by the REST API to {url_path(url)}"))
        return await session.follow(url, redirect.method, "REST API redirect")
