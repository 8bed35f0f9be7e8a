"""A counselor offered the caller while the menu still plays (preoffer.py).

The caller's IVR passes in world time here (TwilioWorld(paced_ivr=True)), so
what the server does by REST during the menu happens while the caller still
hears it, as on Twilio.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from ivr.config import Settings
from ivr.routing.progress import Phase, Progress
from ivr.sim import CallScript, CounselorScript, Press, Silence, TwilioWorld, simulate_call
from ivr.sim.config import SimConfig
from ivr.sim.transcript import (
    CounselorJoined,
    Dialed,
    Heard,
    JoinedConference,
    LegEvent,
    Pressed,
    Transcript,
)

ANA = "+15125550101"  # tx-ana speaks English and Spanish: she fits whatever the caller picks
TX_CALLER = "+15125550123"
VETERANS = "+18005550111"


async def stored(settings: Settings, sid: str) -> dict[str, Any]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        call = await conn.fetchrow("SELECT transfer, transfer_started_at FROM calls "
                                   "WHERE call_sid = $1", sid)
        offers = await conn.fetch("SELECT counselor_id, state, created_at FROM offers "
                                  "WHERE call_sid = $1 ORDER BY id", sid)
        kinds = [r["kind"] for r in await conn.fetch(
            "SELECT kind FROM call_events WHERE call_sid = $1 ORDER BY id", sid)]
        ana = await conn.fetchval("SELECT presence FROM counselors WHERE id = 'tx-ana'")
    finally:
        await conn.close()
    assert call is not None
    return {"progress": Progress.from_json(json.loads(call["transfer"])),
            "transfer_started_at": call["transfer_started_at"],
            "offers": [(o["counselor_id"], o["state"], o["created_at"]) for o in offers],
            "kinds": kinds, "ana": ana}


def ana_events(t: Transcript) -> list[LegEvent]:
    return [e for e in t.of_type(LegEvent) if e.target == ANA]


# Ana picks up at once; 50 ms of wall time per simulated second (five times the
# default) keeps a loaded machine's webhook latency from reordering the call.
@pytest.mark.counselors(paced_ivr=True, time_scale=0.05,
                        counselors={ANA: CounselorScript(answer_after=1.0, talk_seconds=5.0)})
async def test_a_silent_caller_is_offered_during_the_menu_and_connected(
    sim: SimConfig, world: TwilioWorld, settings: Settings
) -> None:
    t = await simulate_call(sim, CallScript(from_number=TX_CALLER, inputs=(Silence(),)),
                            world=world)
    assert t.reached_human, t.format()
    assert [e.who for e in t.of_type(CounselorJoined)] == [ANA], t.format()
    row = await stored(settings, t.call_sid)
    # Offered before the flow reached its transfer, and that one offer was the answer.
    assert [(who, state) for who, state, _ in row["offers"]] == [("tx-ana", "accepted")]
    assert row["offers"][0][2] < row["transfer_started_at"]
    assert row["kinds"].index("early_offer") < row["kinds"].index("transfer")
    p = row["progress"]
    assert p.phase is Phase.CONNECTED and p.offer is not None and p.offer.accepted
    # She accepted informed: the whisper named both languages the caller could
    # still choose, and she pressed 1 while the caller still heard the menu.
    heard = [e.detail for e in ana_events(t) if e.event == "heard"]
    assert any("English or Spanish" in text for text in heard), t.format()
    pressed = next(e for e in ana_events(t) if e.event == "pressed")
    connecting = next(e for e in t.of_type(Heard) if "Connecting you" in e.text)
    assert pressed.at < connecting.at, t.format()


@pytest.mark.counselors(paced_ivr=True, counselors={ANA: CounselorScript(answer_after=40.0)})
async def test_a_caller_who_picks_another_line_has_the_early_offer_withdrawn(
    sim: SimConfig, world: TwilioWorld, settings: Settings
) -> None:
    script = CallScript(from_number=TX_CALLER, inputs=(Press("1"),))
    t = await simulate_call(sim, script, world=world)
    assert [d.targets for d in t.of_type(Dialed)] == [(VETERANS,)], t.format()
    assert t.reached_human, t.format()
    # Ana's phone rang during the menu; the server cancelled it when the caller
    # pressed 1, and she is free for the next caller, not marked away.
    events = [e.event for e in ana_events(t)]
    assert "ringing" in events and "answered" not in events, t.format()
    assert events[-1] == "canceled", t.format()
    row = await stored(settings, t.call_sid)
    assert [(who, state) for who, state, _ in row["offers"]] == [("tx-ana", "canceled")]
    assert "early_withdrawn" in row["kinds"] or "transfer" in row["kinds"]
    # Offered during the menu, before the transfer (the line above holds for
    # any call that was transferred, offered early or not).
    assert row["kinds"].index("early_offer") < row["kinds"].index("transfer")
    assert row["ana"] == "available"
    assert row["progress"].line == "veterans" and row["progress"].phase is Phase.CONNECTED


# Ana hears the whisper when the caller presses 2 (about 10 s in) and accepts
# while they still hear "Gracias..." and the transfer prompt.
@pytest.mark.counselors(paced_ivr=True, time_scale=0.05,
                        counselors={ANA: CounselorScript(answer_after=6.0, talk_seconds=5.0)})
async def test_an_early_offer_accepted_as_the_caller_arrives_waits_for_them(
    sim: SimConfig, world: TwilioWorld, settings: Settings
) -> None:
    script = CallScript(from_number=TX_CALLER, inputs=(Press("2", at=5.0),))
    t = await simulate_call(sim, script, world=world)
    assert [e.who for e in t.of_type(CounselorJoined)] == [ANA], t.format()
    pressed = next(e for e in ana_events(t) if e.event == "pressed")
    two = next(e for e in t.of_type(Pressed) if e.digits == "2")
    joined = next(e for e in t.of_type(JoinedConference))
    assert two.at < pressed.at < joined.at, t.format()  # the case this test is about
    row = await stored(settings, t.call_sid)
    assert [(who, state) for who, state, _ in row["offers"]] == [("tx-ana", "accepted")]
    assert row["progress"].phase is Phase.CONNECTED and row["progress"].language == "es"
