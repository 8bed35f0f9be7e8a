-- Content versions: flows, prompt catalogs, recordings and the routing plan
-- as published together, kept whole so that any instance can load any
-- version (a call finishes on the version it started on, wherever its next
-- webhook lands). Rows are never changed once written (a trigger in
-- functions.sql refuses it): a version is what served the calls naming it.
CREATE TABLE content_versions (
    version       text PRIMARY KEY,  -- sha256 of the files (ivr.publishing.versions)
    published_at  timestamptz NOT NULL DEFAULT now(),
    published_by  text NOT NULL,
    worst_case    jsonb NOT NULL,
    file_count    integer NOT NULL,
    total_bytes   bigint NOT NULL
);

CREATE TABLE content_files (
    version  text NOT NULL REFERENCES content_versions (version),
    path     text NOT NULL,  -- 'flows/988.yaml', 'prompts/en/catalog.yaml', ...
    data     bytea NOT NULL,
    PRIMARY KEY (version, path)
);

-- The one active version. `seq` grows with every activation, so an instance
-- that hears two announcements out of order keeps the later one.
CREATE TABLE content_active (
    one           boolean PRIMARY KEY DEFAULT true CHECK (one),
    version       text NOT NULL REFERENCES content_versions (version),
    seq           bigint NOT NULL,
    activated_at  timestamptz NOT NULL DEFAULT now(),
    activated_by  text NOT NULL
);

-- Every activation, rollbacks included: which version served when.
CREATE TABLE content_activations (
    seq           bigint PRIMARY KEY,
    version       text NOT NULL REFERENCES content_versions (version),
    activated_at  timestamptz NOT NULL DEFAULT now(),
    activated_by  text NOT NULL
);

-- The version a call started on (NULL for calls made before versions).
ALTER TABLE calls ADD COLUMN content_version text REFERENCES content_versions (version);
