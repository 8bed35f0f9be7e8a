"""Fault drills (issue 9, item 6), the hard faults: PostgreSQL killed for 20 s
while callers hold and phones ring; `ivr serve` killed with -9 during a leg
placement and during a move; one of two instances killed with 50 callers in
flight. Real PostgreSQL, real `ivr serve` processes, the simulator at its
fastest (its default time scale, 10 ms per simulated second).

Each drill asserts what a fault must never cost a caller: every caller
reaches a counselor or a line within the flow's proven bound plus the
outage; nobody is rung for after they left or after the lifeline; no call
row is left open, no counselor offered or on a call for an ended call, no
counselor offered two callers at once. Each prints (pytest -s) its figures.

Time to a human is measured in wall seconds, an upper bound of it: each
call's whole wall time (to the human, then a talk of under a wall second
at this time scale). The simulator compresses prompts, rings and talk; the
server's own deadlines run on the wall clock; so a call's wall time to a
human is at most the bound computed for real time (`ivr validate`'s
"national backup dialled", from the same analysis, in process) plus the
outage the drill inflicted.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port

from ivr.app import create_app
from ivr.content import Content
from ivr.sim import CallScript, CounselorScript, NoAnswer, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.script import DialOutcome
from ivr.sim.transcript import CounselorJoined, Transcript
from ivr.storage.counselors import list_counselors, set_presence
from tests.conftest import AUTH_TOKEN, ROOT, bounded, make_settings
from tests.e2e.appclock import Clock
from tests.e2e.test_callback_outage import OwnPostgres
from tests.e2e.test_drills import CLEAN, left_to_repair, repaired
from tests.e2e.test_resilience import _wait_healthy
from tests.helpers import catch_all_server

pytestmark = pytest.mark.drill

ACCOUNT_SID = "AC" + "1" * 32
TX_CALLER = "+15125550123"
ANA = "+15125550101"
LEASE = 3.0  # IVR_TIMER_LEASE_SECONDS of the drills' instances: a dead one's work waits this
HOP = ("host", "content-length", "transfer-encoding", "connection")


def flow_bound(content: Content) -> float:
    """The flow's proven bound for a silent caller (the crisis queue): the
    worst case until the national backup is dialled, as `ivr validate` prints
    it, from the analysis that loading the content ran."""
    [reach] = [r for r in content.reaches["lifeline"] if r.name == "crisis"]
    return reach.to_backup


TALK = 100.0  # simulated seconds a counselor or a line talks with the caller
# A silent Texan who holds as long as it takes (the drills count who is stranded).
SCRIPT = CallScript(from_number=TX_CALLER, inputs=(Silence(),), hold_patience=100_000,
                    dial_outcomes=(DialOutcome(talk_seconds=TALK),))


@dataclass
class Timed:
    transcript: Transcript
    wall: float  # seconds from placing the call to reaching a human (at most)
    ended: float  # time.monotonic() when the call was over


async def timed_call(sim: SimConfig, script: CallScript, world: TwilioWorld,
                     delay: float = 0.0) -> Timed:
    """One call; its wall time to a human is bounded by its whole wall time
    less the talk (which lasts at least TALK simulated seconds)."""
    await asyncio.sleep(delay)
    start = time.monotonic()
    t = await simulate_call(sim, script, world=world)
    end = time.monotonic()
    # A counselor talks in world time; a <Dial>'s party may talk in the
    # caller's own clock, which jumps: that talk is not taken off.
    talk = TALK * world.clock.scale if t.of_type(CounselorJoined) else 0.0
    return Timed(t, end - start - talk, end)


def in_flight_at(calls: Sequence[Timed], moment: float) -> int:
    """Calls not yet over at `moment`: the fault met them."""
    return sum(c.ended > moment for c in calls)


@dataclass
class Drill:
    name: str
    bound: float
    outage: float
    calls: list[Timed] = field(default_factory=list)
    before: dict[str, int] = field(default_factory=dict)  # left by the fault
    after: dict[str, int] = field(default_factory=dict)  # after the reconciliation
    rung_after_leaving: int = 0
    double_offers: int = 0  # over the whole drill, from the offers' history
    double_rings: int = 0  # two legs to one phone at once, as Twilio saw them
    overlaps: list[str] = field(default_factory=list)  # those legs, told
    in_flight: int = 0  # calls the fault met (not yet over when it struck)
    taken_over: int = 0  # timers (placements, moves...) that needed a second attempt

    @property
    def reached(self) -> int:
        return sum(c.transcript.reached_human for c in self.calls)

    @property
    def counselors(self) -> int:
        return sum(bool(c.transcript.of_type(CounselorJoined)) for c in self.calls)

    @property
    def beyond(self) -> float:
        return max([0.0, *(c.wall - self.bound - self.outage for c in self.calls)])

    def report(self) -> None:
        print(f"\ndrill {self.name}: {self.in_flight} calls in flight at the fault; "
              f"{self.reached} of {len(self.calls)} callers reached a human or a line "
              f"({self.counselors} a counselor); {self.taken_over} timers finished by another "
              f"attempt; {self.beyond:.1f} s beyond the bound ({self.bound:.1f} s + "
              f"{self.outage:g} s outage; slowest call {max(c.wall for c in self.calls):.1f} s "
              f"wall); rung for after leaving or the lifeline: {self.rung_after_leaving}; "
              f"double offers {self.double_offers}, double rings {self.double_rings}; "
              f"left to repair before the reconciliation {self.before}, after {self.after}")

    def check(self) -> None:
        self.report()
        lost = [c.transcript.format() for c in self.calls if not c.transcript.reached_human]
        assert not lost, "\n\n".join(lost)
        assert self.in_flight > 0, "the fault struck after every call was over"
        assert self.beyond == 0.0, [round(c.wall, 1) for c in self.calls]
        assert self.rung_after_leaving == 0
        assert (self.double_offers, self.double_rings) == (0, 0), self.overlaps
        assert self.after == CLEAN


async def rung_after_leaving(pool: asyncpg.Pool) -> int:
    """Offers made for a caller after their call ended or after the lifeline
    took them (both stamped on the server's one clock)."""
    rows = await pool.fetch(
        """SELECT o.id, o.counselor_id, o.state, o.created_at, o.ended_at AS offer_ended,
                  c.ended_at, c.lifeline_at, right(c.call_sid, 6) AS call
           FROM offers o JOIN calls c USING (call_sid)
           WHERE o.created_at > least(c.ended_at, c.lifeline_at)""")
    for row in rows:  # which, and how long after: a race or a caller forgotten
        print("rung after leaving:", dict(row),
              row["created_at"] - min(t for t in (row["ended_at"], row["lifeline_at"]) if t))
    return len(rows)


async def overlapping_offers(pool: asyncpg.Pool) -> int:
    """Pairs of offers to one counselor that were open at once, over the drill."""
    n = await pool.fetchval(
        """SELECT count(*) FROM offers a JOIN offers b
             ON a.counselor_id = b.counselor_id AND a.id < b.id
           WHERE b.created_at < coalesce(a.ended_at, 'infinity')
             AND a.created_at < coalesce(b.ended_at, 'infinity')""")
    return int(n)


def overlapping_legs(world: TwilioWorld) -> list[str]:
    """Pairs of legs to one phone that rang or talked at once, told."""
    legs = sorted(world.legs, key=lambda leg: leg.created_at)
    return [
        f"{a.request.to}: {a.sid} ({a.created_at:.1f}-{a.ended_at}, {a.final_status}, "
        f"{a.request.status_callback}) and {b.sid} ({b.created_at:.1f}-{b.ended_at}, "
        f"{b.final_status}, {b.request.status_callback})"
        for a, b in itertools.combinations(legs, 2)
        if a.request.to == b.request.to
        and b.created_at < (a.ended_at if a.ended_at is not None else float("inf"))]


async def tally(drill: Drill, pool: asyncpg.Pool, world: TwilioWorld) -> None:
    drill.rung_after_leaving = await rung_after_leaving(pool)
    drill.double_offers = await overlapping_offers(pool)
    drill.overlaps = overlapping_legs(world)
    drill.double_rings = len(drill.overlaps)
    drill.taken_over = int(await pool.fetchval("SELECT count(*) FROM timers WHERE attempts > 1"))


async def staff(pool: asyncpg.Pool) -> None:
    for counselor in await list_counselors(pool):
        await set_presence(pool, counselor.id, "available")


async def reconcile_later(pool: asyncpg.Pool, settings_dsn: str, tmp: Path, content: Content,
                          api_url: str) -> dict[str, int]:
    """What is left once a server's sweep has asked Twilio about what nobody
    told us: a server on the same database whose clock runs five minutes
    ahead (each call and leg is then overdue for news)."""
    left = await left_to_repair(pool)
    if not any(left.values()):
        return left
    clock = Clock()
    clock.ahead = timedelta(minutes=5)
    port = unused_port()
    settings = make_settings(tmp, settings_dsn, port, api_url)
    srv = TestServer(create_app(settings, content, clock=clock), host="127.0.0.1", port=port)
    await srv.start_server()
    try:
        return await repaired(pool)
    finally:
        await bounded(srv.close(), "closing the reconciling server")


# -- 1. PostgreSQL killed for 20 s -----------------------------------------------------

PG_OUTAGE = 20.0
LATE_CALLERS = 3  # callers arriving once PostgreSQL is back


@pytest.fixture
async def own_pg(tmp_path: Path) -> AsyncIterator[OwnPostgres]:
    from pgserver import get_server  # type: ignore[attr-defined]

    server = await asyncio.to_thread(get_server, tmp_path / "pg", cleanup_mode="stop")
    own = OwnPostgres(server.pgdata, str(server.get_uri()), server.system_user)
    yield own
    await asyncio.to_thread(own.stop)
    await asyncio.to_thread(server.cleanup)


@pytest.mark.parametrize("outage", [3.0, PG_OUTAGE])
async def test_postgres_killed_while_callers_hold_and_phones_ring(
    outage: float, own_pg: OwnPostgres, tmp_path: Path, content: Content
) -> None:
    callers = 8
    drill = Drill(f"pg-killed-{outage:g}s", flow_bound(content), outage)
    # Ana never answers (her phone rings, then rings out); the others answer
    # after 3 simulated seconds.
    async with TwilioWorld(counselors={ANA: NoAnswer()},
                           default=CounselorScript(answer_after=3, talk_seconds=TALK)) as world:
        port = unused_port()
        settings = make_settings(tmp_path / "server", own_pg.uri, port, world.api_url)
        clock = Clock()
        server = TestServer(create_app(settings, content, clock=clock), host="127.0.0.1",
                            port=port)
        await server.start_server()
        pool: asyncpg.Pool | None = None
        try:
            pool = await asyncpg.create_pool(own_pg.uri, min_size=0, max_size=2)
            await staff(pool)
            sim = SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                            account_sid=settings.account_sid)
            script = SCRIPT
            calls = [asyncio.create_task(timed_call(sim, script, world, 0.05 * n))
                     for n in range(callers)]
            for _ in range(2000):  # until a counselor's phone rings
                if any(not leg.done.is_set() for leg in world.legs):
                    break
                await asyncio.sleep(0.002)
            ringing = sum(not leg.done.is_set() for leg in world.legs)
            struck = time.monotonic()
            await asyncio.to_thread(own_pg.kill)
            await asyncio.sleep(outage)
            await asyncio.to_thread(own_pg.start)
            # Callers after the outage, one at a time: they too reach a human
            # or a line within the bound (their figures are among the drill's).
            await asyncio.sleep(1.0)
            late = [asyncio.create_task(timed_call(sim, script, world, 2.0 * n))
                    for n in range(LATE_CALLERS)]
            drill.calls = list(await asyncio.wait_for(asyncio.gather(*calls), 180))
            drill.in_flight = in_flight_at(drill.calls, struck)
            after = list(await asyncio.wait_for(asyncio.gather(*late), 180))
            drill.calls += after
            assert await world.wait_idle(600)
            await asyncio.sleep(1.0)  # the last callbacks and spool replays settle
            await pool.expire_connections()
            drill.before = await left_to_repair(pool)
            # A while later (the clock moved on) the sweep asks Twilio.
            clock.ahead = timedelta(minutes=5)
            drill.after = await repaired(pool)
            await tally(drill, pool, world)
        finally:
            if pool is not None:
                await bounded(pool.close(), "closing the drill's pool")
            await bounded(server.close(), "closing the server")
    print(f"phones ringing when PostgreSQL was killed: {ringing}; callers after it: "
          f"{sum(bool(c.transcript.of_type(CounselorJoined)) for c in after)} of "
          f"{LATE_CALLERS} reached a counselor")
    assert ringing > 0
    drill.check()


