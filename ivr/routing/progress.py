"""Where a transfer stands: a frozen value, stored with the call between webhooks.

`Progress.to_json` / `Progress.from_json` are its one codec: the call row's
`transfer` column holds exactly this object, and SQL that reads it uses the
same key names. The keys (stable; add, never rename):

  steps             [step_to_json(step), ...], the national backup last
  index             the current step
  phase             "early" | "holding" | "dialing" | "connected" | "gone" | "unreached"
                    | "withdrawn"
  stage             bumped on every step entered (a redial too); timers and
                    <Dial> callbacks carry the stage they belong to
  started_at        ISO 8601: the transfer began (the flow handed the caller over)
  stage_started_at  ISO 8601: the current step began
  deadline          ISO 8601 or null: the end of the current warm step
  offer             null or {"number", "counselor", "made_at", "ring_seconds", "answered",
                    "accepted"}
  offers_made       offers so far in this transfer (the next offer is number + 1)
  tried             counselor ids offered in the current warm step
  redials           redials of the national backup so far
  queued            the caller is in the waiting line (a warm step)
  moved_at          ISO 8601 or null: a move out of the conference is pending since
  queue, line, language, need, caller_state   what the flow asked for
  pass_caller_id    a <Dial> may show the caller's own number (else ours)
  languages         while early: every language the caller may still choose on
                    the way to this transfer (the early counselor speaks them all)
  arriving          offered early, the caller reached the transfer but has not
                    been in their conference yet (its wait URL not requested)

The first seven keys and `redials` are those of the record written before
this module existed; such a record decodes as a transfer whose warm step
is long over, so its next event moves it on.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ivr.routing.rules import tier_seconds
from ivr.routing.steps import Step, WarmStep, step_from_json, step_to_json

_LONG_AGO: Final = datetime(2000, 1, 1, tzinfo=UTC)


class Phase(enum.Enum):
    # Offered early: the flow still plays a menu whose silence leads to this
    # transfer, and a counselor fitting every way there may already be rung.
    EARLY = "early"
    HOLDING = "holding"  # at a warm step: in their conference (or its lead-in prompt)
    DIALING = "dialing"  # at a dial step: its <Dial> rings, or a move to it is pending
    CONNECTED = "connected"  # a counselor accepted, or a dialled line answered
    GONE = "gone"  # the caller hung up first
    UNREACHED = "unreached"  # the national backup went unanswered every time
    WITHDRAWN = "withdrawn"  # offered early, but the caller went elsewhere in the flow

    @property
    def over(self) -> bool:
        return self in (Phase.CONNECTED, Phase.GONE, Phase.UNREACHED, Phase.WITHDRAWN)


@dataclass(frozen=True)
class Offer:
    """A counselor's phone ringing for this caller (or its whisper playing)."""

    number: int  # 1, 2, ... within the transfer: leg callbacks name it
    counselor: str
    made_at: datetime
    ring_seconds: int
    answered: bool = False  # the counselor picked up: the whisper plays
    # An early offer accepted (pressed 1 while the caller was in the menu, or
    # hearing the transfer prompt): the counselor waits in the caller's
    # conference for them.
    accepted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "counselor": self.counselor,
                "made_at": self.made_at.isoformat(), "ring_seconds": self.ring_seconds,
                "answered": self.answered, "accepted": self.accepted}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Offer:
        return cls(int(data["number"]), str(data["counselor"]), _time(data["made_at"]),
                   int(data["ring_seconds"]), bool(data.get("answered", False)),
                   bool(data.get("accepted", False)))


@dataclass(frozen=True)
class Progress:
    steps: tuple[Step, ...]
    index: int
    phase: Phase
    stage: int
    started_at: datetime
    stage_started_at: datetime
    language: str
    deadline: datetime | None = None
    offer: Offer | None = None
    offers_made: int = 0
    tried: tuple[str, ...] = ()
    redials: int = 0
    queued: bool = False
    moved_at: datetime | None = None
    queue: str | None = None
    line: str | None = None
    need: str | None = None
    caller_state: str | None = None
    pass_caller_id: bool = True
    languages: tuple[str, ...] = ()
    arriving: bool = False

    @property
    def step(self) -> Step:
        return self.steps[self.index]

    def seconds_left(self, now: datetime) -> float:
        """Of the current warm step (0 when it has no deadline)."""
        return 0.0 if self.deadline is None else (self.deadline - now).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": [step_to_json(s) for s in self.steps],
            "index": self.index,
            "phase": self.phase.value,
            "stage": self.stage,
            "started_at": self.started_at.isoformat(),
            "stage_started_at": self.stage_started_at.isoformat(),
            "deadline": _iso(self.deadline),
            "offer": None if self.offer is None else self.offer.to_json(),
            "offers_made": self.offers_made,
            "tried": list(self.tried),
            "redials": self.redials,
            "queued": self.queued,
            "moved_at": _iso(self.moved_at),
            "queue": self.queue,
            "line": self.line,
            "language": self.language,
            "need": self.need,
            "caller_state": self.caller_state,
            "pass_caller_id": self.pass_caller_id,
            "languages": list(self.languages),
            "arriving": self.arriving,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Progress:
        steps = tuple(step_from_json(s) for s in data["steps"])
        index = int(data["index"])
        warm = isinstance(steps[index], WarmStep)
        started = _time(data.get("started_at") or _LONG_AGO.isoformat())
        stage_started = _time(data.get("stage_started_at") or started.isoformat())
        deadline = data.get("deadline")
        if deadline is None and warm and "phase" not in data:
            step = steps[index]
            assert isinstance(step, WarmStep)
            deadline = (stage_started + timedelta(seconds=tier_seconds(step))).isoformat()
        default_phase = Phase.HOLDING if warm else Phase.DIALING
        offer = data.get("offer")
        return cls(
            steps=steps,
            index=index,
            phase=Phase(data.get("phase", default_phase.value)),
            stage=int(data.get("stage", 0)),
            started_at=started,
            stage_started_at=stage_started,
            language=str(data["language"]),
            deadline=None if deadline is None else _time(deadline),
            offer=None if offer is None else Offer.from_json(offer),
            offers_made=int(data.get("offers_made", 0)),
            tried=tuple(str(c) for c in data.get("tried", ())),
            redials=int(data.get("redials", 0)),
            queued=bool(data.get("queued", warm)),
            moved_at=None if data.get("moved_at") is None else _time(data["moved_at"]),
            queue=data.get("queue"),
            line=data.get("line"),
            need=data.get("need"),
            caller_state=data.get("caller_state"),
            pass_caller_id=bool(data.get("pass_caller_id", True)),
            languages=tuple(str(x) for x in data.get("languages", ())),
            arriving=bool(data.get("arriving", False)),
        )


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _time(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
