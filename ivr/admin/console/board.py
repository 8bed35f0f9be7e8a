"""What the console shows, read from PostgreSQL in one go: the board.

One snapshot serves every console of an instance (each page renders its
own part of it), so a change costs each instance one read, however many
people are watching. Nothing here carries a caller's phone number: the
waiting line is language, need, state, tier and time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import asyncpg

from ivr.storage.reports import StateFigures, figures_by_state

# The 988 goal for calls answered in the caller's own state.
IN_STATE_GOAL = 0.90


@dataclass(frozen=True)
class WaitingLine:
    call_sid: str
    language: str
    need: str | None
    caller_state: str | None
    status: str  # waiting | offering
    waited_seconds: float
    tier_index: int
    tier_kind: str
    ringing: str | None  # the counselor being rung (id)


@dataclass(frozen=True)
class CounselorLine:
    id: str
    name: str
    center_id: str
    presence: str
    presence_seconds: float
    calls_today: int
    current_call: str | None
    removed: bool


@dataclass(frozen=True)
class Figures:
    base: StateFigures

    @property
    def state(self) -> str:
        """A state code, "unknown", or "all" for the whole line."""
        return self.base.state

    @property
    def failsafe(self) -> int:
        """Answered by the national backup, the line's last resort."""
        return self.base.failsafe

    def rate(self, part: int) -> float | None:
        return self.base.rate(part)

    @property
    def in_state_rate(self) -> float | None:
        return self.base.rate(self.base.answered_in_state)

    @property
    def meets_goal(self) -> bool | None:
        rate = self.in_state_rate
        return None if rate is None else rate >= IN_STATE_GOAL


@dataclass(frozen=True)
class Board:
    taken_at: dt.datetime
    since: dt.datetime  # today's figures start here (midnight UTC)
    waiting: tuple[WaitingLine, ...]
    counselors: tuple[CounselorLine, ...]
    phases: dict[str, int] = field(default_factory=dict)  # menus, holding, talking, external
    figures: tuple[Figures, ...] = ()

    def counselor(self, counselor_id: str) -> CounselorLine | None:
        return next((c for c in self.counselors if c.id == counselor_id), None)

    def by_center(self) -> dict[str, list[CounselorLine]]:
        out: dict[str, list[CounselorLine]] = {}
        for c in self.counselors:
            if not c.removed:
                out.setdefault(c.center_id, []).append(c)
        return out

    def offer_for(self, counselor_id: str) -> WaitingLine | None:
        return next((w for w in self.waiting if w.ringing == counselor_id), None)


async def load_board(pool: asyncpg.Pool) -> Board:
    async with pool.acquire() as conn:
        now: dt.datetime = await conn.fetchval("SELECT now()")
        since = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        waiting = await conn.fetch(
            """
            SELECT call_sid, language, need, caller_state, status,
                   extract(epoch FROM now() - enqueued_at)::double precision AS waited_seconds,
                   tier_index, tier_kind, offered_counselor AS ringing
            FROM waiting WHERE status IN ('waiting', 'offering')
            ORDER BY enqueued_at, call_sid
            """)
        people = await conn.fetch(
            """
            SELECT k.id, k.name, k.center_id, k.presence,
                   greatest(extract(epoch FROM now() - k.presence_since), 0)::double precision
                       AS presence_seconds,
                   (SELECT count(*) FROM offers o WHERE o.counselor_id = k.id
                      AND o.state = 'accepted' AND o.created_at >= $1)::int AS calls_today,
                   k.current_call, k.removed
            FROM counselors k ORDER BY k.center_id, k.name, k.id
            """, since)
        phases = await conn.fetchrow(
            """
            WITH live AS (
                SELECT c.call_sid, c.phase, c.transfer->>'phase' AS transfer_phase,
                       w.status AS waiting_status
                FROM calls c LEFT JOIN waiting w USING (call_sid)
                -- A call whose end never reached us is not shown live forever.
                WHERE c.ended_at IS NULL AND c.phase <> 'ended'
                  AND c.created_at > now() - interval '1 day'
            )
            SELECT count(*) FILTER (WHERE phase = 'flow')::int AS menus,
                   count(*) FILTER (WHERE phase = 'transfer'
                                      AND waiting_status IN ('waiting', 'offering'))::int
                       AS holding,
                   count(*) FILTER (WHERE phase = 'connected'
                                      AND waiting_status = 'connected')::int AS talking,
                   count(*) FILTER (WHERE (phase = 'transfer' AND transfer_phase = 'dialing')
                                       OR (phase = 'connected'
                                           AND waiting_status IS DISTINCT FROM 'connected'))::int
                       AS external
            FROM live
            """)
        # The same figures as `ivr report`, from the same view.
        figures = await figures_by_state(conn, since)
    assert phases is not None
    return Board(
        taken_at=now,
        since=since,
        waiting=tuple(WaitingLine(**dict(r)) for r in waiting),
        counselors=tuple(CounselorLine(**dict(r)) for r in people),
        phases=dict(phases),
        figures=tuple(Figures(f) for f in figures),
    )
