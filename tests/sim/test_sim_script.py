import argparse

import pytest

from ivr.sim.errors import ScriptError
from ivr.sim.options import add_call_arguments, script_from_args
from ivr.sim.script import CallScript, DialOutcome, Press, Silence, Speak


def parse(*argv: str) -> CallScript:
    parser = argparse.ArgumentParser()
    add_call_arguments(parser)
    return script_from_args(parser.parse_args(argv))


def test_location_derived_from_the_area_code() -> None:
    place = CallScript(from_number="+12065550123").caller_place()
    assert (place.city, place.state, place.zip, place.country) == ("SEATTLE", "WA", "98101", "US")


def test_carrier_state_overrides_the_area_code() -> None:
    place = CallScript(from_number="+12065550123", from_state="tx", from_zip="73301").caller_place()
    assert place.state == "TX"
    assert place.zip == "73301"
    assert place.city != "SEATTLE"


def test_unknown_area_code_only_gives_the_country() -> None:
    place = CallScript(from_number="+18885550100").caller_place()
    assert (place.city, place.state, place.zip, place.country) == ("", "", "", "US")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"from_number": "5125550100"},
        {"to_number": "sip:x@y"},
        {"from_state": "Texas"},
        {"from_zip": "7870"},
        {"hangup_after": -1.0},
        {"sip_headers": {"X Bad": "1"}},
    ],
)
def test_invalid_scripts(kwargs: dict[str, object]) -> None:
    with pytest.raises(ScriptError):
        CallScript(**kwargs)  # type: ignore[arg-type]


def test_invalid_inputs() -> None:
    with pytest.raises(ScriptError):
        Press("12a")
    with pytest.raises(ScriptError):
        Press("")
    with pytest.raises(ScriptError):
        Speak("  ")
    with pytest.raises(ScriptError):
        DialOutcome("voicemail")  # type: ignore[arg-type]


def test_inputs_keep_command_line_order() -> None:
    script = parse("--press", "1", "--silence", "--press", "23#", "--say", "hola", "--silence")
    assert script.inputs == (Press("1"), Silence(), Press("23#"), Speak("hola"), Silence())


def test_inputs_do_not_leak_between_parses() -> None:
    parser = argparse.ArgumentParser()
    add_call_arguments(parser)
    first = script_from_args(parser.parse_args(["--press", "1"]))
    second = script_from_args(parser.parse_args([]))
    assert first.inputs == (Press("1"),)
    assert second.inputs == ()


def test_full_command_line() -> None:
    script = parse(
        "--from", "+13035550111", "--to", "+18885550988", "--state", "co", "--zip", "80202",
        "--sip", "--sip-header", "X-Geo-State=CO", "--sip-header", "X-Carrier=acme",
        "--dial", "busy", "--dial", "answer", "--hangup-after", "90", "--duplicate-callbacks",
    )
    assert script.from_number == "+13035550111"
    assert script.from_state == "CO" and script.from_zip == "80202"
    assert script.sip_headers == {"X-Geo-State": "CO", "X-Carrier": "acme"}
    assert script.sip_domain == "crisis.sip.twilio.com"
    assert [d.kind for d in script.dial_outcomes] == ["busy", "answer"]
    assert script.hangup_after == 90.0
    assert script.duplicate_callbacks is True


def test_state_without_number_picks_a_number_in_that_state() -> None:
    script = parse("--state", "CA")
    assert script.caller_place().state == "CA"
    assert script.from_number.startswith("+1")


def test_defaults() -> None:
    script = parse()
    assert script.inputs == () and script.dial_outcomes == ()
    assert script.hangup_after is None and not script.duplicate_callbacks


@pytest.mark.parametrize(
    "argv",
    [["--press", "x"], ["--dial", "voicemail"], ["--sip-header", "novalue"],
     ["--hangup-after", "-3"], ["--say-audio", "/nonexistent.wav"]],
)
def test_bad_options_exit_with_usage(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    add_call_arguments(parser)
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(argv)
    assert caught.value.code == 2
