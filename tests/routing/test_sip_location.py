"""Location and caller ID of calls that come through a SIP domain."""

from __future__ import annotations

import pytest

from ivr.routing.location import is_dialable, locate, sip_header

GEO = "SipHeader_X-Georoute-State"


@pytest.mark.parametrize(
    "params",
    [
        {"SipHeader_X-Georoute-State": "NY"},
        # SIP header names are case-insensitive: Twilio keeps the carrier's spelling.
        {"SipHeader_x-georoute-state": "NY"},
        {"SipHeader_X-GEOROUTE-STATE": "US-NY"},
    ],
)
def test_the_georouting_header_of_a_sip_call_wins(params: dict[str, str]) -> None:
    params = {"From": "sip:+15125550123@crisis.sip.twilio.com", **params}
    location = locate(params, GEO, "national")
    assert (location.state, location.source, location.area_code) == ("NY", "georoute", "512")


def test_a_sip_call_without_the_header_is_located_by_its_number() -> None:
    location = locate({"From": "sip:+15125550123@crisis.sip.twilio.com"}, GEO, "national")
    assert (location.state, location.source) == ("TX", "area_code")


def test_the_prefix_is_not_case_folded_away_for_other_headers() -> None:
    assert sip_header({"SipHeader_X-Other": "NY"}, GEO) is None
    assert sip_header({"X-Georoute-State": "NY"}, GEO) is None


@pytest.mark.parametrize(
    ("number", "dialable"),
    [
        ("+15125550123", True),
        (" +15125550123 ", True),
        ("+442071838750", True),
        ("sip:+15125550123@crisis.sip.twilio.com", False),
        ("anonymous", False),
        ("Restricted", False),
        ("client:alice", False),
        ("+266696687", False),  # "ANONYMOUS" on a keypad, as carriers have sent withheld numbers
        ("+7378742833", False),  # "RESTRICTED", likewise
        ("5125550123", False),
        ("", False),
        (None, False),
    ],
)
def test_only_a_real_e164_number_can_be_presented_as_caller_id(
    number: str | None, dialable: bool
) -> None:
    assert is_dialable(number) is dialable
