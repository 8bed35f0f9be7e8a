"""The simulator's one small exception hierarchy."""

from __future__ import annotations


class SimError(Exception):
    """Base of every error the call simulator raises."""


class ScriptError(SimError, ValueError):
    """A call script or simulator setting is invalid (caught at the edges)."""


class TwimlError(SimError):
    """A document Twilio would refuse to execute.

    `code` is the Twilio error code the real platform reports for the same
    fault (12100 "Document parse failure" for anything that is not a valid
    TwiML document), so the simulator can pass it on as `ErrorCode` when it
    requests the fallback URL.
    """

    def __init__(self, message: str, code: int = 12100) -> None:
        super().__init__(message)
        self.code = code


class MediaError(SimError):
    """Audio that the simulator cannot measure (not a RIFF/WAVE file)."""
