"""The content endpoints of a real server: publish, list, roll back, and
every bad input refused with its reason while the old version serves on."""

from __future__ import annotations

import asyncio
import io
import shutil
import tarfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from ivr.app import create_app
from ivr.config import Settings
from ivr.content import load_content
from ivr.publishing import archive
from ivr.publishing.archive import read_folders, to_tar
from ivr.publishing.versions import content_hash
from tests.conftest import ROOT, bounded
from tests.helpers import call_params, new_sid, parse_twiml, post_signed, server_on_folders
from tests.publishing.test_publish import CHANGED, SHIPPED, bomb, edited
from tests.test_content_corpus import pcm_wav

AUTH = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "flows", tmp_path / "own" / "flows")
    shutil.copytree(ROOT / "prompts", tmp_path / "own" / "prompts")
    return tmp_path / "own"


@pytest.fixture
async def base(settings: Settings, folders: Path) -> AsyncIterator[str]:
    """A server whose content folders are a copy the test may edit."""
    async with server_on_folders(settings, folders):
        yield settings.public_url


async def serving(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(f"{base}/healthz") as resp:
        body: dict[str, Any] = await resp.json()
    return str(body["content_version"])


async def post(
    http: aiohttp.ClientSession, url: str, data: bytes | None = None, **kw: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post(url, data=data, headers=AUTH, **kw) as resp:
        return resp.status, await resp.json()


async def test_publish_the_folders_as_on_disk_then_roll_back(base: str, folders: Path) -> None:
    async with aiohttp.ClientSession() as http:
        started = await serving(http, base)
        assert started == content_hash(SHIPPED)  # published at start-up
        async with http.post(f"{base}/admin/content/publish") as resp:
            assert resp.status == 401
        flow = folders / "flows" / "988.yaml"
        await asyncio.to_thread(flow.write_bytes, CHANGED["flows/988.yaml"])
        status, body = await post(http, f"{base}/admin/content/publish")
        assert status == 200, body
        assert body["version"] == content_hash(CHANGED) and body["new"]
        assert body["worst_case"]["lifeline"]["max_time_to_human"] == 60
        assert await serving(http, base) == body["version"]

        async with http.get(f"{base}/admin/content/versions", headers=AUTH) as resp:
            listed = await resp.json()
        assert listed["active"] == body["version"]
        assert [(v["version"], v["published_by"]) for v in listed["versions"]] == [
            (body["version"], "admin"), (started, "ivr serve (start-up)")]

        status, back = await post(http, f"{base}/admin/content/activate",
                                  json={"version": started})
        assert status == 200 and back["active"], back
        assert await serving(http, base) == started
        status, missing = await post(http, f"{base}/admin/content/activate",
                                     json={"version": "0123456789abcdef"})
        assert status == 404 and "unknown content version" in missing["error"]


def upload(files: dict[str, bytes]) -> bytes:
    return to_tar(files)


def escaping() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in {**SHIPPED, "flows/../../evil.yaml": b"x"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize(("data", "status", "says"), [
    (upload(edited("flows/988.yaml", "next: spanish", "next: nowhere")), 422, "nowhere"),
    (upload(edited("prompts/es/catalog.yaml", "spanish_selected:", "spanish_chosen:")), 422,
     "spanish_selected"),
    (upload({**SHIPPED, "flows/bomb.yaml": bomb()}), 422, "alias bomb"),
    (escaping(), 400, "escapes its folder"),
    (b"PK\x03\x04 not really a zip", 400, "neither a tar nor a zip"),
])
async def test_bad_uploads_are_refused_and_the_old_version_serves_on(
    base: str, data: bytes, status: int, says: str
) -> None:
    async with aiohttp.ClientSession() as http:
        before = await serving(http, base)
        got, body = await post(http, f"{base}/admin/content/publish", data)
        assert got == status, body
        if status == 422:
            problem = next(p for p in body["problems"] if says in p["message"])
            assert set(problem) == {"file", "line", "column", "message"}
            assert problem["file"].startswith("flows/") and problem["line"] >= 1
        else:
            assert says in body["error"]
        assert await serving(http, base) == before
        async with http.get(f"{base}/admin/content/versions", headers=AUTH) as resp:
            assert [v["version"] for v in (await resp.json())["versions"]] == [before]


async def test_a_huge_upload_is_refused_by_its_length_before_it_is_sent(base: str) -> None:
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"POST /admin/content/publish HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer test-admin-token\r\n"
                     b"Content-Type: application/gzip\r\nContent-Length: 1073741824\r\n\r\n"
                     + b"\0" * 1024)  # 1 GB announced, 1 kB sent: the answer comes now
        await writer.drain()
        async with asyncio.timeout(10):
            status_line = await reader.readline()
            rest = b""
            while not rest.endswith(b"}") and not reader.at_eof():
                rest += await reader.read(4096)
    finally:
        writer.close()
    assert status_line.split()[1] == b"413"
    assert b"larger than 64 MiB" in rest


async def test_a_chunked_upload_is_refused_once_it_grows_too_large(
    base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "MAX_UPLOAD", 256 * 1024)
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 64 * 1024 * 1024:  # far more than the limit, if nobody stopped it
            sent += 64 * 1024
            yield b"\0" * (64 * 1024)

    async with aiohttp.ClientSession() as http:
        before = await serving(http, base)
        try:
            status, body = await post(http, f"{base}/admin/content/publish", endless())  # type: ignore[arg-type]
        except aiohttp.ClientError:
            status, body = 413, {"error": "larger than (connection closed while sending)"}
        assert status == 413 and "larger than" in body["error"]
        assert sent < 64 * 1024 * 1024
        assert await serving(http, base) == before


def test_the_folders_read_back_as_the_shipped_files(folders: Path) -> None:
    assert read_folders(folders / "flows", folders / "prompts") == SHIPPED


@pytest.fixture
async def recorded(settings: Settings, folders: Path) -> AsyncIterator[str]:
    """A server whose welcome prompt is a half-second recording."""
    await asyncio.to_thread(pcm_wav, folders / "prompts" / "en" / "welcome.wav")
    own = replace(settings, flows_dir=folders / "flows", prompts_dir=folders / "prompts")
    content = await asyncio.to_thread(load_content, own.flows_dir, own.prompts_dir)
    port = int(settings.public_url.rsplit(":", 1)[1])
    app = await asyncio.to_thread(create_app, own, content)  # reads the recordings
    srv = TestServer(app, host="127.0.0.1", port=port)
    await srv.start_server()
    yield settings.public_url
    await bounded(srv.close(), "closing the test server")


async def test_each_version_plays_its_own_recordings(recorded: str, folders: Path) -> None:
    base = recorded
    files = await asyncio.to_thread(read_folders, folders / "flows", folders / "prompts")
    longer = folders / "longer.wav"
    await asyncio.to_thread(pcm_wav, longer, seconds=1.0)
    changed = {**files, "prompts/en/welcome.wav": await asyncio.to_thread(longer.read_bytes)}
    async with aiohttp.ClientSession() as http:
        old = await serving(http, base)
        status, twiml = await post_signed(http, f"{base}/twilio/voice", call_params(new_sid()))
        assert status == 200
        played = parse_twiml(twiml).find(".//Play")
        assert played is not None and played.text == f"{base}/prompts/en/welcome.wav?v={old}"

        status, body = await post(http, f"{base}/admin/content/publish", to_tar(changed))
        assert status == 200, body
        new = body["version"]
        for version, data in ((old, files), (new, changed)):
            async with http.get(f"{base}/prompts/en/welcome.wav", params={"v": version}) as resp:
                assert resp.status == 200
                assert await resp.read() == data["prompts/en/welcome.wav"]
        async with http.get(f"{base}/prompts/en/welcome.wav",
                            params={"v": "0123456789abcdef"}) as resp:
            assert resp.status == 404
