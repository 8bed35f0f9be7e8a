"""The part of Twilio's REST API the server uses: the Call and Account resources.

Served over real HTTP (aiohttp) so that the official `twilio` helper
library talks to it unchanged: form-encoded requests, HTTP Basic auth with
AccountSid:AuthToken, JSON answers, errors as Twilio's JSON error bodies
(`code`, `message`, `more_info`, `status`), which the library turns into
`TwilioRestException` with the same `status` and `code`.

    GET  /2010-04-01/Accounts/{AccountSid}.json              account -> 200
    POST /2010-04-01/Accounts/{AccountSid}/Calls.json        create  -> 201
    GET  /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json  fetch   -> 200
    POST /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json  update  -> 200

Wrong credentials get 401 with Twilio error 20003 and the message
"Authenticate", for every path (https://www.twilio.com/docs/api/errors/20003:
"All requests to sensitive areas of the Twilio API must use HTTP Basic
Authentication ... Using the wrong combination of Account SID and Auth
Token"). Every request is shown to the account (`observe`) as it arrived,
so tests can check what the server sent; an account may also make any
operation fail for a while (`fault_for`), as an outage would.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import MultiDict, MultiMapping

from ivr.sim.errors import SimError

API_VERSION = "2010-04-01"
CALL_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
DEFAULT_TIMEOUT = 60
MAX_TIMEOUT = 600
_TARGET = re.compile(r"^(\+[1-9]\d{1,14}|(sip|client):\S+)$", re.IGNORECASE)
_FROM = re.compile(r"^(\+[1-9]\d{1,14}|client:\S+|[A-Za-z0-9 ]{1,11})$")


class RestFault(SimError):
    """An error answer of the REST API, as Twilio words it."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


# The operations a fault can be scripted for (RestOutage.operations).
OPERATIONS = frozenset({"account", "create", "fetch", "update"})


@dataclass(frozen=True)
class RestOutage:
    """Every request of `operations` fails with `status` and Twilio error
    `code` from world time `start` for `seconds`, as during an incident of
    Twilio's API: https://www.twilio.com/docs/api/errors/20503 ("The
    requested Twilio Service is temporarily unavailable ... Try again a few
    times with exponential back-off") and .../errors/20500 (Internal Server
    Error). Credentials are checked first, as on any request."""

    operations: frozenset[str] = frozenset({"update"})
    start: float = 0.0
    seconds: float = 60.0
    status: int = 503
    code: int = 20503
    message: str = "Service unavailable"

    def __post_init__(self) -> None:
        unknown = set(self.operations) - OPERATIONS
        if unknown or not self.operations:
            raise SimError(f"outage operations must be among {sorted(OPERATIONS)}")
        if not 500 <= self.status <= 599 or self.seconds < 0:
            raise SimError("an outage answers a 5xx status for a non-negative time")

    def covers(self, operation: str, moment: float) -> bool:
        return operation in self.operations and self.start <= moment < self.start + self.seconds

    def fault(self) -> RestFault:
        return RestFault(self.status, self.code, self.message)


@dataclass(frozen=True)
class ApiRequest:
    """A request as the REST API received it (form fields in order, repeats kept)."""

    method: str
    path: str
    form: tuple[tuple[str, str], ...] = ()
    query: tuple[tuple[str, str], ...] = ()
    status: int = 0  # what the API answered
    notes: tuple[str, ...] = field(default=())


def not_found(path: str) -> RestFault:
    return RestFault(404, 20404, f"The requested resource {path} was not found")


def not_in_progress() -> RestFault:
    return RestFault(400, 21220, "Call is not in-progress. Cannot redirect.")


@dataclass(frozen=True)
class CallRequest:
    """A validated Calls create request."""

    to: str
    from_: str
    url: str | None
    twiml: str | None
    method: str = "POST"
    fallback_url: str | None = None
    fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: frozenset[str] = frozenset({"completed"})
    timeout: int = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class CallUpdate:
    """A validated Call update request: a new status, or new instructions."""

    status: str | None = None  # canceled | completed
    url: str | None = None
    method: str = "POST"
    twiml: str | None = None


class RestCall(Protocol):
    def resource(self) -> dict[str, object]: ...

    def update(self, update: CallUpdate) -> None:
        """Apply `update` now (raise RestFault when Twilio refuses it)."""
        ...


