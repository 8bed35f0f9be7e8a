-- A call's content version is no longer a foreign key. Each new call's insert
-- took a KEY SHARE lock on the row of the one active version, so calls
-- starting together shared that row through MultiXacts: 3,387 of them in 8 s
-- of bench/webhooks.py load, none without the key, and 5% of the database's
-- CPU per webhook (issue 12). The key guarded against nothing that can
-- happen: content_versions rows are never updated or deleted (the trigger
-- content_versions_immutable), and the server writes only versions it has
-- read from that table.
ALTER TABLE calls DROP CONSTRAINT IF EXISTS calls_content_version_fkey;
