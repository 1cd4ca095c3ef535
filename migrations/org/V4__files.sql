-- Files uploaded to the org. The bytes are in storage under
-- `{org id}/{file id}` (never the uploaded name); this row says what they
-- are and how processing went: uploaded -> processing -> ready | failed.
CREATE TABLE files (
    id            uuid        PRIMARY KEY,
    name          text        NOT NULL,
    content_type  text        NOT NULL,
    size_bytes    bigint      NOT NULL,
    sha256        bytea       NOT NULL,
    status        text        NOT NULL DEFAULT 'uploaded',
    metadata      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    error         text,
    -- the latest processing job
    job_id        uuid,
    uploaded_by   text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    processed_at  timestamptz,
    CONSTRAINT files_status_check CHECK (status IN ('uploaded', 'processing', 'ready', 'failed')),
    CONSTRAINT files_size_check CHECK (size_bytes > 0)
);
CREATE INDEX files_status_idx ON files (status, id DESC);
