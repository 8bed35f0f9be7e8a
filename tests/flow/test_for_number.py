"""Which flow answers a call: by the number called, phone or SIP URI."""

from __future__ import annotations

import pytest

from ivr.flow.model import Flow, FlowSet, PromptCatalog


def flow(flow_id: str, *numbers: str) -> Flow:
    return Flow(id=flow_id, languages=("en",), start="s", max_time_to_human=60.0, nodes={},
                version="v", source=f"{flow_id}.yaml", numbers=numbers)


FLOWS = FlowSet(
    flows={"main": flow("main"), "veterans": flow("veterans", "+18002738255")},
    prompts=PromptCatalog(prompts={}),
)


@pytest.mark.parametrize(
    ("to", "answered_by"),
    [
        ("+18002738255", "veterans"),
        # Through a SIP domain, To is the INVITE's URI: its user part is the number.
        ("sip:+18002738255@crisis.sip.twilio.com", "veterans"),
        ("sips:+18002738255@crisis.sip.twilio.com;transport=tls", "veterans"),
        ("sip:18002738255@crisis.sip.twilio.com", "veterans"),
        ("SIP:+18002738255@crisis.sip.twilio.com;user=phone", "veterans"),
        ("sip:988@crisis.sip.twilio.com", "main"),
        ("sip:+18005550100@crisis.sip.twilio.com", "main"),
        ("+18005550100", "main"),
        ("", "main"),
        (None, "main"),
    ],
)
def test_the_called_number_picks_the_flow(to: str | None, answered_by: str) -> None:
    assert FLOWS.for_number(to).id == answered_by
