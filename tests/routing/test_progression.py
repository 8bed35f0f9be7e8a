"""The pure transfer progression: tables of events and what the adapters are asked to do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ivr.routing.progress import Offer, Phase, Progress
from ivr.routing.progression import Availability, Result, advance, begin
from ivr.routing.rules import BACKUP_PROMPT, MOVE_GRACE
from ivr.routing.signals import (
    ApiDegraded,
    Blame,
    CallerLeft,
    CancelLeg,
    CounselorFreed,
    Dequeue,
    DialEnded,
    DialLine,
    EndCall,
    Enqueue,
    Event,
    HoldEnded,
    HoldRound,
    LegAccepted,
    LegAnswered,
    LegDeclined,
    LegFailed,
    LegMissed,
    MoveCaller,
    MoveLanded,
    OfferWithdrawn,
    Outcome,
    RecordOutcome,
    Ring,
    ScheduleDeadline,
    SetTier,
    TierDeadline,
)
from ivr.routing.steps import DialStep, Step, WarmStep, step_from_json, step_to_json

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LOCAL = WarmStep("local", "tx-austin", ("ana", "ben"), 20, True, ("tx-austin",))
GULF = DialStep("backup", "gulf-backup", ("+15045550112",), 20, centers=("gulf-backup",))
REGION = WarmStep("backup", "fl-miami", ("cy", "ben"), 25, False, ("fl-miami",))
NATIONAL = DialStep("national", "national", ("+18005550100",), 60, last=True)
STEPS = (LOCAL, GULF, REGION, NATIONAL)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def start(steps: tuple[Step, ...] = STEPS, *free: str, degraded: bool = False) -> Result:
    return begin(steps, T0, Availability(free, degraded), language="en", queue="crisis")


def run(result: Result, *events: tuple[float, Event, tuple[str, ...]]) -> Result:
    """Feed events (at seconds, event, free counselors); the last result."""
    progress, actions = result
    for seconds, event, free in events:
        progress, actions = advance(progress, event, at(seconds), Availability(free))
    return progress, actions


def ring(offer: int, who: str, seconds: int) -> Ring:
    return Ring(offer, who, seconds)


@pytest.mark.parametrize(
    ("free", "degraded", "phase", "actions"),
    [
        # someone free: the caller holds, the first free counselor rings for the whole tier
        (("ben", "ana"), False, Phase.HOLDING, (
            Enqueue(0, 1, "local", ("ana", "ben")), ScheduleDeadline(1, at(20)),
            ring(1, "ben", 20))),
        # nobody free at a tier that does not wait: straight to the next step, no prompt
        ((), False, Phase.DIALING, (DialLine(1, 1, GULF, None, True),)),
        # the REST API degraded: no warm step is worth entering
        (("ana",), True, Phase.DIALING, (DialLine(1, 1, GULF, None, True),)),
    ],
)
def test_begin(free: tuple[str, ...], degraded: bool, phase: Phase, actions: tuple[object]) -> None:
    progress, got = start(STEPS, *free, degraded=degraded)
    assert (progress.phase, got) == (phase, actions)


def test_begin_at_the_backup_says_no_backup_prompt() -> None:
    """Straight from the flow, its own transfer prompt has just played."""
    _, actions = start((NATIONAL,))
    assert actions == (DialLine(0, 1, NATIONAL, None, True),)


def test_steps_must_end_with_the_national_backup() -> None:
    with pytest.raises(ValueError, match="national backup"):
        start((LOCAL, GULF))


HOLDING = ((0, CounselorFreed(), ("ana", "ben")),)  # the tier's first ring: ana, 20 s


@pytest.mark.parametrize(
    ("events", "phase", "actions"),
    [
        # a decline rings the next counselor for what is left of the tier
        ([(5, LegDeclined(1), ("ana", "ben"))], Phase.HOLDING, (ring(2, "ben", 15),)),
        # so does a failure that is the counselor's (their address was refused)
        ([(5, LegFailed(1, Blame.COUNSELOR), ("ben",))], Phase.HOLDING, (ring(2, "ben", 15),)),
        # a miss with less than MIN_RING left: nobody could answer in time, move on now
        ([(12, LegMissed(1), ("ben",))], Phase.DIALING, (
            Dequeue("backup"), DialLine(1, 2, GULF, None, True), MoveCaller(1, 2))),
        # everybody tried: move on before the deadline
        ([(2, LegDeclined(1), ("ben",)), (4, LegMissed(2), ())], Phase.DIALING, (
            Dequeue("backup"), DialLine(1, 2, GULF, None, True), MoveCaller(1, 2))),
        # the deadline cancels the leg still ringing
        ([(20, TierDeadline(1), ())], Phase.DIALING, (
            CancelLeg(1, "ana"), Dequeue("backup"), DialLine(1, 2, GULF, None, True),
            MoveCaller(1, 2))),
        # an accept after the deadline is too late: the tier has moved on
        ([(20, LegAccepted(1), ())], Phase.DIALING, (
            CancelLeg(1, "ana"), Dequeue("backup"), DialLine(1, 2, GULF, None, True),
            MoveCaller(1, 2))),
        # an accept in time connects
        ([(3, LegAnswered(1), ()), (9, LegAccepted(1), ())], Phase.CONNECTED, (
            RecordOutcome(Outcome.ANSWERED, "local", "tx-austin", "ana"),)),
        # the REST API failed placing the leg: nobody's fault, and no warm step now
        ([(1, LegFailed(1, Blame.SERVICE), ("ben",))], Phase.DIALING, (
            Dequeue("backup"), DialLine(1, 2, GULF, None, True), MoveCaller(1, 2))),
        # degraded while a phone rings: it may still be answered, so the caller stays
        ([(1, ApiDegraded(), ())], Phase.HOLDING, ()),
        # withdrawn (an administrator took the counselor off): the next free one rings
        ([(6, OfferWithdrawn(1), ("ben",))], Phase.HOLDING, (ring(2, "ben", 14),)),
        # the conference ended under a caller still on the line: the next step as TwiML
        ([(6, HoldEnded(1), ())], Phase.DIALING, (
            CancelLeg(1, "ana"), Dequeue("backup"), DialLine(1, 2, GULF, None, True))),
        # the caller hangs up: cancel their leg, leave the line, abandoned
        ([(6, CallerLeft(), ())], Phase.GONE, (
            CancelLeg(1, "ana"), Dequeue("abandoned"),
            RecordOutcome(Outcome.ABANDONED, "local", "tx-austin"))),
    ],
)
def test_at_a_warm_step(
    events: list[tuple[float, Event, tuple[str, ...]]], phase: Phase, actions: tuple[object]
) -> None:
    progress, got = run(start(STEPS, "ana"), *events)
    assert (progress.phase, got) == (phase, actions)


def test_a_tier_that_waits_rings_whoever_becomes_free() -> None:
    progress, actions = run(start((REGION, NATIONAL)), (8, CounselorFreed(), ("ben", "zed")))
    assert actions == (ring(1, "ben", 17),)
    progress, actions = run((progress, ()), (12, LegDeclined(1), ()), (13, HoldRound(), ()))
    assert (progress.phase, actions) == (Phase.HOLDING, ())  # waits for cy or the deadline
    progress, actions = run((progress, ()), (25, TierDeadline(1), ()))
    assert actions == (Dequeue("backup"), DialLine(1, 2, NATIONAL, BACKUP_PROMPT, True),
                       MoveCaller(1, 2))


def test_a_warm_step_after_a_warm_step_keeps_the_caller_in_line() -> None:
    steps = (LOCAL, REGION, NATIONAL)
    _, actions = run(start(steps, "ana"), (20, TierDeadline(1), ("cy",)))
    assert actions == (CancelLeg(1, "ana"), SetTier(1, 2, "backup", ("cy", "ben")),
                       ScheduleDeadline(2, at(45)), ring(2, "cy", 25))


def test_a_conference_ended_under_the_caller_is_answered_with_the_next_conference() -> None:
    steps = (LOCAL, REGION, NATIONAL)
    _, actions = run(start(steps, "ana"), (3, HoldEnded(1), ()))
    assert actions == (CancelLeg(1, "ana"), Enqueue(1, 2, "backup", ("cy", "ben")),
                       ScheduleDeadline(2, at(28)))


def test_after_a_dial_step_the_caller_joins_the_line_again() -> None:
    _, actions = run(start(STEPS), (21, DialEnded(1, False), ("cy",)))
    assert actions == (Enqueue(2, 2, "backup", ("cy", "ben")), ScheduleDeadline(2, at(46)),
                       ring(1, "cy", 25))


@pytest.mark.parametrize(
    ("answered", "phase", "actions"),
    [
        (True, Phase.CONNECTED, (RecordOutcome(Outcome.ANSWERED, "backup", "gulf-backup"),
                                 EndCall())),
        (False, Phase.HOLDING, (Enqueue(2, 2, "backup", ("cy", "ben")),
                                ScheduleDeadline(2, at(45)))),
    ],
)
def test_a_dial_step_ends(answered: bool, phase: Phase, actions: tuple[object]) -> None:
    progress, got = run(start(STEPS), (20, DialEnded(1, answered), ()))
    assert (progress.phase, got) == (phase, actions)


def test_the_national_backup_is_redialled_twice_then_unreached() -> None:
    result = start((NATIONAL,))
    for stage in (1, 2):
        result = run(result, (60.0 * stage, DialEnded(stage, False), ()))
        assert result[1] == (DialLine(0, stage + 1, NATIONAL, BACKUP_PROMPT, True),)
    progress, actions = run(result, (180, DialEnded(3, False), ()))
    assert (progress.phase, progress.redials) == (Phase.UNREACHED, 2)
    assert actions == (RecordOutcome(Outcome.UNREACHED, "national", "national"), EndCall())


def test_a_failed_move_is_issued_again_by_a_hold_round() -> None:
    progress, _ = run(start(STEPS, "ana"), (20, TierDeadline(1), ()))  # MoveCaller(1, 2) at 20
    soon = 20 + MOVE_GRACE / 2
    assert run((progress, ()), (soon, HoldRound(), ()))[1] == ()  # may still be landing
    later = 20 + MOVE_GRACE
    moved, actions = run((progress, ()), (later, HoldRound(), ()))
    assert actions == (MoveCaller(1, 2),) and moved.moved_at == at(later)
    landed, _ = run((progress, ()), (21, MoveLanded(2), ()))
    assert run((landed, ()), (later, HoldRound(), ()))[1] == ()


def test_a_caller_who_left_during_a_dial_is_gone() -> None:
    progress, actions = run(start(STEPS), (7, CallerLeft(), ()))
    assert (progress.phase, actions) == (
        Phase.GONE, (RecordOutcome(Outcome.ABANDONED, "backup", "gulf-backup"),))


LATE: list[tuple[str, list[tuple[float, Event, tuple[str, ...]]], Event]] = [
    ("accept of an earlier offer", [(5, LegDeclined(1), ("ben",))], LegAccepted(1)),
    ("miss of an offer never made", [], LegMissed(7)),
    ("deadline of an earlier step", [(20, TierDeadline(1), ())], TierDeadline(1)),
    ("dial of an earlier step", [(20, TierDeadline(1), ()), (41, DialEnded(2, False), ())],
     DialEnded(2, True)),
    ("dial callback before its step", [], DialEnded(5, True)),
    ("conference end of an earlier step", [(20, TierDeadline(1), ())], HoldEnded(1)),
    ("anything after the caller left", [(5, CallerLeft(), ())], CounselorFreed()),
    ("a second accept", [(5, LegAccepted(1), ())], LegAccepted(1)),
    ("a ring-out after the accept", [(5, LegAccepted(1), ())], LegMissed(1)),
    ("a hang-up after the accept", [(5, LegAccepted(1), ())], CallerLeft()),
]


@pytest.mark.parametrize(("history", "late"), [(h, e) for _, h, e in LATE],
                         ids=[name for name, _, _ in LATE])
def test_late_or_repeated_events_change_nothing(
    history: list[tuple[float, Event, tuple[str, ...]]], late: Event
) -> None:
    progress, _ = run(start(STEPS, "ana"), *history)
    assert advance(progress, late, at(30), Availability(("ana", "ben", "cy"))) == (progress, ())


def test_progress_codec_round_trips() -> None:
    progress, _ = run(start(STEPS, "ana"), (3, LegAnswered(1), ()))
    progress = Progress(**{**vars(progress), "tried": ("zed",), "need": "veteran",
                           "caller_state": "TX", "pass_caller_id": False, "moved_at": at(1)})
    assert Progress.from_json(progress.to_json()) == progress
    assert progress.to_json()["offer"] == {
        "number": 1, "counselor": "ana", "made_at": at(0).isoformat(), "ring_seconds": 20,
        "answered": True, "accepted": False}
    assert Offer.from_json(progress.to_json()["offer"]) == progress.offer


def test_a_record_from_before_the_progression_is_moved_on() -> None:
    """The dict `transfer_record` wrote: its warm step is taken as long over."""
    old = {"queue": "crisis", "line": None, "language": "es", "need": None,
           "caller_state": "TX", "steps": [step_to_json(s) for s in STEPS], "index": 0}
    progress = Progress.from_json(old)
    assert (progress.phase, progress.queued, progress.language) == (Phase.HOLDING, True, "es")
    moved, actions = advance(progress, HoldRound(), T0, Availability(("ana",)))
    assert moved.phase is Phase.DIALING and MoveCaller(1, 1) in actions


def test_steps_codec_ignores_unknown_keys() -> None:
    data = {**step_to_json(GULF), "added_by_a_newer_server": 1}
    assert step_from_json(data) == GULF
    assert [step_from_json(step_to_json(s)) for s in STEPS] == list(STEPS)


def test_the_best_ranked_free_counselor_rings_first_then_the_longest_idle() -> None:
    """The one ordering of counselors (tiers.rank), decided by the progression:
    the lowest rank, then the snapshot's order (longest idle first)."""
    ranked = WarmStep("local", "tx-austin", ("ana", "ben", "cy"), 60, False, ("tx-austin",),
                      (1, 0, 0))
    _, actions = start((ranked, NATIONAL), "ana", "cy", "ben")
    assert actions[-1] == ring(1, "cy", 60)  # cy and ben rank alike: cy is the longer idle
    _, actions = start((ranked, NATIONAL), "ana")
    assert actions[-1] == ring(1, "ana", 60)  # the only one free


def test_a_tier_whose_untried_counselors_are_gone_from_the_plan_is_over() -> None:
    """A publish removed ben: with ana tried, nobody is left to ring there."""
    waits = WarmStep("local", "tx-austin", ("ana", "ben"), 60, False, ("tx-austin",))
    p, _ = begin((waits, NATIONAL), T0, Availability(("ana",)), language="en")
    p, actions = advance(p, LegDeclined(1), at(5), Availability())
    assert actions == () and p.phase is Phase.HOLDING  # ben may yet be free
    p, actions = advance(p, CounselorFreed(), at(6), Availability(gone=frozenset({"ben"})))
    assert p.phase is Phase.DIALING
    assert actions == (Dequeue("backup"), DialLine(1, 2, NATIONAL, BACKUP_PROMPT, True),
                       MoveCaller(1, 2))
