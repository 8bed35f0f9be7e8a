import pytest

from ivr.sim.errors import TwimlError
from ivr.sim.twiml import (
    TWILIO_DEFAULT_WAIT_URL,
    Conference,
    Connect,
    Dial,
    Gather,
    Hangup,
    Number,
    Pause,
    Play,
    Redirect,
    Reject,
    Say,
    Sip,
    parse_twiml,
)

REALISTIC = """<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Gather action="/twilio/menu?node=main" numDigits="1" timeout="6">
    <Say language="en-US" voice="Polly.Joanna">Thank you for calling. Press 1 for Spanish.</Say>
    <Pause length="2"/>
    <Play>/prompts/en/menu.wav</Play>
  </Gather>
  <Say>We did not hear from you.</Say>
  <Dial action="/twilio/dial?tier=1" timeout="20" callerId="+18885550988">
    <Number sendDigits="ww1">+15125550100</Number>
  </Dial>
  <Connect action="/twilio/connect-done">
    <Stream url="wss://ivr.example.org/twilio/media">
      <Parameter name="token" value="abc123"/>
      <Parameter name="lang" value="en"/>
    </Stream>
  </Connect>
  <Redirect>/twilio/again</Redirect>
  <Hangup/>
</Response>
"""


def test_realistic_document() -> None:
    doc = parse_twiml(REALISTIC)
    assert doc.warnings == ()
    gather, say, dial, connect, redirect, hangup = doc.verbs
    assert isinstance(gather, Gather)
    assert gather.action == "/twilio/menu?node=main"
    assert (gather.num_digits, gather.timeout) == (1, 6)
    # Twilio's documented defaults for what the document leaves out
    assert gather.method == "POST"
    assert gather.finish_on_key == "#"
    assert gather.input == "dtmf" and gather.accepts_dtmf and not gather.accepts_speech
    assert gather.action_on_empty_result is False
    assert gather.language == "en-US"
    assert gather.speech_timeout is None
    assert gather.children == (
        Say("Thank you for calling. Press 1 for Spanish.", voice="Polly.Joanna", language="en-US"),
        Pause(2),
        Play("/prompts/en/menu.wav"),
    )
    assert say == Say("We did not hear from you.", voice="man", language="en-US", loop=1)
    assert isinstance(dial, Dial)
    assert dial.targets == (Number("+15125550100", send_digits="ww1"),)
    assert (dial.action, dial.timeout, dial.method) == ("/twilio/dial?tier=1", 20, "POST")
    assert dial.caller_id == "+18885550988"
    assert dial.time_limit == 14400
    assert isinstance(connect, Connect)
    assert connect.action == "/twilio/connect-done"
    assert connect.stream.url == "wss://ivr.example.org/twilio/media"
    assert connect.stream.parameters == {"token": "abc123", "lang": "en"}
    assert connect.stream.track == "inbound_track"
    assert redirect == Redirect("/twilio/again", method="POST")
    assert hangup == Hangup()


def test_defaults_of_bare_verbs() -> None:
    doc = parse_twiml(
        "<Response><Gather/><Dial>+15125550100</Dial><Pause/><Reject/>"
        "<Dial><Conference>room-1</Conference></Dial></Response>"
    )
    gather, dial, pause, reject, conf_dial = doc.verbs
    assert gather == Gather()
    assert (gather.timeout, gather.finish_on_key, gather.num_digits, gather.action) == (
        5, "#", None, None,
    )
    assert isinstance(dial, Dial)
    assert dial.targets == (Number("+15125550100"),)
    assert (dial.timeout, dial.method, dial.action) == (30, "POST", None)
    assert pause == Pause(1)
    assert reject == Reject("rejected")
    assert isinstance(conf_dial, Dial)
    conference = conf_dial.conference
    assert isinstance(conference, Conference)
    assert conference.name == "room-1"
    assert conference.wait_url == TWILIO_DEFAULT_WAIT_URL
    assert conference.start_conference_on_enter and not conference.end_conference_on_exit


def test_ssml_in_say_is_read_as_text() -> None:
    doc = parse_twiml(
        '<Response><Say voice="Polly.Joanna">You are <emphasis>not</emphasis> alone.'
        '<break time="1s"/> Stay   on the line.</Say></Response>'
    )
    assert doc.verbs == (Say("You are not alone. Stay on the line.", voice="Polly.Joanna"),)


def test_sip_and_method_get() -> None:
    doc = parse_twiml(
        '<Response><Dial action="/d" method="GET"><Sip>sip:counselor@pbx.example.org</Sip>'
        "</Dial></Response>"
    )
    dial = doc.verbs[0]
    assert isinstance(dial, Dial)
    assert dial.method == "GET"
    assert dial.targets == (Sip("sip:counselor@pbx.example.org"),)


def test_bad_attribute_values_warn_and_use_defaults() -> None:
    doc = parse_twiml(
        '<Response><Gather timeout="soon" finishOnKey="##" numdigits="1"/></Response>'
    )
    assert doc.verbs == (Gather(),)
    warnings = " | ".join(doc.warnings)
    assert "timeout='soon'" in warnings
    assert "finishOnKey='##'" in warnings
    assert "unknown attribute 'numdigits'" in warnings


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("<Response><Say>hi</Response>", "not well-formed"),
        ("this is not XML", "not well-formed"),
        (' <?xml version="1.0"?><Response/>', "not well-formed"),
        ("<Document><Say>hi</Say></Document>", "root element must be <Response>"),
        ("<Response><Speak>hi</Speak></Response>", "unknown TwiML verb <Speak>"),
        ("<Response><say>hi</say></Response>", "case-sensitive"),
        ("<Response><Number>+15125550100</Number></Response>", "is a noun"),
        ("<Response><Gather><Dial>+15125550100</Dial></Gather></Response>", "<Gather> cannot"),
        ("<Response><Redirect/></Response>", "<Redirect> needs a URL"),
        ("<Response><Dial/></Response>", "<Dial> needs"),
        ("<Response><Record/></Response>", "does not execute it"),
    ],
)
def test_documents_twilio_refuses(document: str, message: str) -> None:
    with pytest.raises(TwimlError, match=message) as caught:
        parse_twiml(document)
    assert caught.value.code == 12100


def test_twiml_from_the_official_helper_library_round_trips() -> None:
    from twilio.twiml.voice_response import Gather as TGather
    from twilio.twiml.voice_response import VoiceResponse

    response = VoiceResponse()
    gather = TGather(action="/twilio/menu", num_digits=1, action_on_empty_result=True)
    gather.say("Press 1.", language="es-MX")
    response.append(gather)
    response.dial("+15125550100", action="/twilio/dial", timeout=15)
    doc = parse_twiml(str(response))
    parsed_gather, dial = doc.verbs
    assert isinstance(parsed_gather, Gather)
    assert parsed_gather.action_on_empty_result is True
    assert parsed_gather.children == (Say("Press 1.", language="es-MX"),)
    assert isinstance(dial, Dial) and dial.timeout == 15
