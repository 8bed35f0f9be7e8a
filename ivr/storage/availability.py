"""What the transfer progression sees when it chooses a step, in one round trip.

Whether Twilio's REST API is degraded (api_health, apihealth.py) and which
counselors are free (the progression's `Availability.free`: which steps are
worth entering) are read together: a webhook that starts a transfer pays one
read for both, not two.
"""

from __future__ import annotations

import asyncpg


async def snapshot(pool: asyncpg.Pool) -> tuple[bool, tuple[str, ...]]:
    """(the REST API is degraded, ids of the counselors free now, longest idle first)."""
    row = await pool.fetchrow(
        """
        SELECT EXISTS (SELECT 1 FROM api_health) AS degraded,
               ARRAY(SELECT id FROM counselors WHERE presence = 'available' AND NOT removed
                     ORDER BY idle_since, id) AS free
        """
    )
    assert row is not None  # a SELECT without FROM always has its one row
    return bool(row["degraded"]), tuple(str(i) for i in row["free"])
