"""What happens to a transfer (events) and what the adapters do about it (actions).

Events come from Twilio's callbacks, timers and the dispatcher; actions are
carried out by the telephony adapter (TwiML, REST, the waiting line, the
call record). Offer events name the offer by its number within the
transfer; timer and <Dial> events name the stage they belong to, so an
event meant for an earlier offer or step is recognised as stale.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ivr.routing.steps import DialStep


class Blame(enum.Enum):
    """Why a counselor leg could not be placed."""

    COUNSELOR = "counselor"  # Twilio refused the counselor's own address: it counts against them
    SERVICE = "service"  # credentials, permissions, 5xx, timeouts, network: nobody on the staff


class Outcome(enum.Enum):
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    UNREACHED = "unreached"


# Events ----------------------------------------------------------------------


@dataclass(frozen=True)
class LegAnswered:
    """The counselor picked up: the whisper plays (leg status in-progress)."""

    offer: int


@dataclass(frozen=True)
class LegAccepted:
    """The counselor pressed 1 after the whisper."""

    offer: int


@dataclass(frozen=True)
class LegDeclined:
    """Another key, or no key, after the whisper."""

    offer: int


@dataclass(frozen=True)
class LegMissed:
    """The leg ended unanswered: no-answer, busy, or hung up before accepting."""

    offer: int


@dataclass(frozen=True)
class LegFailed:
    """The leg could not be placed, or Twilio reported it failed."""

    offer: int
    blame: Blame


@dataclass(frozen=True)
class OfferWithdrawn:
    """The offer ended for nobody's fault: an administrator changed the counselor's
    presence, or another caller claimed the counselor first."""

    offer: int


@dataclass(frozen=True)
class TierDeadline:
    """The timer of ScheduleDeadline fired."""

    stage: int


@dataclass(frozen=True)
class HoldEnded:
    """The <Dial> action of the caller's conference, for a caller still on the line
    and not connected: the conference ended under them (not by a move)."""

    stage: int


@dataclass(frozen=True)
class DialEnded:
    """A dial step's <Dial> action, for a caller still on the line."""

    stage: int
    answered: bool


@dataclass(frozen=True)
class MoveLanded:
    """A caller moved out of their conference reached the step (its resume URL)."""

    stage: int


@dataclass(frozen=True)
class CallerLeft:
    """Any callback that carries a final CallStatus for the caller's own call."""


@dataclass(frozen=True)
class CallerWentElsewhere:
    """Offered early, the caller went somewhere the early offer does not fit: another
    line, queue or need, a language the counselor lacks, or the flow's end."""


@dataclass(frozen=True)
class ApiDegraded:
    """Twilio's REST API failed for a reason that is nobody's on the staff."""


@dataclass(frozen=True)
class ApiRestored:
    """Twilio's REST API answers again."""


@dataclass(frozen=True)
class HoldRound:
    """The conference wait URL was requested: the caller is holding right now."""


@dataclass(frozen=True)
class CounselorFreed:
    """Who is available changed (a counselor became free, wrap-up ended)."""


Event = (
    LegAnswered | LegAccepted | LegDeclined | LegMissed | LegFailed | OfferWithdrawn
    | TierDeadline | HoldEnded | DialEnded | MoveLanded | CallerLeft | ApiDegraded | ApiRestored
    | HoldRound | CounselorFreed | CallerWentElsewhere
)


# Actions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Ring:
    """Ring the counselor's phone for `ring_seconds` (a REST counselor leg)."""

    offer: int
    counselor: str
    ring_seconds: int


@dataclass(frozen=True)
class CancelLeg:
    """End this offer: its leg stops ringing, a counselor hearing the whisper is
    told the caller is gone, and the counselor is free again."""

    offer: int
    counselor: str


@dataclass(frozen=True)
class Enqueue:
    """The caller's next TwiML is their conference; they join the waiting line
    of this warm step (or move to its tier, if still in the line)."""

    index: int
    stage: int
    tier: str
    counselors: tuple[str, ...]


@dataclass(frozen=True)
class SetTier:
    """The caller, holding, moves on to this warm step's tier (no new TwiML)."""

    index: int
    stage: int
    tier: str
    counselors: tuple[str, ...]


@dataclass(frozen=True)
class Arrive:
    """The caller, offered early, reaches this warm step: their line takes the step's
    tier and counselors, and the early offer (if any) stays open."""

    index: int
    stage: int
    tier: str
    counselors: tuple[str, ...]


@dataclass(frozen=True)
class AcceptEarly:
    """The counselor who accepted before the caller arrived has them now: their
    accept stands (the caller's next TwiML joins the conference they wait in)."""

    offer: int
    counselor: str


@dataclass(frozen=True)
class Dequeue:
    """The caller leaves the waiting line ('backup' also for a caller offered
    early who went elsewhere: a later warm step puts them back on it)."""

    status: Literal["backup", "abandoned"]


@dataclass(frozen=True)
class DialLine:
    """The caller's next TwiML: `prompt` (if any), then a <Dial> of the step's targets
    for its timeout, showing the caller's number when `pass_caller_id`, else ours."""

    index: int
    stage: int
    step: DialStep
    prompt: str | None
    pass_caller_id: bool


@dataclass(frozen=True)
class MoveCaller:
    """The caller is holding in their conference: take them to the TwiML of the
    DialLine of this stage (a REST redirect to the resume URL)."""

    index: int
    stage: int


@dataclass(frozen=True)
class ScheduleDeadline:
    """At `at`, feed TierDeadline(stage)."""

    stage: int
    at: datetime


@dataclass(frozen=True)
class RecordOutcome:
    outcome: Outcome
    tier: str
    name: str
    counselor: str | None = None


@dataclass(frozen=True)
class EndCall:
    """The caller's next TwiML hangs up (a dialled line answered and hung up, or
    the national backup never answered)."""


Action = (
    Ring | CancelLeg | Enqueue | SetTier | Dequeue | DialLine | MoveCaller
    | ScheduleDeadline | RecordOutcome | EndCall | Arrive | AcceptEarly
)
