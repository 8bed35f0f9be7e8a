"""A publish while a caller holds in the transfer: what the transfer stage
says to that call (hold reassurance, the counselor's whisper) stays the
version the call started on; a call started after the publish hears the new
words. At the wire: the simulator plays the caller and the counselors."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from ivr.config import Settings
from ivr.publishing.archive import read_folders, to_tar
from ivr.sim import CallScript, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.script import DialOutcome
from ivr.sim.transcript import Heard, Transcript
from tests.conftest import AUTH_TOKEN
from tests.helpers import (
    parse_twiml,
    post_signed,
    queueing_folders,
    server_on_folders,
    staff_all,
)
from tests.waiting import eventually

TEXAS_CALLER = "+15125550123"
HOLDING = "SELECT call_sid FROM waiting WHERE status = 'waiting'"
OLD_HOLD = "Please stay on the line, a counselor will be with you shortly."
NEW_HOLD = "Thank you for holding, a counselor will be with you shortly."
OLD_WHISPER = "Crisis line call."
NEW_WHISPER = "Caller waiting for you."


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    """The shipped content, with a local tier that holds callers for ten minutes."""
    queueing_folders(tmp_path)
    return tmp_path


def reworded(folders: Path) -> dict[str, bytes]:
    """The same content with new English hold and whisper words."""
    files = read_folders(folders / "flows", folders / "prompts")
    catalog = files["prompts/en/catalog.yaml"].decode()
    assert OLD_HOLD in catalog.replace("\n  ", " ") and OLD_WHISPER in catalog
    catalog = catalog.replace("Please stay on the line, a counselor",
                              "Thank you for holding, a counselor")
    files["prompts/en/catalog.yaml"] = catalog.replace(OLD_WHISPER, NEW_WHISPER).encode()
    return files


@pytest.fixture
async def server(settings: Settings, folders: Path) -> AsyncIterator[TestServer]:
    async with server_on_folders(settings, folders) as (srv, _own):
        yield srv


def said(transcript: Transcript) -> list[str]:
    return [e.text for e in transcript.of_type(Heard)]


def hold_words(texts: list[str]) -> list[str]:
    """The first sentence of each hold reassurance among `texts`."""
    return [t.partition(" If you")[0] for t in texts
            if "a counselor will be with you shortly" in t]


async def hold_document_says(http: aiohttp.ClientSession, base: str, sid: str) -> list[str]:
    """The conference wait URL's next round for `sid`, as Twilio requests it."""
    url = f"{base}/twilio/hold?lang=en&call={sid}&n=1"
    status, body = await post_signed(http, url, {"CallSid": "CF" + "0" * 32,
                                                 "AccountSid": "AC" + "1" * 32})
    assert status == 200, body
    return [say.text or "" for say in parse_twiml(body).iter("Say")]


