"""Counselor selection benchmark: the dispatcher's pass under load from two server processes.

    .venv/bin/python bench/routing.py [--duration S] [--callers N] [--counselors N]

An embedded PostgreSQL (or IVR_DATABASE_URL) gets a routing plan of 10
centers and --counselors counselors, and --callers callers holding at
their first tier (a call row with its transfer progress, and its line row)
whose eligible counselors come from `tiers.resolve`, as the server
computes them. Then, for --duration seconds:

- two worker processes, each with its own asyncpg pool and its own
  `Transfers` like two server instances, run the dispatcher's pass
  (`Transfers.dispatch_once`: dispatch.look, the progression, a guarded
  dispatch.ring per counselor rung) every --tick ms, and resolve every
  offer as a counselor would: accept (then talk, wrap up and become
  available again; the caller is replaced by a new one so the line stays
  near --callers), decline, miss or fail (the leg's end fed to the caller's
  progress, as the leg's status callback does, then back a moment later);
- a third process flips the presence of random counselors (available,
  wrap-up, offline) every --tick ms, withdrawing offers that ring them (fed
  to the caller's progress, as the admin API does);
- each worker also times a bare `SELECT 1` on the same pool at the same
  pace: the cost of one database round trip, measured in the same run.

Before the load, the pass's two statements are also timed alone on one
connection (3 and 20 counselors free, each ring rolled back): the look, and
a ring of the first caller it finds; their own cost, without the
scheduling delays of a loaded machine.

Printed: latency of the pass, its look and its rings against the round
trip, the presence changes, what the run did, and how the CPU was shared
(on a 2-core machine other work shows up directly in the figures). Any
error (a deadlock, a broken unique index) is counted, printed, and makes
the exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import asyncpg

if __package__ in (None, ""):  # run as a script: make `bench` and `ivr` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ms, postgres, print_table, summarize, tree_cpu_seconds
from ivr.content import load_content
from ivr.routing.model import Center, Counselor, Line, Queue, RoutingPlan, Tier
from ivr.routing.progress import Progress
from ivr.routing.progression import Availability, advance, begin
from ivr.routing.signals import Blame, CounselorFreed, LegDeclined, LegFailed, LegMissed, Ring
from ivr.routing.states import STATES
from ivr.routing.steps import DialStep, WarmStep
from ivr.routing.tiers import resolve
from ivr.storage import counselors as cs
from ivr.storage import dispatch
from ivr.storage import queue as q
from ivr.storage.database import open_pool
from ivr.telephony.apihealth import ApiHealth
from ivr.telephony.dispatcher import LOOK_LIMIT
from ivr.telephony.rest import TwilioRest
from ivr.telephony.transfer import Transfers
from ivr.telephony.twiml import Renderer

CENTERS = 10
NEED = "veteran"
ROOT = Path(__file__).resolve().parent.parent
NATIONAL = DialStep("national", "National", ("+18005550100",), 30, last=True)
TIER_SECONDS = 3600  # no tier ends during a run: what is measured is the ringing


def build_plan(counselors: int) -> RoutingPlan:
    """A plan covering every state: center i serves every 10th state, backs up a region."""
    states = sorted(STATES)
    regions = {
        f"r{r}": tuple(s for i in (2 * r, 2 * r + 1) for s in states[i::CENTERS])
        for r in range(CENTERS // 2)
    }
    centers: dict[str, Center] = {}
    for i in range(CENTERS):
        cid = f"c{i}"
        bilingual = i % 3 == 0
        languages = ("en", "es") if bilingual else ("en",)
        people = []
        for n in range(i, counselors, CENTERS):
            speaks = ("en", "es") if bilingual and n % 2 else ("en",)
            skills = (NEED,) if n % 5 == 0 else ()
            people.append(Counselor(f"k{n:03d}", f"Counselor {n}", cid,
                                    phone=f"+1512555{n:04d}", languages=speaks, skills=skills))
        centers[cid] = Center(
            cid, f"Center {i}", tuple(states[i::CENTERS]), (f"r{(i // 2 + 1) % 5}",),
            languages, (), tuple(people),
        )
    return RoutingPlan(
        national_backup=Line("national", "National", "+18005550100"),
        centers=MappingProxyType(centers),
        queues=MappingProxyType(
            {"crisis": Queue("crisis", (Tier("local"), Tier("backup"), Tier("national")))}
        ),
        regions=MappingProxyType(regions),
    )


async def new_caller(pool: asyncpg.Pool, plan: RoutingPlan, rng: random.Random) -> None:
    """A caller from a random state holding at their first tier, as the server
    would have them: the call row with its progress, and the line row."""
    state = rng.choice(sorted(STATES))
    language = "es" if rng.random() < 0.2 else "en"
    need = NEED if rng.random() < 0.15 else None
    first = resolve(plan, "crisis", state, language, need)[0]
    eligible = tuple(p.id for p in first.counselors)
    warm = WarmStep(first.kind, first.kind, eligible, TIER_SECONDS, False, (),
                    tuple(first.ranks))
    sid = "CA" + uuid.uuid4().hex
    p, _ = begin((warm, NATIONAL), datetime.now(UTC), Availability(), language=language,
                 queue="crisis", need=need, caller_state=state)
    await pool.execute(
        "INSERT INTO calls (call_sid, flow_id, flow_version, seq, state, phase, transfer)"
        " VALUES ($1, 'bench', '1', 1, '{}'::jsonb, 'transfer', $2)", sid, p.to_json())
    await q.enqueue(pool, sid, "crisis", language, need, state, 0, first.kind, eligible,
                    first.ranks)


def transfers_for(pool: asyncpg.Pool, plan: RoutingPlan) -> Transfers:
    """The server's Transfers, with a REST API nobody calls (legs are resolved here)."""
    content = load_content(ROOT / "flows", ROOT / "prompts")
    rest = TwilioRest("AC" + "0" * 32, "secret", "http://127.0.0.1:9")
    renderer = Renderer("https://ivr.example", content.flows.prompts, "+15125550100")
    return Transfers(pool, plan, renderer, rest, ApiHealth(pool, rest))


