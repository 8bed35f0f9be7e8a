"""The routing plan as typed, frozen values: who answers callers from where.

The plan names regions (groups of states), centers (the states they serve
locally, the regions or states they back up, their languages and skills,
and either their counselors or one external number), special lines (the
veterans line) and the national backup. Queues list the tiers a transfer
walks through: the local center, then state or regional backups, then the
national backup, always last.

`ivr.routing.loader` reads `flows/routing.yaml` into these values and checks
it; everything here is pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from ivr.errors import ContentError
from ivr.routing.states import STATES
from ivr.yamlsrc import Pos

TierKind = Literal["local", "backup", "national"]
TIER_ORDER: Final[tuple[TierKind, ...]] = ("local", "backup", "national")

NATIONAL: Final = "national"  # default_region value: unknown callers go to the national tier
DEFAULT_RING_TIMEOUT: Final = 30.0  # seconds; Twilio's own <Dial> default
# Twilio accepts 5 to 600 seconds for a dial or participant timeout.
MIN_RING_TIMEOUT: Final = 5.0
MAX_RING_TIMEOUT: Final = 600.0

_NOWHERE: Final = Pos("?", 1, 1)


class RoutingError(ContentError):
    """Base of the errors raised by `ivr.routing` at run time: the plan lacks something."""


class UnknownLine(RoutingError, KeyError):
    """A special line the plan does not define."""


@dataclass(frozen=True)
class Counselor:
    id: str
    name: str
    center: str  # id of the center the counselor works for
    phone: str | None = None  # E.164
    sip: str | None = None  # sip:user@host
    languages: tuple[str, ...] = ()  # the center's languages unless the plan narrows them
    skills: tuple[str, ...] = ()  # the center's skills plus the counselor's own
    pos: Pos = field(default=_NOWHERE, compare=False)

    @property
    def address(self) -> str:
        """What to dial: the phone number or the SIP URI."""
        return self.phone or self.sip or ""


@dataclass(frozen=True)
class Center:
    id: str
    name: str
    serves: tuple[str, ...]  # states answered at the local tier
    backup_for: tuple[str, ...]  # regions and states answered at the backup tier
    languages: tuple[str, ...]
    skills: tuple[str, ...] = ()
    counselors: tuple[Counselor, ...] = ()
    number: str | None = None  # an external center we dial instead of counselors
    pos: Pos = field(default=_NOWHERE, compare=False)


@dataclass(frozen=True)
class Line:
    """A number dialled as is: a special line (veterans) or the national backup."""

    id: str
    name: str
    number: str
    languages: tuple[str, ...] = ()
    pos: Pos = field(default=_NOWHERE, compare=False)


@dataclass(frozen=True)
class Tier:
    kind: TierKind
    ring_timeout: float = DEFAULT_RING_TIMEOUT
    # Move on at once when no counselor of the tier is free instead of ringing
    # out the timeout. External numbers are always taken as available.
    skip_when_unavailable: bool = False
    pos: Pos = field(default=_NOWHERE, compare=False)


@dataclass(frozen=True)
class Queue:
    id: str
    tiers: tuple[Tier, ...]
    pos: Pos = field(default=_NOWHERE, compare=False)

    @property
    def max_ring_seconds(self) -> float:
        """Worst-case time spent ringing through every tier (for time-to-human)."""
        return sum(t.ring_timeout for t in self.tiers)


@dataclass(frozen=True)
class RoutingPlan:
    national_backup: Line
    centers: Mapping[str, Center]
    queues: Mapping[str, Queue]
    regions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    lines: Mapping[str, Line] = field(default_factory=dict)
    default_region: str = NATIONAL  # "national", a region name or a state code
    georoute_header: str | None = None  # e.g. "X-Georoute-State"
    source: str = "?"
    version: str = ""  # content hash of the source file
    pos: Pos = field(default=_NOWHERE, compare=False)

    @property
    def georoute_param(self) -> str | None:
        """The Twilio webhook parameter carrying the georoute header."""
        return f"SipHeader_{self.georoute_header}" if self.georoute_header else None

    def region_of(self, state: str) -> str | None:
        for name, states in self.regions.items():
            if state in states:
                return name
        return None

    def backed_up_states(self, center: Center) -> frozenset[str]:
        """The states a center answers at the backup tier."""
        out: set[str] = set()
        for target in center.backup_for:
            out.update(self.regions.get(target, (target,) if target in STATES else ()))
        return frozenset(out)

    def languages(self) -> tuple[str, ...]:
        return tuple(sorted({lang for c in self.centers.values() for lang in c.languages}))
