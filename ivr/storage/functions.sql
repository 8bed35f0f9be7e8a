-- Every view and function of the schema, in one file. Tables, indexes,
-- constraints and data migrations are the numbered files in migrations/.
--
-- Applied after the numbered migrations on every `migrate` (under the same
-- advisory lock, in one transaction), so this file is always what the
-- database runs: edit a function here, never in a new migration. Hence
-- every statement must be safe to run again on a database that has it:
-- CREATE OR REPLACE. That cannot change a function's arguments or return
-- type, nor drop, rename or reorder a view's columns: for such a change,
-- put `DROP FUNCTION IF EXISTS name(old argument types)` or `DROP VIEW IF
-- EXISTS` just before the new definition (a view dropped CASCADE takes the
-- functions returning its rows along: they are created again below it).
-- A migration that alters a column a view reads must drop that view first;
-- it comes back here.
--
-- Invariant kept by the functions below: an offer is 'ringing' exactly when
-- its counselor is 'offered' with current_call = the offer's call and its
-- caller is 'offering' with offered_counselor = the offer's counselor. Each
-- change to an open offer holds the row locks of both, always taken in the
-- same order (caller, then counselor, then offer) so two changes never
-- deadlock; a ring takes its locks with SKIP LOCKED and never waits at all.


-- An offer as the call flow needs it: whom to dial, and what to whisper.
CREATE OR REPLACE VIEW offer_details AS
SELECT o.id, o.call_sid, o.counselor_id, k.address, o.center_id, o.tier_kind,
       w.language, w.need, w.caller_state,
       extract(epoch FROM o.created_at - w.enqueued_at)::double precision AS waited_seconds,
       o.leg_sid, o.state, o.number
FROM offers o
JOIN counselors k ON k.id = o.counselor_id
JOIN waiting w ON w.call_sid = o.call_sid;

-- Wakes dispatchers of every instance when someone may now be matched.
CREATE OR REPLACE FUNCTION ivr_routing_changed() RETURNS void LANGUAGE sql AS
$$ SELECT pg_notify('ivr_routing', '') $$;


-- The one write of the transfer progression's Ring action: the caller's
-- offer to one counselor, made only if the caller's stored progress is still
-- the one the progression advanced from, the caller has no open offer and
-- the counselor is still free (available, not removed: an offer or a
-- wrap-up is another presence); the progress `p_seen` becomes `p_transfer`
-- in the same statement, so no progress holds an offer never made. An offer
-- number is made once at most, whatever became of it. Nothing is made (no
-- row returned) when any of it no longer holds: another instance took the
-- counselor, or the caller moved on.
-- Locks in the usual order (call, caller, counselor), with SKIP LOCKED (a
-- call, caller or counselor another transaction is changing is not free for
-- this one). The dispatcher makes its pass's offers in one statement
-- (ivr_ring_all) and never waits at all.
CREATE OR REPLACE FUNCTION ivr_ring(p_call text, p_counselor text, p_number integer,
                                    p_seen jsonb, p_transfer jsonb)
RETURNS SETOF offer_details LANGUAGE plpgsql AS $$
DECLARE
    kind    text;
    center  text;
    made    bigint;
BEGIN
    PERFORM 1 FROM calls WHERE call_sid = p_call AND transfer = p_seen
    FOR UPDATE SKIP LOCKED;
    IF NOT FOUND OR EXISTS (SELECT 1 FROM offers WHERE call_sid = p_call AND number = p_number)
    THEN
        RETURN;  -- moved on, or this offer was made already (and maybe ended since)
    END IF;
    SELECT q.tier_kind INTO kind FROM waiting q
    WHERE q.call_sid = p_call AND q.status = 'waiting'
    FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT k.center_id INTO center FROM counselors k
    WHERE k.id = p_counselor AND k.presence = 'available' AND NOT k.removed
    FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE counselors SET presence = 'offered', current_call = p_call,
                          presence_since = now(), updated_at = now()
    WHERE id = p_counselor;
    UPDATE waiting SET status = 'offering', offered_counselor = p_counselor, updated_at = now()
    WHERE call_sid = p_call;
    INSERT INTO offers (call_sid, counselor_id, tier_kind, center_id, number)
    VALUES (p_call, p_counselor, kind, center, p_number)
    RETURNING id INTO made;
    UPDATE calls SET transfer = p_transfer, updated_at = now() WHERE call_sid = p_call;
    RETURN QUERY SELECT * FROM offer_details WHERE id = made;
END $$;

