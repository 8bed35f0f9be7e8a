"""Time to a human: every path of the shipped flow, in the simulator, beside its bound.

    .venv/bin/python bench/time_to_human.py [--runs N] [--only NAME]

Each path is a whole call the way `ivr call` makes one: the simulator plays
Twilio (webhooks, REST API, counselors' phones, conferences) against the
real server, in process, on a throwaway embedded PostgreSQL, with the
shipped flows/988.yaml, flows/routing.yaml and prompts/. From each call's
transcript, in simulated seconds from the answer (0 s, the greeting's
start):

- first ring: the first phone of a human ringing for the caller: a
  counselor's leg reported ringing, or a <Dial> (a line, a center's number,
  the national backup) starting;
- joined: a counselor joining the caller's conference, or the party of a
  <Dial> answering;
- cancelled: counselor legs the server ended without their joining the caller
  (an offer made while the menu played and withdrawn because the caller went
  elsewhere, or a tier that moved on): phones rung for nothing.

A counselor may be offered the caller while the menu still plays
(telephony/preoffer.py), so the simulator paces the caller's IVR in world
time (TwilioWorld(paced_ivr=True)): what the server does by REST during the
menu happens when it would on Twilio, not after the menu is over.

Beside them, the analysis's bound for the same path: the flow analysis's
cost of that path (ivr/flow/analysis.py, the worst case of it: a key at the
end of the menu's timeout) up to the transfer, plus the routing bound of
the caller's queue or line from there (ivr/routing/bounds.py, counselors
who never answer) to the first ring and to the national backup being
dialled. No bound exists for "joined": it depends on the counselor.

The server runs on the world's clock (create_app(clock=TwilioWorld.server_clock)):
its tier deadlines pass in simulated seconds like the rings and prompts around
them, so a tier nobody answers ends at its deadline, not after each of its
counselors has rung out in turn.

Real time, by default (--time-scale 1000: one simulated second lasts one
wall second). The simulator counts whatever wall time passes while the
caller waits for a webhook's answer at its time scale (ivr/sim/callers.py
keep_pace: the world's clock ran on meanwhile): at `ivr call`'s 10 ms per
simulated second the server's 2 ms became 0.2 s of the caller's silence, a
hundredfold magnification (twentyfold at the 50 ms this benchmark used) of
the one figure the server controls, which on a loaded machine decided
whether a 25 s target was met. In real time the caller waits
what a caller on Twilio would wait for our answer (plus Twilio's own network
and text-to-speech latency, which no simulator here measures), and nothing
else changes: prompts, rings and timeouts last their simulated seconds either
way. Counting the server's answer 1:1 inside a faster world was the other way;
it makes the caller's clock and the world's drift apart by the difference at
every webhook, while the server's deadlines and the counselors' legs run on
the world's, so the transcript would stop telling one order of events.

Real time costs wall time, bought back by running the calls concurrently:
each run of each path is a job of its own (its own database on one embedded
PostgreSQL, its own simulated Twilio, its own in-process server, all in this
process), at most --jobs (12) at once; the counselors and the parties of a
<Dial> hang up 2 s after joining the caller, as nothing after the join is
measured. The whole table takes about two minutes of wall time. The server's
answers then share two cores with the other calls' work and with whatever else
the machine runs: the load average is sampled during the run and printed with
the table, and `menu answer ms`, the caller's silence between the end of their
last menu (its timeout, or their key) and the next prompt, shows what the
server's answer cost each call.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

if __package__ in (None, ""):  # run as a script: make `ivr` and `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ivr.config import Settings
from ivr.content import Content, load_content
from ivr.flow.analysis import _Timing  # the per-path costs; the module exports the worst only
from ivr.flow.model import Flow, Menu, Transfer
from ivr.flow.runtime import TransferTo
from ivr.routing.bounds import TransferBounds, destination_bounds, transfer_bounds
from ivr.routing.model import RoutingPlan
from ivr.routing.reach import transfer_prompts
from ivr.routing.rules import BACKUP_PROMPT
from ivr.routing.steps import DialStep, transfer_steps
from ivr.sim import CallScript, CounselorScript, NoAnswer, Press, Silence, TwilioWorld
from ivr.sim.call import simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.counselors import DEFAULT_BEHAVIOUR, Behaviour
from ivr.sim.geo import number_in_state
from ivr.sim.media import MediaStreams, StreamSettings
from ivr.sim.run import local_server, throwaway_settings
from ivr.sim.script import CallerInput, DialOutcome
from ivr.sim.transcript import (
    CounselorJoined,
    Dialed,
    Heard,
    LegEvent,
    Pressed,
    Silent,
    Transcript,
)
from ivr.storage.counselors import PresenceConflict, list_counselors, set_presence
from ivr.storage.database import open_pool

ROOT = Path(__file__).resolve().parent.parent
FLOW_ID = "lifeline"
MENU_PROMPT = "main_menu"
AFTER_PROMPT = 0.5  # "press 2 after the menu": this long after its prompt ends
# Wall seconds per simulated second: real time, so that the server's own work
# while the caller waits for a webhook counts what it costs (see above).
TIME_SCALE = 1.0
POLL_SECONDS = 0.2  # simulated seconds between the server's looks at its timers
TALK_SECONDS = 2.0  # a counselor or a <Dial>'s party talks this long: nothing after is measured
JOBS = 12  # calls at once: each has a server holding 4 or more of PostgreSQL's 100 connections
LOAD_EVERY = 5.0  # wall seconds between two samples of the machine's load average
RESET_TRIES = 50  # presence resets tried (0.1 s apart) while a counselor wraps up


# The paths ----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A figure issue 8 item 4 sets for a path (seconds from the answer)."""

    first_ring: float | None = None
    joined: float | None = None

    def text(self) -> str:
        parts = []
        if self.first_ring is not None:
            parts.append(f"ring <= {self.first_ring:g}")
        if self.joined is not None:
            parts.append(f"joined <= {self.joined:g}")
        return ", ".join(parts)


