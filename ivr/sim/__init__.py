"""The Twilio-behaving call simulator (`ivr call`, end-to-end tests).

It talks to the server only over HTTP, exactly as Twilio does: signed form
webhooks, TwiML executed verb by verb on a simulated clock, action and
Redirect URLs followed, fallback URL on failures, status callback at the end.
"""

from ivr.sim.call import run_document, simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.counselors import ApiError, Busy, CounselorScript, Fails, NoAnswer
from ivr.sim.errors import MediaError, ScriptError, SimError, TwimlError
from ivr.sim.hold import ConferenceDriver, LonelyConference, MediaStreamDriver, NoMediaStreams
from ivr.sim.media import MediaStreams, StreamSettings
from ivr.sim.options import add_call_arguments, script_from_args, world_from_args
from ivr.sim.script import (
    CallerInput,
    CallScript,
    DialOutcome,
    Press,
    Silence,
    Speak,
    SpeakAudio,
)
from ivr.sim.session import CallSession, Document, Step
from ivr.sim.signing import compute_signature
from ivr.sim.transcript import Transcript
from ivr.sim.twiml import parse_twiml
from ivr.sim.verbs import VerbHandler, default_handlers
from ivr.sim.world import TwilioWorld

__all__ = [
    "ApiError",
    "Busy",
    "CallScript",
    "CallSession",
    "CallerInput",
    "ConferenceDriver",
    "CounselorScript",
    "DialOutcome",
    "Document",
    "Fails",
    "LonelyConference",
    "MediaError",
    "MediaStreamDriver",
    "MediaStreams",
    "NoAnswer",
    "NoMediaStreams",
    "Press",
    "ScriptError",
    "Silence",
    "SimConfig",
    "SimError",
    "Speak",
    "SpeakAudio",
    "Step",
    "StreamSettings",
    "Transcript",
    "TwilioWorld",
    "TwimlError",
    "VerbHandler",
    "add_call_arguments",
    "compute_signature",
    "default_handlers",
    "parse_twiml",
    "run_document",
    "script_from_args",
    "simulate_call",
    "world_from_args",
]
