-- Calls and their event trail. The caller's number is never stored: only a
-- keyed hash (to recognise repeat callers) and the area code (for reports).
CREATE TABLE calls (
    call_sid         text PRIMARY KEY,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    ended_at         timestamptz,
    caller_hash      text,
    caller_area_code text,
    called           text,
    flow_id          text NOT NULL,
    flow_version     text NOT NULL,
    seq              integer NOT NULL,
    state            jsonb NOT NULL,
    location_state   text,
    location_source  text,
    phase            text NOT NULL DEFAULT 'flow',   -- flow | transfer | connected | ended
    twilio_status    text,
    transfer         jsonb,
    last_twiml       text NOT NULL DEFAULT ''
);

-- No foreign key: status callbacks for calls we never saw are kept too.
CREATE TABLE call_events (
    id        bigserial PRIMARY KEY,
    call_sid  text NOT NULL,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind      text NOT NULL,
    detail    jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX call_events_call ON call_events (call_sid, id);
