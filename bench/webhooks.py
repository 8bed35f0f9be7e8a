"""Webhook benchmark: simulated callers against `ivr serve` and two baselines.

    .venv/bin/python bench/webhooks.py [--duration S] [--rounds N] [--concurrency N]

Each simulated caller repeatedly makes one call the way Twilio would: a
signed POST /twilio/voice with a new CallSid, then the menu callback (a
signed POST to the Gather action URL of the first answer, Digits=2), then
the call's end (a signed POST /twilio/status, CallStatus=completed, so the
server holds about as many live calls as there are callers). The same
client, in the same run, drives each target in its own process:

- full webhook: the real `ivr serve`, on a database of its own in the
  benchmark's PostgreSQL;
- floor: an aiohttp handler doing what any webhook must at least do: the
  project's signature check (its middleware, the real validator) and one
  durable write round trip to the same PostgreSQL (an upsert of one row keyed
  by the CallSid), answering the real server's TwiML bytes;
- bare: an aiohttp handler that answers those bytes with no signature
  check, flow or database;
- with --baseline-server-command, a second full webhook run by another
  command (e.g. another checkout), to compare a change with its baseline in
  the same run on the same background load. Both full servers share the
  benchmark's PostgreSQL, which serializes the commits of transactions that
  NOTIFY server-wide (a baseline from before issue 12's change still has
  the console's triggers); the targets take turns, so one's webhooks never
  queue behind the other's.

Two loads are measured for each: a closed loop (every caller sends its next
request as soon as the previous answer arrives: saturation throughput), and
a paced load (each caller sends one request every --interval ms, well below
saturation: the latency a real caller, seconds between webhooks, sees).
Each load is measured in --rounds windows per target, the targets taking
turns, so that each window of one target has neighbours of the others under
about the same background load; the report gives the median of the windows
and their spread (lowest to highest), the machine's load average and the CPU
other processes used during each window.

The client runs on the same cores as the servers and PostgreSQL; the CPU
table says how the cores were shared. The database table counts, per
request, the transactions each target's database committed and the time its
backends spent executing statements (pg_stat_database), the dispatcher's
ticks of the full server included. The output ends with all of it in one
markdown table, a row per target, ready for the README. `--bare` and
`--floor` run the baselines themselves (used by the benchmark, not by hand).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import aiohttp
from twilio.request_validator import RequestValidator

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    ROOT,
    VENV_BIN,
    Child,
    Postgres,
    ServerFailed,
    free_port,
    machine_busy_seconds,
    ms,
    postgres,
    print_table,
    report_server_log,
    start_child,
    summarize,
    tree_cpu_seconds,
    wait_http,
)

AUTH_TOKEN = "bench-auth-token-0123456789"
THIS_FILE = str(Path(__file__).resolve())
FORM = "application/x-www-form-urlencoded"
ENDPOINTS = ("voice", "gather", "status")
DIGITS = "2"  # "Para español": a language switch, then the transfer's first <Dial>
TARGET_RPS_RATIO = 0.30  # of bare
TARGET_FLOOR_RATIO = 0.50  # of the floor
TARGET_P99 = 0.020
# Paced load: a caller's requests at most this often, and at most this share of
# the full webhook's saturation throughput offered in all.
MIN_INTERVAL = 0.100
PACED_SHARE = 0.5
NOISY_OTHERS = 0.2  # cores used by other processes that make a run worth repeating
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)
# PostgreSQL 15+ backends flush their statistics at most every second while
# busy and within 10 s once idle: wait that long before reading them.
STATS_SETTLE = 11.0
FLOOR_TABLE = "bench_floor"


# The requests ---------------------------------------------------------------


def voice_params(sid: str) -> dict[str, str]:
    return {
        "CallSid": sid,
        "AccountSid": "AC" + "1" * 32,
        "From": "+15125550123",
        "To": "+18002738255",
        "Caller": "+15125550123",
        "Called": "+18002738255",
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
        "FromState": "TX",
        "FromCity": "AUSTIN",
        "FromZip": "78701",
        "FromCountry": "US",
        "ToState": "",
        "ToCountry": "US",
        "StirVerstat": "TN-Validation-Passed-A",
    }


def gather_params(sid: str) -> dict[str, str]:
    return {
        **voice_params(sid),
        "CallStatus": "in-progress",
        "Digits": DIGITS,
        "FinishedOnKey": "",
        "msg": "Gather End",
    }


def status_params(sid: str) -> dict[str, str]:
    return {**voice_params(sid), "CallStatus": "completed", "CallDuration": "95"}


@dataclass(frozen=True)
class SignedPost:
    path: str  # path and query, as sent and as signed
    body: bytes
    signature: str


@dataclass(frozen=True)
class PreparedCall:
    sid: str
    voice: SignedPost
    gather: SignedPost  # for the seq the first answer is expected to give
    status: SignedPost  # the call's end


class CallSupply:
    """Signed requests for one target, prepared before the timed window.

    A request the supply did not foresee (another seq, an exhausted supply) is
    signed on the spot and counted, so a run says when it paid that cost.
    """

    def __init__(self, public_url: str, expected_seq: int = 1) -> None:
        self.public_url = public_url
        self.expected_seq = expected_seq
        self._validator = RequestValidator(AUTH_TOKEN)
        self._ready: deque[PreparedCall] = deque()
        self.signed_on_the_fly = 0

    def sign(self, path: str, params: dict[str, str]) -> SignedPost:
        signature = self._validator.compute_signature(self.public_url + path, params)
        return SignedPost(path, urlencode(params).encode(), signature)

    def gather(self, sid: str, seq: int) -> SignedPost:
        return self.sign(f"/twilio/gather?seq={seq}", gather_params(sid))

    def _make(self) -> PreparedCall:
        sid = "CA" + uuid.uuid4().hex
        return PreparedCall(
            sid, self.sign("/twilio/voice", voice_params(sid)), self.gather(sid, self.expected_seq),
            self.sign("/twilio/status", status_params(sid)),
        )

    def prepare(self, calls: int) -> None:
        while len(self._ready) < calls:
            self._ready.append(self._make())

    def next(self) -> PreparedCall:
        if self._ready:
            return self._ready.popleft()
        self.signed_on_the_fly += 1
        return self._make()


# Checking the answers -----------------------------------------------------------


class BadAnswer(Exception):
    pass


def parse_response(status: int, content_type: str, body: bytes) -> ET.Element:
    if status != 200:
        raise BadAnswer(f"HTTP {status}")
    if content_type != "text/xml":
        raise BadAnswer(f"content type {content_type!r}")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise BadAnswer(f"not XML: {exc}") from None
    if root.tag != "Response":
        raise BadAnswer(f"root element <{root.tag}>")
    return root


def gather_seq(root: ET.Element) -> int:
    """The seq of the menu callback, from the <Gather action> of the first answer."""
    gather = root.find("Gather")
    if gather is None:
        raise BadAnswer("voice answer without <Gather>")
    action = urlsplit(gather.get("action", ""))
    if action.path != "/twilio/gather":
        raise BadAnswer(f"unexpected Gather action {gather.get('action')!r}")
    try:
        return int(parse_qs(action.query)["seq"][0])
    except (KeyError, ValueError):
        raise BadAnswer(f"Gather action without seq: {gather.get('action')!r}") from None


def check_transfer(root: ET.Element) -> bool:
    """The menu answer must start the transfer; the fail-safe <Dial> has no action URL."""
    dial = root.find("Dial")
    if dial is None:
        raise BadAnswer("menu answer without <Dial>")
    if "/twilio/dial" not in dial.get("action", ""):
        raise BadAnswer("menu answer is the fail-safe (Dial without action)")
    return True


T = TypeVar("T")
# (status, content type, body) -> what the caller needs from it; raises BadAnswer.
Check = Callable[[int, str, bytes], T]


def twiml(then: Callable[[ET.Element], T]) -> Check[T]:
    def check(status: int, content_type: str, body: bytes) -> T:
        return then(parse_response(status, content_type, body))

    return check


def no_content(status: int, content_type: str, body: bytes) -> bool:
    if status not in (200, 204):
        raise BadAnswer(f"HTTP {status}")
    return True


# Running callers ---------------------------------------------------------------


@dataclass
class Target:
    name: str
    base_url: str  # where to connect; also the public URL the servers sign against
    pid: int
    supply: CallSupply
    database: str | None = None  # its own database in the benchmark's PostgreSQL


@dataclass
class Phase:
    """What one target did under one load."""

    target: str
    load: str
    round: int = 0  # which turn of the targets the window was measured in
    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(
        default_factory=lambda: {name: [] for name in ENDPOINTS}
    )
    errors: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    # Throughput counts requests answered inside the window; latencies include
    # the few answered after it, so the slowest requests are never left out.
    completed: Counter[str] = field(default_factory=Counter)
    signed_in_window: int = 0  # calls the prepared supply did not cover
    server_cpu: float = 0.0
    postgres_cpu: float = 0.0
    client_cpu: float = 0.0
    machine_cpu: float = 0.0  # every process on the machine, other people's included
    load_average: float = math.nan  # the machine's, over 1 minute, at the window's end

    def absorb(self, other: Phase) -> None:
        """Add another window of the same target and load to this one."""
        self.seconds += other.seconds
        for endpoint, values in other.latencies.items():
            self.latencies[endpoint] += values
        self.errors += other.errors
        for key, example in other.examples.items():
            self.examples.setdefault(key, example)
        self.completed += other.completed
        self.signed_in_window += other.signed_in_window
        self.server_cpu += other.server_cpu
        self.postgres_cpu += other.postgres_cpu
        self.client_cpu += other.client_cpu
        self.machine_cpu += other.machine_cpu

    def error(self, endpoint: str, reason: str, body: bytes = b"") -> None:
        key = f"{endpoint}: {reason}"
        self.errors[key] += 1
        self.examples.setdefault(key, body[:300].decode(errors="replace"))

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def rps_of(self, endpoint: str | None = None) -> float:
        done = self.completed[endpoint] if endpoint else self.completed.total()
        return done / self.seconds if self.seconds else math.nan

    @property
    def rps(self) -> float:
        return self.rps_of()

    def all_latencies(self) -> list[float]:
        return [x for values in self.latencies.values() for x in values]


class Run:
    """One load on one target: callers share a session and stop at the deadline."""

    def __init__(self, session: aiohttp.ClientSession, target: Target, phase: Phase,
                 deadline: float, interval: float | None, hangup: bool) -> None:
        self.session = session
        self.hangup = hangup
        self.target = target
        self.phase = phase
        self.deadline = deadline
        self.interval = interval

    async def post(self, endpoint: str, req: SignedPost, check: Check[T]) -> T | None:
        """Send one signed webhook; None when it failed (the error is counted)."""
        headers = {"X-Twilio-Signature": req.signature, "Content-Type": FORM}
        start = time.perf_counter()
        try:
            async with self.session.post(self.target.base_url + req.path, data=req.body,
                                         headers=headers, timeout=REQUEST_TIMEOUT) as resp:
                body = await resp.read()
                status, content_type = resp.status, resp.content_type
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.phase.error(endpoint, type(exc).__name__, str(exc).encode())
            return None
        end = time.perf_counter()
        try:
            result = check(status, content_type, body)
        except BadAnswer as exc:
            self.phase.error(endpoint, str(exc), body)
            return None
        self.phase.latencies[endpoint].append(end - start)
        if time.monotonic() <= self.deadline:
            self.phase.completed[endpoint] += 1
        return result

    async def pace(self, sent_at: float) -> None:
        """Paced load: wait out the rest of the interval since the last request was sent."""
        if self.interval is not None:
            delay = sent_at + self.interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def caller(self) -> None:
        if self.interval is not None:  # spread the callers over one interval
            await asyncio.sleep(random.uniform(0, self.interval))
        supply = self.target.supply
        while time.monotonic() < self.deadline:
            call = supply.next()
            sent = time.monotonic()
            seq = await self.post("voice", call.voice, twiml(gather_seq))
            await self.pace(sent)
            if seq is None or time.monotonic() >= self.deadline:
                continue
            req = call.gather
            if seq != supply.expected_seq:
                supply.signed_on_the_fly += 1
                req = supply.gather(call.sid, seq)
            sent = time.monotonic()
            answered = await self.post("gather", req, twiml(check_transfer))
            await self.pace(sent)
            if answered and self.hangup and time.monotonic() < self.deadline:
                # Calls end: without this the server would hold thousands of live calls.
                sent = time.monotonic()
                await self.post("status", call.status, no_content)
                await self.pace(sent)


@dataclass(frozen=True)
class Load:
    name: str
    concurrency: int
    seconds: float
    interval: float | None  # None: closed loop
    hangup: bool  # end each call with a status callback


async def run_load(session: aiohttp.ClientSession, target: Target, pg: Postgres, load: Load,
                   turn: int = 0) -> Phase:
    phase = Phase(target.name, load.name, turn)
    signed0 = target.supply.signed_on_the_fly
    cpu0 = (tree_cpu_seconds(target.pid), _pg_cpu(pg), time.process_time(),
            machine_busy_seconds())
    start = time.monotonic()
    run = Run(session, target, phase, start + load.seconds, load.interval, load.hangup)
    await asyncio.gather(*(run.caller() for _ in range(load.concurrency)))
    phase.seconds = load.seconds
    phase.signed_in_window = target.supply.signed_on_the_fly - signed0
    cpu1 = (tree_cpu_seconds(target.pid), _pg_cpu(pg), time.process_time(),
            machine_busy_seconds())
    phase.server_cpu, phase.postgres_cpu, phase.client_cpu, phase.machine_cpu = (
        b - a for a, b in zip(cpu0, cpu1, strict=True)
    )
    phase.load_average = os.getloadavg()[0]
    return phase


def _zero_nan(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def _pg_cpu(pg: Postgres) -> float:
    return tree_cpu_seconds(pg.pid) if pg.pid is not None else math.nan


# The servers ----------------------------------------------------------------------


def server_env(port: int, dsn: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IVR_", "TWILIO_"))}
    env.update(
        IVR_DATABASE_URL=dsn,
        IVR_PUBLIC_URL=f"http://127.0.0.1:{port}",
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        IVR_ADMIN_TOKEN="bench-admin-token",
        IVR_CALLER_HASH_KEY="bench-caller-hash-key",
        IVR_DATA_DIR=str(data_dir),
        IVR_FLOWS_DIR=str(ROOT / "flows"),
        IVR_PROMPTS_DIR=str(ROOT / "prompts"),
        IVR_LOG_LEVEL="WARNING",
    )
    return env


def server_argv(port: int, command: str | None, profile: Path | None) -> list[str]:
    serve = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    if profile is not None:
        return [str(VENV_BIN / "python"), "-m", "cProfile", "-o", str(profile),
                "-m", "ivr.cli", *serve]
    return [*(shlex.split(command) if command else [str(VENV_BIN / "ivr")]), *serve]


async def probe(session: aiohttp.ClientSession, supply: CallSupply, base_url: str,
                ) -> tuple[bytes, bytes, int]:
    """One call on the real server: its two answers (for the baseline) and the menu seq."""

    async def send(endpoint: str, req: SignedPost) -> tuple[bytes, ET.Element]:
        headers = {"X-Twilio-Signature": req.signature, "Content-Type": FORM}
        async with session.post(base_url + req.path, data=req.body, headers=headers) as resp:
            body = await resp.read()
            try:
                return body, parse_response(resp.status, resp.content_type, body)
            except BadAnswer as exc:
                raise ServerFailed(f"first {endpoint} webhook: {exc}: {body[:300]!r}") from None

    call = supply.next()
    voice, root = await send("voice", call.voice)
    try:
        seq = gather_seq(root)
        gather, root = await send("gather", supply.gather(call.sid, seq))
        check_transfer(root)
    except BadAnswer as exc:
        raise ServerFailed(f"first call: {exc}: {ET.tostring(root)[:300]!r}") from None
    return voice, gather, seq


# The bare baseline -------------------------------------------------------------------


def serve_bare(port: int, voice_file: Path, gather_file: Path) -> None:
    """Fixed TwiML, read once: what aiohttp alone costs per webhook."""
    from aiohttp import web

    answers = {"/twilio/voice": voice_file.read_bytes(), "/twilio/gather": gather_file.read_bytes()}

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=answers[request.path], content_type="text/xml",
                            charset="utf-8")

    async def ended(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/twilio/voice", answer)
    app.router.add_post("/twilio/gather", answer)
    app.router.add_post("/twilio/status", ended)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def serve_floor(port: int, dsn: str, voice_file: Path, gather_file: Path) -> None:
    """What a webhook must at least do: the project's own signature middleware
    (the real validator, the form parsed once) and one durable write round trip
    to the same PostgreSQL, keyed by the CallSid; then the real server's bytes.
    It runs with the server's pool and garbage collector settings."""
    import asyncpg
    from aiohttp import web

    from ivr.cli import settle_garbage_collector
    from ivr.storage.database import pool_options
    from ivr.telephony.signature import SignatureChecker, form_of, middleware

    answers = {"/twilio/voice": voice_file.read_bytes(), "/twilio/gather": gather_file.read_bytes()}
    pool_key = web.AppKey("pool", asyncpg.Pool)

    async def write(request: web.Request) -> None:
        # An upsert, so the voice webhook's new CallSid writes a row too.
        await request.app[pool_key].execute(
            f"INSERT INTO {FLOOR_TABLE} (call_sid, seq) VALUES ($1, 1) ON CONFLICT (call_sid)"
            f" DO UPDATE SET seq = {FLOOR_TABLE}.seq + 1, updated_at = now()",
            form_of(request)["CallSid"])

    async def answer(request: web.Request) -> web.Response:
        await write(request)
        return web.Response(body=answers[request.path], content_type="text/xml",
                            charset="utf-8")

    async def ended(request: web.Request) -> web.Response:
        await write(request)
        return web.Response(status=204)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def database(app: web.Application) -> AsyncIterator[None]:
        # The server's pool settings (its size, no reset round trip when a
        # connection goes back, no idle timer), without its jsonb codec.
        app[pool_key] = await asyncpg.create_pool(dsn, **pool_options())
        await app[pool_key].execute(
            f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (call_sid text PRIMARY KEY,"
            " seq integer NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())")
        yield
        await app[pool_key].close()

    checker = SignatureChecker(AUTH_TOKEN, f"http://127.0.0.1:{port}")
    app = web.Application(middlewares=[middleware(checker)])
    app.cleanup_ctx.append(database)
    # The server's garbage collector settings too (ivr serve does the same).
    app.on_startup.append(settle_garbage_collector)
    app.router.add_post("/twilio/voice", answer)
    app.router.add_post("/twilio/gather", answer)
    app.router.add_post("/twilio/status", ended)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# Databases ----------------------------------------------------------------------------


def database_dsn(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


async def create_databases(dsn: str, names: Sequence[str]) -> None:
    """One database per target on the same server: their statistics stay apart."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        for name in names:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@dataclass(frozen=True)
class DbStats:
    transactions: int
    active_ms: float  # time its backends spent executing statements


async def database_stats(dsn: str) -> dict[str, DbStats]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT datname, xact_commit + xact_rollback AS x, active_time FROM pg_stat_database"
            " WHERE datname IS NOT NULL")
    finally:
        await conn.close()
    return {r["datname"]: DbStats(r["x"], r["active_time"]) for r in rows}


# The machine's load ------------------------------------------------------------------


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# Reporting ------------------------------------------------------------------------------

FULL = "full webhook"
BASELINE = "full (baseline)"


def spread(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    """Median of the windows, and their lowest to highest."""
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return "-"
    median = statistics.median(finite)
    if len(finite) == 1:
        return fmt(median)
    return f"{fmt(median)} [{fmt(finite[0])}-{fmt(finite[-1])}]"


def _rps(value: float) -> str:
    return f"{value:.0f}"


def _ms(value: float) -> str:
    return ms(value)


def _pct(value: float) -> str:
    return f"{value:.0%}"


def window_p99(phase: Phase, endpoint: str | None = None) -> float:
    values = phase.latencies[endpoint] if endpoint else phase.all_latencies()
    return summarize(values, phase.seconds).p99


def by_round(windows: Sequence[Phase], target: str, load: str) -> dict[int, Phase]:
    return {w.round: w for w in windows if w.target == target and w.load == load}


def ratios(windows: Sequence[Phase], load: str, target: str, base: str) -> list[float]:
    """target / base throughput, round by round (neighbouring windows)."""
    mine, theirs = by_round(windows, target, load), by_round(windows, base, load)
    return [mine[r].rps / theirs[r].rps for r in mine if r in theirs and theirs[r].rps]


def report(windows: Sequence[Phase], names: Sequence[str], concurrency: int,
           interval: float) -> None:
    pooled: dict[tuple[str, str], Phase] = {}
    for w in windows:
        pooled.setdefault((w.target, w.load), Phase(w.target, w.load)).absorb(w)
    rounds = len({w.round for w in windows})
    for load, title in (
        ("closed", f"closed loop, {concurrency} callers (saturation)"),
        ("paced", f"paced, {concurrency} callers, one request each every "
                  f"{interval * 1000:.0f} ms (offered {concurrency / interval:.0f} req/s)"),
    ):
        rows = []
        for target in names:
            phase = pooled.get((target, load))
            if phase is None:
                continue
            mine = list(by_round(windows, target, load).values())
            vs_bare = spread(ratios(windows, load, target, "bare"), _pct)
            vs_floor = spread(ratios(windows, load, target, "floor"), _pct)
            overall = summarize(phase.all_latencies(), phase.seconds)
            rows.append([target, "all", str(overall.count),
                         spread([w.rps for w in mine], _rps), ms(overall.p50),
                         spread([window_p99(w) for w in mine], _ms), ms(overall.p99),
                         ms(overall.max), vs_bare, vs_floor, str(sum(phase.errors.values()))])
            for endpoint in ENDPOINTS:
                s = summarize(phase.latencies[endpoint], phase.seconds)
                rows.append(["", endpoint, str(s.count),
                             spread([w.rps_of(endpoint) for w in mine], _rps), ms(s.p50),
                             spread([window_p99(w, endpoint) for w in mine], _ms), ms(s.p99),
                             ms(s.max), "", "", ""])
        print(f"\n{title}; req/s, window p99 and ratios: median of {rounds} windows "
              "[lowest-highest]; p50, pooled p99 and max: all windows together")
        print_table(["target", "endpoint", "requests", "req/s", "p50 ms", "window p99 ms",
                     "pooled p99", "max ms", "vs bare", "vs floor", "errors"], rows)

    print("\nCPU per request (ms), and cores busy during the windows: ours (client, server,"
          " PostgreSQL) and other processes on the machine (median [lowest-highest])")
    rows = []
    for (target, load), p in pooled.items():
        n = max(p.requests, 1)
        pg_cpu = _zero_nan(p.postgres_cpu)
        mine = list(by_round(windows, target, load).values())
        # Three decimals: a change worth a few microseconds a request shows.
        rows.append([f"{target} / {load}", f"{p.server_cpu / n * 1000:.3f}",
                     "-" if math.isnan(p.postgres_cpu) else f"{pg_cpu / n * 1000:.3f}",
                     f"{p.client_cpu / n * 1000:.3f}",
                     spread([_ours(w) / w.seconds for w in mine], lambda v: f"{v:.2f}"),
                     spread([_others(w) / w.seconds for w in mine], lambda v: f"{v:.2f}")])
    print_table(["window", "server", "postgres", "client", "ours", "others"], rows)


def _ours(p: Phase) -> float:
    return p.server_cpu + p.client_cpu + _zero_nan(p.postgres_cpu)


def _others(p: Phase) -> float:
    return max(0.0, p.machine_cpu - _ours(p))


def database_per_request(windows: Sequence[Phase], targets: Sequence[Target],
                         before: dict[str, DbStats], after: dict[str, DbStats],
                         ) -> dict[str, tuple[float, float]]:
    """{target: (transactions, active ms)} per request over all measured windows."""
    found = {}
    for target in targets:
        if target.database is None or target.database not in after:
            continue
        a, b = before.get(target.database, DbStats(0, 0.0)), after[target.database]
        n = sum(w.requests for w in windows if w.target == target.name) or 1
        found[target.name] = ((b.transactions - a.transactions) / n,
                              (b.active_ms - a.active_ms) / n)
    return found


def report_database(windows: Sequence[Phase], targets: Sequence[Target],
                    before: dict[str, DbStats], after: dict[str, DbStats],
                    seconds: float) -> None:
    """Per request, what each target's own database did over all measured windows."""
    rows = [[name, f"{tx:.2f}", f"{active:.3f}"] for name, (tx, active)
            in database_per_request(windows, targets, before, after).items()]
    print(f"\nPostgreSQL per request, all measured windows ({seconds:.0f} s with the settling;"
          " the full server's dispatcher ticks included): transactions, and ms its backends"
          " spent executing statements")
    print_table(["target", "transactions", "active ms"], rows)


def report_markdown(windows: Sequence[Phase], names: Sequence[str],
                    database: dict[str, tuple[float, float]], interval: float) -> None:
    """The run in one README-ready table: throughput (closed loop) and its ratios,
    the paced p99 per endpoint, CPU and transactions per request, the load."""
    rounds = len({w.round for w in windows})
    paced_rps = statistics.median(w.rps for w in windows if w.load == "paced")
    print(f"\nSummary (markdown): medians of {rounds} windows per target and load, "
          "[lowest-highest]\n")
    headers = ["target", "req/s (closed)", "vs floor", "vs bare",
               *(f"p99 paced {e or 'all'} ms" for e in (None, *ENDPOINTS)),
               "CPU ms/req server", "CPU ms/req PostgreSQL", "transactions/req",
               "load avg", "others' cores"]
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|")
    for target in names:
        closed = list(by_round(windows, target, "closed").values())
        paced = list(by_round(windows, target, "paced").values())
        if not closed:
            continue
        both = [*closed, *paced]
        requests = sum(w.requests for w in closed) or 1
        server = sum(w.server_cpu for w in closed) / requests * 1000
        pg = sum(_zero_nan(w.postgres_cpu) for w in closed) / requests * 1000
        tx = database.get(target)
        cells = [
            target, spread([w.rps for w in closed], _rps),
            spread(ratios(windows, "closed", target, "floor"), _pct),
            spread(ratios(windows, "closed", target, "bare"), _pct),
            *(spread([window_p99(w, e) for w in paced], _ms) if paced else "-"
              for e in (None, *ENDPOINTS)),
            f"{server:.3f}",
            "-" if all(math.isnan(w.postgres_cpu) for w in closed) else f"{pg:.3f}",
            "-" if tx is None else f"{tx[0]:.2f}",
            spread([w.load_average for w in both], lambda v: f"{v:.1f}"),
            spread([_others(w) / w.seconds for w in both], lambda v: f"{v:.1f}"),
        ]
        print("| " + " | ".join(cells) + " |")
    print(f"\n{os.cpu_count()} cores shared by the client, the servers and PostgreSQL; paced: "
          f"one request per caller every {interval * 1000:.0f} ms ({paced_rps:.0f} req/s); "
          "CPU per request over the closed-loop windows; transactions per request over all "
          "windows (the full server's dispatcher included); load avg: the 1-minute load "
          "average at the end of each window; others' cores: CPU other processes used "
          "meanwhile.")


def report_errors(phases: Sequence[Phase]) -> int:
    total = 0
    for p in phases:
        for key, count in p.errors.most_common():
            total += count
            print(f"ERROR {p.target} / {p.load}: {key} x{count}\n    e.g. {p.examples[key]!r}")
    return total


def report_targets(windows: Sequence[Phase]) -> None:
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for base, goal in (("bare", TARGET_RPS_RATIO), ("floor", TARGET_FLOOR_RATIO)):
        found = ratios(windows, "closed", FULL, base)
        if found:
            ratio = statistics.median(found)
            print(f"\ntarget throughput >= {goal:.0%} of {base}: {verdict(ratio >= goal)} "
                  f"(median {ratio:.0%}, windows {min(found):.0%}-{max(found):.0%})")
    for load in ("closed", "paced"):
        mine = list(by_round(windows, FULL, load).values())
        for endpoint in (None, *ENDPOINTS):
            p99 = statistics.median(window_p99(w, endpoint) for w in mine)
            print(f"target p99 < {TARGET_P99 * 1000:.0f} ms, {load}, {endpoint or 'all'}: "
                  f"{verdict(p99 < TARGET_P99)} (median of windows {ms(p99)} ms)")
    print("(closed loop: latency is concurrency / throughput by Little's law, so its p99"
          " measures saturation; the paced p99 is what a caller hears)")


# Main ------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> int:
    cores = os.cpu_count() or 1
    print(f"client, servers and PostgreSQL share this machine's {cores} cores; "
          f"{args.concurrency} callers, {args.rounds} windows of {args.duration:.0f} s per "
          f"target and load; load average at the start: {loadavg()}")
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="ivr-bench-") as tmp, postgres(args.database_url) as pg:
        work = Path(tmp)
        try:
            return await _bench(args, pg, work, children)
        except ServerFailed as exc:
            print(f"ERROR {exc}")
            return 1
        finally:
            for child in children:
                child.stop()
            if args.profile_server is not None and args.profile_server.exists():
                print(f"server profile written to {args.profile_server}")


async def _start_full(name: str, command: str | None, pg: Postgres, database: str, work: Path,
                      profile: Path | None, children: list[Child]) -> tuple[str, Child]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    child = start_child(name.replace(" ", "-").strip("()"), server_argv(port, command, profile),
                        server_env(port, database_dsn(pg.dsn, database), work / database), work)
    children.append(child)
    await wait_http(url + "/healthz", child)
    return url, child


async def _bench(args: argparse.Namespace, pg: Postgres, work: Path, children: list[Child],
                 ) -> int:
    databases = ["bench_full", "bench_floor"]
    if args.baseline_server_command:
        databases.append("bench_baseline")
    await create_databases(pg.dsn, databases)
    full_url, full = await _start_full("ivr-serve", args.server_command, pg, "bench_full", work,
                                       args.profile_server, children)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        full_supply = CallSupply(full_url)
        voice_twiml, gather_twiml, seq = await probe(session, full_supply, full_url)
        full_supply.expected_seq = seq
        (work / "voice.xml").write_bytes(voice_twiml)
        (work / "gather.xml").write_bytes(gather_twiml)
        print(f"real answers: voice {len(voice_twiml)} bytes, menu {len(gather_twiml)} bytes; "
              "the bare and floor servers answer the same bytes")
        answers = ["--voice-file", str(work / "voice.xml"), "--gather-file",
                   str(work / "gather.xml")]
        bare_port, floor_port = free_port(), free_port()
        bare_url, floor_url = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{floor_port}"
        bare = start_child("bare", [sys.executable, THIS_FILE, "--bare", "--port",
                                    str(bare_port), *answers], os.environ, work)
        children.append(bare)
        floor = start_child("floor", [sys.executable, THIS_FILE, "--floor", "--port",
                                      str(floor_port), "--floor-dsn",
                                      database_dsn(pg.dsn, "bench_floor"), *answers],
                            {**os.environ, "PYTHONPATH": str(ROOT)}, work)
        children.append(floor)
        await wait_http(bare_url + "/healthz", bare)
        await wait_http(floor_url + "/healthz", floor)

        targets = [Target("bare", bare_url, bare.pid, CallSupply(bare_url, seq)),
                   Target("floor", floor_url, floor.pid, CallSupply(floor_url, seq),
                          "bench_floor"),
                   Target(FULL, full_url, full.pid, full_supply, "bench_full")]
        full_children = [full]
        if args.baseline_server_command:
            base_url, base = await _start_full(BASELINE, args.baseline_server_command, pg,
                                               "bench_baseline", work, None, children)
            full_children.append(base)
            base_supply = CallSupply(base_url)
            await probe(session, base_supply, base_url)
            targets.append(Target(BASELINE, base_url, base.pid, base_supply, "bench_baseline"))
        warm_ups = []
        rates: dict[str, float] = {}
        for target in targets:
            target.supply.prepare(1000)
            warm = await run_load(session, target, pg, Load(
                "warm-up", args.concurrency, args.warmup, None, args.hangup))
            warm_ups.append(warm)  # not measured, but its errors are reported
            rates[target.name] = warm.rps

        await asyncio.sleep(STATS_SETTLE)  # the warm-ups' statistics reach pg_stat_database
        started = time.monotonic()
        stats_before = await database_stats(pg.dsn)
        windows: list[Phase] = []
        interval = math.nan  # set once the closed loop has measured saturation
        for load in ("closed", "paced"):
            if load == "paced":
                interval = (args.interval / 1000 if args.interval else max(
                    MIN_INTERVAL, args.concurrency / (PACED_SHARE * rates[FULL])))
            pace = interval if load == "paced" else None
            for turn in range(args.rounds):
                # Rotate which target goes first: background load drifts either way.
                shift = turn % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    rate = rates[target.name] * 2 if pace is None else args.concurrency / pace
                    window = Load(load, args.concurrency, args.duration, pace, args.hangup)
                    target.supply.prepare(_calls_needed(rate * 1.2, window.seconds))
                    windows.append(await run_load(session, target, pg, window, turn))
            for target in targets:
                mine = [w.rps for w in windows if w.target == target.name and w.load == load]
                print(f"  {target.name}, {load}: {spread(mine, _rps)} req/s "
                      f"(load average {loadavg()})")
                if load == "closed":
                    rates[target.name] = statistics.median(mine)
        await asyncio.sleep(STATS_SETTLE)
        stats_after = await database_stats(pg.dsn)
        if args.concurrency / interval > 0.7 * rates[FULL]:  # only with --interval
            print(f"warning: the paced load ({args.concurrency / interval:.0f} req/s) is over 70%"
                  " of the full webhook's saturation: its latencies include queueing")

    print(f"\nload average at the end: {loadavg()}")
    report(windows, [t.name for t in targets], args.concurrency, interval)
    report_database(windows, targets, stats_before, stats_after, time.monotonic() - started)
    report_targets(windows)
    for p in windows:
        if p.signed_in_window:
            print(f"note: {p.target} / {p.load} window {p.round + 1}: {p.signed_in_window} calls"
                  " signed inside the window (the prepared supply ran out)")
    others = sum(_others(p) for p in windows) / sum(p.seconds for p in windows)
    if others > NOISY_OTHERS:
        print(f"warning: other processes kept {others:.1f} cores busy on average during the "
              "measurements: the figures are lower and noisier than on a quiet machine")
    errors = report_errors([*warm_ups, *windows])
    for child in full_children:
        errors += report_server_log(child)
    for child in children:
        if child.proc.poll() is not None:
            print(f"ERROR {child.name} exited with {child.proc.returncode}:\n{child.tail()}")
            errors += 1
    report_markdown(windows, [t.name for t in targets],
                    database_per_request(windows, targets, stats_before, stats_after), interval)
    print(f"errors: {errors}")
    return 1 if errors else 0


def _calls_needed(rps: float, seconds: float) -> int:
    # Two requests per call, a floor for the first windows, a cap on memory.
    return min(200_000, max(2000, math.ceil(rps * seconds / 2) + 500))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0,
                        help="seconds of each measured window (default 4)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="windows per target and load, the targets taking turns, so that"
                             " all see about the same background load (default 3)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of unmeasured load on each target first (default 2)")
    parser.add_argument("--concurrency", type=int, default=50, help="simulated callers")
    parser.add_argument("--interval", type=float, default=None,
                        help="paced load: ms between two requests of a caller (default: 100,"
                             " or more to keep the offered load at half the full webhook's"
                             " measured saturation)")
    parser.add_argument("--no-hangup", dest="hangup", action="store_false",
                        help="do not end calls with a status callback (calls then pile up "
                             "in the server's database as live calls)")
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL to use (default: an embedded one in a temp dir)")
    parser.add_argument("--profile-server", type=Path, default=None,
                        help="run the server under cProfile and write its stats here "
                             "(slows it down: figures are then not representative)")
    parser.add_argument("--server-command", default=None,
                        help="command that runs the `ivr` CLI, `serve ...` appended "
                             "(default: .venv/bin/ivr), e.g. to run it under a profiler")
    parser.add_argument("--baseline-server-command", default=None,
                        help="a second full webhook, measured in the same run: the command"
                             " that runs its `ivr` CLI (e.g. 'env PYTHONPATH=../main"
                             " .venv/bin/ivr' for a checkout before a change)")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--voice-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--gather-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor-dsn", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare:
        serve_bare(args.port, args.voice_file, args.gather_file)
        return 0
    if args.floor:
        serve_floor(args.port, args.floor_dsn, args.voice_file, args.gather_file)
        return 0
    if min(args.concurrency, args.rounds) < 1 or min(args.duration, args.interval or 1) <= 0:
        parser.error("--concurrency, --rounds, --duration and --interval must be positive")
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