async def test_a_caller_holding_through_a_publish_keeps_their_versions_words(
    server: TestServer, settings: Settings, world: TwilioWorld, folders: Path,
    json_logs: io.StringIO,
) -> None:
    base = settings.public_url
    sim = SimConfig(server_url=base, auth_token=AUTH_TOKEN, account_sid=settings.account_sid)
    script = CallScript(from_number=TEXAS_CALLER, inputs=(Silence(),))
    held = asyncio.create_task(simulate_call(sim, script, world=world))
    conn = await asyncpg.connect(settings.database_url)
    try:
        # The caller holds at the local tier: nobody is available.
        await eventually(lambda: conn.fetchval(HOLDING), "a caller holding")
        sid = await conn.fetchval(HOLDING)
        assert sid is not None
        before = await conn.fetchval("SELECT content_version FROM calls WHERE call_sid = $1", sid)

        upload = await asyncio.to_thread(reworded, folders)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/admin/content/publish", data=to_tar(upload),
                                 headers={"Authorization": f"Bearer {settings.admin_token}"}
                                 ) as resp:
                assert resp.status == 200, await resp.text()
                after = (await resp.json())["version"]
            assert after != before
            # The holding caller's next round, after the publish: their version's words.
            assert hold_words(await hold_document_says(http, base, sid)) == [OLD_HOLD]

        await staff_all(server)  # a counselor for them now: whispered, accepts
        async with asyncio.timeout(60):
            first = await held
        assert first.reached_human, first.format()
        assert hold_words(said(first)), first.format()
        assert set(hold_words(said(first))) == {OLD_HOLD}, first.format()
        whispers = [t for leg in world.legs for t in said(leg.session.transcript())
                    if "Press 1 to accept" in t]
        assert whispers and all(t.startswith(OLD_WHISPER) for t in whispers), whispers
        legs_before = len(world.legs)

        # A call started after the publish hears the new words, and so does
        # its counselor.
        async with asyncio.timeout(60):
            second = await simulate_call(sim, script, world=world)
        assert second.reached_human, second.format()
        assert await conn.fetchval("SELECT content_version FROM calls WHERE call_sid = $1",
                                   second.call_sid) == after
        assert set(hold_words(said(second))) == {NEW_HOLD}, second.format()
        whispers = [t for leg in world.legs[legs_before:] for t in said(leg.session.transcript())
                    if "Press 1 to accept" in t]
        assert whispers and all(t.startswith(NEW_WHISPER) for t in whispers), whispers
        # The counselor legs' lines about each call carry that call's version.
        entries = [json.loads(line) for line in json_logs.getvalue().splitlines()]
        for call, version in ((sid, before), (second.call_sid, after)):
            accepted = [e for e in entries if e["event"].startswith(f"call {call}: counselor")
                        and e["event"].endswith(" accepted")]
            assert [e["content_version"] for e in accepted] == [version], accepted
    finally:
        held.cancel()
        await conn.close()


OLD_BACKUP = "All of our nearby counselors are helping other callers."
NEW_BACKUP = "Every nearby counselor is with another caller right now."


def without_texas_reworded(folders: Path) -> dict[str, bytes]:
    """The content without the Texas center, and with new words before the
    national backup line."""
    files = read_folders(folders / "flows", folders / "prompts")
    plan = files["flows/routing.yaml"].decode()
    start, end = plan.index("  tx-austin:\n"), plan.index("\n  ny-nyc:")
    files["flows/routing.yaml"] = (plan[:start] + plan[end + 1:]).encode()
    catalog = files["prompts/en/catalog.yaml"].decode()
    assert OLD_BACKUP in catalog
    files["prompts/en/catalog.yaml"] = catalog.replace(OLD_BACKUP, NEW_BACKUP).encode()
    return files


async def test_a_caller_moved_on_by_a_publish_hears_their_versions_words_on_the_way(
    server: TestServer, settings: Settings, world: TwilioWorld, folders: Path
) -> None:
    """The publish removes the caller's center: they go on at once (the tier
    move renders their next step) to the regional backup, which does not
    answer, then to the national backup with the words before it of the
    version they started on."""
    base = settings.public_url
    sim = SimConfig(server_url=base, auth_token=AUTH_TOKEN, account_sid=settings.account_sid)
    script = CallScript(from_number=TEXAS_CALLER, inputs=(Silence(),),
                        dial_outcomes=(DialOutcome("no-answer"), DialOutcome("answer")))
    held = asyncio.create_task(simulate_call(sim, script, world=world))
    conn = await asyncpg.connect(settings.database_url)
    try:
        # The caller holds at the local tier: nobody is available.
        await eventually(lambda: conn.fetchval(HOLDING), "a caller holding")
        assert await conn.fetchval(HOLDING)
        upload = await asyncio.to_thread(without_texas_reworded, folders)
        async with aiohttp.ClientSession() as http, http.post(
                f"{base}/admin/content/publish", data=to_tar(upload),
                headers={"Authorization": f"Bearer {settings.admin_token}"}) as resp:
            assert resp.status == 200, await resp.text()
        async with asyncio.timeout(60):
            transcript = await held
        assert transcript.reached_human, transcript.format()
        texts = said(transcript)
        assert any(t.startswith(OLD_BACKUP) for t in texts), transcript.format()
        assert not any(NEW_BACKUP in t for t in texts), transcript.format()
    finally:
        held.cancel()
        await conn.close()
