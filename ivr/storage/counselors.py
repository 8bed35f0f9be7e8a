"""Counselors and their presence, kept in PostgreSQL and shared by every instance.

Presence is one of: available (free, can be offered a call), offered (a leg
is ringing them), on-call, wrap-up (after a call, not yet ready) and offline.
'offered' and 'on-call' belong to the call flow (`ivr.storage.queue`);
people set the three others.

A change by hand racing with an offer resolves under the counselor's row
lock to one of two consistent outcomes, whichever commits first:
- a change made while an offer rings withdraws it (state 'canceled',
  returned in `PresenceChange.withdrawn` so its leg can be hung up) and the
  caller waits again for someone else; if the counselor accepted first, the
  call goes on and they are simply not offered another one afterwards;
- 'available' is refused (`PresenceConflict`, HTTP 409) only while the
  counselor is on a call (a person on a call cannot be free): from any
  other state it is how an administrator repairs a presence left wrong.

Counselors' addresses are staff numbers: storing them is fine.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final, Literal

import asyncpg

from ivr.errors import RequestError
from ivr.routing.model import RoutingPlan
from ivr.storage.queue import Offer

Presence = Literal["available", "offered", "on-call", "wrap-up", "offline"]
PRESENCES: Final[tuple[str, ...]] = ("available", "offered", "on-call", "wrap-up", "offline")
# What a person may set; the two others follow from calls.
SETTABLE: Final[tuple[str, ...]] = ("available", "wrap-up", "offline")

# Serialises start-up syncs of several instances (any constant shared by all).
_SYNC_LOCK = 0x1F0989


class CounselorError(RequestError):
    """A counselor request that cannot be carried out."""


class UnknownCounselor(CounselorError):
    """No counselor has this id."""


class InvalidPresence(CounselorError, ValueError):
    """Not a presence, or one that only a call can set."""


class PresenceConflict(CounselorError):
    """The counselor's current state forbids the change (on a call, removed)."""


@dataclass(frozen=True)
class CounselorRow:
    id: str
    center_id: str
    name: str
    address: str
    languages: tuple[str, ...]
    skills: tuple[str, ...]
    presence: str
    presence_since: dt.datetime
    idle_since: dt.datetime | None
    current_call: str | None
    removed: bool
    updated_at: dt.datetime


@dataclass(frozen=True)
class PresenceChange:
    counselor: CounselorRow
    withdrawn: Offer | None  # a ringing offer cancelled by the change: hang its leg up


@dataclass(frozen=True)
class SyncResult:
    upserted: int  # counselors inserted or changed
    removed: int  # counselors no longer in the plan


_COLUMNS = (
    "id, center_id, name, address, languages, skills, presence, presence_since, idle_since,"
    " current_call, removed, updated_at"
)


def _row(record: asyncpg.Record) -> CounselorRow:
    values = dict(record)
    values["languages"] = tuple(values["languages"])
    values["skills"] = tuple(values["skills"])
    return CounselorRow(**values)


async def sync_counselors(pool: asyncpg.Pool, plan: RoutingPlan) -> SyncResult:
    """Make the table match the plan's counselors, at start-up or on reload.

    Known counselors keep their presence; new ones start offline. Counselors
    gone from the plan are flagged removed and set offline, unless a call is
    ringing them or they are on one: their row stays until it ends, and they
    are never offered again.
    """
    people = [
        {
            "id": p.id,
            "center_id": p.center,
            "name": p.name,
            "address": p.address,
            "languages": list(p.languages),
            "skills": list(p.skills),
        }
        for center in plan.centers.values()
        for p in center.counselors
    ]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SYNC_LOCK)
        record = await conn.fetchrow(
            """
            WITH p AS (
                SELECT * FROM jsonb_to_recordset($1::jsonb)
                    AS p(id text, center_id text, name text, address text,
                         languages text[], skills text[])
            ), up AS (
                INSERT INTO counselors AS k (id, center_id, name, address, languages, skills)
                SELECT id, center_id, name, address, languages, skills FROM p ORDER BY id
                ON CONFLICT (id) DO UPDATE SET
                    center_id = excluded.center_id, name = excluded.name,
                    address = excluded.address, languages = excluded.languages,
                    skills = excluded.skills, removed = false, updated_at = now()
                WHERE (k.center_id, k.name, k.address, k.languages, k.skills, k.removed)
                      IS DISTINCT FROM (excluded.center_id, excluded.name, excluded.address,
                                        excluded.languages, excluded.skills, false)
                RETURNING k.id
            ), gone AS (
                UPDATE counselors k SET
                    removed = true, updated_at = now(),
                    presence = CASE WHEN k.presence IN ('offered', 'on-call')
                                    THEN k.presence ELSE 'offline' END,
                    presence_since = CASE WHEN k.presence IN ('offered', 'on-call', 'offline')
                                          THEN k.presence_since ELSE now() END
                WHERE NOT k.removed AND k.id NOT IN (SELECT id FROM p)
                RETURNING k.id
            )
            SELECT (SELECT count(*) FROM up) AS upserted, (SELECT count(*) FROM gone) AS removed
            """,
            people,
        )
    assert record is not None
    return SyncResult(upserted=record["upserted"], removed=record["removed"])