async def setup(dsn: str, args: argparse.Namespace) -> None:
    pool = await open_pool(dsn)
    try:
        plan = build_plan(args.counselors)
        await cs.sync_counselors(pool, plan)
        rng = random.Random(1)
        for c in await cs.list_counselors(pool):
            if rng.random() < 0.7:
                await cs.set_presence(pool, c.id, "available")
        for _ in range(args.callers):
            await new_caller(pool, plan, rng)
    finally:
        await pool.close()


async def unloaded(dsn: str, free: int, rounds: int = 200
                   ) -> tuple[list[float], list[float], list[float]]:
    """The pass's look and one ring, and SELECT 1, alone on one connection, the line
    as it was set up.

    All but `free` available counselors are set aside for the while, and each
    ring is rolled back, so every round sees the same line and rings someone.
    """
    conn = await asyncpg.connect(dsn)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                              schema="pg_catalog")
    db = cast(asyncpg.Pool, conn)  # the same statements, on this one connection
    looks: list[float] = []
    rings: list[float] = []
    pings: list[float] = []
    try:
        aside = await conn.fetchval(
            "WITH a AS (UPDATE counselors SET presence = 'wrap-up'"
            " WHERE presence = 'available' AND id NOT IN ("
            "  SELECT id FROM counselors WHERE presence = 'available' ORDER BY id LIMIT $1)"
            " RETURNING id) SELECT array_agg(id) FROM a",
            free,
        )
        for n in range(rounds + 20):  # the first 20 warm the plans up
            tr = conn.transaction()
            await tr.start()
            now = datetime.now(UTC)
            t0 = time.perf_counter()
            line = await dispatch.look(db, False, LOOK_LIMIT)
            looked = time.perf_counter() - t0
            made = None
            for caller in line.callers:
                p = Progress.from_json(caller.transfer)
                got, actions = advance(p, CounselorFreed(), now, Availability(free=line.free))
                if actions and isinstance(actions[0], Ring):
                    t0 = time.perf_counter()
                    made = await dispatch.ring(db, caller.call_sid, actions[0].counselor,
                                               actions[0].offer, caller.transfer, got.to_json())
                    rang = time.perf_counter() - t0
                    break
            await tr.rollback()
            t0 = time.perf_counter()
            await conn.fetchval("SELECT 1")
            ping = time.perf_counter() - t0
            if n >= 20:
                assert made is not None, "the unloaded pass rang nobody"
                looks.append(looked)
                rings.append(rang)
                pings.append(ping)
        # idle_since was left alone: they are back in the same order.
        await conn.execute(
            "UPDATE counselors SET presence = 'available' WHERE id = ANY ($1::text[])", aside
        )
    finally:
        await conn.close()
    return looks, rings, pings


# --- the two server-like workers ---------------------------------------------------


