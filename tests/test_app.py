"""create_app: one cleanup context per resource, each closing what it opened.

Shutdown closes every resource; a start-up that fails part way still closes
what had been started (aiohttp runs the exits of the contexts already
entered); a server without its secrets is refused before anything starts.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from ivr import keys
from ivr.app import create_app
from ivr.config import ConfigError, Settings
from ivr.content import Content
from ivr.storage.database import DatabaseError
from tests.conftest import bounded

# Nothing listens: connecting fails at once (no TLS: asyncpg would look for
# client certificates on the loop first).
NOWHERE = "postgresql://127.0.0.1:9/none?sslmode=disable"


async def test_shutdown_closes_every_resource(settings: Settings, content: Content) -> None:
    port = int(settings.public_url.rsplit(":", 1)[1])
    srv = TestServer(create_app(settings, content), host="127.0.0.1", port=port)
    await srv.start_server()
    app = srv.app
    pool, listener, dispatcher, rest = (
        app[keys.pool], app[keys.listener], app[keys.dispatcher], app[keys.rest])
    assert not (pool.is_closing() or listener.is_closed() or dispatcher.done() or rest.closed)

    await bounded(srv.close(), "closing the server")

    assert dispatcher.cancelled()
    assert listener.is_closed()
    assert rest.closed
    assert pool.is_closing()


async def test_a_failed_start_still_stops_the_speech_threads(
    settings: Settings, speech_content: Content, speech_models: dict[str, Path]
) -> None:
    # The speech engine is loaded by create_app, before any context starts:
    # a database that cannot be reached must not leave its threads running.
    unreachable = replace(settings, database_url=NOWHERE, vosk_models=speech_models)
    app = await asyncio.to_thread(create_app, unreachable, speech_content)
    engine = app[keys.speech]
    srv = TestServer(app, host="127.0.0.1")
    with pytest.raises(DatabaseError):
        await srv.start_server()
    await bounded(srv.close(), "cleaning up after the failed start")
    with pytest.raises(RuntimeError, match="after shutdown"):
        await asyncio.to_thread(engine.executor.submit, int)


@pytest.mark.parametrize(("missing", "variable"), [
    ({"auth_token": None}, "TWILIO_AUTH_TOKEN"),
    ({"admin_token": None}, "IVR_ADMIN_TOKEN"),
    ({"caller_hash_key": None}, "IVR_CALLER_HASH_KEY"),
])
def test_a_server_without_a_secret_is_refused_naming_it(
    settings: Settings, content: Content, missing: dict[str, None], variable: str
) -> None:
    with pytest.raises(ConfigError, match=f"{variable} is not set"):
        create_app(replace(settings, **missing), content)  # type: ignore[arg-type]
