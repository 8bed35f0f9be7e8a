"""Content versions in PostgreSQL: stored whole, immutable, one active.

A version is named by the hash of its files, so the same folders published
twice, or by two instances starting together, are one version. Activating
one announces it on CONTENT_CHANNEL (NOTIFY, sent at commit) with its
activation number: every instance switches at once, and one that hears
two announcements out of order keeps the later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ivr.publishing.archive import Files

CONTENT_CHANNEL = "ivr_content"
HASH_LENGTH = 16  # hex digits: short enough to read out, ample against collisions


@dataclass(frozen=True)
class VersionInfo:
    version: str
    published_at: datetime
    published_by: str
    worst_case: dict[str, Any]
    file_count: int
    total_bytes: int
    active: bool


@dataclass(frozen=True)
class Active:
    version: str
    seq: int


def content_hash(files: Files) -> str:
    """The version of a set of files: their names and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(files):
        data = files[name]
        # Lengths first, so no two different sets of files hash the same bytes.
        digest.update(f"{len(name)}:{name}:{len(data)}:".encode())
        digest.update(data)
    return digest.hexdigest()[:HASH_LENGTH]


def parse_announcement(payload: str) -> Active | None:
    seq, _, version = payload.partition(":")
    return Active(version, int(seq)) if seq.isdigit() and version else None


async def store(
    conn: asyncpg.Connection, version: str, files: Files, by: str, worst_case: Mapping[str, Any]
) -> bool:
    """Store a version unless it is already stored; True when it was new."""
    created = await conn.fetchval(
        "INSERT INTO content_versions (version, published_by, worst_case, file_count,"
        " total_bytes) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (version) DO NOTHING RETURNING true",
        version, by, dict(worst_case), len(files), sum(len(d) for d in files.values()),
    )
    if created:
        await conn.executemany(
            "INSERT INTO content_files (version, path, data) VALUES ($1, $2, $3)",
            [(version, name, data) for name, data in sorted(files.items())],
        )
    return bool(created)


async def activate(conn: asyncpg.Connection, version: str, by: str) -> Active | None:
    """Make a stored version the active one and announce it; None when unknown.

    Run it inside the caller's transaction: the announcement goes out at commit.
    """
    seq = await conn.fetchval(
        """
        WITH known AS (SELECT version FROM content_versions WHERE version = $1),
        next AS (SELECT coalesce((SELECT max(seq) FROM content_activations), 0) + 1 AS seq),
        logged AS (
            INSERT INTO content_activations (seq, version, activated_by)
            SELECT next.seq, known.version, $2 FROM known, next RETURNING seq
        )
        INSERT INTO content_active AS a (version, seq, activated_by)
        SELECT $1, seq, $2 FROM logged
        ON CONFLICT (one) DO UPDATE SET version = excluded.version, seq = excluded.seq,
            activated_by = excluded.activated_by, activated_at = now()
        RETURNING seq
        """,
        version, by,
    )
    if seq is None:
        return None
    await conn.execute("SELECT pg_notify($1, $2)", CONTENT_CHANNEL, f"{seq}:{version}")
    return Active(version, int(seq))


async def active(conn: asyncpg.Connection | asyncpg.Pool) -> Active | None:
    row = await conn.fetchrow("SELECT version, seq FROM content_active")
    return None if row is None else Active(row["version"], int(row["seq"]))


async def is_stored(conn: asyncpg.Connection | asyncpg.Pool, version: str) -> bool:
    return bool(await conn.fetchval(
        "SELECT true FROM content_versions WHERE version = $1", version))


async def files_of(pool: asyncpg.Pool, version: str) -> dict[str, bytes] | None:
    """A stored version's files; None when there is no such version."""
    async with pool.acquire() as conn:
        if not await is_stored(conn, version):
            return None
        rows = await conn.fetch(
            "SELECT path, data FROM content_files WHERE version = $1 ORDER BY path", version)
    return {r["path"]: bytes(r["data"]) for r in rows}


async def list_versions(pool: asyncpg.Pool) -> list[VersionInfo]:
    """Every stored version, the newest first."""
    rows = await pool.fetch(
        "SELECT v.*, (a.version IS NOT NULL) AS active FROM content_versions v"
        " LEFT JOIN content_active a ON a.version = v.version"
        " ORDER BY v.published_at DESC, v.version")
    return [
        VersionInfo(
            version=r["version"], published_at=r["published_at"],
            published_by=r["published_by"], worst_case=r["worst_case"],
            file_count=r["file_count"], total_bytes=r["total_bytes"], active=r["active"],
        )
        for r in rows
    ]
