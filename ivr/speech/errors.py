"""The one exception hierarchy of the speech package.

Callers catch `SpeechError` to handle every speech failure at once; the
subclasses say which edge was wrong (an audio file, a model or its
configuration, prompt rendering, a model download).
"""

from __future__ import annotations

from ivr.errors import SpeechError

__all__ = [
    "AudioFormatError",
    "ModelFetchError",
    "RenderError",
    "SpeechConfigError",
    "SpeechError",
]


class AudioFormatError(SpeechError):
    """An audio file is not in a format the IVR can stream."""


class SpeechConfigError(SpeechError):
    """A speech model or its configuration cannot be used."""


class RenderError(SpeechError):
    """A prompt could not be rendered to a recording."""


class ModelFetchError(SpeechError):
    """A model download failed, was corrupt, or was unsafe to unpack."""
