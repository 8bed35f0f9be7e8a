"""Speaking to the console as a browser without scripts would: forms and cookies."""

from __future__ import annotations

import asyncio
from html.parser import HTMLParser

import aiohttp
import asyncpg

from ivr.admin.console import tokens
from ivr.admin.console.tokens import Role

ADMIN_TOKEN = "test-admin-token"  # tests.conftest.make_settings


class _Page(HTMLParser):
    """The CSRF token of a page's forms, and its visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.csrf: str | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "input" and found.get("name") == "csrf":
            self.csrf = found.get("value")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def page_of(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def browser() -> aiohttp.ClientSession:
    # The test server is at 127.0.0.1: aiohttp keeps cookies of IP hosts only when unsafe.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(session: aiohttp.ClientSession, base: str, token: str) -> tuple[int, str]:
    """Post the sign-in form, follow the redirect; (status, page)."""
    async with session.post(f"{base}/console/signin", data={"token": token}) as resp:
        return resp.status, await resp.text()


async def csrf(session: aiohttp.ClientSession, base: str) -> str:
    async with session.get(f"{base}/console/") as resp:
        assert resp.status == 200, await resp.text()
        token = page_of(await resp.text()).csrf
    assert token
    return token


async def set_presence(
    session: aiohttp.ClientSession, base: str, counselor: str, presence: str,
    csrf_token: str | None,
) -> tuple[int, str]:
    form = {"presence": presence}
    if csrf_token is not None:
        form["csrf"] = csrf_token
    async with session.post(f"{base}/console/counselors/{counselor}/presence", data=form,
                            allow_redirects=False) as resp:
        return resp.status, await resp.text()


async def presence_of(dsn: str, counselor: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        value: str = await conn.fetchval(
            "SELECT presence FROM counselors WHERE id = $1", counselor)
    finally:
        await conn.close()
    return value


async def issue(dsn: str, role: Role, subject: str) -> tuple[int, str]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        row, secret = await tokens.issue(pool, role, subject)
    finally:
        await pool.close()
    return row.id, secret


async def next_event(resp: aiohttp.ClientResponse) -> tuple[str, str]:
    """The next Server-Sent Event of a stream: (event name, data lines joined)."""
    name, data = "message", list[str]()
    while True:
        line = (await resp.content.readline()).decode()
        if not line:
            raise EOFError("the event stream ended")
        line = line.rstrip("\n")
        if not line:
            if data:
                return name, "\n".join(data)
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)


async def board_until(resp: aiohttp.ClientResponse, text: str) -> str:
    """The next board event of a stream whose page holds `text`."""
    # A bound so a change that never comes fails the test instead of hanging it.
    async with asyncio.timeout(30):
        while True:
            name, html = await next_event(resp)
            assert name == "board"
            if text in html:
                return html