class Account(Protocol):
    """What the REST API serves: one account's calls."""

    @property
    def credentials(self) -> tuple[str, str] | None: ...

    def claim(self, credentials: tuple[str, str]) -> None:
        """An account not set yet becomes the one of the first credentials shown."""
        ...

    def resource(self) -> dict[str, object]:
        """The Account resource (https://www.twilio.com/docs/iam/api/account)."""
        ...

    def fault_for(self, operation: str) -> RestFault | None:
        """The error an outage answers for `operation` right now, if any."""
        ...

    def observe(self, request: ApiRequest) -> None:
        """Every request received, with the status answered."""
        ...

    def place_call(self, request: CallRequest) -> RestCall:
        """Create an outbound call (raise RestFault when Twilio refuses it)."""
        ...

    def find_call(self, sid: str) -> RestCall | None: ...


# -- JSON --------------------------------------------------------------------------


def rfc2822(moment: datetime | None) -> str | None:
    return None if moment is None else format_datetime(moment)


def account_resource(account_sid: str, created: datetime) -> dict[str, object]:
    """The Account resource as Twilio renders it (fields of the OpenAPI schema
    `api.v2010.account`); the auth token is not echoed back by the simulator."""
    base = f"/{API_VERSION}/Accounts/{account_sid}"
    return {
        "auth_token": None,
        "date_created": rfc2822(created),
        "date_updated": rfc2822(created),
        "friendly_name": "Simulated account",
        "owner_account_sid": account_sid,
        "sid": account_sid,
        "status": "active",
        "subresource_uris": {"calls": f"{base}/Calls.json"},
        "type": "Full",
        "uri": f"{base}.json",
    }


def call_uri(account_sid: str, sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}/Calls/{sid}.json"


def call_resource(
    *,
    account_sid: str,
    sid: str,
    to: str,
    from_: str,
    status: str,
    direction: str,
    created: datetime,
    updated: datetime,
    started: datetime | None,
    ended: datetime | None,
    duration: float | None,
) -> dict[str, object]:
    """The Call resource as Twilio renders it (fields the helper library reads)."""
    uri = call_uri(account_sid, sid)
    base = uri.removesuffix(".json")
    return {
        "account_sid": account_sid,
        "annotation": None,
        "answered_by": None,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": rfc2822(created),
        "date_updated": rfc2822(updated),
        "direction": direction,
        "duration": None if duration is None else str(round(duration)),
        "end_time": rfc2822(ended),
        "forwarded_from": None,
        "from": from_,
        "from_formatted": from_,
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": sid,
        "start_time": rfc2822(started),
        "status": status,
        "subresource_uris": {
            name: f"{base}/{name.title().replace('_', '')}.json"
            for name in ("notifications", "recordings", "payments", "events", "siprec",
                         "streams", "transcriptions", "user_defined_messages")
        },
        "to": to,
        "to_formatted": to,
        "trunk_sid": None,
        "uri": uri,
    }


# -- request parsing ---------------------------------------------------------------


def _method(form: MultiMapping[str], name: str) -> str:
    value = (form.get(name) or "POST").upper()
    if value not in ("GET", "POST"):
        raise RestFault(400, 20001, f"{name} must be GET or POST")
    return value


def _absolute(form: MultiMapping[str], name: str) -> str | None:
    value = form.get(name) or None
    if value is not None and not re.match(r"^https?://\S+$", value):
        raise RestFault(400, 21205, f"{name} is not a valid URL: {value}")
    return value


def parse_create(form: MultiMapping[str]) -> CallRequest:
    to = (form.get("To") or "").strip()
    from_ = (form.get("From") or "").strip()
    if not to:
        raise RestFault(400, 21201, "No 'To' number is specified")
    if not from_:
        raise RestFault(400, 21213, "No 'From' number is specified")
    if not _TARGET.match(to):
        raise RestFault(400, 21211, f"Invalid 'To' Phone Number: {to}")
    if not _FROM.match(from_):
        raise RestFault(400, 21212, f"Invalid 'From' Phone Number: {from_}")
    url = _absolute(form, "Url")
    twiml = form.get("Twiml") or None
    if url is None and twiml is None:
        raise RestFault(400, 21205, "Url parameter is required.")
    events: set[str] = set()
    for value in form.getall("StatusCallbackEvent", []):
        events.update(value.split())
    unknown = events - CALL_EVENTS
    if unknown:
        raise RestFault(400, 20001, f"Invalid StatusCallbackEvent: {sorted(unknown)[0]}")
    raw_timeout = form.get("Timeout") or str(DEFAULT_TIMEOUT)
    try:
        timeout = int(raw_timeout)
    except ValueError:
        raise RestFault(400, 20001, f"Timeout must be an integer: {raw_timeout}") from None
    return CallRequest(
        to=to,
        from_=from_,
        url=url,
        twiml=twiml,
        method=_method(form, "Method"),
        fallback_url=_absolute(form, "FallbackUrl"),
        fallback_method=_method(form, "FallbackMethod"),
        status_callback=_absolute(form, "StatusCallback"),
        status_callback_method=_method(form, "StatusCallbackMethod"),
        status_callback_events=frozenset(events or {"completed"}),
        # Twilio treats anything above its maximum as the maximum.
        timeout=max(1, min(timeout, MAX_TIMEOUT)),
    )


