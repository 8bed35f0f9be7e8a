"""Caller location: georoute header > FromState > area code > default region."""

from __future__ import annotations

import hashlib
import hmac

import phonenumbers
import pytest
from phonenumbers import PhoneNumber, PhoneNumberType, geocoder

from ivr.routing.location import (
    Location,
    area_code,
    area_code_table,
    caller_hash,
    locate,
    normalise_number,
    state_for_area_code,
    state_from_description,
)
from ivr.routing.states import STATES, TERRITORIES

GEOGRAPHIC = {
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE,
}


def _us_area_codes_known_to_phonenumbers() -> set[str]:
    """Found independently of the module: a dense scan of exchanges for every NPA."""
    known = set()
    for npa in range(200, 1000):
        for exchange in range(200, 1000, 9):
            number = PhoneNumber(country_code=1, national_number=int(f"{npa}{exchange}4567"))
            if (
                phonenumbers.is_valid_number_for_region(number, "US")
                and phonenumbers.number_type(number) in GEOGRAPHIC
            ):
                known.add(str(npa))
                break
    return known


US_KNOWN = sorted(_us_area_codes_known_to_phonenumbers())
TABLE = area_code_table()


# --- area codes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("+15125550101", "512"),
        ("5125550101", "512"),
        ("15125550101", "512"),
        ("+1 (512) 555-0101", "512"),
        ("sip:+15125550101@trunk.example.com", "512"),
        ("sip:+15125550101@trunk.example.com;user=phone", "512"),
        ("tel:+15125550101", "512"),
        ("+18005550100", "800"),  # toll-free: returned, but no state (below)
        ("+14165550100", "416"),  # Canada shares +1: returned, no state
        (None, None),
        ("", None),
        ("anonymous", None),
        ("Anonymous", None),
        ("Restricted", None),
        ("+266696687", None),  # how Twilio spells a withheld number
        ("266696687", None),
        ("client:alice", None),
        ("+442071838750", None),  # London
        ("+11235550100", None),  # an NPA cannot start with 1
        ("+15121550101", None),  # nor an exchange
        ("+1512555", None),  # too short
        ("+1512555010199", None),  # too long
        ("1-800-FLOWERS", None),  # letters never make a caller id
    ],
)
def test_area_code(number: str | None, expected: str | None) -> None:
    assert area_code(number) == expected


def test_phonenumbers_knows_hundreds_of_us_area_codes() -> None:
    # Guards the scan itself: an empty list would make the next tests vacuous.
    assert len(US_KNOWN) > 300
    assert {"512", "212", "202", "907", "808"} <= set(US_KNOWN)


@pytest.mark.parametrize("code", US_KNOWN)
def test_every_us_area_code_maps_to_a_state(code: str) -> None:
    state = state_for_area_code(code)
    assert state is not None, f"area code {code} has no state"
    assert len(state) == 2 and state in STATES and state not in TERRITORIES


def test_table_holds_only_us_codes() -> None:
    territory_codes = {c for c, s in TABLE.items() if s in TERRITORIES}
    assert set(TABLE) == set(US_KNOWN) | territory_codes
    assert all(s in STATES for s in TABLE.values())


@pytest.mark.parametrize(
    ("code", "state"),
    [
        ("512", "TX"),
        ("212", "NY"),  # described as the city "New York, NY"
        ("202", "DC"),  # "Washington D.C."
        ("206", "WA"),  # "Washington State"
        ("210", "TX"),  # "San Antonio, TX"
        ("312", "IL"),  # "Chicago, IL"
        ("213", "CA"),  # "Los Angeles, CA"
        ("787", "PR"),
        ("939", "PR"),
        ("340", "VI"),
        ("671", "GU"),
        ("684", "AS"),
        ("670", "MP"),
        ("907", "AK"),
        ("808", "HI"),
    ],
)
def test_spot_checks(code: str, state: str) -> None:
    assert state_for_area_code(code) == state


@pytest.mark.parametrize(
    "code",
    ["800", "833", "844", "855", "866", "877", "888", "900", "500", "416", "604", "876", "264"],
)
def test_non_geographic_and_foreign_codes_have_no_state(code: str) -> None:
    assert state_for_area_code(code) is None


@pytest.mark.parametrize("code", [None, "", "51", "5120", "abc", "123"])
def test_junk_area_codes_have_no_state(code: str | None) -> None:
    assert state_for_area_code(code) is None


@pytest.mark.parametrize("region", TERRITORIES)
def test_territory_example_numbers_map_to_their_territory(region: str) -> None:
    for kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE):
        example = phonenumbers.example_number_for_type(region, kind)
        assert example is not None
        e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        assert state_for_area_code(area_code(e164)) == region


def test_every_description_of_an_area_code_agrees_with_the_table() -> None:
    # Descriptions vary by exchange ("Texas", "Austin, TX", "Sugar Land, TX"):
    # whichever the geocoder gives, the state must be the table's.
    disagreements = []
    for code, state in TABLE.items():
        for exchange in range(201, 1000, 53):
            number = PhoneNumber(country_code=1, national_number=int(f"{code}{exchange}0123"))
            if not phonenumbers.is_valid_number(number):
                continue
            description = geocoder.description_for_number(number, "en")
            if state_from_description(description) != state:
                disagreements.append((code, exchange, description, state))
    assert disagreements == []


