-- How each call reached (or did not reach) a human: the 988-style figures.
ALTER TABLE calls
    ADD COLUMN transfer_started_at timestamptz,
    ADD COLUMN first_ring_at       timestamptz,
    ADD COLUMN answered_at         timestamptz,
    ADD COLUMN answered_tier       text,
    ADD COLUMN answered_center     text,
    ADD COLUMN answered_in_state   boolean,
    ADD COLUMN abandoned           boolean NOT NULL DEFAULT false;
CREATE INDEX calls_created ON calls (created_at);
