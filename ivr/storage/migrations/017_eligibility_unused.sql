-- Nothing ever read the `eligibility` table or `waiting.eligible_key`: the
-- dispatcher tests each waiting caller's `eligible` against the free
-- counselors itself (ivr_look, dispatch.look). The generated key was
-- computed on every write of a waiting row for nobody, and is dropped.
-- The table is no longer written by this version, but is kept for now:
-- during a rolling upgrade, instances of the previous version still insert
-- into it when they put a caller on the line, and those inserts must not
-- fail. A later migration drops it, once no such instance can be running.
ALTER TABLE waiting DROP COLUMN IF EXISTS eligible_key;
COMMENT ON TABLE eligibility IS
    'Unused since migration 017 (written only by older instances); to be dropped.';
