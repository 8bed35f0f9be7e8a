"""Webhook benchmark: simulated callers against `ivr serve` and a bare aiohttp baseline.

    .venv/bin/python bench/webhooks.py [--duration S] [--concurrency N] [--interval MS]

Each simulated caller repeatedly makes one call the way Twilio would: a
signed POST /twilio/voice with a new CallSid, then the menu callback (a
signed POST to the Gather action URL of the first answer, Digits=2). The
same client, in the same run, drives two servers, each in its own process:

- full webhook: the real `ivr serve` on an embedded PostgreSQL;
- bare: an aiohttp handler that answers the very TwiML bytes the real server
  gave for the same requests, with no signature check, flow or database.

Two loads are measured for each: a closed loop (every caller sends its next
request as soon as the previous answer arrives: saturation throughput), and
a paced load (each caller sends one request every --interval ms, well below
saturation: the latency a real caller, seconds between webhooks, sees).

The client runs on the same cores as the servers and PostgreSQL; the CPU
table says how the cores were shared. `--bare` runs the baseline server
itself (used by the benchmark, not by hand).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shlex
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
from twilio.request_validator import RequestValidator

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    ROOT,
    VENV_BIN,
    Child,
    Postgres,
    free_port,
    machine_busy_seconds,
    ms,
    postgres,
    print_table,
    start_child,
    summarize,
    tree_cpu_seconds,
    wait_http,
)

AUTH_TOKEN = "bench-auth-token-0123456789"
THIS_FILE = str(Path(__file__).resolve())
FORM = "application/x-www-form-urlencoded"
ENDPOINTS = ("voice", "gather")
DIGITS = "2"  # "Para español": a language switch, then the transfer's first <Dial>
TARGET_RPS_RATIO = 0.30
TARGET_P99 = 0.020
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)


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
            sid, self.sign("/twilio/voice", voice_params(sid)), self.gather(sid, self.expected_seq)
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


def check_transfer(root: ET.Element) -> None:
    """The menu answer must start the transfer; the fail-safe <Dial> has no action URL."""
    dial = root.find("Dial")
    if dial is None:
        raise BadAnswer("menu answer without <Dial>")
    if "/twilio/dial" not in dial.get("action", ""):
        raise BadAnswer("menu answer is the fail-safe (Dial without action)")


# Running callers ---------------------------------------------------------------


@dataclass
class Target:
    name: str
    base_url: str  # where to connect; also the public URL the servers sign against
    pid: int
    supply: CallSupply


@dataclass
class Phase:
    """What one target did under one load."""

    target: str
    load: str
    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(
        default_factory=lambda: {name: [] for name in ENDPOINTS}
    )
    errors: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    late: int = 0  # requests that ended after the window: not counted
    signed_in_window: int = 0  # calls the prepared supply did not cover
    server_cpu: float = 0.0
    postgres_cpu: float = 0.0
    client_cpu: float = 0.0
    machine_cpu: float = 0.0  # every process on the machine, other people's included

    def error(self, endpoint: str, reason: str, body: bytes = b"") -> None:
        key = f"{endpoint}: {reason}"
        self.errors[key] += 1
        self.examples.setdefault(key, body[:300].decode(errors="replace"))

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else math.nan


class Run:
    """One load on one target: callers share a session and stop at the deadline."""

    def __init__(self, session: aiohttp.ClientSession, target: Target, phase: Phase,
                 deadline: float, interval: float | None) -> None:
        self.session = session
        self.target = target
        self.phase = phase
        self.deadline = deadline
        self.interval = interval

    async def post(self, endpoint: str, req: SignedPost) -> ET.Element | None:
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
            root = parse_response(status, content_type, body)
        except BadAnswer as exc:
            self.phase.error(endpoint, str(exc), body)
            return None
        if time.monotonic() <= self.deadline:
            self.phase.latencies[endpoint].append(end - start)
        else:
            self.phase.late += 1
        return root

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
            root = await self.post("voice", call.voice)
            await self.pace(sent)
            if root is None or time.monotonic() >= self.deadline:
                continue
            try:
                seq = gather_seq(root)
            except BadAnswer as exc:
                self.phase.error("voice", str(exc), ET.tostring(root))
                continue
            req = call.gather
            if seq != supply.expected_seq:
                supply.signed_on_the_fly += 1
                req = supply.gather(call.sid, seq)
            sent = time.monotonic()
            root = await self.post("gather", req)
            if root is not None:
                try:
                    check_transfer(root)
                except BadAnswer as exc:
                    self.phase.error("gather", str(exc), ET.tostring(root))
            await self.pace(sent)


async def run_load(session: aiohttp.ClientSession, target: Target, pg: Postgres, load: str,
                   concurrency: int, seconds: float, interval: float | None) -> Phase:
    phase = Phase(target.name, load)
    signed0 = target.supply.signed_on_the_fly
    cpu0 = (tree_cpu_seconds(target.pid), _pg_cpu(pg), time.process_time(),
            machine_busy_seconds())
    start = time.monotonic()
    run = Run(session, target, phase, start + seconds, interval)
    await asyncio.gather(*(run.caller() for _ in range(concurrency)))
    phase.seconds = seconds
    phase.signed_in_window = target.supply.signed_on_the_fly - signed0
    cpu1 = (tree_cpu_seconds(target.pid), _pg_cpu(pg), time.process_time(),
            machine_busy_seconds())
    phase.server_cpu, phase.postgres_cpu, phase.client_cpu, phase.machine_cpu = (
        b - a for a, b in zip(cpu0, cpu1, strict=True)
    )
    return phase


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
    call = supply.next()
    answers = []
    req = call.voice
    for endpoint in ENDPOINTS:
        async with session.post(base_url + req.path, data=req.body, headers={
                "X-Twilio-Signature": req.signature, "Content-Type": FORM}) as resp:
            body = await resp.read()
            root = parse_response(resp.status, resp.content_type, body)
        answers.append(body)
        if endpoint == "voice":
            seq = gather_seq(root)
            req = supply.gather(call.sid, seq)
        else:
            check_transfer(root)
    return answers[0], answers[1], seq


# The bare baseline -------------------------------------------------------------------


def serve_bare(port: int, voice_file: Path, gather_file: Path) -> None:
    """Fixed TwiML, read once: what aiohttp alone costs per webhook."""
    from aiohttp import web

    answers = {"/twilio/voice": voice_file.read_bytes(), "/twilio/gather": gather_file.read_bytes()}

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=answers[request.path], content_type="text/xml",
                            charset="utf-8")

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/twilio/voice", answer)
    app.router.add_post("/twilio/gather", answer)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# Reporting ------------------------------------------------------------------------------


def report(phases: Sequence[Phase], concurrency: int, interval: float) -> None:
    by_key = {(p.target, p.load): p for p in phases}
    for load, title in (
        ("closed", f"closed loop, {concurrency} callers (saturation)"),
        ("paced", f"paced, {concurrency} callers, one request each every "
                  f"{interval * 1000:.0f} ms (offered {concurrency / interval:.0f} req/s)"),
    ):
        bare = by_key.get(("bare", load))
        rows = []
        for target in ("bare", "full webhook"):
            phase = by_key.get((target, load))
            if phase is None:
                continue
            ratio = f"{phase.rps / bare.rps:.0%}" if bare and bare.rps else "-"
            overall = summarize([x for v in phase.latencies.values() for x in v], phase.seconds)
            rows.append([target, "all", str(overall.count), f"{overall.rps:.0f}",
                         ms(overall.p50), ms(overall.p99), ms(overall.max), ratio,
                         str(sum(phase.errors.values()))])
            for endpoint in ENDPOINTS:
                s = summarize(phase.latencies[endpoint], phase.seconds)
                rows.append(["", endpoint, str(s.count), f"{s.rps:.0f}", ms(s.p50),
                             ms(s.p99), ms(s.max), "", ""])
        print(f"\n{title}")
        print_table(["target", "endpoint", "requests", "rps", "p50 ms", "p99 ms", "max ms",
                     "vs bare", "errors"], rows)

    print("\nCPU per request (ms), and cores busy during each window: ours (client, server,"
          " PostgreSQL) and other processes on the machine")
    rows = []
    for p in phases:
        n = max(p.requests, 1)
        pg_cpu = 0.0 if math.isnan(p.postgres_cpu) else p.postgres_cpu
        ours = p.server_cpu + p.client_cpu + pg_cpu
        rows.append([f"{p.target} / {p.load}", f"{p.server_cpu / n * 1000:.2f}",
                     "-" if math.isnan(p.postgres_cpu) else f"{pg_cpu / n * 1000:.2f}",
                     f"{p.client_cpu / n * 1000:.2f}", f"{ours / p.seconds:.2f}",
                     f"{max(0.0, p.machine_cpu - ours) / p.seconds:.2f}"])
    print_table(["window", "server", "postgres", "client", "ours", "others"], rows)


def report_errors(phases: Sequence[Phase]) -> int:
    total = 0
    for p in phases:
        for key, count in p.errors.most_common():
            total += count
            print(f"ERROR {p.target} / {p.load}: {key} x{count}\n    e.g. {p.examples[key]!r}")
    return total


def report_targets(phases: Sequence[Phase]) -> None:
    by_key = {(p.target, p.load): p for p in phases}
    bare, full = by_key[("bare", "closed")], by_key[("full webhook", "closed")]
    ratio = full.rps / bare.rps
    verdict = "met" if ratio >= TARGET_RPS_RATIO else "NOT met"
    print(f"\ntarget throughput >= {TARGET_RPS_RATIO:.0%} of bare: {verdict} ({ratio:.0%})")
    for load in ("closed", "paced"):
        phase = by_key[("full webhook", load)]
        p99 = summarize([x for v in phase.latencies.values() for x in v], 1).p99
        verdict = "met" if p99 < TARGET_P99 else "NOT met"
        print(f"target p99 < {TARGET_P99 * 1000:.0f} ms, {load}: {verdict} ({ms(p99)} ms)")
    print("(closed loop: latency is concurrency / throughput by Little's law, so its p99"
          " measures saturation; the paced p99 is what a caller hears)")


# Main ------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> int:
    cores = os.cpu_count() or 1
    print(f"client, servers and PostgreSQL share this machine's {cores} cores; "
          f"{args.concurrency} callers, {args.duration:.0f} s per window")
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="ivr-bench-") as tmp, postgres(args.database_url) as pg:
        work = Path(tmp)
        try:
            return await _bench(args, pg, work, children)
        finally:
            for child in children:
                child.stop()
            if args.profile_server is not None and args.profile_server.exists():
                print(f"server profile written to {args.profile_server}")


async def _bench(args: argparse.Namespace, pg: Postgres, work: Path, children: list[Child],
                 ) -> int:
    full_port, bare_port = free_port(), free_port()
    full_url, bare_url = f"http://127.0.0.1:{full_port}", f"http://127.0.0.1:{bare_port}"
    full = start_child("ivr-serve", server_argv(full_port, args.server_command,
                                                   args.profile_server),
                       server_env(full_port, pg.dsn, work / "data"), work)
    children.append(full)
    await wait_http(full_url + "/healthz", full)

    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        full_supply = CallSupply(full_url)
        voice_twiml, gather_twiml, seq = await probe(session, full_supply, full_url)
        full_supply.expected_seq = seq
        (work / "voice.xml").write_bytes(voice_twiml)
        (work / "gather.xml").write_bytes(gather_twiml)
        print(f"real answers: voice {len(voice_twiml)} bytes, menu {len(gather_twiml)} bytes; "
              "the bare server answers the same bytes")
        bare = start_child("bare", [sys.executable, THIS_FILE, "--bare",
                                    "--port", str(bare_port), "--voice-file",
                                    str(work / "voice.xml"), "--gather-file",
                                    str(work / "gather.xml")], os.environ, work)
        children.append(bare)
        await wait_http(bare_url + "/healthz", bare)

        targets = [Target("bare", bare_url, bare.pid, CallSupply(bare_url, seq)),
                   Target("full webhook", full_url, full.pid, full_supply)]
        phases: list[Phase] = []
        rates: dict[str, float] = {}
        for target in targets:
            target.supply.prepare(1000)
            warm = await run_load(session, target, pg, "warm-up", args.concurrency,
                                  args.warmup, None)
            rates[target.name] = warm.rps
            target.supply.prepare(_calls_needed(warm.rps * 2, args.duration))
            phase = await run_load(session, target, pg, "closed", args.concurrency,
                                   args.duration, None)
            phases += [warm, phase]  # errors in the warm-up are reported too
            rates[target.name] = phase.rps
            print(f"  {target.name}, closed loop: {phase.rps:.0f} req/s")

        interval = (args.interval / 1000 if args.interval else
                    args.concurrency / (args.paced_fraction * rates["full webhook"]))
        for target in targets:
            target.supply.prepare(_calls_needed(args.concurrency / interval * 1.2, args.duration))
            phase = await run_load(session, target, pg, "paced", args.concurrency,
                                   args.duration, interval)
            phases.append(phase)
            print(f"  {target.name}, paced: {phase.rps:.0f} req/s")

    measured = [p for p in phases if p.load != "warm-up"]
    report(measured, args.concurrency, interval)
    report_targets(measured)
    for p in measured:
        if p.signed_in_window:
            print(f"note: {p.target} / {p.load}: {p.signed_in_window} calls signed inside the "
                  "window (the prepared supply ran out)")
    errors = report_errors(phases)
    for child in children:
        if child.proc.poll() is not None:
            print(f"ERROR {child.name} exited with {child.proc.returncode}:\n{child.tail()}")
            errors += 1
    print(f"errors: {errors}")
    return 1 if errors else 0


def _calls_needed(rps: float, seconds: float) -> int:
    # Two requests per call, a floor for the first windows, a cap on memory.
    return min(200_000, max(2000, math.ceil(rps * seconds / 2) + 500))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=6.0,
                        help="seconds of each measured window (4 windows; default 6)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of unmeasured load before each closed loop")
    parser.add_argument("--concurrency", type=int, default=50, help="simulated callers")
    parser.add_argument("--interval", type=float, default=None,
                        help="paced load: ms between a caller's requests (default: "
                             "offered load = --paced-fraction of the full webhook's saturation)")
    parser.add_argument("--paced-fraction", type=float, default=0.5,
                        help="paced offered load as a fraction of saturation (default 0.5)")
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL to use (default: an embedded one in a temp dir)")
    parser.add_argument("--profile-server", type=Path, default=None,
                        help="run the server under cProfile and write its stats here "
                             "(slows it down: figures are then not representative)")
    parser.add_argument("--server-command", default=None,
                        help="command that runs the `ivr` CLI, `serve ...` appended "
                             "(default: .venv/bin/ivr), e.g. to run it under a profiler")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--voice-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--gather-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare:
        serve_bare(args.port, args.voice_file, args.gather_file)
        return 0
    if args.concurrency < 1 or args.duration <= 0 or args.paced_fraction <= 0:
        parser.error("--concurrency, --duration and --paced-fraction must be positive")
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
