-- Background jobs of this org. PostgreSQL is the record of truth; Redis only
-- dispatches. Runs with search_path set to the org schema.
--
-- status: queued (waiting, possibly until run_at), running, succeeded,
-- failed (an attempt failed; the next one is due at run_at), dead (no
-- attempts left, or a permanent error), cancelled.
CREATE TABLE jobs (
    id                  uuid        PRIMARY KEY,
    kind                text        NOT NULL,
    queue               text        NOT NULL,
    status              text        NOT NULL DEFAULT 'queued',
    payload             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    result              jsonb,
    error               text,
    attempts            integer     NOT NULL DEFAULT 0,
    max_attempts        integer     NOT NULL,
    run_at              timestamptz NOT NULL DEFAULT now(),
    unique_key          text,
    created_by          text        NOT NULL,
    -- the worker running the current attempt
    worker_id           text,
    cancel_requested_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    CONSTRAINT jobs_status_check
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'dead')),
    CONSTRAINT jobs_attempts_check CHECK (attempts >= 0 AND max_attempts BETWEEN 1 AND 100)
) WITH (fillfactor = 80);

-- Unfinished jobs: listing by status, and the recovery sweep.
CREATE INDEX jobs_unfinished_idx ON jobs (status, id)
    WHERE status IN ('queued', 'running', 'failed');
CREATE INDEX jobs_dead_idx ON jobs (id) WHERE status = 'dead';
-- A unique key holds while its job is unfinished.
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('queued', 'running', 'failed');

-- Lines a job's handler logged, per attempt.
CREATE TABLE job_logs (
    job_id  uuid        NOT NULL,
    attempt integer     NOT NULL,
    line_no integer     NOT NULL,
    at      timestamptz NOT NULL,
    level   text        NOT NULL,
    line    text        NOT NULL,
    PRIMARY KEY (job_id, attempt, line_no)
);

-- Cron schedules of this org, fired by `orgstack scheduler`.
CREATE TABLE schedules (
    id           uuid        PRIMARY KEY,
    name         text        NOT NULL,
    cron         text        NOT NULL,
    kind         text        NOT NULL,
    queue        text,
    payload      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    enabled      boolean     NOT NULL DEFAULT true,
    -- true: a tick missed while no scheduler ran is skipped; false: it runs once
    skip_missed  boolean     NOT NULL DEFAULT false,
    -- the last tick that fired, and the job it made
    last_fire_at timestamptz,
    last_job_id  uuid,
    next_run_at  timestamptz,
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_name_key UNIQUE (name)
);
