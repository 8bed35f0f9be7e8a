"""Publish, activate and list content versions: plain async functions that
the admin API, `ivr publish`, `kill -HUP` and the console all call.

    result = await publish(pool, files, by="admin", how=how)   # PublishResult
    await activate(pool, "3f2a...", by="admin")                # rollback
    await list_versions(pool)                                   # [VersionInfo]

A publish is validated whole (the check of `ivr validate`) before anything
is written; it then stores the version and makes it active in one
transaction, whose commit announces it to every instance. Publishes are
serialised by an advisory lock held from validation to commit: one that
finds another under way is refused (PublishConflict) rather than queued,
so no one's publish silently replaces one they have not seen.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg

from ivr.content import Content
from ivr.errors import ContentError
from ivr.publishing import versions
from ivr.publishing.active import ServeSettings, UnknownVersion, stage
from ivr.publishing.archive import Files, read_folders
from ivr.publishing.versions import VersionInfo
from ivr.storage.counselors import sync_counselors
from ivr.yamlsrc import Problem

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every instance.
_PUBLISH_LOCK = 0x1F0989


@dataclass(frozen=True)
class PublishResult:
    version: str
    worst_case: dict[str, Any]
    created: bool  # False: those very files were published before (now active again)
    warnings: tuple[Problem, ...] = ()


class PublishRefused(ContentError):
    """The content does not validate: nothing was stored or activated."""

    def __init__(self, problems: tuple[Problem, ...]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class PublishConflict(ContentError):
    """Another publish is under way."""


def worst_case(content: Content) -> dict[str, Any]:
    """Each flow's proven worst case, as JSON: what a publish answers."""
    found: dict[str, Any] = {}
    for flow_id, analysis in sorted(content.analyses.items()):
        found[flow_id] = {
            "to_transfer_seconds": _seconds(analysis.worst_seconds),
            "max_time_to_human": _seconds(analysis.limit),
            "worst_path": list(analysis.worst_path),
            "targets": [
                {"kind": r.kind, "name": r.name,
                 "to_transfer_seconds": _seconds(r.to_transfer),
                 "to_first_ring_seconds": _seconds(r.to_first_ring),
                 "to_backup_seconds": _seconds(r.to_backup)}
                for r in content.reaches.get(flow_id, ())
            ],
        }
    return found


def _seconds(value: float) -> float | None:
    return round(value, 1) if math.isfinite(value) else None


async def publish(
    pool: asyncpg.Pool, files: Files, by: str, how: ServeSettings, *, wait: bool = False
) -> PublishResult:
    """Validate, store and activate a set of content files (`flows/...`, `prompts/...`).

    Raises PublishRefused with the problems (files named as in `files`), or
    PublishConflict when another publish holds the lock (with `wait`, waits
    for it instead: for instances publishing their folders at start-up).
    """
    version = versions.content_hash(files)
    async with _publishing(pool, wait) as conn:
        content, problems = await asyncio.to_thread(stage, files, version, how)
        if content is None or problems.errors:
            if not await versions.is_stored(conn, version):
                await asyncio.to_thread(shutil.rmtree, how.work_dir / version, True)
            raise PublishRefused(tuple(p for p in problems.sorted() if not p.warning))
        result = await _commit(conn, files, version, content, by)
    await _sync(pool, content)
    return replace(result, warnings=tuple(problems.warnings))


async def publish_checked(
    pool: asyncpg.Pool, files: Files, content: Content, by: str
) -> PublishResult:
    """Publish files already checked into `content` (an instance's own folders,
    loaded at start-up): waits for a publish under way instead of failing.

    The counselors are not synced here: start-up syncs them once, from the
    plan of the version it ends up serving (which may be another's).
    """
    version = versions.content_hash(files)
    async with _publishing(pool, wait=True) as conn:
        return await _commit(conn, files, version, content, by)


@asynccontextmanager
async def _publishing(pool: asyncpg.Pool, wait: bool) -> AsyncIterator[asyncpg.Connection]:
    """A connection holding the publish lock, from validation to commit."""
    async with pool.acquire() as conn:
        if wait:
            await conn.execute("SELECT pg_advisory_lock($1)", _PUBLISH_LOCK)
        elif not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _PUBLISH_LOCK):
            raise PublishConflict("another publish is under way: try again when it is done")
        try:
            yield conn
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _PUBLISH_LOCK)


async def _commit(
    conn: asyncpg.Connection, files: Files, version: str, content: Content, by: str
) -> PublishResult:
    summary = worst_case(content)
    async with conn.transaction():
        created = await versions.store(conn, version, files, by, summary)
        await versions.activate(conn, version, by)
    log.info("content version %s published by %s%s", version, by,
             "" if created else " (already stored: activated again)")
    return PublishResult(version, summary, created)


async def publish_folders(
    pool: asyncpg.Pool, flows_dir: Path, prompts_dir: Path, by: str, how: ServeSettings,
    *, wait: bool = False,
) -> PublishResult:
    """Publish the content folders as they are on disk now."""
    files = await asyncio.to_thread(read_folders, flows_dir, prompts_dir)
    return await publish(pool, files, by, how, wait=wait)


async def activate(pool: asyncpg.Pool, version: str, by: str, how: ServeSettings) -> VersionInfo:
    """Make a stored version active again (a rollback); UnknownVersion when none.

    Its counselors and centers are synced like a publish's. A rollback waits
    for a publish under way rather than failing: it names a version, so
    there is nothing it could overwrite unseen.
    """
    files = await versions.files_of(pool, version)
    if files is None:
        raise UnknownVersion(version)
    content, problems = await asyncio.to_thread(stage, files, version, how)
    if content is None:
        raise PublishRefused(tuple(p for p in problems.sorted() if not p.warning))
    async with _publishing(pool, wait=True) as conn, conn.transaction():
        if await versions.activate(conn, version, by) is None:
            raise UnknownVersion(version)
    await _sync(pool, content)
    log.info("content version %s activated by %s", version, by)
    return next(v for v in await versions.list_versions(pool) if v.version == version)


async def list_versions(pool: asyncpg.Pool) -> list[VersionInfo]:
    """Every stored version, the newest first, the active one marked."""
    return await versions.list_versions(pool)


async def _sync(pool: asyncpg.Pool, content: Content) -> None:
    """The counselors table follows the active plan: counselors added start
    offline, those kept keep their presence, those gone are flagged removed
    (after the call they are on, if any), so presence and the waiting line
    live through a publish."""
    synced = await sync_counselors(pool, content.plan)
    log.info("counselors after the content change: %s", synced)


def problems_json(problems: tuple[Problem, ...] | list[Problem]) -> list[dict[str, Any]]:
    return [
        {"file": p.pos.file, "line": p.pos.line, "column": p.pos.col, "message": p.message}
        for p in problems
    ]


def version_json(v: VersionInfo) -> dict[str, Any]:
    return {
        "version": v.version,
        "published_at": v.published_at.isoformat(),
        "published_by": v.published_by,
        "worst_case": v.worst_case,
        "files": v.file_count,
        "bytes": v.total_bytes,
        "active": v.active,
    }


def result_json(result: PublishResult) -> Mapping[str, Any]:
    return {"version": result.version, "worst_case": result.worst_case,
            "new": result.created, "warnings": problems_json(result.warnings)}
