-- Each waiting caller's rank of the counselors in `eligible` (same
-- positions), from the routing plan (ivr.routing.tiers.rank): a claim offers
-- the lowest rank first, then the longest idle. Empty when everyone ranks
-- alike, as for the callers already waiting when this runs.
ALTER TABLE waiting
    ADD COLUMN ranks integer[] NOT NULL DEFAULT '{}',
    ADD CONSTRAINT waiting_ranks_aligned CHECK (cardinality(ranks) IN (0, cardinality(eligible)));
