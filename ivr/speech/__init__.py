"""Speech for the IVR: phone audio, Vosk recognition of menu words, prompt tools.

Modules: `audio` (mu-law, resampling, prompt WAVs, energy gate), `asr`
(models, thread pool, listening sessions), `voicing` (is a sound a voice),
`vocabulary` (a model's word list without loading it), `render` (espeak-ng
development prompts), `fetch` (official model downloads), `errors` (the
exception hierarchy).
Vosk itself is imported only when a model is loaded.
"""

from ivr.speech.asr import (
    Decision,
    ListenConfig,
    ListenSession,
    Match,
    NoMatch,
    SpeechEngine,
    SpeechModels,
)
from ivr.speech.errors import (
    AudioFormatError,
    ModelFetchError,
    RenderError,
    SpeechConfigError,
    SpeechError,
)

__all__ = [
    "AudioFormatError",
    "Decision",
    "ListenConfig",
    "ListenSession",
    "Match",
    "ModelFetchError",
    "NoMatch",
    "RenderError",
    "SpeechConfigError",
    "SpeechEngine",
    "SpeechError",
    "SpeechModels",
]