# -- instances: real `ivr serve` processes behind a balancer ------------------------------


class Balancer:
    """What Twilio reaches: a load balancer in front of the instances.

    It models a load balancer with health checks and retries on connection
    failures, e.g. HAProxy's `retry-on conn-failure` with `option
    redispatch` or nginx's `proxy_next_upstream error` (its default): a
    request whose connection an instance refuses is sent to the next one,
    and that instance stays out of the rotation (as a failed health check
    takes it out) for `down_for` seconds. A request an instance took and
    then died on is not sent again (neither balancer resends a POST once
    sent, it may not be idempotent): Twilio gets a 502. `primary`: the
    first instance takes everything while it is up (HAProxy's `backup`
    servers); otherwise round robin.
    """

    def __init__(self, backends: Sequence[str], *, primary: bool = False,
                 down_for: float = 2.0) -> None:
        self.backends = list(backends)
        self.primary = primary
        self.down_for = down_for
        self.down_until: dict[str, float] = {}
        self.retried = 0
        self._turn = itertools.count()
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.port = unused_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def order(self) -> list[str]:
        if self.primary:
            ranked = list(self.backends)
        else:
            start = next(self._turn) % len(self.backends)
            ranked = self.backends[start:] + self.backends[:start]
        now = time.monotonic()
        up = [b for b in ranked if self.down_until.get(b, 0.0) <= now]
        return up + [b for b in ranked if b not in up]

    async def route(self, request: web.Request) -> web.Response:
        assert self._http is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        for n, base in enumerate(self.order()):
            try:
                async with self._http.request(request.method, base + request.path_qs,
                                              data=body, headers=headers,
                                              allow_redirects=False) as resp:
                    content = await resp.read()
                    return web.Response(body=content, status=resp.status,
                                        content_type=resp.content_type or "text/plain")
            except aiohttp.ClientConnectorError:
                self.down_until[base] = time.monotonic() + self.down_for
                self.retried += n == 0
                continue  # not connected: nothing was sent, the next instance
            except aiohttp.ClientError:
                return web.Response(status=502)  # sent, then the instance died
        return web.Response(status=502)

    async def start(self) -> None:
        # A connection of its own per request, as nginx opens to its upstreams
        # unless told to keep them alive (`keepalive` in an upstream block): a
        # killed instance then refuses the connection rather than dropping a
        # request sent down a kept-alive one.
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        self._runner = await catch_all_server(self.route, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()


Trigger = Callable[[web.Request, bytes], bool]


class SlowApi:
    """The REST API as one instance reaches it: each request takes 0.3 to 1 s
    more (Twilio's API under load, as the issue measured), which widens the
    moment a kill can land in. The first request `trigger` matches is sent
    on to Twilio (the leg is placed, the caller moved), but its answer waits
    until `release` is set: the instance is killed while it waits for it."""

    def __init__(self, api_url: str, seed: int, trigger: Trigger | None = None,
                 sent: bool = True) -> None:
        self.api_url = api_url
        self.trigger = trigger
        self.sent = sent  # False: the instance dies before its request reaches Twilio
        self.armed: list[SlowApi] = [self]  # the proxies one kill disarms
        self.seen = asyncio.Event()
        self.caught_at = 0.0  # time.monotonic() when the trigger caught the request
        self.release = asyncio.Event()
        self._random = random.Random(seed)
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.port = unused_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def route(self, request: web.Request) -> web.Response:
        assert self._http is not None
        body = await request.read()
        await asyncio.sleep(self._random.uniform(0.3, 1.0))
        caught = (self.trigger is not None and not self.seen.is_set()
                  and self.trigger(request, body))
        if caught:
            self.caught_at = time.monotonic()
            self.disarm()  # one kill per drill: the other instances' requests pass
        if caught and not self.sent:
            self.seen.set()
            await self.release.wait()
            return web.Response(status=503)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        async with self._http.request(request.method, self.api_url + request.path_qs,
                                      data=body, headers=headers) as resp:
            content = await resp.read()
            answer = web.Response(body=content, status=resp.status,
                                  content_type=resp.content_type or "application/json")
        if caught:
            self.seen.set()
            await self.release.wait()  # the instance dies before it reads this
        return answer

    def disarm(self) -> None:
        for api in self.armed:
            api.trigger = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        self._runner = await catch_all_server(self.route, self.port)

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()


def places_a_leg(request: web.Request, body: bytes) -> bool:
    return request.method == "POST" and request.path.endswith("/Calls.json")


def moves_a_caller(request: web.Request, body: bytes) -> bool:
    return (request.method == "POST" and "/Calls/" in request.path
            and b"Url=" in body and b"fallback" not in body)


@dataclass
class Instance:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def spawn(n: int, dsn: str, public: str, api_url: str, tmp: Path) -> Instance:
    port = unused_port()
    env = {
        **os.environ,
        "IVR_DATABASE_URL": dsn, "IVR_PUBLIC_URL": public,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "IVR_ADMIN_TOKEN": "drill-admin-token", "IVR_TWILIO_API_URL": api_url,
        "IVR_WRAP_UP_SECONDS": "0", "IVR_DATA_DIR": str(tmp / f"i{n}"),
        "IVR_FLOWS_DIR": str(ROOT / "flows"), "IVR_PROMPTS_DIR": str(ROOT / "prompts"),
        "IVR_LOG_LEVEL": "WARNING", "IVR_TIMER_LEASE_SECONDS": str(LEASE),
    }
    log = tmp / f"i{n}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ivr.cli", "serve", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    return Instance(f"http://127.0.0.1:{port}", proc, log)


@dataclass
class Cluster:
    world: TwilioWorld
    balancer: Balancer
    apis: list[SlowApi]
    instances: list[Instance]
    pool: asyncpg.Pool
    sim: SimConfig


ClusterFactory = Callable[..., Awaitable[Cluster]]


@pytest.fixture
async def cluster(dsn: str, tmp_path: Path) -> AsyncIterator[ClusterFactory]:
    """Two `ivr serve` processes on one database behind a balancer, each with
    its own (slowed) way to the simulated REST API."""
    made: list[Cluster] = []

    async def make(world: TwilioWorld, *, primary: bool, trigger: Trigger | None = None,
                   sent: bool = True, slow: bool = True) -> Cluster:
        apis = [SlowApi(world.api_url, seed=n, trigger=trigger, sent=sent) for n in range(2)]
        for api in apis:
            api.armed = apis
        for api in apis:
            await api.start()
        balancer = Balancer([], primary=primary)
        await balancer.start()
        instances = [spawn(n, dsn, balancer.url, api.url if slow else world.api_url, tmp_path)
                     for n, api in enumerate(apis)]
        pool = await asyncpg.create_pool(dsn, min_size=0, max_size=2)
        c = Cluster(world, balancer, apis, instances, pool,
                    SimConfig(server_url=balancer.url, auth_token=AUTH_TOKEN,
                              account_sid=ACCOUNT_SID))
        made.append(c)
        await asyncio.gather(*(_wait_healthy(i.url, i.proc) for i in instances))
        balancer.backends = [i.url for i in instances]
        await staff(pool)
        return c

    yield make
    for c in made:
        for i in c.instances:
            if i.proc.poll() is None:
                i.proc.terminate()
        for i in c.instances:
            try:
                await asyncio.to_thread(i.proc.wait, 10)
            except subprocess.TimeoutExpired:
                i.proc.kill()
        await bounded(c.balancer.stop(), "stopping the balancer")
        for api in c.apis:
            await bounded(api.stop(), "stopping the REST proxy")
        await bounded(c.pool.close(), "closing the drill's pool")


async def settle(drill: Drill, c: Cluster, calls: Sequence[asyncio.Task[Timed]],
                 struck: float, dsn: str, tmp: Path, content: Content) -> None:
    """Every call over and Twilio idle: what the fault left behind, what the
    reconciliation left, and the drill's tallies."""
    drill.calls = list(await asyncio.wait_for(asyncio.gather(*calls), 180))
    drill.in_flight = in_flight_at(drill.calls, struck)
    assert await c.world.wait_idle(600)
    await asyncio.sleep(1.0)
    drill.before = await left_to_repair(c.pool)
    drill.after = await reconcile_later(c.pool, dsn, tmp / "later", content, c.world.api_url)
    await tally(drill, c.pool, c.world)


async def kill_on_trigger(c: Cluster) -> tuple[Instance, float]:
    """Kill (-9) the instance whose REST request the trigger caught, while it
    waits for Twilio's answer; the victim and the moment its request was
    caught. The fault strikes then: the work it interrupts is under way from
    that moment. (Twilio may finish a call it was sent on before the kill
    lands: a caller moved to a line whose talk takes no wall time hangs up
    within milliseconds, so the moment of the kill itself would count that
    call as one the fault never met.)"""
    waits = {asyncio.ensure_future(api.seen.wait()): n for n, api in enumerate(c.apis)}
    done, pending = await asyncio.wait(waits, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    for w in pending:
        w.cancel()
    assert done, "no instance made the request the drill kills it during"
    caught = waits[done.pop()]
    victim = c.instances[caught]
    victim.kill()
    await asyncio.to_thread(victim.proc.wait, 10)
    for api in c.apis:
        api.release.set()
    return victim, c.apis[caught].caught_at


@pytest.mark.parametrize("sent", [True, False], ids=["twilio-had-it", "twilio-never-had-it"])
@pytest.mark.parametrize("during", ["leg placement", "move"])
async def test_ivr_serve_killed_during_work_in_flight(
    during: str, sent: bool, cluster: ClusterFactory, dsn: str, tmp_path: Path, content: Content
) -> None:
    callers = 3
    if during == "leg placement":
        # Ana's phone rings out while the instance that placed her leg is dead.
        world = TwilioWorld(counselors={ANA: NoAnswer()},
                            default=CounselorScript(answer_after=3, talk_seconds=TALK))
        trigger: Trigger = places_a_leg
        kind = "place_leg"
    else:  # nobody answers in the caller's tier: the caller is moved to a backup's number
        world = TwilioWorld(default=NoAnswer())
        trigger = moves_a_caller
        kind = "move_caller"
    what = "sent" if sent else "unsent"
    drill = Drill(f"serve-killed-during-{during.replace(' ', '-')}-{what}", flow_bound(content),
                  LEASE)
    async with world:
        c = await cluster(world, primary=True, trigger=trigger, sent=sent)
        script = SCRIPT
        calls = [asyncio.create_task(timed_call(c.sim, script, world, 0.1 * n))
                 for n in range(callers)]
        victim, struck = await kill_on_trigger(c)
        await settle(drill, c, calls, struck, dsn, tmp_path, content)
        # The victim's own work, leased when it died: done by a later attempt.
        # (Without that, the caller still reaches the lifeline within the
        # bound, so the checks below alone would not see it lost.)
        finished = await c.pool.fetchval(
            "SELECT count(*) FROM timers WHERE kind = $1 AND attempts > 1"
            " AND done_at IS NOT NULL", kind)
        survivor = next(i for i in c.instances if i is not victim)
        assert survivor.proc.poll() is None, survivor.tail()
    drill.check()
    if not sent:  # Twilio had it: its callbacks finish the work, no second attempt needed
        assert finished > 0, f"the dead instance's {kind} was never taken over"


async def test_one_of_two_instances_killed_with_50_callers_in_flight(
    cluster: ClusterFactory, dsn: str, tmp_path: Path, content: Content
) -> None:
    callers = 50
    drill = Drill("instance-killed-50-callers", flow_bound(content), LEASE)
    world = TwilioWorld(default=CounselorScript(answer_after=3, talk_seconds=TALK))
    async with world:
        c = await cluster(world, primary=False, slow=False)
        script = SCRIPT
        # Arrivals over 5 s; the kill halfway: callers in the menu, holding,
        # rung for, talking.
        calls = [asyncio.create_task(timed_call(c.sim, script, world, 0.1 * n))
                 for n in range(callers)]
        await asyncio.sleep(0.1 * callers / 2)
        struck = time.monotonic()
        c.instances[0].kill()
        await asyncio.to_thread(c.instances[0].proc.wait, 10)
        await settle(drill, c, calls, struck, dsn, tmp_path, content)
        assert c.instances[1].proc.poll() is None, c.instances[1].tail()
    print(f"balancer: {c.balancer.retried} requests retried on the other instance")
    drill.check()