@dataclass
class Measures:
    passes: list[float] = field(default_factory=list)
    passes_with_offers: list[float] = field(default_factory=list)
    looks: list[float] = field(default_factory=list)
    rings: list[float] = field(default_factory=list)
    pings: list[float] = field(default_factory=list)
    presence: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[int]] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # this process, over the measured window
    errors: Counter[str] = field(default_factory=Counter)


def worker(dsn: str, index: int, start_at: float, args: argparse.Namespace,
           out: mp.Queue[Measures]) -> None:
    out.put(asyncio.run(_worker(dsn, index, start_at, args)))


async def _worker(dsn: str, index: int, start_at: float, args: argparse.Namespace) -> Measures:
    plan = build_plan(args.counselors)
    rng = random.Random(100 + index)
    m = Measures()
    pool = await open_pool(dsn, min_size=8, max_size=8)
    transfers = transfers_for(pool, plan)
    tick = args.tick / 1000
    tasks: set[asyncio.Task[None]] = set()
    look, ring, ring_all = dispatch.look, dispatch.ring, dispatch.ring_all

    async def timed_look(*a: Any) -> dispatch.Line:
        t0 = time.perf_counter()
        try:
            return await look(*a)
        finally:
            m.looks.append(time.perf_counter() - t0)

    async def timed_ring(*a: Any) -> q.Offer | None:
        t0 = time.perf_counter()
        try:
            return await ring(*a)
        finally:
            m.rings.append(time.perf_counter() - t0)

    async def timed_ring_all(*a: Any) -> list[q.Offer]:
        t0 = time.perf_counter()
        try:
            return await ring_all(*a)
        finally:
            if a[1]:  # a statement was sent
                m.rings.append(time.perf_counter() - t0)

    # The pass's statements, timed where the pass calls them.
    dispatch.look, dispatch.ring = timed_look, timed_ring  # type: ignore[assignment]
    dispatch.ring_all = timed_ring_all  # type: ignore[assignment]
    made: list[q.Offer] = []

    async def claimed(offers: Sequence[q.Offer]) -> None:
        made.extend(offers)

    transfers.claimed = claimed  # the bench's counselors answer, not a timer worker
    try:
        for _ in range(20):  # prepare the statements on every connection before measuring
            await asyncio.gather(*(pool.fetchval("SELECT 1") for _ in range(8)))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        end = time.monotonic() + args.duration
        cpu0 = time.process_time()

        async def resolve_offer(offer: q.Offer) -> None:
            try:
                await asyncio.sleep(rng.uniform(0.1, 0.5))  # ringing
                roll = rng.random()
                number = offer.number or 0
                if roll < 0.7:
                    if not await q.offer_accepted(pool, offer.id):
                        m.outcomes["withdrawn"] += 1
                        return
                    m.outcomes["accepted"] += 1
                    await new_caller(pool, plan, rng)  # keep the line full
                    await asyncio.sleep(rng.uniform(0.5, 2.0))  # talking
                    await cs.call_ended_for_counselor(pool, offer.counselor_id, offer.call_sid)
                else:
                    state = "declined" if roll < 0.85 else "missed" if roll < 0.95 else "failed"
                    event = (LegDeclined(number) if state == "declined"
                             else LegMissed(number) if state == "missed"
                             else LegFailed(number, Blame.COUNSELOR))
                    if not await q.offer_missed(pool, offer.id, state):  # type: ignore[arg-type]
                        m.outcomes["withdrawn"] += 1
                        return
                    m.outcomes[state] += 1
                    # As the leg's status callback: the caller's progress moves on.
                    await transfers.leg_event(offer.call_sid, event)
                    if state == "declined":
                        return
                await asyncio.sleep(0.3)  # wrap-up, or back at the desk
                # Refused when offered again meanwhile (the flipper made them available).
                with contextlib.suppress(cs.PresenceConflict):
                    await cs.set_presence(pool, offer.counselor_id, "available")
            except Exception as exc:  # counted and reported, never silent
                m.errors[type(exc).__name__] += 1

        async def dispatcher() -> None:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                try:
                    await transfers.dispatch_once()
                except Exception as exc:
                    m.errors[type(exc).__name__] += 1
                took = time.perf_counter() - t0
                m.passes.append(took)
                if made:
                    m.passes_with_offers.append(took)
                for offer in made:
                    task = asyncio.create_task(resolve_offer(offer))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                made.clear()
                await asyncio.sleep(tick * rng.uniform(0.5, 1.5))

        async def pinger() -> None:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                await pool.fetchval("SELECT 1")
                m.pings.append(time.perf_counter() - t0)
                await asyncio.sleep(tick * rng.uniform(0.5, 1.5))

        await asyncio.gather(dispatcher(), pinger())
        m.cpu_seconds = time.process_time() - cpu0
        await asyncio.gather(*tasks)
    finally:
        await transfers.rest.close()
        await pool.close()
    return m


