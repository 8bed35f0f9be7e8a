"""Migrations at start-up: safe when several instances start at once, and a
database made by an earlier version ends exactly like a fresh one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ivr.storage.database import open_pool
from ivr.storage.migrate import Schema, available, migrate, shipped
from tests.conftest import fresh_database
from tests.storage.dispatching import make_offers

# The numbered migrations as the version before functions.sql shipped them
# (commit f482f72): functions and views were created inside 002 and 005.
# Kept as they were, never edited: they are what existing databases ran.
OLD_MIGRATIONS = Path(__file__).parent / "old_migrations"


def old_schema() -> Schema:
    files = sorted(OLD_MIGRATIONS.glob("*.sql"))
    return Schema(
        tuple((int(f.name.split("_", 1)[0]), f.name, f.read_text(encoding="utf-8")) for f in files),
        functions="",
    )


@pytest.fixture
async def other_dsn(pg_root: str) -> AsyncIterator[str]:
    """A second empty database on the same server."""
    async for url in fresh_database(pg_root):
        yield url


_CATALOG = {
    "functions": """
        SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace""",
    "views": """
        SELECT c.relname::text, pg_get_viewdef(c.oid) FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('v', 'm')""",
    "columns": """
        SELECT table_name::text, ordinal_position::int, column_name::text, data_type::text,
               is_nullable::text, column_default::text, generation_expression::text
        FROM information_schema.columns WHERE table_schema = 'public'""",
    "constraints": """
        SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace""",
    "indexes": "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "migrations": "SELECT version, name FROM schema_migrations",
}


async def catalog(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """What a database is made of: every function's and view's definition, tables."""
    conn = await asyncpg.connect(dsn)
    try:
        return {
            part: sorted(tuple(r) for r in await conn.fetch(query))
            for part, query in _CATALOG.items()
        }
    finally:
        await conn.close()


async def migrated(dsn: str, *schemas: Schema | None) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for schema in schemas:
            await migrate(conn, schema)
    finally:
        await conn.close()


async def test_instances_starting_together_apply_each_migration_once(dsn: str) -> None:
    pools = await asyncio.gather(*(open_pool(dsn, min_size=1, max_size=2) for _ in range(4)))
    try:
        rows = await pools[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        migrations = await asyncio.to_thread(available)
        assert [r["version"] for r in rows] == [v for v, _, _ in migrations]
        assert await pools[0].fetchval("SELECT count(*) FROM calls") == 0
        assert await pools[0].fetch("SELECT * FROM ivr_look('{}'::text[], 5)") == []
        assert await pools[0].fetchval("SELECT to_regproc('ivr_claim_offers')") is None
    finally:
        await asyncio.gather(*(p.close() for p in pools))


async def test_restart_applies_nothing_new(dsn: str) -> None:
    pool = await open_pool(dsn, min_size=1, max_size=1)
    await pool.close()
    conn = await asyncpg.connect(dsn)
    try:
        before = await conn.fetch("SELECT version, applied_at FROM schema_migrations")
    finally:
        await conn.close()
    pool = await open_pool(dsn, min_size=1, max_size=1)
    try:
        after = await pool.fetch("SELECT version, applied_at FROM schema_migrations")
    finally:
        await pool.close()
    assert sorted(map(tuple, before)) == sorted(map(tuple, after))


async def test_a_database_of_the_old_migrations_ends_like_a_fresh_one(
    dsn: str, other_dsn: str
) -> None:
    await migrated(dsn, old_schema())
    old = await catalog(dsn)
    # The old files did create functions and views: an existing database has them.
    assert {"ivr_claim_offers", "ivr_set_tier"} <= {f.split("(")[0] for f, _ in old["functions"]}
    assert {"offer_details", "call_outcomes"} <= {v for v, _ in old["views"]}

    await migrated(dsn, None)  # the old database, migrated by this version
    await migrated(other_dsn, None)  # a fresh database
    upgraded, fresh = await catalog(dsn), await catalog(other_dsn)
    for part in _CATALOG:
        assert upgraded[part] == fresh[part], part
    assert fresh["functions"] and fresh["views"]
    # A function retired since (functions.sql drops it) is gone from the old one.
    assert "ivr_claim_offers" not in {f.split("(")[0] for f, _ in upgraded["functions"]}


async def test_functions_are_applied_again_on_every_migrate(dsn: str) -> None:
    await migrated(dsn, None)
    conn = await asyncpg.connect(dsn)
    try:
        # Drift by hand: a function changed, a view gone.
        await conn.execute(
            "CREATE OR REPLACE FUNCTION ivr_routing_changed() RETURNS void LANGUAGE sql AS"
            " $$ SELECT pg_notify('elsewhere', '') $$"
        )
        await conn.execute("DROP VIEW call_outcomes")
        assert await migrate(conn) == []  # no numbered migration is left...
        # ...and yet the functions and views are this version's again.
        defined = await conn.fetchval(
            "SELECT pg_get_functiondef('ivr_routing_changed'::regproc)"
        )
        assert "'ivr_routing'" in defined
        assert await conn.fetchval("SELECT count(*) FROM call_outcomes") == 0
    finally:
        await conn.close()


def test_no_numbered_migration_creates_a_function_or_a_view() -> None:
    # Functions and views live in functions.sql only (see its header).
    schema = shipped()
    for _, name, sql in schema.migrations:
        words = " ".join(sql.upper().split())
        for statement in ("CREATE FUNCTION", "CREATE OR REPLACE", "CREATE VIEW",
                          "CREATE PROCEDURE", "CREATE TRIGGER"):
            assert statement not in words, f"{name}: {statement} belongs in functions.sql"
    # A retired function is dropped there, so an upgraded database keeps no stale one.
    assert "DROP FUNCTION IF EXISTS ivr_claim_offers(integer);" in schema.functions
    assert "FUNCTION ivr_claim_offers(p_limit" not in schema.functions


async def test_a_caller_waiting_across_the_upgrade_is_still_served(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, old_schema())
        # As the older version left them: a free counselor, a caller waiting
        # (enqueued without ranks, which did not exist).
        await conn.execute(
            "INSERT INTO counselors (id, center_id, name, address, presence, idle_since)"
            " VALUES ('ann', 'c1', 'Ann', 'sip:ann@c1.example.org', 'available', now()),"
            "        ('bob', 'c1', 'Bob', 'sip:bob@c1.example.org', 'offline', NULL)"
        )
        await conn.execute(
            "INSERT INTO eligibility (members) VALUES ('{ann}');"
            "INSERT INTO waiting (call_sid, queue, language, tier_index, tier_kind, eligible)"
            " VALUES ('CA-1', 'crisis', 'en', 0, 'local', '{ann}')"
        )
        await migrate(conn)
        pool = await open_pool(dsn, min_size=1, max_size=1)
        try:
            (offer,) = await make_offers(pool)  # as a dispatcher pass of this version
        finally:
            await pool.close()
        assert (offer.call_sid, offer.counselor_id) == ("CA-1", "ann")
        # An instance of the older version, still running, moves the caller
        # on with the four arguments it knows.
        (cancelled,) = await conn.fetch(
            "SELECT * FROM ivr_set_tier('CA-1', 1, 'backup', '{bob}')")
        assert cancelled["id"] == offer.id
        assert await conn.fetchval("SELECT ranks FROM waiting WHERE call_sid = 'CA-1'") == []
    finally:
        await conn.close()


async def test_an_older_instance_leaves_the_newer_functions_alone(dsn: str) -> None:
    current = await asyncio.to_thread(shipped)
    newer = Schema(
        (*current.migrations, (999, "999_future.sql", "CREATE TABLE future (id int)")),
        current.functions + "\nCREATE OR REPLACE FUNCTION ivr_routing_changed() RETURNS void"
        " LANGUAGE sql AS $$ SELECT pg_notify('ivr_routing', 'future') $$;\n",
    )
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, newer)
        assert await migrate(conn, current) == []
        defined = await conn.fetchval(
            "SELECT pg_get_functiondef('ivr_routing_changed'::regproc)"
        )
        assert "'future'" in defined
    finally:
        await conn.close()


# The console's change feed as functions.sql created it until it was retired:
# what an upgraded database still has.
_OLD_CONSOLE_FEED = """
CREATE OR REPLACE FUNCTION ivr_console_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ivr_console', TG_TABLE_NAME);
    RETURN NULL;
