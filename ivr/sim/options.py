"""Command-line options of `ivr call`, turned into a CallScript.

`--press`, `--silence`, `--say` and `--say-audio` form one ordered input
sequence: the caller does them in the order they appear on the command
line, one per listening point.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ivr.sim.clock import DEFAULT_SCALE
from ivr.sim.counselors import (
    BEHAVIOUR_HELP,
    DEFAULT_BEHAVIOUR,
    Behaviour,
    parse_assignment,
    parse_behaviour,
)
from ivr.sim.errors import ScriptError
from ivr.sim.geo import number_in_state
from ivr.sim.script import (
    DEFAULT_FROM,
    DEFAULT_SIP_DOMAIN,
    DEFAULT_TO,
    DIAL_KINDS,
    CallerInput,
    CallScript,
    DialKind,
    DialOutcome,
    Press,
    Silence,
    Speak,
    SpeakAudio,
)
from ivr.speech.audio import load_prompt_wav
from ivr.speech.errors import AudioFormatError

if TYPE_CHECKING:
    from ivr.sim.world import TwilioWorld

INPUTS_DEST = "caller_inputs"


class _AppendInput(argparse.Action):
    """Appends one caller input to the shared, ordered input list."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        self.kind: str = kwargs.pop("kind")
        super().__init__(option_strings, INPUTS_DEST, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        # Copy, never mutate: argparse shares the default list between parses.
        inputs = list(getattr(namespace, INPUTS_DEST, None) or [])
        try:
            inputs.append(self._make(values))
        except ScriptError as exc:
            raise argparse.ArgumentError(self, str(exc)) from exc
        setattr(namespace, INPUTS_DEST, inputs)

    def _make(self, values: str | Sequence[Any] | None) -> CallerInput:
        value = values if isinstance(values, str) else ""
        if self.kind == "press":
            return Press.parse(value)
        if self.kind == "say":
            return Speak(value)
        if self.kind == "say-audio":
            path = Path(value)
            if not path.is_file():
                raise ScriptError(f"{value}: no such file")
            try:
                # Checked now, so a wrong format stops the command before the call.
                load_prompt_wav(path)
            except AudioFormatError as exc:
                raise ScriptError(str(exc)) from exc
            return SpeakAudio(path)
        return Silence()


def _sip_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name.strip(), value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError("seconds must not be negative")
    return value


def add_call_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `ivr call` to `parser`."""
    parser.set_defaults(**{INPUTS_DEST: []})
    parser.add_argument(
        "--server", metavar="URL",
        help="base URL of a running server (default: start one in-process)",
    )
    parser.add_argument(
        "--database", metavar="URL",
        help="without --server: the PostgreSQL the in-process server uses (default: a "
        "throwaway embedded one, never IVR_DATABASE_URL); its counselors are left as they are",
    )
    parser.add_argument(
        "--sip", metavar="DOMAIN", nargs="?", const=DEFAULT_SIP_DOMAIN,
        help="call through a Twilio SIP domain (To and From as SIP URIs; default domain "
        f"{DEFAULT_SIP_DOMAIN}), as carriers that send --sip-header do",
    )
    parser.add_argument(
        "--from", dest="from_number", metavar="+1...",
        help=f"caller's number (default {DEFAULT_FROM}, or one in --state)",
    )
    parser.add_argument(
        "--to", dest="to_number", metavar="+1...", default=DEFAULT_TO,
        help=f"number called (default {DEFAULT_TO})",
    )
    parser.add_argument("--state", metavar="XX", help="caller's state as Twilio reports it")
    parser.add_argument("--zip", metavar="ZIP", help="caller's ZIP code as Twilio reports it")
    parser.add_argument(
        "--sip-header", metavar="NAME=VALUE", type=_sip_header, action="append", default=[],
        help="SIP X- header from the carrier (sent as SipHeader_NAME; needs --sip); repeatable",
    )
    parser.add_argument(
        "--press", metavar="D[@Ns]", action=_AppendInput, kind="press",
        help="press keys at the next listening point, or with @Ns N seconds into the menu "
        "(from its first prompt's start: keys pressed where Twilio does not listen are "
        "lost); repeatable, in order",
    )
    parser.add_argument(
        "--silence", nargs=0, action=_AppendInput, kind="silence",
        help="stay silent at the next listening point; repeatable, in order",
    )
    parser.add_argument(
        "--say", metavar="TEXT", action=_AppendInput, kind="say",
        help="say TEXT at the next listening point; repeatable, in order",
    )
    parser.add_argument(
        "--say-audio", metavar="FILE.wav", action=_AppendInput, kind="say-audio",
        help="say a recording at the next listening point; repeatable, in order",
    )
    parser.add_argument(
        "--dial", metavar="OUTCOME", choices=DIAL_KINDS, action="append", default=[],
        help="what the party of each successive <Dial> does: "
        + ", ".join(DIAL_KINDS) + " (default: answer)",
    )
    parser.add_argument(
        "--hangup-after", metavar="SECONDS", type=_seconds,
        help="the caller hangs up after SECONDS of simulated time",
    )
    parser.add_argument(
        "--duplicate-callbacks", action="store_true",
        help="send every action and status callback twice, as Twilio retries can",
    )
    add_world_arguments(parser)


def script_from_args(ns: argparse.Namespace) -> CallScript:
    """The CallScript described by options added with add_call_arguments."""
    state: str | None = getattr(ns, "state", None)
    from_number: str | None = getattr(ns, "from_number", None)
    if from_number is None:
        from_number = (number_in_state(state) if state else None) or DEFAULT_FROM
    return CallScript(
        from_number=from_number,
        to_number=getattr(ns, "to_number", None) or DEFAULT_TO,
        from_state=state.upper() if state else None,
        from_zip=getattr(ns, "zip", None),
        sip_headers=dict(getattr(ns, "sip_header", None) or []),
        sip_domain=getattr(ns, "sip", None),
        inputs=tuple(getattr(ns, INPUTS_DEST, None) or ()),
        dial_outcomes=tuple(
            DialOutcome(cast(DialKind, kind)) for kind in getattr(ns, "dial", None) or ()
        ),
        hangup_after=getattr(ns, "hangup_after", None),
        duplicate_callbacks=bool(getattr(ns, "duplicate_callbacks", False)),
    )


# -- the counselors' side (the world the server's REST calls reach) ------------


def _counselor(text: str) -> tuple[str, Behaviour]:
    try:
        return parse_assignment(text)
    except ScriptError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _behaviour(text: str) -> Behaviour:
    try:
        return parse_behaviour(text)
    except ScriptError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _milliseconds(text: str) -> float:
    value = _seconds(text)
    if not 0 < value <= 1000:
        raise argparse.ArgumentTypeError("milliseconds must be in (0, 1000]")
    return value


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    """Options for the counselors the server calls through the REST API."""
    parser.add_argument(
        "--counselor", metavar="TARGET=BEHAVIOUR", type=_counselor, action="append",
        default=[],
        help="what the counselor at TARGET (number or SIP URI) does when the server calls: "
        f"{BEHAVIOUR_HELP}; repeat a TARGET for its successive calls",
    )
    parser.add_argument(
        "--counselors-default", metavar="BEHAVIOUR", type=_behaviour,
        help="what any other target does (default: accept after 3 s)",
    )
    parser.add_argument(
        "--time-scale", metavar="MS", type=_milliseconds,
        help="real milliseconds one simulated second lasts while parties wait on each "
        "other (default 10)",
    )
    parser.add_argument(
        "--api-port", metavar="PORT", type=int, default=0,
        help="port of the emulated Twilio REST API (default: a free one)",
    )


def world_from_args(
    ns: argparse.Namespace,
    *,
    account_sid: str | None = None,
    auth_token: str | None = None,
) -> TwilioWorld:
    """The (not yet started) TwilioWorld described by add_world_arguments'
    options; the account defaults to the first call's."""
    from ivr.sim.world import TwilioWorld

    counselors: dict[str, list[Behaviour]] = {}
    for target, behaviour in getattr(ns, "counselor", None) or ():
        counselors.setdefault(target, []).append(behaviour)
    default: Behaviour | None = getattr(ns, "counselors_default", None)
    scale_ms: float | None = getattr(ns, "time_scale", None)
    return TwilioWorld(
        account_sid=account_sid,
        auth_token=auth_token,
        counselors=counselors,
        default=default or DEFAULT_BEHAVIOUR,
        time_scale=DEFAULT_SCALE if scale_ms is None else scale_ms / 1000,
        port=int(getattr(ns, "api_port", 0) or 0),
    )
