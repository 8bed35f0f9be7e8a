"""IVR_LOG_FORMAT=json through whole calls: one JSON object a line, each line
about a call carrying its CallSid and the content version."""

from __future__ import annotations

import io
import json
from typing import Any

from ivr.sim import CallScript, NoAnswer, Press, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.script import DialOutcome
from tests.e2e.test_metrics import served_version

CALLER = "+15125550177"
SPELLINGS = (CALLER, CALLER[1:], CALLER[2:], "5125550177", "(512) 555-0177", "512-555-0177")


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    text = out.getvalue()
    assert text, "nothing was logged"
    return [json.loads(line) for line in text.splitlines()]


async def test_json_lines_carry_the_call_and_never_the_number(
    sim: SimConfig, world: TwilioWorld, json_logs: io.StringIO
) -> None:
    warm = await simulate_call(sim, CallScript(from_number=CALLER, inputs=(Press("2"),)),
                               world=world)
    veteran = await simulate_call(sim, CallScript(from_number=CALLER, inputs=(Press("1"),)),
                                  world=world)
    assert warm.reached_human and veteran.reached_human
    entries = lines(json_logs)
    served = await served_version(sim.server_url)
    for entry in entries:
        assert {"time", "level", "logger", "event", "call_sid", "content_version"} <= set(entry)
    for sid in (warm.call_sid, veteran.call_sid):
        about = [e for e in entries if sid in e["event"]]
        assert about, f"nothing logged about {sid}"
        # A line about a call carries that call's SID, and the version it runs on.
        assert all(e["call_sid"] == sid for e in about), [e for e in about if e["call_sid"] != sid]
        assert all(e["content_version"] == served for e in about), about
    started = [e for e in entries if e["event"].startswith(f"call {warm.call_sid} started")]
    assert len(started) == 1 and started[0]["logger"] == "ivr.telephony.callflow"
    text = json_logs.getvalue()
    for form in SPELLINGS:
        assert form not in text


NOBODY = {t: NoAnswer() for t in ("+15125550101", "sip:ben@tx-crisis.example.org")}


async def test_background_work_is_logged_with_its_call(
    sim: SimConfig, world: TwilioWorld, json_logs: io.StringIO
) -> None:
    # Counselors are rung by the dispatcher, outside any webhook of the caller.
    script = CallScript(from_number=CALLER, inputs=(Silence(),),
                        dial_outcomes=(DialOutcome("answer"),))
    t = await simulate_call(sim, script, world=world)
    assert t.reached_human, t.format()
    ringing = [e for e in lines(json_logs) if "ringing counselor" in e["event"]]
    assert ringing and all(e["call_sid"] == t.call_sid for e in ringing), ringing
    assert all(e["content_version"] for e in ringing)