@dataclass(frozen=True)
class CallPath:
    """One way through the shipped flow and the routing plan."""

    name: str
    state: str  # the caller's state, as Twilio reports it
    inputs: tuple[CallerInput, ...]
    # The flow analysis's moves along this path, each named by a piece of its
    # event text ("says 'welcome'", "silence, then connect"...), up to the transfer.
    moves: tuple[str, ...]
    need: str | None = None  # the need the flow sets on the way (the bound's need)
    counselors: Mapping[str, Behaviour] = field(default_factory=dict)  # by counselor id
    offline: tuple[str, ...] = ()  # counselor ids offline; everyone else is available
    dials: tuple[DialOutcome, ...] = ()  # what each <Dial>'s party does (default: answers)
    target: Target | None = None
    expect: str = ""  # who should answer (an id of the plan): a run where not is flagged


WELCOME = "says 'welcome'"
SILENT = "silence, then connect"
TRANSFER = "transfers to"


def paths(content: Content) -> list[CallPath]:
    """Every path of the shipped flow the issue names, with the menu's timing from its prompt."""
    menu = content.flows.prompts.get("en", MENU_PROMPT)
    if menu is None:
        raise LookupError(f"prompt {MENU_PROMPT} missing in English")
    everyone_in_tx = ("tx-ana", "tx-ben", "tx-carla")
    return [
        CallPath("silent caller", "TX", (Silence(),), (WELCOME, SILENT, TRANSFER),
                 target=Target(first_ring=15, joined=25), expect="tx-ana"),
        CallPath("press 1 (veterans line)", "TX", (Press("1"),),
                 (WELCOME, "key 1 at", TRANSFER), need="veteran", expect="veterans"),
        CallPath("press 2 after the menu", "TX",
                 (Press("2", at=menu.seconds + AFTER_PROMPT),),
                 (WELCOME, "key 2 at", "says 'spanish_selected'", TRANSFER),
                 target=Target(joined=25), expect="tx-ana"),
        CallPath("press 2 during the menu", "TX", (Press("2", at=menu.seconds / 2),),
                 (WELCOME, "key 2 at", "says 'spanish_selected'", TRANSFER), expect="tx-ana"),
        # Ana, offered during the first menu, accepts and waits for the caller,
        # who replays the menu: she gives up first (the simulated counselor's
        # patience alone in a conference) and Ben, free, takes the call.
        CallPath("wrong key, then silence", "TX", (Press("9"), Silence()),
                 (WELCOME, "wrong key, replay 1", SILENT, TRANSFER), expect="tx-ben"),
        CallPath("first counselor declines", "TX", (Silence(),), (WELCOME, SILENT, TRANSFER),
                 counselors={"tx-ana": CounselorScript(then="decline")}, expect="tx-ben"),
        CallPath("local tier unanswered (backup)", "TX", (Silence(),),
                 (WELCOME, SILENT, TRANSFER),
                 counselors={"tx-ana": NoAnswer(), "tx-ben": NoAnswer()},
                 expect="gulf-backup"),
        CallPath("local tier missing (NY offline)", "NY", (Silence(),),
                 (WELCOME, SILENT, TRANSFER), offline=("ny-dan", "ny-erin"),
                 expect="northeast-backup"),
        CallPath("nobody anywhere (national)", "TX", (Silence(),),
                 (WELCOME, SILENT, TRANSFER), offline=everyone_in_tx,
                 dials=(DialOutcome("no-answer"), DialOutcome("answer")), expect="national"),
    ]


