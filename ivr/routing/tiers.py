"""Who to ring for a caller, tier by tier: pure selection over a RoutingPlan.

Rules:
- the caller's state picks the local tier (centers that serve it) and the
  backup tier (centers that back up that state, then those that back up its
  region); an unknown state uses the plan's default region, which is a
  state, a region (no local tier) or "national" (national tier only);
- language is a hard requirement at the local and backup tiers: a center,
  or a counselor, that does not speak it is left out; the national backup
  answers every language;
- `need` (e.g. "veteran") is a preference: centers with that skill come
  first within a tier, counselors with it get the better rank (`rank`), the
  others still follow;
- a center is rung in one tier only (the first that lists it);
- tiers with nobody to ring are dropped; the national tier is always last,
  even for a queue the plan does not know (a plan reloaded under a live
  call must not strand it).
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.languages import base_code
from ivr.routing.model import (
    DEFAULT_RING_TIMEOUT,
    NATIONAL,
    Center,
    Counselor,
    Line,
    RoutingPlan,
    Tier,
    TierKind,
    UnknownLine,
)
from ivr.routing.states import STATES


@dataclass(frozen=True)
class TierTarget:
    kind: TierKind
    centers: tuple[Center, ...]  # in ringing order; empty for the national tier
    counselors: tuple[Counselor, ...]  # of those centers, speaking the language, by rank
    external_numbers: tuple[str, ...]  # numbers dialled as is (external centers, national)
    ring_timeout: float
    skip_when_unavailable: bool
    ranks: tuple[int, ...] = ()  # rank(counselor, need) of each of `counselors`


# The order in which counselors are offered a caller, written down once:
# among the available counselors of the caller's tier who speak their
# language, the lowest rank first, then the longest idle, then the id.
# The rank is the plan's preference, decided here alone and kept with each
# id in the caller's steps; idle time is live (the dispatcher's snapshot
# lists the free counselors longest idle first), so the order itself is
# taken in one place, ivr.routing.progression.best_free. Callers are served
# longest waiting first: the dispatcher advances them in that order, each
# taking from what the older ones left. A tier's `counselors` are listed by
# rank for whoever reads them; nothing rings them in that listing's order.
def rank(counselor: Counselor, need: str | None) -> int:
    """0: has the skill the caller needs (or the caller needs none); 1: the others."""
    return 0 if need is None or need in counselor.skills else 1


def _where(plan: RoutingPlan, caller_state: str | None) -> tuple[str | None, str | None]:
    """(state, region) to route by, the default region standing in for an unknown state."""
    state = caller_state if caller_state in STATES else None
    if state is None:
        default = plan.default_region
        if default in STATES:
            state = default
        elif default in plan.regions:
            return None, default
        else:
            return None, None
    return state, plan.region_of(state)


def _candidates(
    plan: RoutingPlan, kind: TierKind, state: str | None, region: str | None
) -> list[Center]:
    centers = list(plan.centers.values())
    if kind == "local":
        return [c for c in centers if state is not None and state in c.serves]
    # A center backing up the state itself is closer than one backing up the region.
    direct = [c for c in centers if state is not None and state in c.backup_for]
    regional = [c for c in centers if region is not None and region in c.backup_for]
    return direct + [c for c in regional if c not in direct]


def _target(
    tier: Tier, centers: list[Center], language: str, need: str | None
) -> TierTarget | None:
    speaking = [c for c in centers if language in c.languages]
    if need:
        # sorted() is stable: file order stays within each group.
        speaking.sort(key=lambda c: need not in c.skills)
    counselors = [p for c in speaking for p in c.counselors if language in p.languages]
    counselors.sort(key=lambda p: rank(p, need))
    numbers = [c.number for c in speaking if c.number]
    if not counselors and not numbers:
        return None
    # A center listing the language while none of its counselors speaks it adds no one.
    ringing = {p.center for p in counselors}
    return TierTarget(
        tier.kind,
        tuple(c for c in speaking if c.number or c.id in ringing),
        tuple(counselors),
        tuple(numbers),
        tier.ring_timeout,
        tier.skip_when_unavailable,
        tuple(rank(p, need) for p in counselors),
    )


def resolve(
    plan: RoutingPlan,
    queue: str,
    caller_state: str | None,
    language: str,
    need: str | None = None,
) -> tuple[TierTarget, ...]:
    """The tiers to ring for a caller, in order, the national backup last."""
    found = plan.queues.get(queue)
    tiers = found.tiers if found is not None else ()
    state, region = _where(plan, caller_state)
    lang = base_code(language)
    targets: list[TierTarget] = []
    used: set[str] = set()
    national: TierTarget | None = None
    for tier in tiers:
        if tier.kind == NATIONAL:
            national = TierTarget(
                "national", (), (), (plan.national_backup.number,), tier.ring_timeout, False
            )
            break
        fresh = [c for c in _candidates(plan, tier.kind, state, region) if c.id not in used]
        target = _target(tier, fresh, lang, need)
        if target is not None:
            targets.append(target)
            used.update(c.id for c in target.centers)
    if national is None:
        national = TierTarget(
            "national", (), (), (plan.national_backup.number,), DEFAULT_RING_TIMEOUT, False
        )
    targets.append(national)
    return tuple(targets)


def line(plan: RoutingPlan, name: str) -> Line:
    """A special line of the plan ("veterans"); "national" is the national backup."""
    if name in plan.lines:
        return plan.lines[name]
    if name == NATIONAL:
        return plan.national_backup
    raise UnknownLine(name)
