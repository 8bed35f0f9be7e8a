"""Call rows and their event trail: plain async functions with SQL.

Every write that advances a call is one statement (a CTE that writes the row
and its event trail together), and it only lands if the call is still at the
step and phase the webhook saw (`seq`, `phase`): a retried or out-of-order
callback can never step a call twice. That guard is also what lets an
instance skip the read: `LastWritten` keeps the rows this instance wrote, and
a webhook that finds its call there at the expected step writes at once,
falling back to a read only when the guarded write misses (another instance
moved the call, or ended it).

The webhooks' three writes (a new call, a step, a hang-up during a
transfer) also have a grouped form (`create_calls`, `advance_calls`,
`record_ends`): many calls in one statement, each written, guard and trail
included, as its own statement would write it. callwrites.py chooses.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import asyncpg

from ivr.storage.queue import checked_ranks

Event = tuple[str, dict[str, Any]]
Decoded = TypeVar("Decoded")


@dataclass(frozen=True)
class CallRow:
    call_sid: str
    seq: int
    phase: str
    state: dict[str, Any]
    transfer: dict[str, Any] | None
    last_twiml: str
    location_state: str | None
    location_source: str | None
    listen: dict[str, Any] | None
    content_version: str | None = None  # the content version the call started on


_COLUMNS = (
    "call_sid, seq, phase, state, transfer, last_twiml, location_state, location_source, listen,"
    " content_version"
)


def _row(record: asyncpg.Record | None) -> CallRow | None:
    return None if record is None else CallRow(**dict(record))


class LastWritten(Generic[Decoded]):
    """The call rows this instance wrote last, most recent first, a bounded number.

    Never the truth: a row here may be stale (another instance, a status
    callback, a media stream may have written since), so it is only used to
    skip the read before a write guarded by `seq` and `phase`; a write that
    misses drops the entry and the caller reads the row.

    A row may be kept with its transfer as the writer had it decoded (a
    routing Progress): the next webhook of the call then need not decode
    the row's `transfer` again (issue 12).
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._rows: OrderedDict[str, tuple[CallRow, Decoded | None]] = OrderedDict()

    def get(self, call_sid: str) -> CallRow | None:
        kept = self._rows.get(call_sid)
        return None if kept is None else kept[0]

    def decoded(self, row: CallRow) -> Decoded | None:
        """The decoded transfer kept with `row`, when `row` is the one kept."""
        kept = self._rows.get(row.call_sid)
        return kept[1] if kept is not None and kept[0] is row else None

    def put(self, row: CallRow, decoded: Decoded | None = None) -> None:
        self._rows[row.call_sid] = (row, decoded)
        self._rows.move_to_end(row.call_sid)
        while len(self._rows) > self.size:
            self._rows.popitem(last=False)

    def drop(self, call_sid: str) -> None:
        self._rows.pop(call_sid, None)

    def __len__(self) -> int:
        return len(self._rows)


@dataclass(frozen=True)
class LineUp:
    """A new call's place on the counselors' waiting line (queue.enqueue's
    row), written by the statement that creates the call: a caller lined up
    early (preoffer.py) at the first menu costs the incoming call no second
    round trip."""

    queue: str
    language: str
    need: str | None
    caller_state: str | None
    tier_index: int
    tier_kind: str
    eligible: tuple[str, ...]
    ranks: tuple[int, ...]  # one per eligible counselor, or none when all rank alike


def _trail(source: str, kinds: str = "$8", details: str = "$9") -> str:
    """The event trail's insert, as a CTE of the statement that writes the row:
    the events of each call of `source`, in their order."""
    return f"""
        e AS (
            INSERT INTO call_events (call_sid, kind, detail)
            SELECT {source}.call_sid, x.kind, x.detail
            FROM {source}, unnest({kinds}::text[], {details}::jsonb[])
                 WITH ORDINALITY AS x(kind, detail, n)
            ORDER BY x.n
        )"""


