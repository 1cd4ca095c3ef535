-- Records one job in an org's schema, for single enqueues (the API's
-- `POST .../jobs`). A statement that names an org's schema differs per
-- org, so it is sent unprepared, which costs two round trips (parse, then
-- bind and execute); a call of this function is the same text for every
-- org, kept prepared on each connection, and costs one. The schema is
-- made from the org id here, so nothing but an org's own `jobs` table can
-- be reached. With `quick`, the transaction commits without waiting for
-- the disk (the caller then waits for the log to be flushed itself).
CREATE FUNCTION insert_job(
    org_id         uuid,
    job_id         uuid,
    job_kind       text,
    job_queue      text,
    job_payload    jsonb,
    job_max_attempts integer,
    job_run_at     timestamptz,
    job_created_by text,
    quick          boolean
) RETURNS timestamptz
LANGUAGE plpgsql
AS $$
DECLARE
    created timestamptz;
BEGIN
    IF quick THEN
        PERFORM pg_catalog.set_config('synchronous_commit', 'off', true);
    END IF;
    EXECUTE pg_catalog.format(
        'INSERT INTO %I.jobs (id, kind, queue, payload, max_attempts, run_at, created_by) '
        'VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING created_at',
        'org_' || pg_catalog.replace(org_id::text, '-', ''))
    INTO created
    USING job_id, job_kind, job_queue, job_payload, job_max_attempts, job_run_at, job_created_by;
    RETURN created;
END
$$;
