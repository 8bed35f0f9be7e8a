from twilio.request_validator import RequestValidator

from ivr.sim.signing import compute_signature, url_with_query

KNOWN_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
# Twilio publishes two worked examples with this URL and token: the webhook
# security page's (caller +12349013030) and the helper libraries' test vector
# (caller +14158675309).
KNOWN_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}


def test_twilio_security_page_vector() -> None:
    assert compute_signature("12345", KNOWN_URL, KNOWN_PARAMS) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_twilio_helper_library_vector() -> None:
    params = {**KNOWN_PARAMS, "Caller": "+14158675309", "From": "+14158675309"}
    assert compute_signature("12345", KNOWN_URL, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_signature_depends_on_token_url_and_params() -> None:
    base = compute_signature("12345", KNOWN_URL, KNOWN_PARAMS)
    assert compute_signature("54321", KNOWN_URL, KNOWN_PARAMS) != base
    assert compute_signature("12345", KNOWN_URL + "&x=1", KNOWN_PARAMS) != base
    assert compute_signature("12345", KNOWN_URL, {**KNOWN_PARAMS, "Digits": "1235"}) != base


def test_get_request_signs_the_url_with_its_query() -> None:
    url = url_with_query("https://ivr.example.org/twilio/next?step=2", {"Digits": "1 2"})
    assert url == "https://ivr.example.org/twilio/next?step=2&Digits=1+2"
    signature = compute_signature("tok", url, {})
    assert RequestValidator("tok").validate(url, {}, signature)
    assert url_with_query("https://a.example/x", {"A": "b"}) == "https://a.example/x?A=b"
