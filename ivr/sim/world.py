"""A Twilio account around simulated calls: the REST API, counselor legs
and conferences.

One world per test or per `ivr call`:

    async with TwilioWorld(counselors={"+15125550100": CounselorScript()}) as world:
        settings = replace(settings, twilio_api_url=world.api_url)  # the server's REST base
        ...start the server...
        transcript = await simulate_call(cfg, script, world=world)

`simulate_call(..., world=world)` registers the caller's call in the world
(so the server can fetch, redirect or end it through the REST API) and
executes `<Dial><Conference>` for real: the caller waits in the room until
a counselor leg placed by the server joins it. The world's account is
given to the constructor, or taken from the first call's SimConfig.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web

from ivr.sim.callers import CallerCall
from ivr.sim.clock import DEFAULT_SCALE, WorldClock
from ivr.sim.conference import Room, WorldConference
from ivr.sim.config import SimConfig
from ivr.sim.counselors import DEFAULT_BEHAVIOUR, ApiError, Behaviour, CounselorBook
from ivr.sim.errors import ScriptError, SimError, TwimlError
from ivr.sim.hold import MediaStreamDriver
from ivr.sim.legs import LegCall
from ivr.sim.rest import (
    ApiRequest,
    CallRequest,
    RestCall,
    RestFault,
    RestOutage,
    account_resource,
    build_api,
)
from ivr.sim.session import CallSession, Document, Step, url_path
from ivr.sim.transcript import LegEvent, Request
from ivr.sim.twiml import Conference, Twiml, Verb, parse_twiml
from ivr.sim.verbs import VerbHandler, default_handlers
from ivr.sim.webhook import WebhookClient

SETTLE_SECONDS = 120.0  # at most this long (simulated) for a call's legs to end after it


STOP_TIMEOUT = 10.0  # wall seconds for running legs to stop


class TwilioWorld:
    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        counselors: Mapping[str, Behaviour | Sequence[Behaviour]] | None = None,
        default: Behaviour = DEFAULT_BEHAVIOUR,
        api_errors: Iterable[str] = (),
        outages: Iterable[RestOutage] = (),
        time_scale: float = DEFAULT_SCALE,
        settle_seconds: float = SETTLE_SECONDS,
        paced_ivr: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """`counselors`: behaviour per target (To), or a sequence of them, one
        per call placed to it (the last repeats); `default` for other
        targets; `api_errors`: targets whose calls the API refuses (21215);
        `outages`: stretches of world time when the API fails some operations;
        `time_scale`: real seconds per simulated second while parties wait
        on each other; `paced_ivr`: the callers' IVR (prompts, menus) passes
        in world time too, not as fast as the server answers (callers.py)."""
        if (account_sid is None) != (auth_token is None):
            raise ScriptError("give both the account sid and the auth token, or neither")
        if settle_seconds < 0:
            raise ScriptError("settle seconds must not be negative")
        self.clock = WorldClock(time_scale)
        self.book = CounselorBook(counselors, default, api_errors)
        self.outages = tuple(outages)
        self.settle_seconds = settle_seconds
        self.paced_ivr = paced_ivr
        self._credentials = (
            None if account_sid is None or auth_token is None else (account_sid, auth_token)
        )
        self._host = host
        self._port = port
        self._cfg: SimConfig | None = None
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._api_url: str | None = None
        self._epoch = datetime.now(UTC)
        self._callers: dict[str, CallerCall] = {}
        self._legs: list[LegCall] = []
        self._calls: dict[str, RestCall] = {}
        self._rooms: dict[str, Room] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures: list[BaseException] = []
        self._log: list[LegEvent] = []
        self._requests: list[ApiRequest] = []

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> str:
        """Serve the REST API; returns its base URL (also `api_url`)."""
        if self._runner is not None:
            return self.api_url
        self.clock.start()
        self._epoch = datetime.now(UTC)
        self._http = aiohttp.ClientSession()
        runner = web.AppRunner(build_api(self), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._api_url = f"http://{host}:{port}"
        return self._api_url

    async def stop(self) -> None:
        """Stop every leg still running and the REST API."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a leg that will not stop must not hang whoever stops the world.
            await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> TwilioWorld:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_url(self) -> str:
        """Base URL of the REST API (what `https://api.twilio.com` is to Twilio)."""
        if self._api_url is None:
            raise SimError("the world is not started")
        return self._api_url

    @property
    def credentials(self) -> tuple[str, str] | None:
        return self._credentials

    @property
    def account_sid(self) -> str:
        return self._credentials[0] if self._credentials else ""

    def claim(self, credentials: tuple[str, str]) -> None:
        """A world given no account takes the first one that uses its API (the
        server's), as `bind` takes the first call's: a call bound later with
        other credentials is still refused."""
        if self._credentials is None:
            self._credentials = credentials

    def resource(self) -> dict[str, object]:
        return account_resource(self.account_sid, self._epoch)

    def fault_for(self, operation: str) -> RestFault | None:
        moment = self.clock.now()
        for outage in self.outages:
            if outage.covers(operation, moment):
                return outage.fault()
        return None

    def observe(self, request: ApiRequest) -> None:
        self._requests.append(request)

    @property
    def api_requests(self) -> tuple[ApiRequest, ...]:
        """Every request the REST API received, in order, with the status it answered."""
        return tuple(self._requests)

    # -- what happened ---------------------------------------------------------------

    @property
    def legs(self) -> tuple[LegCall, ...]:
        """Every call placed through the REST API, in order."""
        return tuple(self._legs)

    @property
    def events(self) -> tuple[LegEvent, ...]:
        """Every leg event, stamped in world time."""
        return tuple(self._log)

    def log(self, event: LegEvent) -> None:
        self._log.append(event)

    def wall(self, moment: float) -> datetime:
        """The date and time of world time `moment`."""
        return self._epoch + timedelta(seconds=moment)

    def server_clock(self) -> datetime:
        """Now, in world time: a clock to give the server under test
        (create_app(clock=...)), so that its deadlines pass in simulated
        seconds like the rings, prompts and <Dial> timeouts around them. Not a
        Twilio behaviour: Twilio and the server share the wall clock, which the
        world compresses."""
        return self.wall(self.clock.now())

    # -- callers ---------------------------------------------------------------------

    def bind(self, cfg: SimConfig) -> None:
        """Use `cfg` to reach the server (legs' webhooks, conference events)."""
        given = (cfg.account_sid, cfg.auth_token)
        if self._credentials is None:
            self._credentials = given
        elif given != self._credentials:
            raise ScriptError("the call's account sid and auth token are not the world's")
        self._cfg = cfg

    def attach(self, session: CallSession) -> None:
        """Register a caller's call (simulate_call does it)."""
        if self._runner is None:
            raise SimError("start the world before placing calls in it")
        self.bind(session.cfg)
        caller = CallerCall(self, session, self.paced_ivr)
        if self.paced_ivr:
            session.before_request = caller.keep_pace
        self._callers[caller.sid] = caller
        self._calls[caller.sid] = caller

    def caller_of(self, session: CallSession) -> CallerCall | None:
        return self._callers.get(session.call_sid)

    async def settle(self, session: CallSession) -> None:
        """After a caller's call: wait (a bounded while) for the legs placed
        for it to end, so its transcript shows how they did."""
        caller = self._callers.get(session.call_sid)
        if caller is None:
            return
        caller.detach()
        running = [
            asyncio.ensure_future(leg.done.wait())
            for leg in self._legs
            if leg.caller is caller and not leg.done.is_set()
        ]
        if running:
            _, waiting = await asyncio.wait(
                running, timeout=self.settle_seconds * self.clock.scale
            )
            for waiter in waiting:
                waiter.cancel()
        self._raise_failures()

    async def wait_idle(self, seconds: float | None = None) -> bool:
        """Wait until no leg is running (at most `seconds` simulated); True when idle."""
        running = [asyncio.ensure_future(leg.done.wait()) for leg in self._legs
                   if not leg.done.is_set()]
        idle = True
        if running:
            timeout = None if seconds is None else seconds * self.clock.scale
            _, waiting = await asyncio.wait(running, timeout=timeout)
            for waiter in waiting:
                waiter.cancel()
            idle = not waiting
        self._raise_failures()
        return idle

    def handlers(self, *, media: MediaStreamDriver | None = None) -> dict[type[Verb], VerbHandler]:
        """Verb handlers for callers in this world: conferences are real, and
        a REST redirect or hang-up takes effect before the next verb."""
        base = default_handlers(conference=WorldConference(self), media=media)
        return {verb: _Interruptible(self, handler) for verb, handler in base.items()}

    # -- the REST API's account --------------------------------------------------------

    def place_call(self, request: CallRequest) -> RestCall:
        behaviour = self.book.next_for(request.to)
        live = [c for c in self._callers.values() if not c.session.ended]
        caller = live[0] if len(live) == 1 else None
        if isinstance(behaviour, ApiError):
            fault = RestFault(behaviour.status, behaviour.code, behaviour.text(request.to))
            detail = f"HTTP {fault.status}, Twilio error {fault.code}"
            moment = self.clock.now()
            self.log(LegEvent(moment, request.to, "refused by the API", detail))
            if caller is not None:
                caller.record(lambda at: LegEvent(at, request.to, "refused by the API", detail))
            raise fault
        if self._cfg is None or self._http is None:
            raise RestFault(500, 20500, "Internal Server Error (no simulated call in this world)")
        twiml: Twiml | None = None
        if request.twiml is not None:
            try:
                twiml = parse_twiml(request.twiml)
            except TwimlError as exc:
                raise RestFault(400, exc.code, f"Twiml is not valid: {exc}") from exc
        leg = LegCall(self, request, behaviour, self._cfg, self._http, twiml)
        leg.caller = caller
        self._legs.append(leg)
        self._calls[leg.sid] = leg
        leg.mirror("called", f"timeout {request.timeout}s")
        task = asyncio.create_task(leg.run())
        self._tasks.add(task)
        task.add_done_callback(self._leg_done)
        return leg

    def _leg_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._failures.append(task.exception())  # type: ignore[arg-type]

    def _raise_failures(self) -> None:
        if self._failures:
            failure = self._failures.pop(0)
            raise SimError(f"a counselor leg crashed: {failure!r}") from failure

    def find_call(self, sid: str) -> RestCall | None:
        return self._calls.get(sid)

    # -- conferences ---------------------------------------------------------------------

    def room_for(self, noun: Conference, document_url: str) -> Room:
        """The live room of that name, or a new one."""
        room = self._rooms.get(noun.name)
        if room is None or room.ended:
            room = Room(self, noun, document_url)
            self._rooms[noun.name] = room
        return room

    def forget_room(self, room: Room) -> None:
        if self._rooms.get(room.name) is room:
            del self._rooms[room.name]

    async def post_conference_event(
        self, url: str, method: str, params: Mapping[str, str], callers: Sequence[CallerCall]
    ) -> None:
        if self._cfg is None or self._http is None:
            return
        webhooks = WebhookClient(self._http, self._cfg)
        exchange = await webhooks.send(method, url, params, str(uuid.uuid4()))
        purpose = f"conference status callback ({params.get('StatusCallbackEvent', '')})"
        for caller in callers:
            caller.record(
                lambda at: Request(
                    at, exchange.method, url_path(url), exchange.status, purpose, exchange.error
                )
            )


class _Interruptible:
    """A verb handler that first applies what the REST API changed."""

    def __init__(self, world: TwilioWorld, handler: VerbHandler) -> None:
        self.world = world
        self.handler = handler

    async def __call__(self, session: CallSession, document: Document, verb: Any) -> Step:
        caller = self.world.caller_of(session)
        if caller is not None:
            step = await caller.apply_update()
            if step is not None:
                return step
        step = await self.handler(session, document, verb)
        if caller is not None:
            await caller.keep_pace()
        return step
