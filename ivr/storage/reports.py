"""The 988-style figures, per caller state, from the `call_outcomes` view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class StateFigures:
    state: str  # two-letter code; "unknown" when no source located the caller
    calls: int  # calls that reached a counselor queue
    answered: int
    answered_in_state: int
    abandoned: int
    rolled_over: int  # answered beyond the local tier
    failsafe: int  # answered by the national backup, the line's last resort
    average_answer_seconds: float | None
    p90_answer_seconds: float | None

    def rate(self, part: int) -> float | None:
        return part / self.calls if self.calls else None


async def figures_by_state(
    pool: asyncpg.Pool | asyncpg.Connection, since: datetime
) -> list[StateFigures]:
    """One row per state plus a last row for all states ("all")."""
    rows = await pool.fetch(
        """
        WITH t AS (
            SELECT coalesce(location_state, 'unknown') AS state, answered_tier,
                   answered_in_state, abandoned, seconds_to_answer AS answer_seconds
            FROM call_outcomes
            WHERE queue IS NOT NULL AND transfer_started_at >= $1
        )
        SELECT coalesce(state, 'all') AS state,
               count(*)::int AS calls,
               count(answer_seconds)::int AS answered,
               count(*) FILTER (WHERE answered_in_state)::int AS answered_in_state,
               count(*) FILTER (WHERE abandoned)::int AS abandoned,
               count(*) FILTER (WHERE answered_tier IS NOT NULL
                                  AND answered_tier <> 'local')::int AS rolled_over,
               count(*) FILTER (WHERE answered_tier = 'national')::int AS failsafe,
               avg(answer_seconds) AS average_answer_seconds,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY answer_seconds)
                   AS p90_answer_seconds
        FROM t
        GROUP BY ROLLUP (state)
        ORDER BY state IS NULL, state
        """,
        since,
    )
    return [StateFigures(**dict(r)) for r in rows]
