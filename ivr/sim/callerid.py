"""Whether Twilio lets a `<Dial>` present its caller ID to the phone network.

A `<Dial>` to a phone number shows the called party a caller ID: the
`callerId` attribute, else the caller's own From. Twilio's rules, from
"13214: Dial: Invalid callerId value"
(https://www.twilio.com/docs/api/errors/13214):

- "callerId must be the calling number, called number, or a validated
  outgoing number" (a number of the account);
- "Carriers may send invalid Caller IDs on Incoming calls to Twilio. If a
  specific Caller ID is not explicitly defined on the <Dial> verb, the invalid
  Caller ID will be passed to the destination. This may cause some
  destination providers to reject the call, and Twilio will mark it as
  failed." The simulator takes the worst case: such a dial fails.

SIP endpoints take any caller ID: "For SIP calls, the callerId attribute
does not need to be a validated phone number" ("TwiML Voice: <Sip>",
https://www.twilio.com/docs/voice/twiml/sip). So only `<Number>` nouns
are checked.
"""

from __future__ import annotations

import re

from ivr.sim.config import SimConfig
from ivr.sim.twiml import Dial, Number

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def refused_caller_id(
    dial: Dial, caller: str, called: str, cfg: SimConfig
) -> str | None:
    """Why this dial fails for its caller ID; None when the network accepts it.

    `caller` and `called` are the call's From and To. The reason never
    quotes the caller's address: transcripts must not show a caller's number.
    """
    if not any(isinstance(target, Number) for target in dial.targets):
        return None
    if dial.caller_id is None:
        if _E164.match(caller):
            return None
        return ("the caller's caller ID is not a phone number and <Dial> gives no callerId: "
                "the destination refuses it (Twilio error 13214)")
    allowed = {number for number in (caller, called, *cfg.caller_ids) if _E164.match(number)}
    if dial.caller_id in allowed:
        return None
    return (f"callerId {dial.caller_id} is not the calling number, the called number or a "
            "number of the account (Twilio error 13214)")
