"""Console sessions and the sign-in rate limit, kept in PostgreSQL.

The session cookie holds a random id; the database keeps its digest with
who signed in, the session's CSRF token and when it expires. Any instance
honours a session and signing out ends it for all of them at once, since
each request looks the session up. A session opened with a token lasts
only as long as the token is not revoked.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

import asyncpg

from ivr.admin.console.tokens import Holder, Role, digest

# A shift and a bit: nobody is signed out in the middle of one.
SESSION_LIFETIME: Final = dt.timedelta(hours=14)
# Sign-in failures allowed per client address within the window.
MAX_FAILURES: Final = 5
FAILURE_WINDOW: Final = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Session:
    digest: bytes
    holder: Holder
    csrf: str
    expires_at: dt.datetime


async def open_session(pool: asyncpg.Pool, holder: Holder) -> tuple[str, Session]:
    """A new session for `holder`; returns the cookie value and the session."""
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    # Sessions signed out or expired are of no use to anyone (a lookup wants a
    # live one): dropped as new ones open, so the table holds about the live ones.
    record = await pool.fetchrow(
        "WITH old AS (DELETE FROM console_sessions"
        "             WHERE ended_at IS NOT NULL OR expires_at <= now())"
        " INSERT INTO console_sessions (digest, token_id, role, subject, csrf, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, now() + $6::interval) RETURNING expires_at",
        digest(cookie), holder.token_id, holder.role, holder.subject, csrf, SESSION_LIFETIME,
    )
    assert record is not None
    return cookie, Session(digest(cookie), holder, csrf, record["expires_at"])


async def find_session(pool: asyncpg.Pool, cookie: str) -> Session | None:
    """The live session with this cookie value, or None (unknown, ended, expired, or
    its token revoked)."""
    record = await pool.fetchrow(
        """
        SELECT s.digest, s.token_id, s.role, s.subject, s.csrf, s.expires_at
        FROM console_sessions s LEFT JOIN console_tokens t ON t.id = s.token_id
        WHERE s.digest = $1 AND s.ended_at IS NULL AND s.expires_at > now()
          AND (s.token_id IS NULL OR t.revoked_at IS NULL)
        """,
        digest(cookie),
    )
    if record is None:
        return None
    role: Role = "supervisor" if record["role"] == "supervisor" else "counselor"
    holder = Holder(role, record["subject"], record["token_id"])
    return Session(record["digest"], holder, record["csrf"], record["expires_at"])


async def still_live(
    conn: asyncpg.Pool | asyncpg.Connection, session_digests: Collection[bytes]
) -> set[bytes]:
    """Which of the sessions found earlier are still live (for long-lived
    event streams: one read for all of an instance's open streams)."""
    rows = await conn.fetch(
        """
        SELECT s.digest FROM console_sessions s LEFT JOIN console_tokens t ON t.id = s.token_id
        WHERE s.digest = ANY($1::bytea[]) AND s.ended_at IS NULL AND s.expires_at > now()
          AND (s.token_id IS NULL OR t.revoked_at IS NULL)
        """,
        list(session_digests),
    )
    return {bytes(r["digest"]) for r in rows}


async def end_session(pool: asyncpg.Pool, session_digest: bytes) -> None:
    await pool.execute(
        "UPDATE console_sessions SET ended_at = coalesce(ended_at, now()) WHERE digest = $1",
        session_digest)


async def too_many_failures(pool: asyncpg.Pool, source: str) -> bool:
    """Whether `source` has failed to sign in too often lately (on any instance)."""
    count: int = await pool.fetchval(
        "SELECT count(*) FROM console_signin_failures"
        " WHERE source = $1 AND at > now() - $2::interval",
        source, FAILURE_WINDOW,
    )
    return count >= MAX_FAILURES


async def record_failure(pool: asyncpg.Pool, source: str) -> None:
    # Old rows are of no use to the window: dropped as new ones come.
    await pool.execute(
        "WITH old AS (DELETE FROM console_signin_failures WHERE at < now() - $2::interval)"
        " INSERT INTO console_signin_failures (source) VALUES ($1)",
        source, FAILURE_WINDOW * 2,
    )