# The analysis's bound for one path ------------------------------------------------


@dataclass(frozen=True)
class PathBound:
    to_transfer: float  # the flow's cost up to the transfer beginning (its turn's start)
    transfer: TransferBounds  # from there (ivr/routing/bounds.py)
    where: str  # queue or line
    # From the transfer prompt's start: the worst case to each dial step's
    # <Dial> (a line, a center's number, the national backup), by its number.
    dials: Mapping[str, float] = field(default_factory=dict)

    def dialled(self, number: str | None) -> float | None:
        found = self.dials.get(number) if number else None
        return None if found is None else self.to_transfer + found

    @property
    def first_ring(self) -> float:
        return self.to_transfer + self.transfer.to_first_ring

    @property
    def backup(self) -> float:
        return self.to_transfer + self.transfer.to_backup


def path_bound(content: Content, path: CallPath) -> PathBound:
    """The worst case of this path: the flow analysis's moves, then the routing bound."""
    flow = content.flows.flows[FLOW_ID]
    timing = _Timing(flow, content.flows.prompts)
    # A call starts in the first language, with no need (as the analysis roots do).
    state: tuple[str, str, str | None, int] = (flow.start, flow.languages[0], None, 0)
    seconds = 0.0
    begun = 0.0  # when the turn reaching the transfer starts: the transfer begins then
    for wanted in path.moves:
        found = [m for m in timing.moves(state) if wanted in m.event]
        if len(found) != 1:
            raise LookupError(f"{path.name}: {len(found)} moves of {state[0]} match {wanted!r}")
        move = found[0]
        if move.to is None:
            return _transfer_bound(content, flow, path, state[0], state[1], begun,
                                   seconds + move.seconds - begun)
        node = flow.nodes[state[0]].body
        if isinstance(node, Menu):  # answered at the end of its timeout
            begun = seconds + timing.cost(state[1], node.prompt) + node.timeout
        seconds += move.seconds
        state = move.to
    raise LookupError(f"{path.name}: the moves end before a transfer")