def parse_update(form: MultiMapping[str]) -> CallUpdate:
    status = form.get("Status") or None
    if status is not None and status not in ("canceled", "completed"):
        raise RestFault(400, 20001, f"Invalid Status: {status} (canceled or completed)")
    url = _absolute(form, "Url")
    twiml = form.get("Twiml") or None
    if status is None and url is None and twiml is None:
        raise RestFault(400, 20001, "Nothing to update: give Status, Url or Twiml")
    return CallUpdate(status=status, url=url, method=_method(form, "Method"), twiml=twiml)


# -- the application -----------------------------------------------------------------


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


async def _form(request: web.Request) -> MultiDict[str]:
    posted = await request.post()
    return MultiDict((k, v) for k, v in posted.items() if isinstance(v, str))


def _error(fault: RestFault) -> web.Response:
    return web.json_response(fault.body(), status=fault.status)


def _authenticate(account: Account, request: web.Request) -> RestFault | None:
    given = _basic_credentials(request.headers.get("Authorization", ""))
    if account.credentials is None and given is not None:
        account.claim(given)
    expected = account.credentials
    account_in_path = request.match_info.get("account")
    if (
        expected is None
        or given != expected
        or (account_in_path is not None and account_in_path != expected[0])
    ):
        return RestFault(401, 20003, "Authenticate")
    return None


def build_api(account: Account) -> web.Application:
    """The REST API application serving `account`."""

    def refused(request: web.Request, operation: str) -> web.Response | None:
        fault = _authenticate(account, request) or account.fault_for(operation)
        return None if fault is None else _error(fault)

    async def account_fetch(request: web.Request) -> web.Response:
        return refused(request, "account") or web.json_response(account.resource())

    async def create(request: web.Request) -> web.Response:
        denied = refused(request, "create")
        if denied is not None:
            return denied
        try:
            call = account.place_call(parse_create(await _form(request)))
        except RestFault as exc:
            return _error(exc)
        return web.json_response(call.resource(), status=201)

    async def fetch(request: web.Request) -> web.Response:
        denied = refused(request, "fetch")
        if denied is not None:
            return denied
        call = account.find_call(request.match_info["sid"])
        if call is None:
            return _error(not_found(request.path))
        return web.json_response(call.resource())

    async def update(request: web.Request) -> web.Response:
        denied = refused(request, "update")
        if denied is not None:
            return denied
        call = account.find_call(request.match_info["sid"])
        if call is None:
            return _error(not_found(request.path))
        try:
            call.update(parse_update(await _form(request)))
        except RestFault as exc:
            return _error(exc)
        return web.json_response(call.resource())

    async def anything_else(request: web.Request) -> web.Response:
        fault = _authenticate(account, request)
        return _error(fault or not_found(request.path))

    @web.middleware
    async def observed(request: web.Request, handler: Handler) -> web.StreamResponse:
        form = tuple((await _form(request)).items()) if request.method == "POST" else ()
        response = await handler(request)
        account.observe(ApiRequest(request.method, request.path, form,
                                   tuple(request.query.items()), response.status))
        return response

    app = web.Application(middlewares=[observed])
    accounts = f"/{API_VERSION}/Accounts/{{account}}"
    calls = accounts + "/Calls"
    app.router.add_get(accounts + ".json", account_fetch)
    app.router.add_post(calls + ".json", create)
    app.router.add_get(calls + "/{sid}.json", fetch)
    app.router.add_post(calls + "/{sid}.json", update)
    app.router.add_route("*", "/{tail:.*}", anything_else)
    return app
