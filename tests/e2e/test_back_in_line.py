"""A caller who went through a dial step and reaches another tier of
counselors waits in line again: the progression's Enqueue after a dial step
re-opens their waiting row (left in status 'backup' by the dial step)."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import pytest

from ivr.config import Settings
from ivr.content import Content, load_content
from ivr.sim import CallScript, NoAnswer, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.script import DialOutcome
from ivr.sim.transcript import CounselorJoined
from tests.conftest import ROOT

CHICAGO_CALLER = "+13125550123"  # area code 312: Illinois
LOCAL_COUNSELOR = "+13125550151"
BACKUP_COUNSELOR = "+13125550152"
# Steps for an Illinois caller: warm (local counselor), dial (the other local
# center's number), warm (a regional backup's counselor), dial, national.
CHICAGO = f"""
  il-chicago:
    name: Chicago Crisis Center
    serves: [IL]
    languages: [en, es]
    counselors:
      - {{id: il-jo, name: Jo, phone: "{LOCAL_COUNSELOR}"}}

  il-springfield:
    name: Springfield Crisis Line
    serves: [IL]
    languages: [en, es]
    number: "+12175550150"

  midwest-help:
    name: Midwest Helpers
    backup_for: [midwest]
    languages: [en, es]
    counselors:
      - {{id: mw-kim, name: Kim, phone: "{BACKUP_COUNSELOR}"}}
"""


@pytest.fixture
def content(tmp_path: Path) -> Content:
    """The shipped content with CHICAGO's center (the `server` fixture serves it)."""
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    plan = tmp_path / "flows" / "routing.yaml"
    text = plan.read_text()
    old = """
  midwest-backup:
    name: Midwest Regional Backup
    backup_for: [midwest]
    languages: [en, es]
    number: "+13125550110"
"""
    assert old in text
    plan.write_text(text.replace(old, old + CHICAGO))
    return load_content(tmp_path / "flows", tmp_path / "prompts")


@pytest.mark.counselors(counselors={LOCAL_COUNSELOR: NoAnswer()})
async def test_a_counselor_tier_after_a_dial_step_rings_its_counselor(
    sim: SimConfig, settings: Settings, world: TwilioWorld
) -> None:
    script = CallScript(from_number=CHICAGO_CALLER, inputs=(Silence(),),
                        dial_outcomes=(DialOutcome("no-answer"),))
    t = await simulate_call(sim, script, world=world)
    joined = t.of_type(CounselorJoined)
    assert [j.who for j in joined] == [BACKUP_COUNSELOR], t.format()
    conn = await asyncpg.connect(settings.database_url)
    try:
        row = await conn.fetchrow(
            "SELECT answered_tier FROM calls WHERE call_sid = $1", t.call_sid)
    finally:
        await conn.close()
    assert row is not None and row["answered_tier"] == "backup"