@pytest.mark.parametrize(
    ("description", "state"),
    [
        ("Texas", "TX"),
        ("Austin, TX", "TX"),
        ("New York", "NY"),
        ("New York, NY", "NY"),
        ("Washington State", "WA"),
        ("Washington D.C.", "DC"),
        ("Puerto Rico", "PR"),
        ("Guam", "GU"),
        ("U.S. Virgin Islands", "VI"),
        ("Chtamstths, VI", "VI"),
        ("E. E. Smith, Fort Bragg, NC", "NC"),
        ("Sheppard AFB, Wichita Falls, TX", "TX"),
        ("Ontario", None),
        ("Toronto, ON", None),
        ("Montreal, QC", None),
        ("United States", None),
        ("Jamaica", None),
        ("Springfield", None),  # a city alone says nothing
        ("", None),
    ],
)
def test_state_from_description(description: str, state: str | None) -> None:
    assert state_from_description(description) == state


# --- locate --------------------------------------------------------------------------

GEO = "SipHeader_X-Georoute-State"


@pytest.mark.parametrize(
    ("params", "default", "expected"),
    [
        # georoute header wins, in any reasonable spelling
        (
            {GEO: "TX", "FromState": "NY", "From": "+12125550101"},
            "national",
            Location("TX", "georoute", "212"),
        ),
        ({GEO: "US-TX"}, "national", Location("TX", "georoute", None)),
        ({GEO: "tx"}, "national", Location("TX", "georoute", None)),
        ({GEO: " us-ca "}, "national", Location("CA", "georoute", None)),
        ({GEO: "PR"}, "national", Location("PR", "georoute", None)),
        # junk in the header falls through to FromState
        ({GEO: "ZZ", "FromState": "NY"}, "national", Location("NY", "from_state", None)),
        ({GEO: "", "FromState": "NY"}, "national", Location("NY", "from_state", None)),
        ({GEO: "US-", "FromState": "NY"}, "national", Location("NY", "from_state", None)),
        ({GEO: "41.2,-96.1", "FromState": "NY"}, "national", Location("NY", "from_state", None)),
        # FromState, checked against FromCountry
        (
            {"FromState": "FL", "FromCountry": "US", "From": "+13055550101"},
            "national",
            Location("FL", "from_state", "305"),
        ),
        ({"FromState": "PR", "FromCountry": "PR"}, "national", Location("PR", "from_state", None)),
        (
            {"FromState": "ON", "FromCountry": "CA", "From": "+14165550100"},
            "national",
            Location(None, "default", "416"),
        ),
        (
            # a US-looking code from a foreign country is not a US state
            {"FromState": "CA", "FromCountry": "MX"},
            "national",
            Location(None, "default", None),
        ),
        (
            {"FromState": "", "From": "+15125550101"},
            "national",
            Location("TX", "area_code", "512"),
        ),
        (
            {"FromState": "Texas", "From": "+12125550101"},
            "national",
            Location("TX", "from_state", "212"),
        ),
        # area code
        ({"From": "+12125550101"}, "national", Location("NY", "area_code", "212")),
        ({"From": "+17875550101"}, "national", Location("PR", "area_code", "787")),
        ({"From": "+16715550101"}, "national", Location("GU", "area_code", "671")),
        # withheld, toll-free, foreign, malformed: the default region
        ({"From": "anonymous"}, "national", Location(None, "default", None)),
        ({"From": "+266696687"}, "national", Location(None, "default", None)),
        ({"From": "Restricted"}, "national", Location(None, "default", None)),
        ({"From": ""}, "national", Location(None, "default", None)),
        ({}, "national", Location(None, "default", None)),
        ({"From": "+18005550100"}, "national", Location(None, "default", "800")),
        ({"From": "+442071838750"}, "national", Location(None, "default", None)),
        ({"From": "+1512"}, "national", Location(None, "default", None)),
        # the default region is a state, a region or national
        ({"From": "anonymous"}, "TX", Location("TX", "default", None)),
        ({"From": "anonymous"}, "south", Location(None, "default", None)),
    ],
)
def test_locate(params: dict[str, str], default: str, expected: Location) -> None:
    assert locate(params, GEO, default) == expected


def test_locate_accepts_the_bare_header_name() -> None:
    params = {GEO: "OK", "From": "+15125550101"}
    assert locate(params, "X-Georoute-State", "national") == Location("OK", "georoute", "512")


def test_locate_without_a_georoute_header_ignores_it() -> None:
    params = {GEO: "OK", "From": "+15125550101"}
    assert locate(params, None, "national") == Location("TX", "area_code", "512")


def test_another_sip_header_is_not_the_georoute_one() -> None:
    params = {"SipHeader_X-Other": "OK", "From": "+15125550101"}
    assert locate(params, GEO, "national").source == "area_code"


# --- caller identity -----------------------------------------------------------------

KEY = b"k" * 32


def test_caller_hash_is_hmac_sha256_of_e164() -> None:
    expected = hmac.new(KEY, b"+15125550101", hashlib.sha256).hexdigest()
    assert caller_hash("+15125550101", KEY) == expected


@pytest.mark.parametrize(
    "spelling",
    ["+15125550101", "5125550101", "1 512 555 0101", "(512) 555-0101", "tel:+15125550101"],
)
def test_caller_hash_ignores_formatting(spelling: str) -> None:
    assert caller_hash(spelling, KEY) == caller_hash("+15125550101", KEY)


def test_caller_hash_depends_on_number_and_key() -> None:
    h = caller_hash("+15125550101", KEY)
    assert caller_hash("+15125550102", KEY) != h
    assert caller_hash("+15125550101", b"another key") != h
    assert len(h) == 64 and "5125550101" not in h


def test_caller_hash_needs_a_key() -> None:
    with pytest.raises(ValueError):
        caller_hash("+15125550101", b"")


def test_withheld_numbers_still_hash() -> None:
    assert caller_hash("anonymous", KEY) == caller_hash(" anonymous ", KEY)
    assert normalise_number("+44 20 7183 8750") == "+442071838750"
