"""A prompt missing at run time sends the caller to the backup line, and says so.

`ivr serve` refuses such content at start-up; these servers are handed a
catalog trimmed after validation, standing for a prompt "somehow missing".
Before, the renderer left the words out: a Spanish caller held hearing only
pauses, never "llame al 911".
"""

from __future__ import annotations

import dataclasses
import logging

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from ivr.config import Settings
from ivr.content import Content, load_content
from ivr.sim import CallScript, NoAnswer, Press, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.transcript import Dialed, Heard
from tests.conftest import ROOT
from tests.helpers import call_params, new_sid, parse_twiml, post_signed

NATIONAL = "+18005550100"
TX_CALLER = "+15125550123"


def without(language: str, prompt_id: str) -> Content:
    content = load_content(ROOT / "flows", ROOT / "prompts")
    catalog = content.flows.prompts
    prompts = {lang: dict(entries) for lang, entries in catalog.prompts.items()}
    del prompts[language][prompt_id]
    flows = dataclasses.replace(content.flows, prompts=dataclasses.replace(catalog,
                                                                           prompts=prompts))
    return dataclasses.replace(content, flows=flows)


@pytest.fixture
def content(request: pytest.FixtureRequest) -> Content:
    """Overrides the shipped content: each test names the prompt to lose."""
    language, prompt_id = request.param
    return without(language, prompt_id)


def backup_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if "sending the caller to the backup line" in r.getMessage() and r.exc_info]


@pytest.mark.parametrize("content", [("es", "spanish_selected")], indirect=True)
async def test_a_flow_prompt_missing_at_render_time_reaches_the_fail_safe(
    server: TestServer, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    sid = new_sid()
    base = settings.public_url
    async with aiohttp.ClientSession() as s:
        await post_signed(s, base + "/twilio/voice", call_params(sid))
        status, body = await post_signed(s, base + "/twilio/gather?seq=1",
                                         call_params(sid, CallStatus="in-progress", Digits="2"))
    assert status == 200
    root = parse_twiml(body)
    # The fail-safe: the backup line and nothing else (not a turn with a hole in it).
    assert [(d.text or "").strip() for d in root.findall("Dial")] == [NATIONAL]
    assert len(root) == 1, body
    assert backup_logged(caplog), [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("content", [("es", "hold_reassurance")], indirect=True)
@pytest.mark.counselors(default=NoAnswer())
async def test_a_caller_whose_hold_cannot_be_rendered_is_taken_to_the_backup_line(
    sim: SimConfig, world: TwilioWorld, caplog: pytest.LogCaptureFixture
) -> None:
    script = CallScript(from_number=TX_CALLER, inputs=(Press("2"),), hold_patience=600)
    t = await simulate_call(sim, script, world=world)
    assert t.reached_human, t.format()
    # Straight to the national backup by the REST API, not a tier later (the
    # regional backup) after holding in silence.
    assert [d.targets for d in t.of_type(Dialed)] == [(NATIONAL,)], t.format()
    assert "/twilio/fallback" in t.format(show_requests=True)
    assert not [h for h in t.of_type(Heard) if "911" in h.text]
    assert backup_logged(caplog), [r.getMessage() for r in caplog.records]