def _trail_each(source: str, first: int) -> str:
    """The event trail's insert for a grouped statement: `source` has the
    number (i) and CallSid of each call written, and parameters `first` to
    `first` + 2 the events of all, each with its call's number, in order."""
    return f"""
        e AS (
            INSERT INTO call_events (call_sid, kind, detail)
            SELECT {source}.call_sid, x.kind, x.detail
            FROM {source} JOIN unnest(${first}::int[], ${first + 1}::text[],
                                      ${first + 2}::jsonb[])
                 WITH ORDINALITY AS x(i, kind, detail, n) ON x.i = {source}.i
            ORDER BY x.n
        )"""


def _split_each(trails: Sequence[Sequence[Event]]) -> tuple[list[int], list[str], list[Any]]:
    """Several calls' events as three arrays: the call's number (from 1), kind, detail."""
    numbers, kinds, details = [], [], []
    for number, events in enumerate(trails, 1):
        for kind, detail in events:
            numbers.append(number)
            kinds.append(kind)
            details.append(detail)
    return numbers, kinds, details


def _columns(items: Sequence[object], *names: str) -> list[list[Any]]:
    """A grouped statement's parameters: one array per field, an element per item."""
    return [[getattr(item, name) for item in items] for name in names]


def _landed(rows: Sequence[asyncpg.Record], count: int) -> list[bool]:
    """Which of a grouped statement's `count` items (numbered from 1) it wrote."""
    written = {row["i"] for row in rows}
    return [number in written for number in range(1, count + 1)]


@dataclass(frozen=True, slots=True)
class NewCall:
    """A new call's row and first events (create_call)."""

    call_sid: str
    caller_hash: str | None
    caller_area_code: str | None
    called: str | None
    flow_id: str
    flow_version: str
    seq: int
    state: dict[str, Any]
    location_state: str | None
    location_source: str | None
    phase: str
    transfer: dict[str, Any] | None
    twiml: str
    events: Sequence[Event]
    listen: dict[str, Any] | None = None
    ringing: bool = False  # a first dial step rings: its time is stamped
    content_version: str | None = None
    line_up: LineUp | None = None


async def create_call(pool: asyncpg.Pool, new: NewCall) -> bool:
    """Insert a new call with its first events; False if the CallSid already exists.

    A call that goes straight to a transfer has its transfer start (and, for a
    dial step, its first ring) stamped in the same statement; `line_up` puts
    the new call on the waiting line in it too, waking the dispatchers.
    """
    kinds, details = _split(new.events)
    line = new.line_up or LineUp("", "", None, None, 0, "", (), ())
    ranks = checked_ranks(line.eligible, line.ranks)
    row = await pool.fetchrow(
        """
        WITH c AS (
            INSERT INTO calls (call_sid, caller_hash, caller_area_code, called, flow_id,
                               flow_version, seq, state, location_state, location_source,
                               phase, transfer, last_twiml, listen,
                               transfer_started_at, first_ring_at, content_version)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $16,
                    CASE WHEN $11 = 'transfer' THEN now() END,
                    CASE WHEN $17 THEN now() END, $18)
            ON CONFLICT (call_sid) DO NOTHING
            RETURNING call_sid
        ), w AS (
            INSERT INTO waiting (call_sid, queue, language, need, caller_state,
                                 tier_index, tier_kind, eligible, ranks)
            SELECT call_sid, $20, $21, $22, $23, $24, $25, $26, $27 FROM c WHERE $19
            ON CONFLICT (call_sid) DO NOTHING
            RETURNING call_sid
        ),""" + _trail("c", "$14", "$15") + """
        SELECT (SELECT count(*) FROM c) AS inserted,
               (SELECT count(*) FROM (SELECT ivr_routing_changed() FROM w) n) AS lined_up
        """,
        new.call_sid, new.caller_hash, new.caller_area_code, new.called, new.flow_id,
        new.flow_version, new.seq, new.state, new.location_state, new.location_source,
        new.phase, new.transfer, new.twiml, kinds, details, new.listen, new.ringing,
        new.content_version, new.line_up is not None, line.queue, line.language, line.need,
        line.caller_state, line.tier_index, line.tier_kind, list(line.eligible), ranks,
    )
    assert row is not None  # a SELECT without FROM always has its one row
    return bool(row["inserted"] == 1)


