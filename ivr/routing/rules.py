"""The rules of a transfer, once: the progression follows them, the bounds sum them.

- A warm step (a tier of counselors) lasts `tier_seconds`: its timeout, but
  never less than one full ring plus the moment it takes to claim a counselor.
  It is the only timer of the transfer.
- A counselor's phone rings for what is left of the tier, and only when at
  least MIN_RING is left: a phone that could ring less cannot be answered in
  time, and no ring outlasts its tier.
- The next step worth entering (`next_step`) is the first one from a given
  index that is a dial step, or a warm step when the REST API is usable and
  either the tier waits for its counselors or one of them is free now. The
  last step, the national backup, is a dial step, so there always is one.
- Before a dial step the caller hears `prompt_before` (the backup prompt
  before the national backup, unless the caller arrives there straight from
  the flow, whose own transfer prompt has just played).
- The national backup unanswered is dialled again, BACKUP_REDIALS times:
  there is nowhere further to go.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Final

from ivr.routing.steps import DialStep, Step, WarmStep

MIN_RING: Final = 10  # seconds: a counselor's phone rings at least this long
# Between a tier starting and its first counselor being claimed and rung, the
# dispatcher takes a moment: a tier always lasts long enough for one full ring
# after it, or a short tier would never ring anyone.
CLAIM_SLACK: Final = 2
BACKUP_REDIALS: Final = 2  # further dials of the national backup after it went unanswered
BACKUP_PROMPT: Final = "backup_connecting"  # said before the national backup is dialled
# A caller still holding this long after a move was issued was not moved (the
# REST redirect failed): the next hold round issues it again. Shorter than a
# hold round, so every round after a failure retries.
MOVE_GRACE: Final = 10.0


def tier_seconds(step: WarmStep) -> int:
    """How long a warm step lasts at most."""
    return max(step.timeout, MIN_RING + CLAIM_SLACK)


def can_ring(seconds_left: float) -> bool:
    """Whether a counselor may still be rung with this much of the tier left."""
    return seconds_left >= MIN_RING


def ring_seconds(seconds_left: float) -> int:
    """The leg's ring timeout: what is left of the tier, in whole seconds (never past it)."""
    return int(seconds_left)


def worth_entering(step: Step, free: Collection[str], degraded: bool) -> bool:
    if isinstance(step, DialStep):
        return True  # plain <Dial> TwiML: needs neither counselors nor the REST API
    if degraded:
        return False  # nobody could be rung
    return not step.skip_when_unavailable or any(c in free for c in step.counselors)


def next_index(steps: Sequence[Step], start: int, worth: Callable[[int], bool]) -> int:
    """Index of the first step from `start` for which `worth(index)`, else the last."""
    for index in range(min(start, len(steps) - 1), len(steps)):
        if worth(index):
            return index
    return len(steps) - 1


def next_step(
    steps: Sequence[Step], start: int, free: Collection[str], degraded: bool
) -> int:
    """Index of the first step from `start` worth entering now."""
    return next_index(steps, start, lambda i: worth_entering(steps[i], free, degraded))


def prompt_before(step: Step, from_flow: bool) -> str | None:
    """The prompt the caller hears before a dial step's <Dial>."""
    if isinstance(step, DialStep) and step.last and not from_flow:
        return BACKUP_PROMPT
    return None


def may_redial(redials: int) -> bool:
    """Whether the national backup, unanswered after `redials` redials, is dialled again."""
    return redials < BACKUP_REDIALS


def check_steps(steps: Sequence[Step]) -> None:
    """A transfer's steps end with the national backup and nothing else is last."""
    if not steps:
        raise ValueError("a transfer needs at least the national backup step")
    final = steps[-1]
    if not (isinstance(final, DialStep) and final.last):
        raise ValueError("the last step of a transfer must be the national backup")
    if any(isinstance(s, DialStep) and s.last for s in steps[:-1]):
        raise ValueError("only the last step of a transfer may be the national backup")
