"""One exception hierarchy: every exception class the IVR defines derives from IvrError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import ivr
from ivr.errors import (
    ConfigError,
    ContentError,
    DatabaseError,
    IvrError,
    RequestError,
    SimError,
    SpeechError,
    TwilioError,
)


def defined_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in a module of `ivr`, by its dotted name."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(ivr.__path__, prefix="ivr."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == info.name:
                found[f"{info.name}.{cls.__qualname__}"] = cls
    return found


def test_every_exception_class_of_the_package_derives_from_ivr_error() -> None:
    found = defined_exceptions()
    # The walk must see the package's exceptions, or this test checks nothing.
    assert {"ivr.errors.IvrError", "ivr.content.InvalidContent", "ivr.sim.errors.TwimlError",
            "ivr.telephony.rest.ServiceError"} <= set(found)
    strays = sorted(name for name, cls in found.items() if not issubclass(cls, IvrError))
    assert strays == []


def test_the_branches_say_whose_fault_it_is() -> None:
    from ivr.config import ConfigError as FromConfig
    from ivr.content import InvalidContent
    from ivr.routing.model import RoutingError
    from ivr.sim.errors import TwimlError
    from ivr.speech.errors import SpeechConfigError
    from ivr.storage.counselors import UnknownCounselor
    from ivr.storage.database import DatabaseError as FromDatabase
    from ivr.telephony.rest import ServiceError
    from ivr.telephony.streamproto import StreamProtocolError
    from ivr.telephony.twiml import MissingPrompt
    from ivr.wavfile import WavError
    from ivr.yamlsrc import YamlSyntaxError

    assert FromConfig is ConfigError and FromDatabase is DatabaseError
    for cls in (InvalidContent, YamlSyntaxError, WavError, MissingPrompt, RoutingError):
        assert issubclass(cls, ContentError), cls
    assert issubclass(SpeechConfigError, SpeechError)
    assert issubclass(ServiceError, TwilioError) and issubclass(StreamProtocolError, TwilioError)
    assert issubclass(UnknownCounselor, RequestError)
    assert issubclass(TwimlError, SimError)
    branches = (ConfigError, ContentError, SpeechError, DatabaseError, TwilioError, RequestError,
                SimError)
    assert all(issubclass(b, IvrError) for b in branches)


def test_builtin_bases_callers_rely_on_are_kept() -> None:
    from ivr.routing.model import UnknownLine
    from ivr.sim.errors import ScriptError
    from ivr.storage.counselors import InvalidPresence
    from ivr.telephony.twiml import MissingPrompt
    from ivr.wavfile import WavError

    assert issubclass(UnknownLine, KeyError)
    assert issubclass(WavError, ValueError) and issubclass(ScriptError, ValueError)
    assert issubclass(InvalidPresence, ValueError)
    assert issubclass(MissingPrompt, LookupError)
