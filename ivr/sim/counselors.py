"""What the people (and phones) the server calls through the REST API do.

Behaviours are scripted per target, the way the call's `To` names it: a
phone number (`+15125550100`) or a SIP URI (`sip:desk@center.example`).
A target may be given a sequence of behaviours, one per call placed to
it (the last one repeats); targets with no script get the world's
default behaviour.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ivr.sim.errors import ScriptError

Then = Literal["accept", "decline", "silence", "hangup"]
THEN_CHOICES: tuple[Then, ...] = ("accept", "decline", "silence", "hangup")
ACCEPT_KEY = "1"
DECLINE_KEY = "2"


@dataclass(frozen=True)
class CounselorScript:
    """A counselor who picks up after `answer_after` seconds of ringing, hears
    the whisper and then, at each `<Gather>` of it, `press_delay` seconds
    after its prompts end:

    - accept: presses `digits` (default 1); once in the caller's conference
      talks `talk_seconds`, then hangs up;
    - decline: presses `digits` (default 2);
    - silence: presses nothing;
    - hangup: hangs up `press_delay` seconds after answering, mid-whisper.
    """

    answer_after: float = 3.0
    then: Then = "accept"
    talk_seconds: float = 60.0
    press_delay: float = 1.0
    digits: str | None = None

    def __post_init__(self) -> None:
        if self.then not in THEN_CHOICES:
            raise ScriptError(f"counselor: unknown behaviour {self.then!r}")
        if min(self.answer_after, self.talk_seconds, self.press_delay) < 0:
            raise ScriptError("counselor: durations must not be negative")
        if self.digits is not None and (
            not self.digits or any(c not in "0123456789*#" for c in self.digits)
        ):
            raise ScriptError(f"counselor: {self.digits!r} is not a sequence of keys")

    def keys(self) -> str | None:
        """What the counselor presses at a `<Gather>` (None: nothing)."""
        if self.then == "accept":
            return self.digits or ACCEPT_KEY
        if self.then == "decline":
            return self.digits or DECLINE_KEY
        return None


@dataclass(frozen=True)
class NoAnswer:
    """Rings until the call's Timeout: status no-answer."""


@dataclass(frozen=True)
class Busy:
    """The line is busy: status busy after `after` seconds."""

    after: float = 2.0


@dataclass(frozen=True)
class Fails:
    """The call cannot be connected (dead number, SIP error): status failed."""

    after: float = 1.0


@dataclass(frozen=True)
class ApiError:
    """Creating a call to this target is refused by the REST API itself, with
    an HTTP status and a Twilio error code (default: 21215, the target is
    outside the account's geographic permissions)."""

    status: int = 400
    code: int = 21215
    message: str = ""

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 599:
            raise ScriptError("api error: HTTP status must be 4xx or 5xx")

    def text(self, target: str) -> str:
        if self.message:
            return self.message
        # Wording of https://www.twilio.com/docs/api/errors/21211, /21214, /21217.
        if self.code == 21211:
            return f"Invalid 'To' Phone Number: {target}"
        if self.code == 21214:
            return "'To' phone number cannot be reached"
        if self.code == 21217:
            return "Phone number does not appear to be valid"
        if self.code == 21215:
            return (
                f"Account not authorized to call {target}. Perhaps you need to enable "
                "some international permissions: "
                "https://www.twilio.com/console/voice/calls/geo-permissions/low-risk"
            )
        if self.status >= 500:
            return "Internal Server Error"
        return f"Error {self.code}"


Behaviour = CounselorScript | NoAnswer | Busy | Fails | ApiError
DEFAULT_BEHAVIOUR: Behaviour = CounselorScript(answer_after=3.0, then="accept")
BEHAVIOUR_HELP = (
    "accept[:ANSWER_AFTER[:TALK]], decline[:ANSWER_AFTER], silence[:ANSWER_AFTER], "
    "hangup[:ANSWER_AFTER], no-answer, busy, fail, api-error[:CODE|500]"
)


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ScriptError(f"{what}: {text!r} is not a number of seconds") from None
    if value < 0:
        raise ScriptError(f"{what}: seconds must not be negative")
    return value


def parse_behaviour(text: str) -> Behaviour:
    """`accept`, `accept:5` (answers after 5 s), `accept:5:120` (then talks
    120 s), `decline`, `silence`, `hangup` (each with an optional answer
    delay), `no-answer`, `busy`, `fail`, `api-error` (21215),
    `api-error:CODE`, `api-error:500`."""
    name, _, rest = text.strip().lower().partition(":")
    args = rest.split(":") if rest else []
    if name in THEN_CHOICES:
        if len(args) > (2 if name == "accept" else 1):
            raise ScriptError(f"counselor behaviour {text!r}: too many values")
        defaults = CounselorScript()
        return CounselorScript(
            answer_after=_number(args[0], text) if args else defaults.answer_after,
            then=name,
            talk_seconds=_number(args[1], text) if len(args) > 1 else defaults.talk_seconds,
        )
    if args and name != "api-error":
        raise ScriptError(f"counselor behaviour {text!r} takes no value")
    if name == "no-answer":
        return NoAnswer()
    if name == "busy":
        return Busy()
    if name in ("fail", "failed"):
        return Fails()
    if name == "api-error":
        if not args:
            return ApiError()
        if len(args) > 1 or not args[0].isdigit():
            raise ScriptError(f"counselor behaviour {text!r}: expected api-error:CODE")
        code = int(args[0])
        if 500 <= code <= 599:
            return ApiError(status=code, code=20500)
        return ApiError(code=code)
    raise ScriptError(f"unknown counselor behaviour {text!r} (one of: {BEHAVIOUR_HELP})")


def parse_assignment(text: str) -> tuple[str, Behaviour]:
    """`TARGET=BEHAVIOUR`, as given to `--counselor`."""
    target, sep, behaviour = text.partition("=")
    if not sep or not target.strip():
        raise ScriptError(f"{text!r} is not TARGET=BEHAVIOUR")
    return normalize_target(target), parse_behaviour(behaviour)


def normalize_target(target: str) -> str:
    """How targets are compared: SIP and client schemes are case-insensitive."""
    target = target.strip()
    scheme, sep, rest = target.partition(":")
    if sep and scheme.lower() in ("sip", "client"):
        return f"{scheme.lower()}:{rest}"
    return target


class CounselorBook:
    """Who does what when called."""

    def __init__(
        self,
        behaviours: Mapping[str, Behaviour | Sequence[Behaviour]] | None = None,
        default: Behaviour = DEFAULT_BEHAVIOUR,
        api_errors: Iterable[str] = (),
    ) -> None:
        self.default = default
        self._queues: dict[str, deque[Behaviour]] = {}
        for target, given in (behaviours or {}).items():
            sequence = (
                list(given) if isinstance(given, Sequence) else [given]
            )
            if not sequence:
                raise ScriptError(f"counselor {target}: empty behaviour sequence")
            self._queues[normalize_target(target)] = deque(sequence)
        for target in api_errors:
            self._queues[normalize_target(target)] = deque([ApiError()])

    def next_for(self, target: str) -> Behaviour:
        queue = self._queues.get(normalize_target(target))
        if not queue:
            return self.default
        return queue.popleft() if len(queue) > 1 else queue[0]
