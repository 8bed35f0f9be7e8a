"""State codes: what carriers and Twilio send, normalised to USPS codes."""

from __future__ import annotations

import pytest

from ivr.routing.states import STATES, TERRITORIES, is_state, state_code


def test_the_table_has_states_dc_and_territories() -> None:
    assert len(STATES) == 56
    assert "DC" in STATES and set(TERRITORIES) <= set(STATES)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("TX", "TX"),
        ("tx", "TX"),
        (" TX ", "TX"),
        ("US-TX", "TX"),
        ("us-tx", "TX"),
        ("US_TX", "TX"),
        ("Texas", "TX"),
        ("new  york", "NY"),
        ("District of Columbia", "DC"),
        ("Washington D.C.", "DC"),
        ("Puerto Rico", "PR"),
        ("US-PR", "PR"),
        ("ON", None),  # Ontario
        ("QC", None),
        ("CA-ON", None),
        ("US", None),
        ("ZZ", None),
        ("Texas!", None),
        ("", None),
        (None, None),
    ],
)
def test_state_code(text: str | None, code: str | None) -> None:
    assert state_code(text) == code


def test_is_state_is_exact() -> None:
    assert is_state("TX") and not is_state("tx") and not is_state(None) and not is_state("ON")