async def create_calls(pool: asyncpg.Pool, news: Sequence[NewCall]) -> list[bool]:
    """create_call for several new calls (none lined up, no two the same) in one
    statement: True for each inserted."""
    if any(new.line_up is not None for new in news):
        raise ValueError("a call lined up at its creation is created alone")
    numbers, kinds, details = _split_each([new.events for new in news])
    rows = await pool.fetch(
        """
        WITH u AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                 $6::text[], $7::int[], $8::jsonb[], $9::text[], $10::text[],
                                 $11::text[], $12::jsonb[], $13::text[], $14::jsonb[],
                                 $15::bool[], $16::text[])
                WITH ORDINALITY AS u(call_sid, caller_hash, caller_area_code, called, flow_id,
                                     flow_version, seq, state, location_state, location_source,
                                     phase, transfer, twiml, listen, ringing, content_version, i)
        ), c AS (
            INSERT INTO calls (call_sid, caller_hash, caller_area_code, called, flow_id,
                               flow_version, seq, state, location_state, location_source,
                               phase, transfer, last_twiml, listen,
                               transfer_started_at, first_ring_at, content_version)
            SELECT call_sid, caller_hash, caller_area_code, called, flow_id, flow_version, seq,
                   state, location_state, location_source, phase, transfer, twiml, listen,
                   CASE WHEN phase = 'transfer' THEN now() END,
                   CASE WHEN ringing THEN now() END, content_version
            FROM u ORDER BY i
            ON CONFLICT (call_sid) DO NOTHING
            RETURNING call_sid
        ), n AS (
            SELECT u.i, u.call_sid FROM u JOIN c USING (call_sid)
        ),""" + _trail_each("n", 17) + """
        SELECT i FROM n
        """,
        *_columns(news, "call_sid", "caller_hash", "caller_area_code", "called", "flow_id",
                  "flow_version", "seq", "state", "location_state", "location_source", "phase",
                  "transfer", "twiml", "listen", "ringing", "content_version"),
        numbers, kinds, details,
    )
    return _landed(rows, len(news))


async def load_call(pool: asyncpg.Pool, call_sid: str) -> CallRow | None:
    return _row(await pool.fetchrow(f"SELECT {_COLUMNS} FROM calls WHERE call_sid = $1", call_sid))


class _Unchecked:
    """advance_call's default: the transfer progress is not compared."""


UNCHECKED: Final = _Unchecked()


@dataclass(frozen=True, slots=True)
class Advance:
    """A call's next step, written only if the call is where the webhook saw it
    (advance_call)."""

    call_sid: str
    expected_seq: int
    expected_phase: str | None  # None: any phase (a final status ends a call without a new seq)
    seq: int
    state: dict[str, Any]
    phase: str
    transfer: dict[str, Any] | None
    twiml: str
    events: Sequence[Event]
    listen: dict[str, Any] | None = None
    ringing: bool = False
    expected_transfer: dict[str, Any] | _Unchecked | None = UNCHECKED
    none_free: Sequence[str] | None = None

    @property
    def checks_transfer(self) -> bool:
        return not isinstance(self.expected_transfer, _Unchecked)

    @property
    def transfer_seen(self) -> dict[str, Any] | None:
        return None if isinstance(self.expected_transfer, _Unchecked) else self.expected_transfer


