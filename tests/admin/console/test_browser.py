"""The console in a real browser: Debian's Chromium driven by Playwright.

A supervisor signs in, sees a simulated caller appear in the waiting list
(pushed by Server-Sent Events, no reload), sets a counselor available with
the keyboard and watches the caller be offered and connected; axe-core
finds no serious or critical accessibility problem, and the page reflows
at 200% zoom. A counselor fails to change another counselor's presence.

Set IVR_CONSOLE_SCREENSHOT=docs/console.png to keep the supervisor view's
picture (the README's).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from ivr.config import Settings
from ivr.content import Content, load_content
from ivr.sim import CallScript, CounselorScript, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.transcript import Transcript
from tests.admin.console.helpers import ADMIN_TOKEN, issue, presence_of
from tests.conftest import AUTH_TOKEN, ROOT, bounded
from tests.helpers import queueing_folders, server_on_folders

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parent / "assets" / "axe-core-4.11.1.min.js"
# Long enough to watch: the counselor's phone rings 2 s, the call lasts 10 s.
COUNSELOR = CounselorScript(answer_after=8, talk_seconds=40)
TIME_SCALE = 0.25
WAIT = 20_000  # ms: generous for a loaded machine; nothing here measures speed

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.fixture
def content(tmp_path: Path) -> Content:
    """The shipped content with a local tier that holds callers until someone
    is free (as tests/e2e/test_instances.py): the caller waits where the
    supervisor can see them."""
    root = queueing_folders(tmp_path / "content")
    return load_content(root / "flows", root / "prompts")


@pytest.fixture
async def world() -> AsyncIterator[TwilioWorld]:
    w = TwilioWorld(default=COUNSELOR, time_scale=TIME_SCALE)
    await w.start()
    yield w
    await bounded(w.stop(), "stopping the simulated Twilio")


@pytest.fixture
def twilio_api_url(world: TwilioWorld) -> str:
    return world.api_url


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            await browser.close()


async def _axe_problems(page: Any) -> list[str]:
    source = await asyncio.to_thread(AXE.read_text, encoding="utf-8")
    # Evaluated by the driver, not added as a <script>: the page's Content
    # Security Policy (scripts from our own files only) stays in force.
    await page.evaluate(source + "\n;undefined")
    result = await page.evaluate("async () => await axe.run(document)")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(n["target"]) for n in v["nodes"])
        for v in result["violations"] if v["impact"] in ("serious", "critical")
    ]


async def test_supervisor_watches_a_caller_reach_the_counselor_they_set_available(
    server: TestServer, settings: Settings, world: TwilioWorld, chromium: Any, dsn: str
) -> None:
    from playwright.async_api import expect

    base = settings.public_url
    context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(f"{base}/console/")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("Your console token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Supervisor console")).to_be_visible()
    await expect(page.locator("#waiting-h")).to_have_text("Callers waiting (0)")

    sim = SimConfig(server_url=base, auth_token=AUTH_TOKEN, account_sid=settings.account_sid)
    script = CallScript(from_number="+15125550123", inputs=(Silence(),))
    call: asyncio.Task[Transcript] = asyncio.create_task(simulate_call(sim, script, world=world))
    try:
        # Pushed to the open page: no reload.
        caller = page.locator("#waiting tr.caller")
        await expect(caller).to_have_count(1, timeout=WAIT)
        await expect(caller).to_contain_text("TX")
        await expect(caller).to_contain_text("nobody yet")
        assert "5550123" not in await page.content()  # never the caller's number

        assert await _axe_problems(page) == []
        if shot := os.environ.get("IVR_CONSOLE_SCREENSHOT"):
            await page.screenshot(path=shot)

        # 200% zoom of a 1280 px window: 640 CSS px across, and no sideways scrolling.
        await page.set_viewport_size({"width": 640, "height": 900})
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0
        await page.set_viewport_size({"width": 1280, "height": 900})

        # With the keyboard: focus Ana's button, press Enter.
        button = page.get_by_role("button", name="Set Ana (tx-ana) available")
        await button.focus()
        # A live redraw keeps the keyboard's place: the same control stays focused.
        stamp = await page.locator(".updated").text_content()
        await expect(page.locator(".updated")).not_to_have_text(stamp or "", timeout=WAIT)
        assert await page.evaluate("document.activeElement.id") == "set-tx-ana-available"
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("status")).to_have_text("Presence changed.")
        await expect(caller.locator("td").nth(5)).to_have_text("Ana", timeout=WAIT)  # offered
        ana = page.locator("#counselor-tx-ana .presence")
        await expect(ana).to_have_text("on-call", timeout=WAIT)  # connected
        await expect(page.locator("#waiting-h")).to_have_text("Callers waiting (0)")
        talking = page.locator("#phases div", has_text="Talking with a counselor")
        await expect(talking.locator("dd")).to_have_text("1")
        transcript = await asyncio.wait_for(call, 60)
        assert transcript.reached_human, transcript.format()
    finally:
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        await context.close()

    assert await presence_of(dsn, "tx-ana") in ("on-call", "wrap-up", "available")


async def test_counselor_cannot_change_another_counselors_presence(
    server: TestServer, settings: Settings, chromium: Any, dsn: str
) -> None:
    from playwright.async_api import expect

    base = settings.public_url
    _, secret = await issue(dsn, "counselor", "tx-ben")
    context = await chromium.new_context()
    page = await context.new_page()
    try:
        await page.goto(f"{base}/console/")
        await page.get_by_label("Your console token").fill(secret)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Counselor console")).to_be_visible()
        await expect(page.locator("#my-presence")).to_contain_text("offline")
        assert await _axe_problems(page) == []
        # The page's own CSRF token, posted for someone else: refused.
        status = await page.evaluate("""async () => {
            const csrf = document.querySelector('input[name=csrf]').value;
            const body = new URLSearchParams({csrf, presence: 'available'});
            const r = await fetch('/console/counselors/tx-ana/presence',
                                  {method: 'POST', body, redirect: 'manual'});
            return r.status;
        }""")
        assert status == 403
        assert await presence_of(dsn, "tx-ana") == "offline"
        await page.get_by_role("button", name="Go available").click()
        await expect(page.locator("#my-presence")).to_contain_text("available")
        assert await presence_of(dsn, "tx-ben") == "available"
    finally:
        await context.close()


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    """A copy of the shipped content folders that the test edits and publishes."""
    root = tmp_path / "folders"
    shutil.copytree(ROOT / "flows", root / "flows")
    shutil.copytree(ROOT / "prompts", root / "prompts")
    return root


@pytest.fixture
async def folder_server(
    settings: Settings, folders: Path
) -> AsyncIterator[tuple[TestServer, Settings]]:
    async with server_on_folders(settings, folders) as (srv, own):
        yield srv, own


async def _edit(path: Path, old: str, new: str) -> None:
    text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    assert old in text
    await asyncio.to_thread(path.write_text, text.replace(old, new), encoding="utf-8")


async def test_supervisor_publishes_a_broken_flow_reads_its_problem_and_rolls_back(
    folder_server: tuple[TestServer, Settings], folders: Path, chromium: Any, dsn: str
) -> None:
    from playwright.async_api import expect

    _, own = folder_server
    context = await chromium.new_context()
    page = await context.new_page()
    versions = page.locator("#versions tbody tr")
    try:
        await page.goto(f"{own.public_url}/console/")
        await page.get_by_label("Your console token").fill(ADMIN_TOKEN)
        await page.get_by_role("button", name="Sign in").click()
        await expect(versions).to_have_count(1)  # the folders, published at start-up
        first = (await page.locator("#active-version").text_content() or "").strip()

        # A valid change: published, active, the first version one click away.
        await _edit(folders / "prompts" / "en" / "catalog.yaml", "We're here for you.",
                    "We are here for you.")
        await page.get_by_role("button", name="Publish the content folders").click()
        await expect(page.get_by_role("status")).to_contain_text("published")
        await expect(versions).to_have_count(2)
        second = (await page.locator("#active-version").text_content() or "").strip()
        assert second != first

        # A broken flow: refused, its problem shown in place, nothing changed.
        await _edit(folders / "flows" / "988.yaml", "    next: main_menu\n",
                    "    next: no_such_node\n")
        await page.get_by_role("button", name="Publish the content folders").click()
        problems = page.locator("#problems li")
        await expect(problems.first).to_contain_text("flows/988.yaml:")
        await expect(problems.first).to_contain_text("no_such_node")
        await expect(page.locator("#active-version")).to_have_text(second)
        await expect(versions).to_have_count(2)
        assert await _axe_problems(page) == []

        # Roll back to the first version.
        await page.get_by_role("button", name=f"Roll back to version {first}").click()
        await expect(page.get_by_role("status")).to_contain_text("Rolled back")
        await expect(page.locator("#active-version")).to_have_text(first)
    finally:
        await context.close()
    active = await _active_version(dsn)
    assert active.startswith(first)


async def _active_version(dsn: str) -> str:
    from ivr.publishing import versions

    conn = await asyncpg.connect(dsn)
    try:
        found = await versions.active(conn)
    finally:
        await conn.close()
    assert found is not None
    return found.version
