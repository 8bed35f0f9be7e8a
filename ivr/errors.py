"""The IVR's one exception hierarchy.

Every exception class in `ivr` derives from `IvrError` (a test walks the
package to hold this), through the branch that says whose fault it is and so
who can fix it:

    IvrError
    ├── ConfigError     the environment: a setting is missing or wrong
    ├── ContentError    flows, prompts, recordings or the routing plan
    ├── SpeechError     speech models, audio, prompt rendering (ivr.speech.errors)
    ├── DatabaseError   the database cannot be reached or prepared
    ├── TwilioError     Twilio refused or failed a request, or broke its protocol
    ├── RequestError    a request the server's current state cannot honour
    └── SimError        the call simulator's own (ivr.sim.errors)

The concrete classes live beside the code that raises them; several also
derive from a builtin (`KeyError`, `ValueError`, `LookupError`) because
callers catch them by that name.
"""

from __future__ import annotations


class IvrError(Exception):
    """Base of every exception the IVR raises on purpose."""


class ConfigError(IvrError):
    """A setting is missing or wrong; the message names the variable."""


class ContentError(IvrError):
    """The content (flows, prompts, recordings, routing plan) is wrong or lacks something."""


class SpeechError(IvrError):
    """Base of every error raised by `ivr.speech`."""


class DatabaseError(IvrError):
    """The database cannot be reached or prepared."""


class TwilioError(IvrError):
    """Twilio refused or failed a request, or spoke outside its documented protocol."""


class RequestError(IvrError):
    """A request (a webhook, an admin call) the server's current state cannot honour."""


class SimError(IvrError):
    """Base of every error the call simulator raises."""