def _transfer_bound(content: Content, flow: Flow, path: CallPath, node: str, language: str,
                    before: float, lead_in: float) -> PathBound:
    body = flow.nodes[node].body
    if not isinstance(body, Transfer):
        raise LookupError(f"{path.name}: {node} is not a transfer")
    plan = content.plan
    steps = transfer_steps(plan, TransferTo(node, body.queue, body.line, language, path.need),
                           path.state, plan.national_backup.number)
    prompts = transfer_prompts(content.flows.prompts, language)  # as the analysis counts it
    where = f"queue {body.queue}" if body.queue else f"line {body.line}"
    dials: dict[str, float] = {}
    for index, step in enumerate(steps):
        if isinstance(step, DialStep):
            # The walk ends at the last step: cut the steps there, and let this
            # step stand as the last (no backup prompt unless it is the backup).
            cut = [*steps[:index], replace(step, last=True)]
            said = prompts if step.last else {BACKUP_PROMPT: 0.0}
            worst = transfer_bounds(cut, said, lead_in).to_backup
            dials.update(dict.fromkeys(step.targets, worst))
    return PathBound(before, transfer_bounds(steps, prompts, lead_in), where, dials)


# What a transcript says ------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    first_ring: float | None  # simulated seconds from the answer
    joined: float | None
    who: str | None  # the address that answered: a counselor's phone, a line, a center
    dialled: float | None  # when the <Dial> that was answered started ringing
    cancelled: int = 0  # counselor legs the server ended before they joined the caller
    # The caller's silence between the end of their last menu before the
    # transfer (its timeout, or their key) and the next prompt: the server's answer.
    menu_answer: float | None = None


def menu_answer(transcript: Transcript) -> float | None:
    """Seconds from the end of the caller's last menu (the last silence or key
    they gave before the next prompt) to that prompt; None without one."""
    ended: float | None = None
    found: float | None = None
    for entry in transcript.entries:
        if isinstance(entry, Silent):
            ended = entry.at + entry.seconds
        elif isinstance(entry, Pressed) and not entry.ignored:
            ended = entry.at
        elif isinstance(entry, Heard) and ended is not None:
            found, ended = entry.at - ended, None
    return found


def measure(transcript: Transcript) -> Measured:
    """The figures of one call, from its transcript's entries."""
    rings = [e.at for e in transcript.of_type(LegEvent) if e.event == "ringing"]
    rings += [e.at for e in transcript.of_type(Dialed)]
    joined: float | None = None
    who: str | None = None
    dialled: float | None = None
    people = transcript.of_type(CounselorJoined)
    answered = [e for e in transcript.of_type(Dialed) if e.outcome == "answered"]
    if people:
        joined, who = people[0].at, people[0].who
    elif answered:
        # A <Dial>'s entry is stamped when it starts ringing; it is answered after.
        dialled, who = answered[0].at, answered[0].targets[0]
        joined = dialled + answered[0].ring_seconds
    legs: dict[str, list[LegEvent]] = {}
    for e in transcript.of_type(LegEvent):
        legs.setdefault(e.sid or e.target, []).append(e)
    cancelled = sum(
        1 for events in legs.values()
        if events[0].target != who
        and any(e.event == "canceled" or "REST API" in e.detail for e in events))
    return Measured(min(rings, default=None), joined, who, dialled, cancelled,
                    menu_answer(transcript))


def names(plan: RoutingPlan) -> dict[str, str]:
    """Who an address is, by the routing plan's ids."""
    found = {plan.national_backup.number: plan.national_backup.id}
    found.update({line.number: line.id for line in plan.lines.values()})
    for center in plan.centers.values():
        if center.number:
            found[center.number] = center.id
        found.update({c.address: c.id for c in center.counselors})
    return found


# Running the calls --------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    transcript: Transcript
    measured: Measured


def shipped(settings: Settings) -> Settings:
    """The shipped content, keys only (no speech model: every run alike)."""
    return replace(settings, flows_dir=ROOT / "flows", prompts_dir=ROOT / "prompts",
                   vosk_models={}, backup_number=None)


