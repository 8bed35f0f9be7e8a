"""Where a caller is, from what Twilio tells us about the call.

Sources, best first, the one used being recorded on the call:

1. `georoute`: a carrier's georouting value passed as a SIP X- header, which
   Twilio forwards as the `SipHeader_<name>` webhook parameter;
2. `from_state`: Twilio's `FromState`, when the caller's country is the US
   or one of its territories;
3. `area_code`: the area code of `From`, mapped to a state with the
   geographic data of the `phonenumbers` package;
4. `default`: the routing plan's default region.

Nothing here raises on bad input: a withheld, toll-free, foreign or
malformed number, or a junk header, just falls through to the next source.

Area codes: `area_code()` returns the NPA of any well-formed NANP number,
non-geographic ones (toll-free 8xx, 500, 900...) and Canadian or Caribbean
ones included, because the call record keeps it for statistics;
`state_for_area_code()` is the one that says whether it is a US place.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberFormat, PhoneNumberType, geocoder

from ivr.routing.states import STATES, TERRITORIES, US_COUNTRIES, state_code

LocationSource = Literal["georoute", "from_state", "area_code", "default"]

SIP_HEADER_PREFIX = "SipHeader_"

_NANP = re.compile(r"^[2-9]\d{2}[2-9]\d{6}$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_GEOGRAPHIC = frozenset(
    (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
)
# US validity patterns restrict at most the first digit of the exchange, so
# one exchange per leading digit finds every area code phonenumbers knows.
_PROBE_EXCHANGES = tuple(f"{d}23" for d in "23456789")
# "Austin, TX", "Chtamstths, VI", "E. E. Smith, Fort Bragg, NC": a city, then the code.
_CITY_STATE = re.compile(r",\s*([A-Z]{2})\s*$")


@dataclass(frozen=True)
class Location:
    state: str | None  # USPS code; None when only the plan's default region is known
    source: LocationSource
    area_code: str | None = None  # of From, whatever the source of the state


def _dialable_text(number: str) -> str | None:
    """The phone number part of a From value; None when it cannot be a number."""
    text = number.strip()
    lowered = text.lower()
    for scheme in ("sip:", "sips:", "tel:"):
        if lowered.startswith(scheme):
            text = text[len(scheme) :].split("@", 1)[0].split(";", 1)[0]
            break
    # "anonymous", "Restricted", "client:alice": letters never make a caller id.
    if not text or any(c.isalpha() for c in text):
        return None
    return text


def _parse(number: str | None) -> PhoneNumber | None:
    if not number:
        return None
    return _parse_text(number)


# A call's webhooks each parse its From, and the voice webhook twice (area
# code, hash): parsing was a sixth of its CPU (py-spy, issue 12). Results are
# never changed by their users. The numbers stay in this process's memory only.
@functools.lru_cache(maxsize=4096)
def _parse_text(number: str) -> PhoneNumber | None:
    text = _dialable_text(number)
    if text is None:
        return None
    try:
        return phonenumbers.parse(text, "US")
    except phonenumbers.NumberParseException:
        return None


def area_code(number: str | None) -> str | None:
    """The 3-digit area code of a well-formed NANP number (+1 NPA NXX XXXX), else None."""
    parsed = _parse(number)
    if parsed is None or parsed.country_code != 1:
        return None
    national = phonenumbers.national_significant_number(parsed)
    return national[:3] if _NANP.match(national) else None


def state_from_description(description: str) -> str | None:
    """A USPS code from a phonenumbers geocoder description, None if it names no US place.

    The geocoder mostly answers with a state name, but some area codes give a
    city ("New York, NY", "San Antonio, TX"), Washington is "Washington State",
    DC is "Washington D.C." and territories give their own name.
    """
    m = _CITY_STATE.search(description)
    if m and m.group(1) in STATES:
        return m.group(1)
    return state_code(description) if "," not in description else None


def _territory_area_codes(region: str) -> tuple[str, ...]:
    # Territories are regions of their own whose metadata lists their area codes.
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    leading = (metadata.leading_digits or "") if metadata else ""
    return tuple(code for code in leading.split("|") if re.fullmatch(r"\d{3}", code))


def _us_state_of(npa: int) -> str | None:
    """State of a US area code; None for non-US, unassigned or non-geographic codes."""
    for exchange in _PROBE_EXCHANGES:
        probe = PhoneNumber(country_code=1, national_number=int(f"{npa}{exchange}0123"))
        if not phonenumbers.is_valid_number_for_region(probe, "US"):
            continue
        if phonenumbers.number_type(probe) not in _GEOGRAPHIC:
            return None
        state = state_from_description(geocoder.description_for_number(probe, "en"))
        if state is not None:
            return state
    return None


@functools.cache
def area_code_table() -> Mapping[str, str]:
    """Every US and territory area code phonenumbers knows, with its USPS code.

    Built once per process (about a tenth of a second); warm it at startup
    to keep that off the first call's path.
    """
    table: dict[str, str] = {}
    for npa in range(200, 1000):
        state = _us_state_of(npa)
        if state is not None:
            table[str(npa)] = state
    for region in TERRITORIES:
        for code in _territory_area_codes(region):
            table[code] = region
    return MappingProxyType(dict(sorted(table.items())))


def state_for_area_code(code: str | None) -> str | None:
    """USPS code of a geographic US or territory area code; None otherwise (Canada too)."""
    if code is None:
        return None
    return area_code_table().get(code)


def _georoute_param(name: str) -> str:
    return name if name.startswith(SIP_HEADER_PREFIX) else SIP_HEADER_PREFIX + name


def sip_header(params: Mapping[str, str], param: str) -> str | None:
    """The value of a `SipHeader_<name>` parameter, the header name matched
    without regard to case: SIP header names are case-insensitive (RFC 3261
    7.3.1) and Twilio passes on the name as the carrier spelt it."""
    value = params.get(param)
    if value is not None:
        return value
    wanted = param.lower()
    return next((v for k, v in params.items() if k.lower() == wanted), None)


def locate(params: Mapping[str, str], georoute_param: str | None, default_region: str) -> Location:
    """Where the caller is, from Twilio's webhook form parameters.

    `georoute_param` is the webhook parameter ("SipHeader_X-Georoute-State")
    or the bare SIP header name ("X-Georoute-State"); None turns that source
    off. `default_region` is the plan's: a state code gives that state, any
    other value (a region name, "national") gives `state=None`.
    """
    code = area_code(params.get("From"))
    if georoute_param:
        state = state_code(sip_header(params, _georoute_param(georoute_param)))
        if state is not None:
            return Location(state, "georoute", code)
    # FromState of a Canadian caller is a province; trust it only for US countries.
    country = (params.get("FromCountry") or "").strip().upper()
    if not country or country in US_COUNTRIES:
        state = state_code(params.get("FromState"))
        if state is not None:
            return Location(state, "from_state", code)
    state = state_for_area_code(code)
    if state is not None:
        return Location(state, "area_code", code)
    return Location(default_region if default_region in STATES else None, "default", code)


@functools.lru_cache(maxsize=4096)
def is_dialable(number: str | None) -> bool:
    """Whether a caller's From is a real phone number in E.164 form, one Twilio
    can present as caller ID on a call it places. SIP URIs, "anonymous",
    "Restricted", client identities and the digit strings some carriers use
    for a withheld number (+266696687, "ANONYMOUS" on a keypad) are not."""
    text = (number or "").strip()
    if not _E164.match(text):
        return False
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(text, None)))
    except phonenumbers.NumberParseException:
        return False


def normalise_number(number: str) -> str:
    """E.164 form of a phone number; the stripped text when it is not a possible number."""
    parsed = _parse(number)
    if parsed is not None and phonenumbers.is_possible_number(parsed):
        return str(phonenumbers.format_number(parsed, PhoneNumberFormat.E164))
    return number.strip()


def caller_hash(number: str, key: bytes) -> str:
    """The stored identity of a caller: keyed HMAC-SHA256 (hex) of the E.164 number.

    The same caller hashes the same whatever the formatting Twilio used, and
    the number cannot be recovered without the key. Withheld callers
    ("anonymous", "") share one hash each per spelling, which is what they are.
    """
    if not key:
        raise ValueError("caller_hash needs a non-empty key")
    return hmac.new(key, normalise_number(number).encode("utf-8"), hashlib.sha256).hexdigest()
