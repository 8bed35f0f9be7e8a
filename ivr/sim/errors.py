"""The simulator's one small exception hierarchy, a branch of `ivr.errors`."""

from __future__ import annotations

from ivr.errors import SimError

__all__ = ["MediaError", "ScriptError", "SimError", "TwimlError"]


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
