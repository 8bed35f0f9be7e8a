"""The typed application keys: every object the server's handlers share.

One module, so what a handler may use is listed in one place. A handler
takes what it calls under that object's own key (the transfers, the
renderer), never by reaching through another object.

Read them as `request.app[keys.pool]` (or `request.config_dict[...]` from a
sub-application such as /admin).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from datetime import datetime

import asyncpg
from aiohttp import web

from ivr.admin.console.events import Hub
from ivr.config import Settings
from ivr.content import Content
from ivr.metrics import Metrics
from ivr.publishing.active import ActiveContent, ServeSettings
from ivr.speech.asr import SpeechEngine
from ivr.telephony.apihealth import ApiHealth
from ivr.telephony.callflow import CallFlow
from ivr.telephony.rest import TwilioRest
from ivr.telephony.transfer import Transfers
from ivr.telephony.twiml import Renderer

# Set by create_app: known before start-up, nothing to close.
settings = web.AppKey("settings", Settings)
content = web.AppKey("content", Content)
renderer = web.AppKey("renderer", Renderer)
backup_number = web.AppKey("backup_number", str)  # IVR_BACKUP_NUMBER or the plan's
caller_id = web.AppKey("caller_id", str)  # TWILIO_CALLER_ID
georoute_param = web.AppKey("georoute_param", str)  # "" when the plan names none
default_region = web.AppKey("default_region", str)
hash_key = web.AppKey("hash_key", bytes)  # IVR_CALLER_HASH_KEY
# Present only when a Vosk model is configured; then shut down by the app.
speech = web.AppKey("speech", SpeechEngine)
# (language, prompt id) -> the recording as 8 kHz mu-law, for media streams.
prompt_audio = web.AppKey("prompt_audio", dict[tuple[str, str], bytes])
metrics = web.AppKey("metrics", Metrics)  # this application's registry (ivr.monitoring)
open_streams = web.AppKey("open_streams", weakref.WeakSet[web.WebSocketResponse])
# The app's one clock (an aware datetime now): every deadline is read on it.
clock: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
# Seconds between the timer worker's looks at the timers table.
timer_poll = web.AppKey("timer_poll", float)

# Set at start-up by the cleanup context that owns each one (ivr.app).
database_url = web.AppKey("database_url", str)  # the embedded server's when unset
pool = web.AppKey("pool", asyncpg.Pool)
rest = web.AppKey("rest", TwilioRest)
api_health = web.AppKey("api_health", ApiHealth)
transfers = web.AppKey("transfers", Transfers)
callflow = web.AppKey("callflow", CallFlow)
listener = web.AppKey("listener", asyncpg.Connection)  # LISTEN for routing changes
dispatcher = web.AppKey("dispatcher", asyncio.Task[None])  # Transfers.run
console_hub = web.AppKey("console_hub", Hub)  # the console's live board (ivr.admin.console)
# The content versions this instance serves (ivr.publishing.wiring); `content`,
# `renderer` and `prompt_audio` above are the start-up folders' only.
active = web.AppKey("active", ActiveContent)
publish_settings = web.AppKey("publish_settings", ServeSettings)