_SAMPLE = """
    SELECT (SELECT count(*) FROM waiting WHERE status = 'waiting')::int AS waiting,
           (SELECT count(*) FROM waiting WHERE status = 'offering')::int AS ringing,
           (SELECT count(*) FROM counselors WHERE presence = 'available')::int AS available,
           (SELECT count(*) FROM counselors WHERE presence IN ('on-call', 'wrap-up'))::int
               AS busy
"""


def flipper(dsn: str, start_at: float, args: argparse.Namespace,
            out: mp.Queue[Measures]) -> None:
    out.put(asyncio.run(_flipper(dsn, start_at, args)))


async def _flipper(dsn: str, start_at: float, args: argparse.Namespace) -> Measures:
    """Supervisors and counselors changing presence by hand."""
    rng = random.Random(7)
    m = Measures()
    pool = await open_pool(dsn, min_size=2, max_size=2)
    transfers = transfers_for(pool, build_plan(args.counselors))
    ids = [f"k{n:03d}" for n in range(args.counselors)]
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        end = time.monotonic() + args.duration
        cpu0 = time.process_time()
        next_sample = 0.0
        while time.monotonic() < end:
            if time.monotonic() >= next_sample:  # what the line looks like, twice a second
                next_sample = time.monotonic() + 0.5
                row = await pool.fetchrow(_SAMPLE)
                assert row is not None
                for key, value in row.items():
                    m.samples.setdefault(key, []).append(value)
            who = rng.choice(ids)
            roll = rng.random()
            presence = "available" if roll < 0.6 else "wrap-up" if roll < 0.8 else "offline"
            t0 = time.perf_counter()
            try:
                change = await cs.set_presence(pool, who, presence)
                m.outcomes["withdrew an offer" if change.withdrawn else presence] += 1
                if change.withdrawn is not None:  # as the admin API: the caller moves on
                    # Its next counselor: rung by a dispatcher pass in a server.
                    await transfers.withdrawn(change.withdrawn)
            except cs.PresenceConflict:
                m.outcomes["refused (on a call)"] += 1
            except Exception as exc:
                m.errors[type(exc).__name__] += 1
            m.presence.append(time.perf_counter() - t0)
            await asyncio.sleep(args.tick / 1000 * rng.uniform(0.5, 1.5))
        m.cpu_seconds = time.process_time() - cpu0
    finally:
        await transfers.rest.close()
        await pool.close()
    return m


# --- main -----------------------------------------------------------------------------


async def final_state(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            """
            SELECT (SELECT count(*) FROM waiting WHERE status IN ('waiting', 'offering'))
                       AS waiting,
                   (SELECT count(*) FROM offers) AS offers,
                   (SELECT count(*) FROM counselors WHERE presence = 'available') AS available,
                   -- the guarantees, checked over the whole history of the run
                   (SELECT count(*) FROM offers a JOIN offers b
                      ON a.counselor_id = b.counselor_id AND a.id < b.id
                     WHERE b.created_at < coalesce(a.ended_at, 'infinity')) AS double_counselor,
                   (SELECT count(*) FROM offers a JOIN offers b
                      ON a.call_sid = b.call_sid AND a.id < b.id
                     WHERE b.created_at < coalesce(a.ended_at, 'infinity')) AS double_caller,
                   -- an offer ringing that its caller's progress does not hold
                   (SELECT count(*) FROM offers o JOIN calls c ON c.call_sid = o.call_sid
                     WHERE o.state = 'ringing'
                       AND (c.transfer->'offer'->>'number')::int IS DISTINCT FROM o.number)
                       AS not_the_progress
            """
        )
    finally:
        await conn.close()
    assert row is not None
    return dict(row)


