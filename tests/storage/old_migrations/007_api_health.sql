-- Whether Twilio's REST API is usable, shared by every instance: one row
-- while it is degraded (credentials refused, an outage, the network), none
-- while it is fine. While the row exists no new counselor leg is placed and
-- callers go on to the dial steps, which need no REST API.
CREATE TABLE api_health (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    since       timestamptz NOT NULL DEFAULT now(),
    -- No instance asks the API again (a cheap probe) before this moment.
    retry_at    timestamptz NOT NULL,
    reason      text NOT NULL
);
