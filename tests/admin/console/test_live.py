"""The live board: a change made anywhere (through one instance, or with no
instance at all) reaches a console served by another (each polls the
database, Server-Sent Events to the page), and names from the routing plan
are shown as text, live or not."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from ivr.admin.console import events
from ivr.config import Settings
from ivr.content import Content, load_content
from tests.admin.console.helpers import (
    ADMIN_TOKEN,
    board_until,
    browser,
    issue,
    next_event,
    page_of,
    sign_in,
)
from tests.conftest import ROOT
from tests.helpers import server_on

SCRIPT_NAME = "<script>alert('ana')</script>Ana"
CENTER_NAME = "<b>Texas</b> & <i>Co</i>"
SUPERVISOR = "<img src=x onerror=alert(1)>Dana"


@pytest.fixture
async def other(other_settings: Settings, content: Content) -> AsyncIterator[TestServer]:
    """A second instance on the same database."""
    async with server_on(other_settings, content) as srv:
        yield srv


@pytest.fixture
def changes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No redraw on the clock: only a change seen in the database can bring it."""
    monkeypatch.setattr(events, "TICK_SECONDS", 3600.0)


PROMISE = 1.0  # seconds from a commit to the console showing it
AVAILABLE = 'class="presence available"'


async def test_a_change_through_one_instance_reaches_a_console_on_another(
    changes_only: None, server: TestServer, settings: Settings, other: TestServer,
    other_settings: Settings,
) -> None:
    async with browser() as session:
        await sign_in(session, other_settings.public_url, ADMIN_TOKEN)
        async with session.get(f"{other_settings.public_url}/console/events") as events:
            assert events.status == 200
            assert events.content_type == "text/event-stream"
            first = await board_until(events, "tx-ana")
            assert 'id="set-tx-ana-available"' in first
            assert 'class="presence available"' not in first  # nobody is available yet
            # The change goes through the first instance's admin API.
            async with aiohttp.ClientSession() as admin, admin.put(
                f"{settings.public_url}/admin/counselors/tx-ana/presence",
                json={"presence": "available"},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            ) as resp:
                assert resp.status == 200
            html = await board_until(events, 'class="presence available"')
    row = html[html.index('id="counselor-tx-ana"'):]
    row = row[:row.index("</tr>")]
    assert 'class="presence available"' in row


async def test_a_stream_whose_session_ends_says_so_and_stops(
    changes_only: None, server: TestServer, settings: Settings
) -> None:
    base = settings.public_url
    async with browser() as session:
        await sign_in(session, base, ADMIN_TOKEN)
        async with session.get(f"{base}/console/events") as stream:
            first = await board_until(stream, "tx-ana")
            assert "Your session has ended" not in first
            conn = await asyncpg.connect(settings.database_url)
            try:  # signed out elsewhere
                await conn.execute("UPDATE console_sessions SET ended_at = now()")
            finally:
                await conn.close()
            # Any change wakes the hub (no redraw on the clock here).
            async with aiohttp.ClientSession() as admin, admin.put(
                f"{base}/admin/counselors/tx-ana/presence",
                json={"presence": "available"},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            ) as resp:
                assert resp.status == 200
            ended = await board_until(stream, "Your session has ended")
            assert "tx-ana" not in ended
            with pytest.raises(EOFError):  # and the stream stops
                await next_event(stream)


def _row(html: str, counselor: str) -> str:
    row = html[html.index(f'id="counselor-{counselor}"'):]
    return row[:row.index("</tr>")]


async def _set_available(conn: asyncpg.Connection, counselor: str) -> None:
    await conn.execute("UPDATE counselors SET presence = 'available', idle_since = now(),"
                       " presence_since = now() WHERE id = $1", counselor)


async def _shown_within_promise(events: aiohttp.ClientResponse, counselor: str) -> None:
    """The stream's boards until one shows `counselor` available, within PROMISE."""
    async with asyncio.timeout(PROMISE):
        shown = False
        while not shown:
            shown = AVAILABLE in _row(await board_until(events, "tx-ana"), counselor)


async def test_a_change_made_outside_any_instance_reaches_an_open_stream(
    changes_only: None, server: TestServer, settings: Settings
) -> None:
    base = settings.public_url
    conn = await asyncpg.connect(settings.database_url)  # as psql would
    try:
        async with browser() as session:
            await sign_in(session, base, ADMIN_TOKEN)
            async with session.get(f"{base}/console/events") as events:
                first = await board_until(events, "tx-ana")
                assert AVAILABLE not in first
                await _set_available(conn, "tx-ana")
                await _shown_within_promise(events, "tx-ana")
    finally:
        await conn.close()


async def test_a_transaction_open_at_one_poll_and_committed_after_it_is_seen(
    changes_only: None, server: TestServer, settings: Settings
) -> None:
    base = settings.public_url
    slow = await asyncpg.connect(settings.database_url)
    quick = await asyncpg.connect(settings.database_url)
    try:
        async with browser() as session:
            await sign_in(session, base, ADMIN_TOKEN)
            async with session.get(f"{base}/console/events") as events:
                await board_until(events, "tx-ana")
                # `slow` takes its xid first; `quick`, after it, commits first:
                # the snapshot's xmax moves past `slow`, listed as in progress.
                async with slow.transaction():
                    await _set_available(slow, "tx-ana")
                    await _set_available(quick, "tx-ben")
                    # Polled since: the board with Ben was read after his commit.
                    await _shown_within_promise(events, "tx-ben")
                # Committing `slow` leaves xmax where it was: only the list moves.
                await _shown_within_promise(events, "tx-ana")
    finally:
        await slow.close()
        await quick.close()


@pytest.fixture
def named_content(tmp_path: Path) -> Content:
    """The shipped content with markup in a counselor's and a center's name."""
    root = tmp_path / "content"
    shutil.copytree(ROOT / "flows", root / "flows")
    shutil.copytree(ROOT / "prompts", root / "prompts")
    plan = root / "flows" / "routing.yaml"
    text = plan.read_text()
    for old, new in (("{id: tx-ana, name: Ana,", '{id: tx-ana, name: "' + SCRIPT_NAME + '",'),
                     ("name: Texas Crisis Center", f'name: "{CENTER_NAME}"')):
        assert old in text
        text = text.replace(old, new)
    plan.write_text(text)
    return load_content(root / "flows", root / "prompts")


@pytest.fixture
async def named_server(settings: Settings, named_content: Content) -> AsyncIterator[TestServer]:
    async with server_on(settings, named_content) as srv:
        yield srv


async def test_markup_in_names_is_shown_as_text(
    named_server: TestServer, settings: Settings, dsn: str
) -> None:
    base = settings.public_url
    _, secret = await issue(dsn, "supervisor", SUPERVISOR)
    async with browser() as session:
        status, html = await sign_in(session, base, secret)
        assert status == 200
        async with session.get(f"{base}/console/events") as events:
            _, live = await next_event(events)
        _, counselor_secret = await issue(dsn, "counselor", "tx-ana")
    async with browser() as session:
        status, own = await sign_in(session, base, counselor_secret)
        assert status == 200
    for page in (html, live, own):
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "<b>Texas" not in page
        text = "".join(page_of(page).text)
        assert SCRIPT_NAME in text  # the very name, as text
    for page in (html, live):
        text = "".join(page_of(page).text)
        assert CENTER_NAME in text
    assert SUPERVISOR in "".join(page_of(html).text)