def machine_busy_seconds() -> float:
    """CPU time spent busy by the whole machine since boot, all cores, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured")
    parser.add_argument("--callers", type=int, default=500)
    parser.add_argument("--counselors", type=int, default=200)
    parser.add_argument("--tick", type=float, default=5.0,
                        help="ms between two passes (and two pings, two presence changes)")
    args = parser.parse_args()
    started = time.monotonic()
    with postgres(os.environ.get("IVR_DATABASE_URL")) as pg:
        asyncio.run(setup(pg.dsn, args))
        quiet = {f: asyncio.run(unloaded(pg.dsn, f)) for f in (3, 20)}
        ctx = mp.get_context("spawn")
        out: mp.Queue[Measures] = ctx.Queue()
        start_at = time.time() + 2.0  # every process ready and warmed up by then
        procs = [ctx.Process(target=worker, args=(pg.dsn, i, start_at, args, out))
                 for i in range(2)]
        procs.append(ctx.Process(target=flipper, args=(pg.dsn, start_at, args, out)))
        for p in procs:
            p.start()
        # CPU over the measured window: the whole machine (other work included),
        # PostgreSQL (postmaster and backends) and, from the reports, the workers.
        time.sleep(max(0.0, start_at - time.time()))
        busy0, pg0 = machine_busy_seconds(), tree_cpu_seconds(pg.pid) if pg.pid else 0.0
        time.sleep(max(0.0, start_at + args.duration - time.time()))
        busy = machine_busy_seconds() - busy0
        pg_cpu = (tree_cpu_seconds(pg.pid) - pg0) if pg.pid else float("nan")
        results = [out.get(timeout=args.duration + 60) for _ in procs]
        for p in procs:
            p.join()
        state = asyncio.run(final_state(pg.dsn))
    total = Measures()
    for r in results:
        for name in ("passes", "passes_with_offers", "looks", "rings", "pings", "presence"):
            getattr(total, name).extend(getattr(r, name))
        total.outcomes.update(r.outcomes)
        total.errors.update(r.errors)

    print(f"\nrouting: {args.counselors} counselors, ~{args.callers} waiting callers,"
          f" 2 worker processes + 1 presence process, {args.duration:.0f} s,"
          f" {os.cpu_count()} cores\n")
    rows = []
    for label, values in [
        ("SELECT 1 (one round trip)", total.pings),
        ("dispatcher pass, all", total.passes),
        ("dispatcher pass, rang someone", total.passes_with_offers),
        ("  its look (dispatch.look)", total.looks),
        ("  its rings (ring_all, or ring: one statement)", total.rings),
        ("set_presence (by hand)", total.presence),
    ]:
        s = summarize(values, args.duration)
        rows.append([label, str(s.count), ms(s.p50), ms(s.p99), ms(s.max)])
    print_table(["operation", "count", "p50 ms", "p99 ms", "max ms"], rows)
    print(f"\nalone on one connection before the load: {args.callers} callers waiting,"
          " each ring rolled back\n")
    rows = []
    for free, (looks, rings, pings) in quiet.items():
        for label, values in [(f"SELECT 1 ({free} counselors free)", pings),
                              (f"look ({free} counselors free)", looks),
                              (f"ring ({free} counselors free)", rings)]:
            s = summarize(values, 1.0)
            rows.append([label, str(s.count), ms(s.p50), ms(s.p99), ms(s.max)])
    print_table(["operation", "count", "p50 ms", "p99 ms", "max ms"], rows)
    ping = summarize(total.pings, args.duration)
    for label, values in (("pass", total.passes), ("ring", total.rings)):
        got = summarize(values, args.duration)
        print(f"\n{label} p50/p99 = {got.p50 / ping.p50:.1f}x / {got.p99 / ping.p99:.1f}x"
              " the bare round trip's", end="")
    print()
    print(f"offers made: {state['offers']} ({state['offers'] / args.duration:.0f}/s);"
          f" outcomes: {dict(sorted(total.outcomes.items()))}")
    flip = next(r for r in results if r.samples)
    mean = {k: sum(v) / len(v) for k, v in flip.samples.items() if v}
    print("during the run (mean of samples): " + ", ".join(f"{k} {v:.0f}" for k, v in mean.items()))
    print(f"overlapping offers: counselor {state['double_counselor']},"
          f" caller {state['double_caller']}; offers ringing that their caller's progress"
          f" does not hold: {state['not_the_progress']}; errors: {dict(total.errors) or 'none'}")
    ours = sum(r.cpu_seconds for r in results)
    print(f"CPU over the window (core-seconds of {args.duration:.0f} s x {os.cpu_count()}):"
          f" machine {busy:.1f}, PostgreSQL {pg_cpu:.1f}, benchmark processes {ours:.1f},"
          f" anything else {busy - ours - (0 if pg_cpu != pg_cpu else pg_cpu):.1f}")
    print(f"run time {time.monotonic() - started:.1f} s")
    if (total.errors or state["double_counselor"] or state["double_caller"]
            or state["not_the_progress"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
