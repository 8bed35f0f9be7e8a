"""The console over HTTP, as a browser without scripts uses it: sign-in, sessions,
CSRF, who may set whose presence, and names shown as text."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import asyncpg
from aiohttp.test_utils import TestServer
from yarl import URL

from ivr import keys
from ivr.admin.console import tokens
from ivr.app import create_app
from ivr.config import Settings
from ivr.content import Content
from tests.admin.console.helpers import (
    ADMIN_TOKEN,
    browser,
    csrf,
    issue,
    page_of,
    presence_of,
    set_presence,
    sign_in,
)
from tests.conftest import bounded
from tests.helpers import server_on


async def test_admin_token_signs_a_supervisor_in_with_a_strict_httponly_cookie(
    server: TestServer, settings: Settings
) -> None:
    base = settings.public_url
    async with browser() as session:
        async with session.post(f"{base}/console/signin", data={"token": ADMIN_TOKEN},
                                allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == "/console/"
            cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Path=/console" in cookie
        assert "Secure" not in cookie  # the public URL is http://127.0.0.1
        async with session.get(f"{base}/console/") as resp:
            assert resp.status == 200
            html = await resp.text()
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    text = " ".join(page_of(html).text)
    for heading in ("Callers waiting", "Calls now", "Counselors", "Today's 988 figures",
                    "Content versions"):
        assert heading in text
    assert "Texas Crisis Center" in text  # counselors by center, named by the plan
    assert 'id="set-tx-ana-available"' in html


async def test_signing_in_needs_no_cookie_first_and_pages_need_a_session(
    server: TestServer, settings: Settings
) -> None:
    base = settings.public_url
    async with browser() as session:
        async with session.get(f"{base}/console", allow_redirects=False) as resp:
            assert resp.status == 308
            assert resp.headers["Location"] == "/console/"
        async with session.get(f"{base}/console/", allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"].startswith("/console/signin")
        async with session.get(f"{base}/console/events") as resp:
            assert resp.status == 401


async def test_a_wrong_token_shows_the_sign_in_page_again_with_a_message(
    server: TestServer, settings: Settings
) -> None:
    async with browser() as session:
        status, html = await sign_in(session, settings.public_url, "not-a-token")
    assert status == 401
    text = " ".join(page_of(html).text)
    assert "That token was not accepted" in text
    assert 'name="token"' in html


async def test_a_revoked_token_no_longer_signs_in_and_its_sessions_end(
    server: TestServer, settings: Settings, dsn: str
) -> None:
    base = settings.public_url
    token_id, secret = await issue(dsn, "supervisor", "Dana")
    async with browser() as before, browser() as after:
        status, html = await sign_in(before, base, secret)
        assert status == 200 and "Signed in: Dana (supervisor)" in html
        await tokens.revoke(server.app[keys.pool], token_id)
        async with before.get(f"{base}/console/", allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == "/console/signin?m=expired"
        status, html = await sign_in(after, base, secret)
    assert status == 401
    assert "That token was not accepted" in html


async def test_an_expired_session_goes_back_to_sign_in_with_a_message(
    server: TestServer, settings: Settings, dsn: str
) -> None:
    base = settings.public_url
    async with browser() as session:
        await sign_in(session, base, ADMIN_TOKEN)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("UPDATE console_sessions SET expires_at = now() - interval '1 s'")
        finally:
            await conn.close()
        async with session.get(f"{base}/console/") as resp:  # follows the redirect
            assert resp.status == 200
            assert resp.url.path == "/console/signin"
            html = await resp.text()
    assert "Your session has ended" in html


async def test_missing_or_forged_csrf_is_refused_and_changes_nothing(
    server: TestServer, settings: Settings, dsn: str
) -> None:
    base = settings.public_url
    async with browser() as session:
        await sign_in(session, base, ADMIN_TOKEN)
        good = await csrf(session, base)
        assert await presence_of(dsn, "tx-ana") == "offline"
        assert (await set_presence(session, base, "tx-ana", "available", None))[0] == 403
        assert (await set_presence(session, base, "tx-ana", "available", good + "x"))[0] == 403
        assert await presence_of(dsn, "tx-ana") == "offline"
        # Sign-out is a state change too.
        async with session.post(f"{base}/console/signout", data={},
                                allow_redirects=False) as resp:
            assert resp.status == 403
        status, _ = await set_presence(session, base, "tx-ana", "available", good)
        assert status == 303
        assert await presence_of(dsn, "tx-ana") == "available"


async def test_a_counselor_sets_only_their_own_presence(
    server: TestServer, settings: Settings, dsn: str
) -> None:
    base = settings.public_url
    _, secret = await issue(dsn, "counselor", "tx-ben")
    async with browser() as session:
        status, html = await sign_in(session, base, secret)
        assert status == 200
        assert "You are" in html and "offline" in html
        assert "tx-ana" not in html  # only their own state
        token = await csrf(session, base)
        assert (await set_presence(session, base, "tx-ana", "available", token))[0] == 403
        assert await presence_of(dsn, "tx-ana") == "offline"
        # Wrap-up is set by calls and supervisors, not by the counselor.
        assert (await set_presence(session, base, "tx-ben", "wrap-up", token))[0] == 403
        assert (await set_presence(session, base, "tx-ben", "available", token))[0] == 303
        assert await presence_of(dsn, "tx-ben") == "available"
        assert (await set_presence(session, base, "tx-ben", "offline", token))[0] == 303
        assert await presence_of(dsn, "tx-ben") == "offline"
        # Supervisor-only: the flow pictures.
        async with session.get(f"{base}/console/flows/lifeline.svg") as resp:
            assert resp.status == 403


async def test_signing_out_ends_the_session_on_every_instance(
    server: TestServer, settings: Settings, other_settings: Settings, content: Content
) -> None:
    async with server_on(other_settings, content) as other, browser() as session:
        await sign_in(session, settings.public_url, ADMIN_TOKEN)
        jar = session.cookie_jar.filter_cookies(URL(settings.public_url + "/console/"))
        cookie = jar["ivr_console"].value
        async with browser() as elsewhere:
            elsewhere.cookie_jar.update_cookies({"ivr_console": cookie},
                                                other.make_url("/console/"))
            async with elsewhere.get(f"{other_settings.public_url}/console/",
                                     allow_redirects=False) as resp:
                assert resp.status == 200  # the other instance honours the session
            token = await csrf(session, settings.public_url)
            async with session.post(f"{settings.public_url}/console/signout",
                                    data={"csrf": token}) as resp:
                assert resp.url.path == "/console/signin"
            async with elsewhere.get(f"{other_settings.public_url}/console/",
                                     allow_redirects=False) as resp:
                assert resp.status == 303
                assert resp.headers["Location"] == "/console/signin?m=expired"


async def test_sign_in_attempts_are_limited(
    server: TestServer, settings: Settings
) -> None:
    base = settings.public_url
    async with browser() as session:
        failures = await asyncio.gather(*(sign_in(session, base, f"wrong-{n}") for n in range(5)))
        assert [status for status, _ in failures] == [401] * 5
        status, html = await sign_in(session, base, ADMIN_TOKEN)  # even the right one, now
    assert status == 429
    assert "Too many failed sign-ins" in html


async def test_the_cookie_is_secure_when_the_public_url_is_https(
    settings: Settings, content: Content
) -> None:
    https = replace(settings, public_url="https://console.example.org")
    port = int(settings.public_url.rsplit(":", 1)[1])
    srv = TestServer(create_app(https, content), host="127.0.0.1", port=port)
    await srv.start_server()
    try:
        async with browser() as session, session.post(
            f"{settings.public_url}/console/signin", data={"token": ADMIN_TOKEN},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303
            assert "Secure" in resp.headers["Set-Cookie"]
    finally:
        await bounded(srv.close(), "closing the server")


async def test_a_database_outage_is_a_503_page_not_a_crash(
    server: TestServer, settings: Settings
) -> None:
    base = settings.public_url
    async with browser() as session:
        await sign_in(session, base, ADMIN_TOKEN)
        pool = server.app[keys.pool]
        pool.terminate()  # every connection gone, as when PostgreSQL stops
        async with session.get(f"{base}/console/", allow_redirects=False) as resp:
            assert resp.status == 503
            assert "The database does not answer" in await resp.text()
        async with session.post(f"{base}/console/signin", data={"token": ADMIN_TOKEN},
                                allow_redirects=False) as resp:
            assert resp.status == 503
