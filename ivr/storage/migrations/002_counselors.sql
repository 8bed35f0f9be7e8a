-- Counselors, the callers waiting for one, and the offers between them.
-- The functions that change them, and the view offer_details, are in
-- ../functions.sql (with the invariant they keep).

CREATE TABLE counselors (
    id              text PRIMARY KEY,
    center_id       text NOT NULL,
    name            text NOT NULL,
    address         text NOT NULL,                    -- staff phone (E.164) or SIP URI
    languages       text[] NOT NULL DEFAULT '{}',
    skills          text[] NOT NULL DEFAULT '{}',
    presence        text NOT NULL DEFAULT 'offline'
                    CHECK (presence IN ('available', 'offered', 'on-call', 'wrap-up', 'offline')),
    presence_since  timestamptz NOT NULL DEFAULT now(),
    -- When they last became available: the longest idle has the smallest.
    idle_since      timestamptz,
    -- The call they are being offered or are on.
    current_call    text,
    -- No longer in the routing plan: kept (a call may still be on it), never offered.
    removed         boolean NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((presence IN ('offered', 'on-call')) = (current_call IS NOT NULL)),
    CHECK (presence <> 'available' OR idle_since IS NOT NULL)
);
CREATE INDEX counselors_center ON counselors (center_id, id);

CREATE TABLE waiting (
    call_sid          text PRIMARY KEY,
    queue             text NOT NULL,
    language          text NOT NULL,
    need              text,
    caller_state      text,                           -- US state, never a phone number
    enqueued_at       timestamptz NOT NULL DEFAULT now(),
    status            text NOT NULL DEFAULT 'waiting'
                      CHECK (status IN ('waiting', 'offering', 'connected', 'abandoned', 'backup')),
    tier_index        integer NOT NULL,
    tier_kind         text NOT NULL,
    tier_started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Counselor ids of the current tier (tiers.resolve); their ranks: `ranks` (008).
    eligible          text[] NOT NULL DEFAULT '{}',
    eligible_key      bigint NOT NULL GENERATED ALWAYS AS (hash_array_extended(eligible, 0)) STORED,
    -- Being rung while 'offering'; the one who answered once 'connected'.
    offered_counselor text,
    attempts          integer NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (status NOT IN ('waiting', 'offering')
           OR (status = 'offering') = (offered_counselor IS NOT NULL))
);
CREATE INDEX waiting_line ON waiting (enqueued_at, call_sid) WHERE status = 'waiting';
CREATE INDEX waiting_open ON waiting (enqueued_at) WHERE status IN ('waiting', 'offering');

-- Many callers share one eligible list (same queue, state, language, need and
-- tier): each list is kept once here, so a claim tests each against the free
-- counselors once, not once per caller. Rows are never deleted (a deletion
-- racing an enqueue could hide a caller); there is one per list ever used.
CREATE TABLE eligibility (
    members text[] PRIMARY KEY,
    key     bigint NOT NULL GENERATED ALWAYS AS (hash_array_extended(members, 0)) STORED
);
CREATE TABLE offers (
    id            bigserial PRIMARY KEY,
    call_sid      text NOT NULL,
    counselor_id  text NOT NULL REFERENCES counselors (id),
    tier_kind     text NOT NULL,
    center_id     text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    leg_sid       text,                               -- Twilio CallSid of the counselor leg
    state         text NOT NULL DEFAULT 'ringing'
                  CHECK (state IN ('ringing', 'accepted', 'missed', 'declined', 'canceled',
                                   'failed')),
    ended_at      timestamptz
);
-- The guarantees themselves: one open offer per counselor and per call.
CREATE UNIQUE INDEX offers_ringing_counselor ON offers (counselor_id) WHERE state = 'ringing';
CREATE UNIQUE INDEX offers_ringing_call ON offers (call_sid) WHERE state = 'ringing';
CREATE INDEX offers_call ON offers (call_sid, counselor_id);
CREATE UNIQUE INDEX offers_leg ON offers (leg_sid) WHERE leg_sid IS NOT NULL;
