"""A counselor's phone never rings past the end of its tier: the leg's
Timeout is what is left of the tier (rules.ring_seconds). A tier configured
shorter than a full ring lasts one full ring plus the moment a claim takes
(rules.tier_seconds), so it still rings someone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ivr.content import Content, load_content
from ivr.routing.rules import CLAIM_SLACK, MIN_RING
from ivr.sim import CallScript, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from tests.conftest import ROOT

TX_CALLER = "+15125550123"
SHORT = 5  # seconds: a tier shorter than one full ring


@pytest.fixture
def content(tmp_path: Path) -> Content:
    """The shipped content, with counselor tiers shorter than a full ring (the
    `server` fixture serves it)."""
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    plan = tmp_path / "flows" / "routing.yaml"
    text = plan.read_text()
    for tier in ("local", "backup"):
        old = f"{{tier: {tier}, ring_timeout: 20s, skip_when_unavailable: true}}"
        assert old in text
        text = text.replace(old, f"{{tier: {tier}, ring_timeout: {SHORT}s}}")
    plan.write_text(text)
    return load_content(tmp_path / "flows", tmp_path / "prompts")


async def test_no_counselor_rings_past_a_short_tier(sim: SimConfig, world: TwilioWorld) -> None:
    script = CallScript(from_number=TX_CALLER, inputs=(Silence(),))
    t = await simulate_call(sim, script, world=world)
    timeouts = [leg.request.timeout for leg in world.legs]
    assert timeouts, t.format()  # a short tier still rings a counselor
    # Before, a leg rang for MIN_RING past the tier's end; now never past it.
    assert all(MIN_RING <= timeout <= MIN_RING + CLAIM_SLACK for timeout in timeouts), timeouts
    assert t.reached_human, t.format()
