"""Structured logs on request: IVR_LOG_FORMAT=json gives one JSON object a line.

Each object has the time, level, logger, the event (the message), the call's
SID and the content version. The SID is the one the message names, when it
names one (every log line about a call starts "call <CallSid>" by the
project's convention, and the access log shows the hold URL's `call=`): so
a counselor leg's webhook, which carries the leg's own CallSid, still logs
the caller's call it is about, and so does work outside any request (the
dispatcher ringing a counselor). Otherwise it is the context variable the
request middleware sets (ivr.monitoring) for the webhook being answered.

No caller number is added here: the messages never carry one (the webhook
handlers log CallSids, never From), and the fields added are a CallSid and
a version.
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Final

LOG_FORMAT_VAR: Final = "IVR_LOG_FORMAT"
FORMATS: Final = ("text", "json")

# The call the current request (or task) is about, and the content it runs on.
call_sid: ContextVar[str | None] = ContextVar("call_sid", default=None)
content_version: ContextVar[str | None] = ContextVar("content_version", default=None)

# The version this process serves to new calls, for lines logged outside a
# request (start-up, the dispatcher): a context variable would be frozen into
# each task at its creation and miss a publish.
_serving: str | None = None

_SID_IN_MESSAGE = re.compile(r"\b(CA[0-9a-fA-F]{32})\b")


class JsonFormatter(logging.Formatter):
    """One JSON object a line; outside a request, the version is the one `set_version` gave."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        named = _SID_IN_MESSAGE.search(message)
        sid = named.group(1) if named else call_sid.get()
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": message,
            "call_sid": sid,
            "content_version": content_version.get() or _serving,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def use_format(name: str | None, root: logging.Logger | None = None) -> str:
    """Give the root logger's handlers the format named by IVR_LOG_FORMAT
    (unset or empty: text); the format used. An unknown name keeps text and
    says so, in the format of the logs it warns in."""
    root = root or logging.getLogger()
    chosen = (name or "text").strip().lower() or "text"
    if chosen not in FORMATS:
        logging.getLogger(__name__).warning(
            "%s=%r is not one of %s: logging as text", LOG_FORMAT_VAR, name, ", ".join(FORMATS))
        return "text"
    if chosen == "json":
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
        # Python's warnings would otherwise print free text among the JSON lines.
        logging.captureWarnings(True)
    return chosen


def about_version(version: str | None) -> None:
    """The content version of the call the current request is about, once its
    row is read (ivr.telephony.callflow): its lines then carry the version the
    call started on rather than the active one. The request middleware
    (ivr.monitoring) resets it when the request ends."""
    if version is not None:
        content_version.set(version)


def set_version(version: str) -> None:
    """The content version JSON lines carry outside a request (startup, dispatcher)."""
    global _serving
    _serving = version
