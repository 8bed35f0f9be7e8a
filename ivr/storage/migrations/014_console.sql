-- The console's people and their sessions (ivr.admin.console). Tokens and
-- session ids are random secrets kept only as SHA-256 digests: a copy of
-- the database signs nobody in.
CREATE TABLE console_tokens (
    id          bigserial PRIMARY KEY,
    digest      bytea NOT NULL UNIQUE,
    role        text NOT NULL CHECK (role IN ('supervisor', 'counselor')),
    -- The supervisor's name, or the counselor's id in the routing plan.
    subject     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX console_tokens_subject ON console_tokens (role, subject);

CREATE TABLE console_sessions (
    digest      bytea PRIMARY KEY,
    -- NULL when signed in with IVR_ADMIN_TOKEN (no row to revoke: change it).
    token_id    bigint REFERENCES console_tokens (id),
    role        text NOT NULL CHECK (role IN ('supervisor', 'counselor')),
    subject     text NOT NULL,
    csrf        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    ended_at    timestamptz
);
CREATE INDEX console_sessions_token ON console_sessions (token_id);

-- Failed sign-ins, counted per client address over a sliding window so the
-- limit holds whichever instance answers.
CREATE TABLE console_signin_failures (
    id      bigserial PRIMARY KEY,
    source  text NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_signin_failures_source ON console_signin_failures (source, at);
