-- One row per call that reached a counselor queue or line: what the 988
-- figures are made of. Counselors tried are the offers made for the call.
CREATE VIEW call_outcomes AS
SELECT c.call_sid,
       c.location_state,
       c.location_source,
       c.transfer->>'queue' AS queue,
       c.transfer->>'line' AS line,
       c.transfer_started_at,
       extract(epoch FROM c.first_ring_at - c.transfer_started_at)::double precision
           AS seconds_to_first_ring,
       extract(epoch FROM c.answered_at - c.transfer_started_at)::double precision
           AS seconds_to_answer,
       c.answered_tier,
       c.answered_center,
       c.answered_in_state,
       (SELECT count(*) FROM offers o WHERE o.call_sid = c.call_sid)::int AS counselors_tried,
       c.abandoned
FROM calls c
WHERE c.transfer_started_at IS NOT NULL;