async def advance_call(pool: asyncpg.Pool, step: Advance) -> bool:
    """Move a call to its next step if it is still at `expected_seq` and, unless
    None, in `expected_phase`, and, when given, its transfer progress is still
    `expected_transfer`: while a caller offered early is in the menu, the
    dispatcher and the counselor's leg write their progress
    (transfers.store_progress, which compares it) without a new seq, and the
    caller's answer must not write over an offer or an accept made meanwhile.
    One statement: the UPDATE re-reads its WHERE on the row it locked.

    Entering a transfer stamps its start, and a dial step its first ring.

    `none_free`: the step was chosen assuming none of these counselors is
    available and the REST API is not degraded (transfers.availability not
    read); the write lands only if that holds as it is made.
    """
    kinds, details = _split(step.events)
    updated: int = await pool.fetchval(
        """
        WITH c AS (
            UPDATE calls SET """ + _ADVANCED.format(
                seq="$3", state="$4", phase="$5", transfer="$6", twiml="$7", listen="$10",
                ringing="$11") + """
            WHERE call_sid = $1 AND seq = $2 AND ($12::text IS NULL OR phase = $12)
              AND (NOT $13 OR transfer IS NOT DISTINCT FROM $14::jsonb)
              AND ($15::text[] IS NULL OR (NOT EXISTS (SELECT 1 FROM api_health)
                   AND NOT EXISTS (SELECT 1 FROM counselors k WHERE k.id = ANY($15::text[])
                                   AND k.presence = 'available' AND NOT k.removed)))
            RETURNING call_sid
        ),""" + _trail("c") + """
        SELECT count(*) FROM c
        """,
        step.call_sid, step.expected_seq, step.seq, step.state, step.phase, step.transfer,
        step.twiml, kinds, details, step.listen, step.ringing, step.expected_phase,
        step.checks_transfer, step.transfer_seen,
        None if step.none_free is None else list(step.none_free),
    )
    return updated == 1


# The new values of a stepped call: from parameters, or from a grouped
# statement's row of values.
_ADVANCED = """seq = {seq}, state = {state}, phase = {phase}, transfer = {transfer},
                             last_twiml = {twiml}, listen = {listen}, updated_at = now(),
                             transfer_started_at = CASE WHEN {phase} = 'transfer'
                                 THEN coalesce(transfer_started_at, now())
                                 ELSE transfer_started_at END,
                             first_ring_at = CASE WHEN {ringing}
                                 THEN coalesce(first_ring_at, now()) ELSE first_ring_at END,
                             ended_at = CASE WHEN {phase} = 'ended' THEN now() ELSE ended_at END"""
_ADVANCED_FIELDS = ("seq", "state", "phase", "transfer", "twiml", "listen", "ringing")


async def advance_calls(pool: asyncpg.Pool, steps: Sequence[Advance]) -> list[bool]:
    """advance_call for several calls (no two the same) in one statement: True
    for each that moved."""
    numbers, kinds, details = _split_each([step.events for step in steps])
    # In an object: asyncpg would take a list in the array for one more dimension.
    none_free = [None if step.none_free is None else {"ids": list(step.none_free)}
                 for step in steps]
    rows = await pool.fetch(
        """
        WITH u AS (
            SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::jsonb[], $5::text[],
                                 $6::jsonb[], $7::text[], $8::jsonb[], $9::bool[],
                                 $10::text[], $11::bool[], $12::jsonb[], $13::jsonb[])
                WITH ORDINALITY AS u(call_sid, expected_seq, seq, state, phase, transfer, twiml,
                                     listen, ringing, expected_phase, checks_transfer,
                                     transfer_seen, none_free, i)
        ), n AS (
            UPDATE calls SET """ + _ADVANCED.format_map(
                {name: f"u.{name}" for name in _ADVANCED_FIELDS}) + """
            FROM u
            WHERE calls.call_sid = u.call_sid AND calls.seq = u.expected_seq
              AND (u.expected_phase IS NULL OR calls.phase = u.expected_phase)
              AND (NOT u.checks_transfer OR calls.transfer IS NOT DISTINCT FROM u.transfer_seen)
              AND (u.none_free IS NULL OR (NOT EXISTS (SELECT 1 FROM api_health)
                   AND NOT EXISTS (
                       SELECT 1 FROM counselors k
                       WHERE k.id IN (SELECT jsonb_array_elements_text(u.none_free->'ids'))
                         AND k.presence = 'available' AND NOT k.removed)))
            RETURNING u.i, calls.call_sid
        ),""" + _trail_each("n", 14) + """
        SELECT i FROM n
        """,
        *_columns(steps, "call_sid", "expected_seq", "seq", "state", "phase", "transfer",
                  "twiml", "listen", "ringing", "expected_phase", "checks_transfer",
                  "transfer_seen"),
        none_free, numbers, kinds, details,
    )
    return _landed(rows, len(steps))


