"""Offers made early, while the flow's menu still plays: the pure side.

The flow runtime says where a caller at a menu is likely going
(likely_transfer); the progression makes the early offer (begin_early),
withdraws it when the caller goes elsewhere (CallerWentElsewhere), and
carries it into the transfer when they arrive (begin(..., early=)).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ivr.content import Content, load_content
from ivr.flow.model import Flow
from ivr.flow.runtime import (
    Answer,
    LikelyTransfer,
    Start,
    TransferTo,
    likely_transfer,
    new_call,
    step,
)
from ivr.routing.progress import Phase, Progress
from ivr.routing.progression import (
    Availability,
    Result,
    advance,
    begin,
    begin_early,
    early_steps,
    joined_conference,
    take_offer,
)
from ivr.routing.rules import tier_seconds
from ivr.routing.signals import (
    AcceptEarly,
    Arrive,
    CallerLeft,
    CallerWentElsewhere,
    CancelLeg,
    Dequeue,
    DialLine,
    Enqueue,
    LegAccepted,
    LegAnswered,
    LegDeclined,
    Outcome,
    RecordOutcome,
    Ring,
    ScheduleDeadline,
)
from ivr.routing.steps import DialStep, WarmStep, transfer_steps

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EN = WarmStep("local", "tx-austin", ("ana", "ben"), 20, True, ("tx-austin",), (0, 1))
ES = WarmStep("local", "tx-austin", ("carla", "ana"), 20, True, ("tx-austin",), (0, 1))
NATIONAL = DialStep("national", "national", ("+18005550100",), 60, last=True)
LINE = DialStep("line", "veterans", ("+18005550111",), 60)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def early(*free: str) -> Result:
    steps = early_steps([(EN, NATIONAL), (ES, NATIONAL)])
    assert steps is not None
    return begin_early(steps, T0, Availability(free), language="en", languages=("en", "es"),
                       queue="crisis")


def arrive(p: Progress, seconds: float, *free: str, language: str = "en",
           queue: str | None = "crisis", line: str | None = None) -> Result:
    steps = (LINE, NATIONAL) if line else ((EN if language == "en" else ES), NATIONAL)
    return begin(steps, at(seconds), Availability(free), language=language, queue=queue,
                 line=line, early=p)


# The flow runtime's likely transfer ------------------------------------------------


@pytest.fixture(scope="module")
def lifeline() -> tuple[Content, Flow]:
    content = load_content(ROOT / "flows", ROOT / "prompts")
    return content, content.flows.flows["lifeline"]


def fits(likely: LikelyTransfer, transfer: TransferTo) -> bool:
    """Whether `transfer` is the likely one (in one of its languages)."""
    mine = likely.transfer
    return (transfer.queue, transfer.line, transfer.need) == (
        mine.queue, mine.line, mine.need) and transfer.language in likely.languages


def test_silence_at_the_shipped_menu_leads_to_the_crisis_queue_in_either_language(
    lifeline: tuple[Content, Flow],
) -> None:
    _, flow = lifeline
    turn = step(flow, new_call(flow, "TX"), Start(T0))
    likely = likely_transfer(flow, turn.state, T0)
    assert likely is not None
    assert (likely.transfer.queue, likely.transfer.need) == ("crisis", None)
    # Pressing 2 reaches the same queue in Spanish; pressing 1 is another line.
    assert likely.languages == ("en", "es")
    wrong = step(flow, turn.state, Answer(T0, digits="9"))  # the menu plays again
    assert likely_transfer(flow, wrong.state, T0) == likely
    spanish = step(flow, turn.state, Answer(T0, digits="2"))
    assert isinstance(spanish.wait, TransferTo) and fits(likely, spanish.wait)
    veterans = step(flow, turn.state, Answer(T0, digits="1"))
    assert isinstance(veterans.wait, TransferTo) and not fits(likely, veterans.wait)


def test_the_shipped_plan_offers_a_texan_early_only_to_who_speaks_both(
    lifeline: tuple[Content, Flow],
) -> None:
    content, flow = lifeline
    turn = step(flow, new_call(flow, "TX"), Start(T0))
    likely = likely_transfer(flow, turn.state, T0)
    assert likely is not None
    choices = [transfer_steps(content.plan, TransferTo("connect", "crisis", None, lang, None),
                              "TX", "+18005550100") for lang in likely.languages]
    steps = early_steps(choices)
    assert steps is not None
    first = steps[0]
    assert isinstance(first, WarmStep) and first.counselors == ("tx-ana",)


def test_nobody_fitting_every_language_means_no_early_offer() -> None:
    only_es = WarmStep("local", "tx-austin", ("carla",), 20, True, ("tx-austin",))
    assert early_steps([(EN, NATIONAL), (only_es, NATIONAL)]) is None
    assert early_steps([(LINE, NATIONAL)]) is None  # a line first: nothing to offer


# The progression -------------------------------------------------------------------


def test_an_early_offer_rings_who_fits_every_language_without_a_tier_clock() -> None:
    p, actions = early("ben", "ana")
    assert p.phase is Phase.EARLY and p.deadline is None
    assert actions == (Enqueue(0, 1, "local", ("ana",)),
                       Ring(1, "ana", tier_seconds(EN)))
    assert p.languages == ("en", "es")


def test_the_caller_going_elsewhere_withdraws_the_offer_and_leaves_the_line() -> None:
    p, _ = early("ana")
    p, _ = advance(p, LegAnswered(1), at(4), Availability())
    p, _ = advance(p, LegAccepted(1), at(12), Availability())
    gone, actions = advance(p, CallerWentElsewhere(), at(16), Availability(("ben",)))
    assert gone.phase is Phase.WITHDRAWN and gone.offer is None
    assert actions == (CancelLeg(1, "ana"), Dequeue("backup"))
    # Over: nothing more happens for it, and nobody is rung for it again.
    assert advance(gone, LegDeclined(1), at(17), Availability(("ana",))) == (gone, ())
    assert advance(gone, CallerWentElsewhere(), at(17), Availability()) == (gone, ())


def test_going_to_another_line_withdraws_and_then_dials_it() -> None:
    p, _ = early("ana")
    q, actions = arrive(p, 16, line="veterans", queue=None)
    assert actions[:2] == (CancelLeg(1, "ana"), Dequeue("backup"))
    assert isinstance(actions[2], DialLine) and q.phase is Phase.DIALING
    assert q.offers_made == 1 and q.stage > p.stage  # numbers go on: no late event mistaken


def test_an_accept_before_the_caller_arrives_is_the_answer_when_they_do() -> None:
    p, _ = early("ana")
    p, _ = advance(p, LegAnswered(1), at(4), Availability())
    p, actions = advance(p, LegAccepted(1), at(12), Availability())
    assert p.phase is Phase.EARLY and p.offer is not None and p.offer.accepted and not actions
    q, actions = arrive(p, 20, "ben")
    assert q.phase is Phase.CONNECTED
    assert actions == (AcceptEarly(1, "ana"),
                       RecordOutcome(Outcome.ANSWERED, "local", "tx-austin", "ana"))


def test_a_ringing_early_offer_stays_into_the_tier_whose_clock_starts_on_arrival() -> None:
    p, _ = early("ana", "ben")
    q, actions = arrive(p, 19, "ben", language="es")
    assert q.phase is Phase.HOLDING and q.offer == p.offer
    assert q.deadline == at(19 + tier_seconds(ES))
    assert actions == (Arrive(0, 2, "local", ES.counselors), ScheduleDeadline(2, q.deadline))
    # The early ring never outlasts the tier that starts later.
    assert q.offer is not None
    assert q.offer.made_at + timedelta(seconds=q.offer.ring_seconds) <= q.deadline


def test_an_early_offer_accepted_after_the_caller_arrived_still_waits_for_them() -> None:
    """The caller reached the transfer while the counselor heard the whisper: they
    accept while the caller still hears the transfer prompt, and must wait."""
    p, _ = early("ana")
    q, _ = arrive(p, 10, language="es")
    done, actions = advance(q, LegAccepted(1), at(13), Availability())
    assert done.phase is Phase.CONNECTED and done.offer is not None and done.offer.accepted
    assert actions == (RecordOutcome(Outcome.ANSWERED, "local", "tx-austin", "ana"),)
    # Once the prompt is over the caller was in the conference: a counselor who
    # finds it empty then finds the caller gone, and is not kept waiting.
    late, _ = advance(joined_conference(q), LegAccepted(1), at(18), Availability())
    assert late.offer is not None and not late.offer.accepted


def test_a_counselor_who_declined_early_is_not_rung_again_in_the_tier() -> None:
    p, _ = early("ana", "ben")
    p, actions = advance(p, LegDeclined(1), at(8), Availability(("ana", "ben")))
    assert actions == () and p.tried == ("ana",)  # nobody else fits both languages
    _, actions = arrive(p, 19, "ana", "ben")
    assert [a for a in actions if isinstance(a, Ring)] == [Ring(2, "ben", tier_seconds(EN))]


def test_a_caller_who_hangs_up_in_the_menu_frees_the_counselor_and_is_no_transfer() -> None:
    p, _ = early("ana")
    gone, actions = advance(p, CallerLeft(), at(9), Availability())
    assert gone.phase is Phase.GONE
    assert actions == (CancelLeg(1, "ana"), Dequeue("abandoned"))  # no outcome: never transferred


def test_the_dispatchers_claim_takes_an_early_offer_only_while_none_is_open() -> None:
    p, _ = early()  # nobody free: no offer yet
    assert p.offer is None
    taken = take_offer(p, "ana", at(3))
    assert taken is not None and taken.offer is not None
    assert taken.offer.ring_seconds == tier_seconds(EN)
    assert take_offer(taken, "ben", at(4)) is None


def test_the_early_progress_survives_its_codec() -> None:
    p, _ = early("ana")
    p, _ = advance(p, LegAccepted(1), at(12), Availability())
    assert Progress.from_json(p.to_json()) == p