END $$;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['counselors', 'waiting', 'offers', 'calls'] LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I'
                       ' FOR EACH ROW EXECUTE FUNCTION ivr_console_changed()',
                       'ivr_console_' || t, t);
    END LOOP;
END $$;
"""
_CONSOLE_TRIGGERS = "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'ivr\\_console\\_%'"


async def _first_console_notification(dsn: str, call_sid: str) -> str:
    """What 'ivr_console' hears first after a write to `calls`, then a marker:
    notifications arrive in commit order, so "marker" means the write sent none."""
    listener, writer = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    heard: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener("ivr_console", lambda *args: heard.put_nowait(args[3]))
        await writer.execute(
            "INSERT INTO calls (call_sid, flow_id, flow_version, seq, state)"
            " VALUES ($1, 'lifeline', 'v1', 1, '{}')", call_sid)
        await writer.execute("SELECT pg_notify('ivr_console', 'marker')")
        async with asyncio.timeout(10):
            return await heard.get()
    finally:
        await listener.close()
        await writer.close()


async def test_the_console_feed_is_gone_from_an_upgraded_database(
    dsn: str, other_dsn: str
) -> None:
    await migrated(dsn, None)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(_OLD_CONSOLE_FEED)
        assert await conn.fetchval(_CONSOLE_TRIGGERS) == 4
        assert await _first_console_notification(dsn, "CA-old") == "calls"  # as it was
        await migrate(conn)
        assert await conn.fetchval(_CONSOLE_TRIGGERS) == 0
        assert await conn.fetchval("SELECT to_regprocedure('ivr_console_changed()')") is None
    finally:
        await conn.close()
    assert await _first_console_notification(dsn, "CA-new") == "marker"

    await migrated(other_dsn, None)  # a fresh database never has it
    conn = await asyncpg.connect(other_dsn)
    try:
        assert await conn.fetchval(_CONSOLE_TRIGGERS) == 0
    finally:
        await conn.close()


async def test_a_start_up_does_not_wait_for_the_line_tables(dsn: str) -> None:
    await migrated(dsn, None)
    busy, conn = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        # As a webhook's open transaction holds them.
        await busy.execute("BEGIN; LOCK TABLE counselors, waiting, offers, calls"
                           " IN ROW EXCLUSIVE MODE")
        await conn.execute("SET lock_timeout = '2s'")
        assert await migrate(conn) == []
    finally:
        await busy.close()
        await conn.close()


async def test_calls_starting_together_lock_nothing_of_their_content_version(dsn: str) -> None:
    # With the foreign key (before 015) each new call's insert held a KEY SHARE
    # lock on its version's row until commit, which FOR UPDATE cannot pass.
    await migrated(dsn, None)
    starting, other = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        await other.execute(
            "INSERT INTO content_versions (version, published_by, worst_case, file_count,"
            " total_bytes) VALUES ('v1', 'test', '{}', 0, 0)")
        await starting.execute(
            "BEGIN; INSERT INTO calls (call_sid, flow_id, flow_version, seq, state,"
            " content_version) VALUES ('CA-new', '988', 'f1', 1, '{}', 'v1')")
        await other.execute("BEGIN")
        locked = await other.fetchval(
            "SELECT version FROM content_versions WHERE version = 'v1' FOR UPDATE NOWAIT")
        assert locked == "v1"
        await other.execute("ROLLBACK")
        await starting.execute("COMMIT")
        # What the key stood for still holds: a version a call names stays.
        with pytest.raises(asyncpg.PostgresError, match="cannot be changed"):
            await other.execute("DELETE FROM content_versions WHERE version = 'v1'")
    finally:
        await starting.close()
        await other.close()
