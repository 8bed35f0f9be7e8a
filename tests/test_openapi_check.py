"""The OpenAPI checker itself: it must reject what Twilio's description forbids."""

from __future__ import annotations

import json

import pytest

from tests.openapi_check import SPEC_FILE, check_request, prose_rules_still_stated
from tests.twilio_openapi.extract import DEFAULT_SOURCE, extract

ACCOUNT = "AC" + "1" * 32
CALL = "CA" + "a" * 32
CALLS = f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
ONE_CALL = f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"

# A counselor leg as the server places it.
LEG = (
    ("To", "+15125550101"),
    ("From", "+15005550006"),
    ("Url", "https://ivr.example/twilio/whisper?offer=1"),
    ("Method", "POST"),
    ("StatusCallback", "https://ivr.example/twilio/leg-status?offer=1"),
    ("StatusCallbackMethod", "POST"),
    ("StatusCallbackEvent", "initiated"),
    ("StatusCallbackEvent", "ringing"),
    ("StatusCallbackEvent", "answered"),
    ("StatusCallbackEvent", "completed"),
    ("Timeout", "20"),
)


def leg(*, drop: str = "", **changes: str) -> list[tuple[str, str]]:
    kept = [(k, v) for k, v in LEG if k != drop and k not in changes]
    return kept + list(changes.items())


def test_what_the_server_sends_conforms() -> None:
    assert check_request("POST", CALLS, LEG) == []
    assert check_request("POST", CALLS, leg(To="sip:ana@center.example")) == []
    assert check_request("POST", ONE_CALL, [("Url", "https://ivr.example/twilio/resume?seq=4"),
                                            ("Method", "POST")]) == []
    assert check_request("POST", ONE_CALL, [("Status", "canceled")]) == []
    assert check_request("GET", ONE_CALL) == []
    assert check_request("GET", f"/2010-04-01/Accounts/{ACCOUNT}.json") == []


@pytest.mark.parametrize(
    ("method", "path", "form", "problem"),
    [
        ("POST", CALLS, leg(StatusCallbackEvents="completed"), "unknown parameter"),
        ("POST", CALLS, leg(drop="To"), "required parameter To is missing"),
        ("POST", CALLS, leg(Method="PUT"), "is not one of"),
        ("POST", CALLS, leg(Timeout="601"), "Timeout 601 is outside"),
        ("POST", CALLS, leg(Timeout="twenty"), "is not an integer"),
        ("POST", CALLS, [(k, v) for k, v in LEG if k != "Url"],
         "one of Url, Twiml, ApplicationSid is required"),
        ("POST", CALLS, leg(From="sip:988@ivr.example"), "must be a phone number when To is"),
        ("POST", CALLS, leg(StatusCallbackEvent="queued"), "is not one Twilio sends"),
        ("POST", CALLS, leg(Url="/twilio/whisper"), "not an absolute http(s) URL"),
        ("POST", CALLS, [*LEG, ("Timeout", "30")], "Timeout given 2 times"),
        ("POST", ONE_CALL, [("Status", "hangup")], "is not one of"),
        ("POST", ONE_CALL, [("Url", "https://ivr.example/a"), ("Twiml", "<Response/>")],
         "Url and Twiml together"),
        ("GET", ONE_CALL.replace(CALL, "CA-not-a-sid"), [], "does not match"),
        ("POST", CALLS.replace(ACCOUNT, "AC123"), LEG, "does not match"),
        ("DELETE", ONE_CALL, [], "none of the operations"),
        ("POST", "/2010-04-01/Accounts/" + ACCOUNT + "/Conferences.json", [],
         "none of the operations"),
    ],
)
def test_departures_from_the_description_are_reported(
    method: str, path: str, form: list[tuple[str, str]], problem: str
) -> None:
    problems = check_request(method, path, form)
    assert any(problem in p for p in problems), problems


def test_unknown_query_parameters_are_reported() -> None:
    assert check_request("GET", ONE_CALL, query=[("PageSize", "50")]) == [
        "unknown query parameter PageSize"]


def test_the_prose_rules_are_still_in_the_description() -> None:
    assert prose_rules_still_stated() == []


@pytest.mark.skipif(not DEFAULT_SOURCE.exists(), reason="Twilio's description is not beside "
                    "the project (../shared/twilio/twilio_api_v2010.json)")
def test_the_copy_is_what_the_extraction_gives() -> None:
    spec = json.loads(DEFAULT_SOURCE.read_text(encoding="utf-8"))
    assert json.loads(SPEC_FILE.read_text(encoding="utf-8")) == extract(spec)
