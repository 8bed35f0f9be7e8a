-- A counselor's phone rings for one caller at a time, as Twilio sees it, not
-- only as the offers table does. An offer can end here (the caller hung up,
-- the tier moved on) a moment before its leg stops ringing there: the
-- cancel is a REST request after the commit, and the instance sending it
-- can die first. Until then the counselor's next leg waits (the worker's
-- place_leg, queue.placing).
--
-- leg_until: while set, a leg of this offer may be ringing. Written just
-- before the REST create (record, then do) as the latest moment it can ring
-- out (its Timeout, plus slack), from the database's clock; cleared once the
-- leg is known over (its final status callback, a cancel Twilio took, a
-- create Twilio refused).
ALTER TABLE offers ADD COLUMN leg_until timestamptz;
CREATE INDEX offers_leg_open ON offers (counselor_id) WHERE leg_until IS NOT NULL;