async def get_counselor(pool: asyncpg.Pool, counselor_id: str) -> CounselorRow:
    record = await pool.fetchrow(f"SELECT {_COLUMNS} FROM counselors WHERE id = $1", counselor_id)
    if record is None:
        raise UnknownCounselor(counselor_id)
    return _row(record)


async def list_counselors(pool: asyncpg.Pool, center: str | None = None) -> list[CounselorRow]:
    records = await pool.fetch(
        f"SELECT {_COLUMNS} FROM counselors WHERE $1::text IS NULL OR center_id = $1"
        " ORDER BY center_id, id",
        center,
    )
    return [_row(r) for r in records]


async def presence_counts(pool: asyncpg.Pool) -> dict[str, dict[str, int]]:
    """{center id: {presence: count}} over counselors still in the plan."""
    records = await pool.fetch(
        "SELECT center_id, presence, count(*)::int AS n FROM counselors"
        " WHERE NOT removed GROUP BY center_id, presence"
    )
    out: dict[str, dict[str, int]] = {}
    for r in records:
        out.setdefault(r["center_id"], dict.fromkeys(PRESENCES, 0))[r["presence"]] = r["n"]
    return out


async def on_shift(pool: asyncpg.Pool) -> frozenset[str]:
    """Ids of the counselors on shift (any presence but offline) still in the plan."""
    records = await pool.fetch(
        "SELECT id FROM counselors WHERE presence <> 'offline' AND NOT removed")
    return frozenset(str(r["id"]) for r in records)


async def set_presence(pool: asyncpg.Pool, counselor_id: str, presence: str) -> PresenceChange:
    """Change a counselor's presence by hand (see the module's rules).

    Setting 'available' stamps idle_since (the counselor joins the back of the
    idle line) unless they already were available.
    """
    if presence not in SETTABLE:
        if presence in PRESENCES:
            raise InvalidPresence(f"'{presence}' is set by calls, not by hand")
        raise InvalidPresence(f"'{presence}' is not one of {', '.join(SETTABLE)}")
    async with pool.acquire() as conn, conn.transaction():
        try:
            records = await conn.fetch(
                "SELECT * FROM ivr_set_presence($1, $2)", counselor_id, presence
            )
        except asyncpg.NoDataFoundError:
            raise UnknownCounselor(counselor_id) from None
        except asyncpg.ObjectNotInPrerequisiteStateError as exc:
            raise PresenceConflict(exc.message) from None
        # Same transaction: still holding the row lock, so this is the state just set.
        record = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM counselors WHERE id = $1", counselor_id
        )
    assert record is not None
    withdrawn = Offer(**dict(records[0])) if records else None
    return PresenceChange(_row(record), withdrawn)


async def call_ended_for_counselor(
    pool: asyncpg.Pool, counselor_id: str, call_sid: str | None = None
) -> CounselorRow | None:
    """An accepted call ended: the counselor goes to 'wrap-up'.

    Only from 'on-call' (and, given call_sid, only for that call), so a late
    or repeated callback cannot override a presence set since. None when
    nothing changed.
    """
    record = await pool.fetchrow(
        f"""
        UPDATE counselors SET presence = 'wrap-up', current_call = NULL,
                              presence_since = now(), updated_at = now()
        WHERE id = $1 AND presence = 'on-call' AND ($2::text IS NULL OR current_call = $2)
        RETURNING {_COLUMNS}
        """,
        counselor_id, call_sid,
    )
    return None if record is None else _row(record)


async def end_wrap_up_of(pool: asyncpg.Pool, counselor_id: str, since: dt.datetime) -> bool:
    """The wrap-up that began at `since` is over: available again (unless their
    presence changed meanwhile, or they left the plan)."""
    done: str | None = await pool.fetchval(
        """
        WITH k AS (
            UPDATE counselors SET presence = 'available', presence_since = now(),
                   idle_since = now(), updated_at = now()
            WHERE id = $1 AND presence = 'wrap-up' AND presence_since = $2 AND NOT removed
            RETURNING id
        )
        SELECT id FROM k, LATERAL (SELECT ivr_routing_changed()) n
        """,
        counselor_id, since)
    return done is not None


async def tier_count_available(pool: asyncpg.Pool, eligible: list[str] | tuple[str, ...]) -> int:
    """How many of these counselors are free now (to skip an empty tier at once)."""
    count: int = await pool.fetchval(
        "SELECT count(*) FROM counselors"
        " WHERE id = ANY ($1::text[]) AND presence = 'available' AND NOT removed",
        list(eligible),
    )
    return count
