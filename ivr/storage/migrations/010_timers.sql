-- Timers: every deadline and every piece of work that moves a caller on, as a
-- row (ivr.storage.timers). Any instance may carry one out: a due row is
-- claimed with FOR UPDATE SKIP LOCKED and leased for a while; an instance
-- that dies holding a lease leaves the row to another once the lease ends.
-- Due times and leases are written from the application's clock, never
-- now(), so a test may drive the server with a faster clock.
CREATE TABLE timers (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL
                  CHECK (kind IN ('tier_deadline', 'ring_timeout', 'place_leg', 'move_caller',
                                  'wrap_up')),
    -- What the timer is about, unique among the open timers of its kind
    -- (a call and a stage, an offer id, a counselor): the same intent
    -- recorded twice is one row.
    subject       text NOT NULL,
    call_sid      text,
    detail        jsonb NOT NULL DEFAULT '{}'::jsonb,
    due_at        timestamptz NOT NULL,
    attempts      integer NOT NULL DEFAULT 0,
    leased_by     text,
    leased_until  timestamptz,
    done_at       timestamptz,
    outcome       text,                                -- what the last attempt came to
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX timers_open ON timers (kind, subject) WHERE done_at IS NULL;
CREATE INDEX timers_due ON timers (due_at) WHERE done_at IS NULL;
CREATE INDEX timers_call ON timers (call_sid) WHERE done_at IS NULL;

-- A caller sent to the backup line by our own fail-safe (the wait URL, a
-- webhook that failed): from then on nobody is rung for them and they are
-- never moved again.
ALTER TABLE calls ADD COLUMN lifeline_at timestamptz;