async def add_events(pool: asyncpg.Pool, call_sid: str, events: Sequence[Event]) -> None:
    kinds, details = _split(events)
    await pool.execute(
        "WITH c AS (SELECT $1::text AS call_sid)," + _trail("c", "$2", "$3") + " SELECT 1",
        call_sid, kinds, details,
    )


FINAL_STATUSES = ("completed", "busy", "failed", "no-answer", "canceled")


@dataclass(frozen=True)
class StatusRecorded:
    phase: str  # the call's phase before this callback
    transfer: dict[str, Any] | None


async def record_status(
    pool: asyncpg.Pool, call_sid: str, status: str, detail: dict[str, Any]
) -> StatusRecorded | None:
    """Store a status callback; a final status closes the call. A caller who hangs
    up during a transfer is the progression's (CallerLeft): it counts them
    abandoned, from the phase and transfer returned here.

    None if the call is unknown.
    """
    final = status in FINAL_STATUSES
    row = await pool.fetchrow(
        """
        WITH old AS (
            SELECT call_sid, phase FROM calls WHERE call_sid = $1 FOR UPDATE
        ), c AS (
            UPDATE calls SET twilio_status = $2, updated_at = now(),
                ended_at = CASE WHEN $3 THEN coalesce(ended_at, now()) ELSE ended_at END,
                phase = CASE WHEN $3 THEN 'ended' ELSE calls.phase END
            FROM old WHERE calls.call_sid = old.call_sid
            RETURNING old.phase, calls.transfer
        ), e AS (
            INSERT INTO call_events (call_sid, kind, detail) VALUES ($1, 'status', $4)
        )
        SELECT phase, transfer FROM c
        """,
        call_sid, status, final, detail,
    )
    return None if row is None else StatusRecorded(row["phase"], row["transfer"])


@dataclass(frozen=True)
class EndRecorded(StatusRecorded):
    """A final status stored with the caller's leaving of their transfer."""

    left: bool  # the transfer was still `seen`: it now holds `gone`, the call abandoned
    first_ring: float | None  # seconds from the transfer's start, as call_outcomes has them
    answer: float | None


@dataclass(frozen=True, slots=True)
class End:
    """A final status for a call whose transfer this instance saw (record_end)."""

    call_sid: str
    status: str
    detail: dict[str, Any]
    seen: dict[str, Any]  # the transfer as this instance last wrote it
    gone: dict[str, Any]  # that transfer once the caller left it


async def record_end(pool: asyncpg.Pool, end: End) -> EndRecorded | None:
    """A final status for a call whose transfer (phase 'transfer' or 'flow') was
    `seen` by this instance, and the transfer after the caller left it (`gone`,
    whose only action is counting the call abandoned): record_status,
    transfers.store_progress and transfers.mark_abandoned in one statement,
    the first always, the two others only if the transfer is still `seen`.
    Also returns the call's times, for the metrics (linegauges.call_times).
    None if the call is unknown.
    """
    row = await pool.fetchrow(
        """
        WITH old AS (
            SELECT call_sid, phase, transfer,
                   phase IN ('transfer', 'flow') AND transfer = $4::jsonb AS left_now
            FROM calls WHERE call_sid = $1 FOR UPDATE
        ), c AS (
            UPDATE calls SET """ + _ENDED.format(status="$2", gone="$5") + """
            FROM old WHERE calls.call_sid = old.call_sid
            RETURNING """ + _ENDED_RETURNS + """
        ), e AS (
            INSERT INTO call_events (call_sid, kind, detail) VALUES ($1, 'status', $3)
        )
        SELECT phase, transfer, left_now, first_ring, answer FROM c
        """,
        end.call_sid, end.status, end.detail, end.seen, end.gone,
    )
    return None if row is None else _end_recorded(row)


