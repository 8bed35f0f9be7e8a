"""Keys timed into a menu (`--press D@Ns`): heard by a <Gather> (its nested
prompts included, which they cut short) and by a media stream, lost anywhere
else, as on Twilio."""

from __future__ import annotations

import pytest

from ivr.sim import CallScript, Press, simulate_call
from ivr.sim.errors import ScriptError
from ivr.sim.transcript import Heard, Note, Pressed
from tests.sim import test_sim_call
from tests.sim.test_sim_call import Start, ok

MENU = (
    '<Gather action="/twilio/menu" numDigits="1" timeout="1">'
    "<Say>For Spanish press 2, for veterans press 1, or stay on the line.</Say></Gather>"
)
AFTER = "<Say>We did not get your choice, goodbye for now and thank you for calling.</Say>"

voice_app = test_sim_call.start  # the fixture, under this module's name


def routes(voice: str) -> dict[str, object]:
    return {
        "/twilio/voice": lambda h: voice,
        "/twilio/menu": lambda h: f"<Say>You chose {h.form['Digits']}.</Say><Hangup/>",
        "/twilio/hold": lambda h: '<Say>Please hold.</Say><Pause length="10"/>',
        "/twilio/after": lambda h: "<Hangup/>",
        "/twilio/status": ok,
    }


async def test_a_key_during_the_gathers_prompt_cuts_it_and_counts(voice_app: Start) -> None:
    app, cfg = await voice_app(routes(MENU + AFTER))
    t = await simulate_call(cfg, CallScript(inputs=(Press("2", at=1.5),)))
    [menu] = app.to("/twilio/menu")
    assert menu.form["Digits"] == "2"
    prompt = t.of_type(Heard)[0]
    assert prompt.interrupted  # barge-in
    [pressed] = t.of_type(Pressed)
    assert pressed.at == pytest.approx(1.5) and not pressed.ignored


async def test_a_key_during_a_plain_say_outside_any_gather_is_lost(voice_app: Start) -> None:
    app, cfg = await voice_app(routes(MENU + AFTER + "<Hangup/>"))
    # The menu's prompt lasts 5.2 s, its timeout 1 s: at 8 s the goodbye is said.
    t = await simulate_call(cfg, CallScript(inputs=(Press("2", at=8.0),)))
    assert app.to("/twilio/menu") == []
    [pressed] = t.of_type(Pressed)
    assert pressed.ignored and pressed.at == pytest.approx(8.0)
    lost = [n.text for n in t.of_type(Note) if "were lost" in n.text]
    assert lost and "<Say> outside any <Gather>" in lost[0], t.format()
    assert "pressed 2 (not listened to)" in t.format()


async def test_a_key_while_holding_in_a_conference_is_lost(voice_app: Start) -> None:
    hold = ('<Dial action="/twilio/after"><Conference waitUrl="/twilio/hold">room-7'
            "</Conference></Dial>")
    app, cfg = await voice_app(routes(MENU + hold))
    t = await simulate_call(cfg, CallScript(inputs=(Press("1", at=10.0),), hold_patience=30))
    assert app.to("/twilio/menu") == []
    [pressed] = t.of_type(Pressed)
    assert pressed.ignored
    assert any("<Dial><Conference>" in n.text for n in t.of_type(Note) if "lost" in n.text)


async def test_without_a_time_a_key_keeps_its_meaning(voice_app: Start) -> None:
    app, cfg = await voice_app(routes(MENU + AFTER))
    await simulate_call(cfg, CallScript(inputs=(Press("1"),)))
    assert app.to("/twilio/menu")[0].form["Digits"] == "1"


def test_timed_presses_parse() -> None:
    assert Press.parse("2@3s") == Press("2", at=3.0)
    assert Press.parse("12@0.5") == Press("12", at=0.5)
    assert Press.parse("9") == Press("9")
    for bad in ("2@soon", "2@-1s", "@3s"):
        with pytest.raises(ScriptError):
            Press.parse(bad)