-- The callers a dispatcher pass may ring someone for (dispatch.look), longest
-- waiting first, at most p_most of them: on the line with no open offer,
-- their tier listing a free counselor they were not offered in it yet, and
-- their progress holding no offer (one whose end it has not heard yet). The line is walked in its order and the
-- walk stops at p_most: with one counselor freed, a pass reads a few rows,
-- not the whole line.
CREATE OR REPLACE FUNCTION ivr_look(p_free text[], p_most integer)
RETURNS TABLE (call_sid text, enqueued_at timestamptz, eligible text[], seq integer,
               transfer jsonb, content_version text)
LANGUAGE plpgsql STABLE ROWS 20 AS $$
DECLARE
    w     record;
    taken integer := 0;  -- callers returned so far
BEGIN
    IF p_most < 1 OR cardinality(p_free) = 0 THEN
        RETURN;
    END IF;
    FOR w IN
        SELECT q.call_sid, q.enqueued_at, q.eligible, q.tier_started_at FROM waiting q
        WHERE q.status = 'waiting'
        ORDER BY q.enqueued_at, q.call_sid
    LOOP
        CONTINUE WHEN NOT (w.eligible && p_free);
        CONTINUE WHEN NOT EXISTS (
            SELECT 1 FROM unnest(w.eligible) AS e(id)
            WHERE e.id = ANY (p_free) AND NOT EXISTS (
                SELECT 1 FROM offers o
                WHERE o.call_sid = w.call_sid AND o.counselor_id = e.id
                  AND o.created_at >= w.tier_started_at));
        -- The progress codec's keys (ivr.routing.progress).
        RETURN QUERY
            SELECT c.call_sid, w.enqueued_at, w.eligible, c.seq, c.transfer, c.content_version
            FROM calls c
            WHERE c.call_sid = w.call_sid AND c.phase IN ('transfer', 'flow')
              AND jsonb_typeof(c.transfer->'offer') IS DISTINCT FROM 'object';
        IF FOUND THEN
            taken := taken + 1;
            EXIT WHEN taken >= p_most;
        END IF;
    END LOOP;
END $$;

-- A dispatcher pass's rings, in its order (longest waiting first), each
-- guarded on its own (ivr_ring): the offers made. The first one refused ends
-- the pass's rings: the callers after it wait for the next pass (kicked at
-- once), which looks again from the oldest, so nobody is rung ahead of a
-- caller who waited longer because that caller's row was busy for a moment.
CREATE OR REPLACE FUNCTION ivr_ring_all(p_calls text[], p_counselors text[],
                                        p_numbers integer[], p_seen jsonb[],
                                        p_transfers jsonb[])
RETURNS SETOF offer_details LANGUAGE plpgsql AS $$
DECLARE
    made offer_details;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_calls), 0) LOOP
        SELECT * INTO made FROM ivr_ring(p_calls[i], p_counselors[i], p_numbers[i],
                                         p_seen[i], p_transfers[i]);
        IF NOT FOUND THEN
            RETURN;
        END IF;
        RETURN NEXT made;
    END LOOP;
END $$;


-- The database's own matching, retired: whom to ring is the transfer
-- progression's, made by ivr_ring. Dropped from databases that had it.
DROP FUNCTION IF EXISTS ivr_claim_offers(integer);