# An ended call's row: the transfer left and the call counted abandoned when
# the caller left the transfer `old` saw (old.left_now).
_ENDED = """twilio_status = {status}, updated_at = now(),
                ended_at = coalesce(calls.ended_at, now()), phase = 'ended',
                transfer = CASE WHEN old.left_now THEN {gone}::jsonb ELSE calls.transfer END,
                abandoned = CASE WHEN old.left_now AND calls.answered_at IS NULL
                                      AND calls.transfer_started_at IS NOT NULL
                                 THEN true ELSE calls.abandoned END"""
_ENDED_RETURNS = """old.phase, old.transfer, old.left_now,
                extract(epoch FROM calls.first_ring_at - calls.transfer_started_at)
                    ::double precision AS first_ring,
                extract(epoch FROM calls.answered_at - calls.transfer_started_at)
                    ::double precision AS answer"""


def _end_recorded(row: asyncpg.Record) -> EndRecorded:
    return EndRecorded(row["phase"], row["transfer"], bool(row["left_now"]), row["first_ring"],
                       row["answer"])


async def record_ends(pool: asyncpg.Pool, ends: Sequence[End]) -> list[EndRecorded | None]:
    """record_end for several calls (no two the same) in one statement. The rows
    are locked in CallSid order, as no other grouped statement could lock two
    of them the other way round."""
    rows = await pool.fetch(
        """
        WITH u AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::jsonb[], $5::jsonb[])
                WITH ORDINALITY AS u(call_sid, status, detail, seen, gone, i)
        ), old AS (
            SELECT calls.call_sid, calls.phase, calls.transfer, u.i, u.status, u.gone,
                   calls.phase IN ('transfer', 'flow') AND calls.transfer = u.seen AS left_now
            FROM calls JOIN u ON calls.call_sid = u.call_sid
            ORDER BY calls.call_sid FOR UPDATE OF calls
        ), c AS (
            UPDATE calls SET """ + _ENDED.format(status="old.status", gone="old.gone") + """
            FROM old WHERE calls.call_sid = old.call_sid
            RETURNING old.i, """ + _ENDED_RETURNS + """
        ), e AS (
            INSERT INTO call_events (call_sid, kind, detail)
            SELECT call_sid, 'status', detail FROM u ORDER BY i
        )
        SELECT i, phase, transfer, left_now, first_ring, answer FROM c
        """,
        *_columns(ends, "call_sid", "status", "detail", "seen", "gone"),
    )
    recorded = {row["i"]: _end_recorded(row) for row in rows}
    return [recorded.get(number) for number in range(1, len(ends) + 1)]


async def events_of(pool: asyncpg.Pool, call_sid: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await pool.fetch(
        "SELECT kind, detail FROM call_events WHERE call_sid = $1 ORDER BY id", call_sid
    )
    return [(r["kind"], r["detail"]) for r in rows]


def _split(events: Sequence[Event]) -> tuple[list[str], list[dict[str, Any]]]:
    return [k for k, _ in events], [d for _, d in events]


async def claim_listen(pool: asyncpg.Pool, call_sid: str, token: str) -> dict[str, Any] | None:
    """Take a listening menu's stream token, once: a replayed `start` gets None."""
    listen: dict[str, Any] | None = await pool.fetchval(
        """
        UPDATE calls SET listen = listen || '{"used": true}'::jsonb
        WHERE call_sid = $1 AND listen->>'token' = $2
          AND NOT coalesce((listen->>'used')::boolean, false)
        RETURNING listen
        """,
        call_sid, token,
    )
    return listen


async def store_decision(
    pool: asyncpg.Pool, call_sid: str, token: str, decision: dict[str, Any]
) -> bool:
    """Keep what a stream decided, for the Connect action that follows its close."""
    updated: int = await pool.fetchval(
        """
        WITH c AS (
            UPDATE calls SET listen = listen || jsonb_build_object('decision', $3::jsonb)
            WHERE call_sid = $1 AND listen->>'token' = $2
            RETURNING call_sid
        ), e AS (
            INSERT INTO call_events (call_sid, kind, detail)
            SELECT call_sid, 'heard', $3::jsonb FROM c
        )
        SELECT count(*) FROM c
        """,
        call_sid, token, decision,
    )
    return updated == 1
