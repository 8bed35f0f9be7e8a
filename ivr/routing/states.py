"""The US states and territories a caller can be routed from.

Routing speaks USPS two-letter codes only: the 50 states, DC, and the five
inhabited territories that share the +1 numbering plan. Everything that
names a place (carrier headers, Twilio's FromState, phonenumbers' geocoder)
is normalised to one of these codes at the edge, or dropped.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Final

STATES: Final = MappingProxyType(
    {
        "AL": "Alabama",
        "AK": "Alaska",
        "AZ": "Arizona",
        "AR": "Arkansas",
        "CA": "California",
        "CO": "Colorado",
        "CT": "Connecticut",
        "DE": "Delaware",
        "FL": "Florida",
        "GA": "Georgia",
        "HI": "Hawaii",
        "ID": "Idaho",
        "IL": "Illinois",
        "IN": "Indiana",
        "IA": "Iowa",
        "KS": "Kansas",
        "KY": "Kentucky",
        "LA": "Louisiana",
        "ME": "Maine",
        "MD": "Maryland",
        "MA": "Massachusetts",
        "MI": "Michigan",
        "MN": "Minnesota",
        "MS": "Mississippi",
        "MO": "Missouri",
        "MT": "Montana",
        "NE": "Nebraska",
        "NV": "Nevada",
        "NH": "New Hampshire",
        "NJ": "New Jersey",
        "NM": "New Mexico",
        "NY": "New York",
        "NC": "North Carolina",
        "ND": "North Dakota",
        "OH": "Ohio",
        "OK": "Oklahoma",
        "OR": "Oregon",
        "PA": "Pennsylvania",
        "RI": "Rhode Island",
        "SC": "South Carolina",
        "SD": "South Dakota",
        "TN": "Tennessee",
        "TX": "Texas",
        "UT": "Utah",
        "VT": "Vermont",
        "VA": "Virginia",
        "WA": "Washington",
        "WV": "West Virginia",
        "WI": "Wisconsin",
        "WY": "Wyoming",
        "DC": "District of Columbia",
        "PR": "Puerto Rico",
        "VI": "U.S. Virgin Islands",
        "GU": "Guam",
        "AS": "American Samoa",
        "MP": "Northern Mariana Islands",
    }
)

# Territories are separate regions in phonenumbers and in Twilio's FromCountry.
TERRITORIES: Final = ("PR", "VI", "GU", "AS", "MP")

# Countries (ISO 3166-1) whose callers have a US state or territory.
US_COUNTRIES: Final = frozenset(("US", *TERRITORIES))

# Other spellings met in the wild (phonenumbers' geocoder among them).
_ALIASES: Final = {
    "washington state": "WA",
    "washington d.c.": "DC",
    "washington dc": "DC",
    "washington, d.c.": "DC",
    "d.c.": "DC",
    "us virgin islands": "VI",
    "virgin islands": "VI",
    "united states virgin islands": "VI",
    "northern mariana": "MP",
    "commonwealth of the northern mariana islands": "MP",
    "commonwealth of puerto rico": "PR",
}

_BY_NAME: Final = {name.lower(): code for code, name in STATES.items()} | _ALIASES

# "TX", "US-TX" (ISO 3166-2), "US TX", any case, surrounding blanks.
_CODE = re.compile(r"^\s*(?:US[-_ ]?)?([A-Z]{2})\s*$", re.IGNORECASE)


def is_state(code: str | None) -> bool:
    """True for a USPS code of a state, DC or an inhabited territory, exactly as written."""
    return code is not None and code in STATES


def state_code(text: str | None) -> str | None:
    """Normalise a place given as a code or a name to a USPS code; None when it is not one.

    A Canadian province ("ON"), a country, an empty string or junk all give None:
    callers of this function fall through to their next source of location.
    """
    if not text:
        return None
    m = _CODE.match(text)
    if m:
        code = m.group(1).upper()
        return code if code in STATES else None
    return _BY_NAME.get(" ".join(text.split()).lower())