async def run_path(base: Settings, content: Content, path: CallPath, runs: int,
                   time_scale: float = TIME_SCALE) -> list[Run]:
    """`runs` calls along `path` against one in-process server and one simulated Twilio.

    `base`: settings with a database and secrets (ivr.sim.run.throwaway_settings).
    """
    plan = content.plan
    by_id = {c.id: c for center in plan.centers.values() for c in center.counselors}
    token = base.required_secrets().auth_token
    assert isinstance(DEFAULT_BEHAVIOUR, CounselorScript)
    world = TwilioWorld(account_sid=base.account_sid, auth_token=token,
                        counselors={by_id[i].address: b for i, b in path.counselors.items()},
                        default=replace(DEFAULT_BEHAVIOUR, talk_seconds=TALK_SECONDS),
                        time_scale=time_scale, paced_ivr=True)
    # Every <Dial> past the scripted ones is answered, as the script's default is.
    dials = (*path.dials, *itertools.repeat(DialOutcome(), 8 - len(path.dials)))
    script = CallScript(from_number=number_in_state(path.state) or "+15125550142",
                        from_state=path.state, inputs=path.inputs,
                        dial_outcomes=tuple(replace(d, talk_seconds=TALK_SECONDS)
                                            for d in dials))
    out: list[Run] = []
    async with world:
        local = replace(shipped(base), twilio_api_url=world.api_url)
        # The server's clock is the world's: its tier deadlines pass in simulated
        # seconds, like the rings and prompts around them, and its timer worker
        # looks at them every POLL_SECONDS simulated.
        async with local_server(local, counselors_available=False, clock=world.server_clock,
                                poll=POLL_SECONDS * time_scale) as live:
            assert live.database_url is not None
            cfg = SimConfig(server_url=live.public_url, auth_token=token,
                            account_sid=live.account_sid, caller_ids=(live.caller_id,))
            for _ in range(runs):
                # Closed before the call: its connection is no part of the server's.
                pool = await open_pool(live.database_url, min_size=1, max_size=1)
                try:
                    await _staff(pool, path.offline)
                finally:
                    await pool.close()
                transcript = await simulate_call(
                    cfg, script, world=world,
                    handlers=world.handlers(media=MediaStreams(StreamSettings())))
                out.append(Run(transcript, measure(transcript)))
    return out


async def _staff(pool: asyncpg.Pool, offline: Sequence[str]) -> None:
    """Every counselor available but `offline`, as at the start of a shift.

    Everyone goes offline first, then available in the plan's order: the
    longest idle is offered first, so every run meets the same first
    counselor whatever the previous run did. A counselor who just took a
    call may still be on it for a moment (the server ends it on the leg's
    status callback): tried again until free.
    """
    for _ in range(RESET_TRIES):
        try:
            everyone = [c.id for c in await list_counselors(pool)]
            for counselor in everyone:
                await set_presence(pool, counselor, "offline")
            for counselor in everyone:
                if counselor not in offline:
                    await set_presence(pool, counselor, "available")
            return
        except PresenceConflict:
            await asyncio.sleep(0.1)
    raise RuntimeError("counselors still on a call after the previous one ended")


# The table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    path: CallPath
    bound: PathBound
    runs: list[Run]

    def values(self, pick: str) -> list[float]:
        found = [getattr(r.measured, pick) for r in self.runs]
        return [v for v in found if v is not None]

    def answered(self, who: Mapping[str, str]) -> list[str]:
        return sorted({who.get(r.measured.who, r.measured.who) if r.measured.who else "nobody"
                       for r in self.runs})

    def met(self) -> str:
        target = self.path.target
        if target is None:
            return ""
        ring, joined = self.values("first_ring"), self.values("joined")
        ok = len(ring) == len(joined) == len(self.runs)
        # The worst run decides: a target is for every call, not the typical one.
        if target.first_ring is not None:
            ok = ok and max(ring, default=math.inf) <= target.first_ring
        if target.joined is not None:
            ok = ok and max(joined, default=math.inf) <= target.joined
        return "**met**" if ok else "**not met**"


