"""Where a North American number "is", as Twilio reports it on webhooks.

Twilio fills FromCity/FromState/FromZip/FromCountry (and the To*/Caller*/
Called* twins) from the number's rate center; the simulator derives the
same kind of values from the area code with a small table of one
representative place per area code. Area codes outside the table (toll-free
ones included) give only the country, and non-NANP numbers nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Place:
    city: str = ""
    state: str = ""
    zip: str = ""
    country: str = ""


# area code -> (city, state, zip); one representative rate center each.
_AREA_CODES: dict[str, tuple[str, str, str]] = {
    "205": ("BIRMINGHAM", "AL", "35203"),
    "907": ("ANCHORAGE", "AK", "99501"),
    "602": ("PHOENIX", "AZ", "85004"),
    "520": ("TUCSON", "AZ", "85701"),
    "501": ("LITTLE ROCK", "AR", "72201"),
    "213": ("LOS ANGELES", "CA", "90012"),
    "415": ("SAN FRANCISCO", "CA", "94103"),
    "619": ("SAN DIEGO", "CA", "92101"),
    "916": ("SACRAMENTO", "CA", "95814"),
    "303": ("DENVER", "CO", "80202"),
    "203": ("NEW HAVEN", "CT", "06510"),
    "302": ("WILMINGTON", "DE", "19801"),
    "202": ("WASHINGTON", "DC", "20001"),
    "305": ("MIAMI", "FL", "33130"),
    "407": ("ORLANDO", "FL", "32801"),
    "850": ("TALLAHASSEE", "FL", "32301"),
    "404": ("ATLANTA", "GA", "30303"),
    "808": ("HONOLULU", "HI", "96813"),
    "208": ("BOISE", "ID", "83702"),
    "312": ("CHICAGO", "IL", "60601"),
    "217": ("SPRINGFIELD", "IL", "62701"),
    "317": ("INDIANAPOLIS", "IN", "46204"),
    "515": ("DES MOINES", "IA", "50309"),
    "316": ("WICHITA", "KS", "67202"),
    "502": ("LOUISVILLE", "KY", "40202"),
    "504": ("NEW ORLEANS", "LA", "70112"),
    "207": ("PORTLAND", "ME", "04101"),
    "410": ("BALTIMORE", "MD", "21201"),
    "617": ("BOSTON", "MA", "02108"),
    "313": ("DETROIT", "MI", "48226"),
    "612": ("MINNEAPOLIS", "MN", "55401"),
    "601": ("JACKSON", "MS", "39201"),
    "314": ("SAINT LOUIS", "MO", "63101"),
    "406": ("BILLINGS", "MT", "59101"),
    "402": ("OMAHA", "NE", "68102"),
    "702": ("LAS VEGAS", "NV", "89101"),
    "603": ("MANCHESTER", "NH", "03101"),
    "973": ("NEWARK", "NJ", "07102"),
    "505": ("ALBUQUERQUE", "NM", "87102"),
    "212": ("NEW YORK", "NY", "10001"),
    "718": ("BROOKLYN", "NY", "11201"),
    "518": ("ALBANY", "NY", "12207"),
    "704": ("CHARLOTTE", "NC", "28202"),
    "919": ("RALEIGH", "NC", "27601"),
    "701": ("FARGO", "ND", "58102"),
    "614": ("COLUMBUS", "OH", "43215"),
    "216": ("CLEVELAND", "OH", "44113"),
    "405": ("OKLAHOMA CITY", "OK", "73102"),
    "503": ("PORTLAND", "OR", "97204"),
    "215": ("PHILADELPHIA", "PA", "19107"),
    "412": ("PITTSBURGH", "PA", "15222"),
    "401": ("PROVIDENCE", "RI", "02903"),
    "803": ("COLUMBIA", "SC", "29201"),
    "605": ("SIOUX FALLS", "SD", "57104"),
    "615": ("NASHVILLE", "TN", "37203"),
    "512": ("AUSTIN", "TX", "78701"),
    "713": ("HOUSTON", "TX", "77002"),
    "214": ("DALLAS", "TX", "75201"),
    "210": ("SAN ANTONIO", "TX", "78205"),
    "801": ("SALT LAKE CITY", "UT", "84111"),
    "802": ("BURLINGTON", "VT", "05401"),
    "804": ("RICHMOND", "VA", "23219"),
    "206": ("SEATTLE", "WA", "98101"),
    "509": ("SPOKANE", "WA", "99201"),
    "304": ("CHARLESTON", "WV", "25301"),
    "414": ("MILWAUKEE", "WI", "53202"),
    "307": ("CHEYENNE", "WY", "82001"),
    "787": ("SAN JUAN", "PR", "00901"),
}

_NANP = re.compile(r"^\+1([2-9]\d{2})[2-9]\d{6}$")


def area_code(number: str) -> str | None:
    match = _NANP.match(number)
    return match.group(1) if match else None


def place_for_number(number: str) -> Place:
    """The place Twilio would report for `number` (empty fields when unknown)."""
    code = area_code(number)
    if code is None:
        return Place()
    known = _AREA_CODES.get(code)
    if known is None:
        # Twilio still knows the country of any NANP number.
        return Place(country="US")
    city, state, zip_code = known
    return Place(city=city, state=state, zip=zip_code, country="PR" if state == "PR" else "US")


def place_for_state(state: str) -> Place | None:
    """A representative place in `state` (two-letter code), or None if unknown."""
    for city, known_state, zip_code in _AREA_CODES.values():
        if known_state == state.upper():
            return Place(city=city, state=known_state, zip=zip_code, country="US")
    return None


def number_in_state(state: str, line: str = "5550142") -> str | None:
    """A plausible caller number in `state` (a 555 line, never a real subscriber)."""
    for code, (_city, known_state, _zip) in _AREA_CODES.items():
        if known_state == state.upper():
            return f"+1{code}{line}"
    return None


def known_states() -> frozenset[str]:
    return frozenset(state for _city, state, _zip in _AREA_CODES.values())