-- Ends the open offer of a call whose caller row the transaction has locked.
-- The counselor goes to p_presence (NULL: 'available', or 'offline' when
-- missed, failed or removed from the plan); the caller is left to the
-- function calling this one. Returns the offer id, NULL if none was open.
CREATE OR REPLACE FUNCTION ivr_end_open_offer(p_call text, p_state text, p_presence text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    o offers%ROWTYPE;
BEGIN
    SELECT * INTO o FROM offers WHERE call_sid = p_call AND state = 'ringing';
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM counselors WHERE id = o.counselor_id FOR UPDATE;
    UPDATE offers SET state = p_state, ended_at = clock_timestamp() WHERE id = o.id;
    UPDATE counselors SET
        presence = CASE
            WHEN p_presence IS NOT NULL THEN p_presence
            WHEN removed OR p_state IN ('missed', 'failed') THEN 'offline'
            ELSE 'available' END,
        current_call = NULL, presence_since = now(), updated_at = now()
    WHERE id = o.counselor_id;
    RETURN o.id;
END $$;


-- The counselor answered and accepted. False when the offer is no longer
-- ringing (the caller hung up, or the tier moved on, first).
CREATE OR REPLACE FUNCTION ivr_offer_accepted(p_offer bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    o offers%ROWTYPE;
BEGIN
    SELECT * INTO o FROM offers WHERE id = p_offer;
    IF NOT FOUND OR o.state <> 'ringing' THEN
        RETURN false;
    END IF;
    PERFORM 1 FROM waiting WHERE call_sid = o.call_sid FOR UPDATE;
    PERFORM 1 FROM counselors WHERE id = o.counselor_id FOR UPDATE;
    -- Its leg is answered: it no longer rings (migration 016).
    UPDATE offers SET state = 'accepted', ended_at = clock_timestamp(), leg_until = NULL
    WHERE id = p_offer AND state = 'ringing';
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE counselors SET presence = 'on-call', current_call = o.call_sid,
                          presence_since = now(), updated_at = now()
    WHERE id = o.counselor_id;
    UPDATE waiting SET status = 'connected', updated_at = now() WHERE call_sid = o.call_sid;
    RETURN true;
END $$;


-- The offer ended without a conversation: the caller waits again.
CREATE OR REPLACE FUNCTION ivr_offer_ended(p_offer bigint, p_state text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    o offers%ROWTYPE;
BEGIN
    SELECT * INTO o FROM offers WHERE id = p_offer;
    IF NOT FOUND OR o.state <> 'ringing' THEN
        RETURN false;
    END IF;
    PERFORM 1 FROM waiting WHERE call_sid = o.call_sid FOR UPDATE;
    -- Checked again under the caller's lock: the open offer of the call can
    -- no longer change, so the one ended below is this one.
    PERFORM 1 FROM offers WHERE id = p_offer AND state = 'ringing';
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM ivr_end_open_offer(o.call_sid, p_state, NULL);
    UPDATE waiting SET status = 'waiting', offered_counselor = NULL, updated_at = now(),
                       attempts = attempts + CASE WHEN p_state = 'canceled' THEN 0 ELSE 1 END
    WHERE call_sid = o.call_sid;
    PERFORM ivr_routing_changed();
    RETURN true;
END $$;


-- The caller leaves the line (connected elsewhere, hung up, sent to the
-- backup number); their open offer is cancelled and returned.
CREATE OR REPLACE FUNCTION ivr_leave_queue(p_call text, p_status text) RETURNS SETOF offer_details
LANGUAGE plpgsql AS $$
DECLARE
    ended bigint;
BEGIN
    PERFORM 1 FROM waiting WHERE call_sid = p_call FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    ended := ivr_end_open_offer(p_call, 'canceled', NULL);
    UPDATE waiting SET status = p_status, offered_counselor = NULL, updated_at = now()
    WHERE call_sid = p_call AND status IN ('waiting', 'offering');
    IF ended IS NOT NULL THEN
        PERFORM ivr_routing_changed();
        RETURN QUERY SELECT * FROM offer_details WHERE id = ended;
    END IF;
END $$;


-- The caller moves to another tier; an offer still ringing in the old one is
-- cancelled and returned. Before ranks it took four arguments: that one is
-- dropped (CREATE OR REPLACE cannot add one). p_ranks has a default so that
-- an instance of the older version still running calls this one.
DROP FUNCTION IF EXISTS ivr_set_tier(text, integer, text, text[]);
CREATE OR REPLACE FUNCTION ivr_set_tier(p_call text, p_index integer, p_kind text,
                                        p_eligible text[], p_ranks integer[] DEFAULT '{}')
RETURNS SETOF offer_details LANGUAGE plpgsql AS $$
DECLARE
    ended bigint;
BEGIN
    PERFORM 1 FROM waiting WHERE call_sid = p_call AND status IN ('waiting', 'offering')
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    ended := ivr_end_open_offer(p_call, 'canceled', NULL);
    UPDATE waiting SET tier_index = p_index, tier_kind = p_kind, eligible = p_eligible,
                       ranks = p_ranks, tier_started_at = clock_timestamp(), status = 'waiting',
                       offered_counselor = NULL, updated_at = now()
    WHERE call_sid = p_call;
    PERFORM ivr_routing_changed();
    IF ended IS NOT NULL THEN
        RETURN QUERY SELECT * FROM offer_details WHERE id = ended;
    END IF;
END $$;


-- A presence change by hand. The counselor's call (if any) is only known
-- once their row is read, yet its caller row must be locked first: lock in
-- order, and if the counselor was offered meanwhile, undo (the
-- subtransaction releases the locks) and try again.
--
-- Rules: 'available' is refused (55000) while the counselor is on a call, or
-- no longer in the plan; otherwise every change applies, and one made while
-- an offer rings withdraws it (returned, so its leg can be cancelled; the
-- caller waits again for someone else).
CREATE OR REPLACE FUNCTION ivr_set_presence(p_id text, p_presence text) RETURNS SETOF offer_details
LANGUAGE plpgsql AS $$
DECLARE
    seen  text;
    k     counselors%ROWTYPE;
    ended bigint;
BEGIN
    IF p_presence NOT IN ('available', 'wrap-up', 'offline') THEN
        RAISE EXCEPTION 'presence % cannot be set by hand', p_presence USING ERRCODE = '22023';
    END IF;
    LOOP
        SELECT current_call INTO seen FROM counselors WHERE id = p_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'unknown counselor %', p_id USING ERRCODE = 'P0002';
        END IF;
        BEGIN
            IF seen IS NOT NULL THEN
                PERFORM 1 FROM waiting WHERE call_sid = seen FOR UPDATE;
            END IF;
            SELECT * INTO k FROM counselors WHERE id = p_id FOR UPDATE;
            IF k.current_call IS DISTINCT FROM seen THEN
                RAISE EXCEPTION 'counselor changed while locking' USING ERRCODE = 'IVRTY';
            END IF;
            IF p_presence = 'available' AND k.presence = 'on-call' THEN
                RAISE EXCEPTION 'counselor % is on a call', p_id USING ERRCODE = '55000';
            END IF;
            IF p_presence = 'available' AND k.removed THEN
                RAISE EXCEPTION 'counselor % is no longer in the routing plan', p_id
                    USING ERRCODE = '55000';
            END IF;
            IF k.presence = 'offered' THEN
                ended := ivr_end_open_offer(k.current_call, 'canceled', p_presence);
                UPDATE waiting SET status = 'waiting', offered_counselor = NULL, updated_at = now()
                WHERE call_sid = k.current_call AND status = 'offering';
            ELSIF k.presence <> p_presence THEN
                UPDATE counselors SET presence = p_presence, current_call = NULL,
                    presence_since = now(), updated_at = now(),
                    idle_since = CASE WHEN p_presence = 'available' THEN now() ELSE idle_since END
                WHERE id = p_id;
            END IF;
            IF ended IS NOT NULL OR (p_presence = 'available' AND k.presence <> 'available') THEN
                PERFORM ivr_routing_changed();
            END IF;
            IF ended IS NOT NULL THEN
                RETURN QUERY SELECT * FROM offer_details WHERE id = ended;
            END IF;
            RETURN;
        EXCEPTION WHEN SQLSTATE 'IVRTY' THEN
            NULL;  -- locks released with the subtransaction; read again
        END;
    END LOOP;
END $$;


-- One row per call that reached a counselor queue or line: what the 988
-- figures are made of. Counselors tried are the offers made for the call.
CREATE OR REPLACE VIEW call_outcomes AS
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


-- Retired: the console's row triggers NOTIFYing 'ivr_console'. PostgreSQL
-- serializes the commits of transactions that NOTIFY, so every webhook's
-- commit queued behind the others'; the console now polls instead
-- (ivr/admin/console/events.py). Each is dropped only if there, so that an
-- ordinary start-up runs no DDL on the tables calls write (a DROP that finds
-- its trigger waits for, and holds up, every transaction on its table).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['counselors', 'waiting', 'offers', 'calls'] LOOP
        IF EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = t::regclass AND tgname = 'ivr_console_' || t) THEN
            EXECUTE format('DROP TRIGGER %I ON %I', 'ivr_console_' || t, t);
        END IF;
    END LOOP;
END $$;
DROP FUNCTION IF EXISTS ivr_console_changed();

-- Published content is immutable: a version names what served its calls.
CREATE OR REPLACE FUNCTION content_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'published content versions cannot be changed (%)', TG_TABLE_NAME
        USING ERRCODE = 'IVRCI';
END $$;

DROP TRIGGER IF EXISTS content_versions_immutable ON content_versions;
CREATE TRIGGER content_versions_immutable BEFORE UPDATE OR DELETE ON content_versions
    FOR EACH ROW EXECUTE FUNCTION content_immutable();
DROP TRIGGER IF EXISTS content_files_immutable ON content_files;
CREATE TRIGGER content_files_immutable BEFORE UPDATE OR DELETE ON content_files
    FOR EACH ROW EXECUTE FUNCTION content_immutable();


-- A caller offered early (while the flow still ran) reaches their transfer's
-- warm step: their line takes the step's tier and counselors, keeping their
-- open offer (unlike ivr_set_tier) and the tier's start (the early offer
-- counts as tried in it). False when the caller is no longer on the line.
CREATE OR REPLACE FUNCTION ivr_early_arrived(p_call text, p_index integer, p_kind text,
                                             p_eligible text[], p_ranks integer[],
                                             p_language text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM waiting WHERE call_sid = p_call AND status IN ('waiting', 'offering')
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE waiting SET tier_index = p_index, tier_kind = p_kind, eligible = p_eligible,
                       ranks = p_ranks, language = p_language, updated_at = now()
    WHERE call_sid = p_call;
    PERFORM ivr_routing_changed();
    RETURN true;
END $$;