def figure(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    """Median, with the range over the runs when they differ (times `scale`)."""
    if not values:
        return "-"
    low, high = f"{min(values) * scale:.{digits}f}", f"{max(values) * scale:.{digits}f}"
    median = f"{statistics.median(values) * scale:.{digits}f}"
    return median if low == high else f"{median} ({low}-{high})"


def table(rows: Sequence[Row], who: Mapping[str, str]) -> str:
    head = ["path", "caller", "answered by", "first ring s", "ring bound s", "joined s",
            "menu answer ms", "legs cancelled",
            "answered dial started s", "dial bound s", "national backup bound s",
            "target (issue 8 item 4)", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        dial_bounds = {b for r in row.runs if (b := row.bound.dialled(r.measured.who))}
        cells = [
            row.path.name, f"{row.path.state}, {row.bound.where}",
            ", ".join(row.answered(who)),
            figure(row.values("first_ring")), f"{row.bound.first_ring:.1f}",
            figure(row.values("joined")),
            figure(row.values("menu_answer"), 1000, 0),
            ", ".join(sorted({str(int(v)) for v in row.values("cancelled")})),
            figure(row.values("dialled")),
            ", ".join(f"{b:.1f}" for b in sorted(dial_bounds)) or "-",
            f"{row.bound.backup:.1f}",
            row.path.target.text() if row.path.target else "", row.met(),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def over_bound(row: Row) -> list[str]:
    """What a path's runs took past the analysis's bound (1 s of slack, as issue 8 allows)."""
    out = []
    for run in row.runs:
        m = run.measured
        if m.first_ring is not None and m.first_ring > row.bound.first_ring + 1:
            out.append(f"first ring {m.first_ring:.1f} s > {row.bound.first_ring:.1f} s")
        dial = row.bound.dialled(m.who)
        if m.dialled is not None and dial is not None and m.dialled > dial + 1:
            out.append(f"<Dial> {m.dialled:.1f} s > {dial:.1f} s")
    return sorted(set(out))


def notes(rows: Sequence[Row], content: Content, who: Mapping[str, str],
          time_scale: float = TIME_SCALE) -> list[str]:
    spreads = [max(v) - min(v) for row in rows
               for v in (row.values("first_ring"), row.values("joined")) if v]
    spread = max(spreads, default=0.0)
    runs = min((len(row.runs) for row in rows), default=0)
    pace = ("real time" if time_scale == 1 else
            f"{time_scale * 1000:g} ms of wall time per simulated second, the server's "
            f"answers magnified {1 / time_scale:g} times")
    out = [f"{runs} runs per path ({pace}); simulated seconds from the answer; a figure is "
           f"the median, with the range over the runs when they differ (largest spread "
           f"{spread:.1f} s" + (": deterministic to 0.1 s)." if spread < 0.05 else ").")]
    for row in rows:
        if problems := over_bound(row):
            out.append(f"Past the analysis's bound: {row.path.name}: {'; '.join(problems)}.")
        if row.path.expect and row.answered(who) != [row.path.expect]:
            out.append(f"Unexpected: {row.path.name} was answered by "
                       f"{', '.join(row.answered(who))}, not {row.path.expect}.")
    plan = content.plan
    prompts = content.flows.prompts
    longest = {
        prompt: max((p.seconds for lang in ("en", "es")
                     if (p := prompts.get(lang, prompt)) is not None), default=0.0)
        for prompt in (BACKUP_PROMPT, "connecting")
    }
    worst = destination_bounds(plan, {BACKUP_PROMPT: longest[BACKUP_PROMPT]}, queue="crisis",
                               languages=("en", "es"), needs=(None, "veteran"),
                               lead_in=longest["connecting"])
    out.append(
        "Routing bound of queue crisis over every state, language and need "
        "(ivr/routing/bounds.py destination_bounds, from the transfer's beginning): "
        f"first ring {worst.to_first_ring:.1f} s, national backup {worst.to_backup:.1f} s "
        f"(a caller from {worst.backup_state})."
    )
    analysis = content.analyses.get(FLOW_ID)
    if analysis is not None:
        out.append(f"Flow analysis (to the transfer): {analysis.summary()}")
    return out


def load_shipped() -> Content:
    """The shipped flows, plan and prompts (reads files: call it off the event loop)."""
    return load_content(ROOT / "flows", ROOT / "prompts")


async def measure_all(content: Content, runs: int, only: str | None,
                      time_scale: float = TIME_SCALE, jobs: int = JOBS) -> list[Row]:
    """Every run of every path at once, `jobs` at a time, each on its own database."""
    chosen = [p for p in paths(content) if not only or only.lower() in p.name.lower()]
    slots = asyncio.Semaphore(jobs)
    async with throwaway_settings(None) as base:
        assert base.database_url is not None
        root = base.database_url

        async def one(number: int, path: CallPath) -> Run:
            async with slots:
                name = f"tth_{number}"
                conn = await asyncpg.connect(root)
                try:
                    await conn.execute(f'CREATE DATABASE "{name}"')
                finally:
                    await conn.close()
                own = replace(base, database_url=_with_database(root, name))
                [run] = await run_path(own, content, path, 1, time_scale)
                return run

        # Run by run, so that the first runs of every path start together.
        order = [(r, path) for r in range(runs) for path in chosen]
        found = await asyncio.gather(*(one(n, path) for n, (_, path) in enumerate(order)))
    return [Row(path, path_bound(content, path),
                [run for (_, p), run in zip(order, found, strict=True) if p is path])
            for path in chosen]


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


class LoadSampler:
    """The machine's 1-minute load average, sampled while the calls run."""

    def __init__(self) -> None:
        self.samples = [os.getloadavg()[0]]

    async def run(self) -> None:
        while True:
            await asyncio.sleep(LOAD_EVERY)
            self.samples.append(os.getloadavg()[0])

    def text(self) -> str:
        low, high = min(self.samples), max(self.samples)
        return (f"machine load during the run (1-minute load average, {len(self.samples)} "
                f"samples): {low:.2f} to {high:.2f}, median {statistics.median(self.samples):.2f}, "
                f"on {os.cpu_count()} cores")


async def measure_with_load(content: Content, runs: int, only: str | None, time_scale: float,
                            jobs: int) -> tuple[list[Row], LoadSampler]:
    load = LoadSampler()
    sampling = asyncio.create_task(load.run())
    try:
        rows = await measure_all(content, runs, only, time_scale, jobs)
    finally:
        sampling.cancel()
    load.samples.append(os.getloadavg()[0])
    return rows, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="calls per path (default 3)")
    parser.add_argument("--only", metavar="TEXT", help="only the paths whose name has TEXT")
    parser.add_argument("--time-scale", metavar="MS", type=float, default=TIME_SCALE * 1000,
                        help="wall milliseconds per simulated second (default "
                        f"{TIME_SCALE * 1000:g}: real time; `ivr call` uses 10, which "
                        "magnifies the server's answers 100 times)")
    parser.add_argument("--jobs", type=int, default=JOBS,
                        help=f"calls run at once, each with its own server (default {JOBS})")
    parser.add_argument("--transcripts", action="store_true",
                        help="print each path's first transcript to stderr")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not 0 < args.time_scale <= 1000:
        parser.error("--time-scale must be in (0, 1000] ms")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    started = time.monotonic()
    content = load_shipped()
    rows, load = asyncio.run(measure_with_load(content, args.runs, args.only,
                                               args.time_scale / 1000, args.jobs))
    if args.transcripts:
        for row in rows:
            print(f"\n== {row.path.name}\n{row.runs[0].transcript.format()}", file=sys.stderr)
    print(table(rows, names(content.plan)))
    print()
    for line in notes(rows, content, names(content.plan), args.time_scale / 1000):
        print(line)
    print(f"\n{load.text()}; {args.jobs} calls at once")
    print(f"run time {time.monotonic() - started:.1f} s (wall)")
    # A target not met is today's state, reported above; a caller who reached
    # nobody is a failure of the line.
    if any(not run.transcript.reached_human for row in rows for run in row.runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
