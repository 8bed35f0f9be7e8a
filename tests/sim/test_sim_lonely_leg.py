"""A leg waiting alone in a conference is visible, as TwiML Voice <Conference>
has it: the room does not start with one participant, who hears the wait URL
(Twilio's hold music by default) until someone joins or they give up."""

from __future__ import annotations

import pytest

from ivr.sim import CallScript, CounselorScript, simulate_call
from tests.sim import test_sim_world
from tests.sim.test_sim_world import A, Start

pytestmark = [
    pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning"),
]

center_app = test_sim_world.start  # the fixture, under this module's name


async def test_a_counselor_who_joins_after_the_caller_left_waits_alone(center_app: Start) -> None:
    center, cfg = await center_app({A: CounselorScript()})
    # The caller hangs up during the whisper; the counselor still presses 1.
    await simulate_call(cfg, CallScript(hangup_after=7.0), world=center.world)
    assert await center.world.wait_idle(60)
    [leg] = center.world.legs
    events = [(e.event, e.detail) for e in center.world.events if e.sid == leg.sid]
    names = [name for name, _ in events]
    assert names.index("waiting alone in conference") > names.index("joined conference")
    assert ("heard hold music",
            "hold music from https://twimlets.com/holdmusic?Bucket=com.twilio.music.classical"
            ) in events
    assert leg.end_reason == "counselor hung up, nobody else in the conference"


async def test_a_lonely_counselor_whose_wait_url_fails_leaves_the_dial(center_app: Start) -> None:
    center, cfg = await center_app({A: CounselorScript()})
    # A wait URL the center does not serve (404): the conference is not
    # established, the counselor's <Dial> is over.
    center.counselor_conference = 'startConferenceOnEnter="true" waitUrl="/twilio/missing"'
    await simulate_call(cfg, CallScript(hangup_after=7.0), world=center.world)
    assert await center.world.wait_idle(60)
    [leg] = center.world.legs
    names = [e.event for e in center.world.events if e.sid == leg.sid]
    assert "waiting alone in conference" in names and "heard hold music" not in names
    assert leg.end_reason == "end of TwiML document"
    assert len(center.to("/twilio/missing")) == 1
