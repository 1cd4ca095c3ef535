//! The SQL of org jobs, job logs and their state changes. Every statement
//! names its org's tables through the validated schema name.
//!
//! None is kept prepared (`persistent(false)`): a statement's text names
//! its org's schema, so a prepared-statement cache would hold one copy per
//! org and connection; with thousands of orgs it would grow without bound
//! (or churn, if capped). Unnamed statements cost the same for every org.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgConnection, PgExecutor, PgPool, Postgres, Transaction};
use tenancy::{OrgId, SchemaName};
use uuid::Uuid;

use super::{Job, JobStatus};

const JOB_COLUMNS: &str = "id, kind, queue, status, payload, result, error, attempts, max_attempts, \
    run_at, unique_key, created_by, worker_id, cancel_requested_at, created_at, updated_at, \
    started_at, finished_at";

const SUMMARY_COLUMNS: &str = "id, kind, queue, status, attempts, max_attempts, run_at, \
    left(split_part(error, E'\\n', 1), 200) AS error, created_by, created_at, started_at, finished_at";

/// The partial unique index on unfinished jobs' keys, as `ON CONFLICT`
/// names it.
const UNIQUE_TARGET: &str =
    "(unique_key) WHERE unique_key IS NOT NULL AND status IN ('queued', 'running', 'failed')";

/// A job row to insert.
#[derive(Debug, Clone)]
pub(crate) struct NewRow {
    pub id: Uuid,
    pub kind: String,
    pub queue: String,
    pub payload: Value,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub unique_key: Option<String>,
    /// Who enqueued it (`user:…`, `schedule:…`, `system`).
    pub created_by: String,
}

/// Filters for listing jobs.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub kind: Option<String>,
}

/// A stored log line.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct StoredLine {
    pub attempt: i32,
    pub line_no: i32,
    pub at: DateTime<Utc>,
    pub level: String,
    pub line: String,
}

pub(crate) fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.constraint() == Some(constraint))
}

/// The record of a job just inserted.
fn queued(row: &NewRow, created_at: DateTime<Utc>) -> Job {
    Job {
        id: row.id,
        kind: row.kind.clone(),
        queue: row.queue.clone(),
        status: JobStatus::Queued,
        payload: row.payload.clone(),
        result: None,
        error: None,
        attempts: 0,
        max_attempts: row.max_attempts,
        run_at: row.run_at,
        unique_key: row.unique_key.clone(),
        created_by: row.created_by.clone(),
        worker_id: None,
        cancel_requested_at: None,
        created_at,
        updated_at: created_at,
        started_at: None,
        finished_at: None,
    }
}

/// Makes the statement it prefixes commit without waiting for the disk
/// (`set_config(.., true)` holds for the statement's own transaction only;
/// the statement must read `quick`, hence `EXISTS (SELECT 1 FROM quick)`).
const QUICK_COMMIT: &str =
    "WITH quick AS MATERIALIZED (SELECT pg_catalog.set_config('synchronous_commit', 'off', true)) ";

/// How an insert commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// As the session does (durable when the commit returns, or part of a
    /// transaction of the caller's).
    Session,
    /// A transaction of its own that does not wait for the disk: its rows
    /// are seen by others at once and are durable once [`flush_wal`] has
    /// returned.
    Unflushed,
}

/// Inserts `rows` in `org`'s schema; rows whose unique key is held by an
/// unfinished job are skipped. Returns the rows inserted.
///
/// One job without a unique key (the API's common case) is recorded by
/// `public.insert_job` (migrations/public/V9): one prepared statement for
/// every org, one round trip.
pub(crate) async fn insert<'e>(
    executor: impl PgExecutor<'e>,
    org: OrgId,
    rows: &[NewRow],
    commit: Commit,
) -> Result<Vec<Job>, sqlx::Error> {
    if let [row] = rows
        && row.unique_key.is_none()
    {
        let created_at: DateTime<Utc> =
            sqlx::query_scalar("SELECT public.insert_job($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                .bind(org.as_uuid())
                .bind(row.id)
                .bind(&row.kind)
                .bind(&row.queue)
                .bind(&row.payload)
                .bind(row.max_attempts)
                .bind(row.run_at)
                .bind(&row.created_by)
                .bind(commit == Commit::Unflushed)
                .fetch_one(executor)
                .await?;
        return Ok(vec![queued(row, created_at)]);
    }
    let (quick, when_quick) = match commit {
        Commit::Session => ("", ""),
        Commit::Unflushed => (QUICK_COMMIT, " WHERE EXISTS (SELECT 1 FROM quick)"),
    };
    let sql = format!(
        "{quick}INSERT INTO {} (id, kind, queue, payload, max_attempts, run_at, unique_key, created_by) \
         SELECT u.id, u.kind, u.queue, u.payload, u.max_attempts, u.run_at, u.unique_key, u.created_by \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int4[], $6::timestamptz[], $7::text[], $8::text[]) \
           AS u(id, kind, queue, payload, max_attempts, run_at, unique_key, created_by){when_quick} \
         ON CONFLICT {UNIQUE_TARGET} DO NOTHING RETURNING {JOB_COLUMNS}",
        org.schema().qualify("jobs")
    );
    sqlx::query_as(AssertSqlSafe(sql))
        .persistent(false)
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.queue.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.payload.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.max_attempts).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.run_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.unique_key.as_deref()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.created_by.as_str()).collect::<Vec<_>>())
        .fetch_all(executor)
        .await
}

/// Returns once everything committed before the call is on disk, commits
/// made with [`Commit::Unflushed`] included.
///
/// A transaction that writes to the log waits, when it commits, for the
/// log to be flushed up to its commit record, which comes after every
/// commit before it. The smallest such write is a transactional logical
/// message (any `wal_level`, any role; nothing reads it unless logical
/// decoding runs). Its text is the same for every org, so it is prepared
/// once per connection.
pub(crate) async fn flush_wal(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_catalog.pg_logical_emit_message(true, 'orgstack.flush', '')")
        .execute(pool)
        .await?;
    Ok(())
}

/// The unfinished job holding `key`.
pub(crate) async fn by_unique_key(
    pool: &PgPool,
    schema: &SchemaName,
    key: &str,
) -> Result<Option<Job>, sqlx::Error> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM {} WHERE unique_key = $1 AND status IN ('queued', 'running', 'failed')",
        schema.qualify("jobs")
    );
    sqlx::query_as(AssertSqlSafe(sql)).persistent(false).bind(key).fetch_optional(pool).await
}

pub(crate) async fn get<'e>(
    executor: impl PgExecutor<'e>,
    schema: &SchemaName,
    id: Uuid,
) -> Result<Option<Job>, sqlx::Error> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM {} WHERE id = $1", schema.qualify("jobs"));
    sqlx::query_as(AssertSqlSafe(sql)).persistent(false).bind(id).fetch_optional(executor).await
}

pub(crate) async fn exists(
    pool: &PgPool,
    schema: &SchemaName,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {} WHERE id = $1)", schema.qualify("jobs"));
    sqlx::query_scalar(AssertSqlSafe(sql)).persistent(false).bind(id).fetch_one(pool).await
}

/// Newest first (ids are time-ordered), strictly before `after`. The status
/// (from the enum) and the limit are written into the statement, so each
/// shape gets a plan that can use the partial indexes.
pub(crate) async fn list(
    pool: &PgPool,
    schema: &SchemaName,
    filter: &JobFilter,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<super::JobSummary>, sqlx::Error> {
    let mut conditions = Vec::new();
    if let Some(status) = filter.status {
        conditions.push(format!("status = '{}'", status.as_str()));
    }
    let mut n = 0;
    if filter.kind.is_some() {
        n += 1;
        conditions.push(format!("kind = ${n}"));
    }
    if after.is_some() {
        n += 1;
        conditions.push(format!("id < ${n}"));
    }
    let filter_sql = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM {} {filter_sql} ORDER BY id DESC LIMIT {}",
        schema.qualify("jobs"),
        limit.min(1000)
    );
    let mut query = sqlx::query_as(AssertSqlSafe(sql)).persistent(false);
    if let Some(kind) = &filter.kind {
        query = query.bind(kind.as_str());
    }
    if let Some(after) = after {
        query = query.bind(after);
    }
    query.fetch_all(pool).await
}

/// Cancels a queued or retry-waiting job at once, or asks a running one to
/// stop. `None` when the job is missing or finished.
pub(crate) async fn cancel(
    tx: &mut Transaction<'_, Postgres>,
    schema: &SchemaName,
    id: Uuid,
    reason: &str,
) -> Result<Option<Job>, sqlx::Error> {
    let jobs = schema.qualify("jobs");
    let sql = format!(
        "UPDATE {jobs} SET status = 'cancelled', error = $2, finished_at = now(), updated_at = now() \
         WHERE id = $1 AND status IN ('queued', 'failed') RETURNING {JOB_COLUMNS}"
    );
    if let Some(job) = sqlx::query_as(AssertSqlSafe(sql))
        .persistent(false)
        .bind(id)
        .bind(reason)
        .fetch_optional(&mut **tx)
        .await?
    {
        return Ok(Some(job));
    }
    let sql = format!(
        "UPDATE {jobs} SET cancel_requested_at = COALESCE(cancel_requested_at, now()), updated_at = now() \
         WHERE id = $1 AND status = 'running' RETURNING {JOB_COLUMNS}"
    );
    sqlx::query_as(AssertSqlSafe(sql)).persistent(false).bind(id).fetch_optional(&mut **tx).await
}

/// Queues a dead, cancelled or retry-waiting job to run now. Dead and
/// cancelled jobs get a fresh set of attempts.
pub(crate) async fn requeue(
    tx: &mut Transaction<'_, Postgres>,
    schema: &SchemaName,
    id: Uuid,
) -> Result<Option<Job>, sqlx::Error> {
    let sql = format!(
        "UPDATE {} SET status = 'queued', \
           attempts = CASE WHEN status = 'failed' THEN attempts ELSE 0 END, \
           error = NULL, result = NULL, run_at = now(), started_at = NULL, finished_at = NULL, \
           cancel_requested_at = NULL, worker_id = NULL, updated_at = now() \
         WHERE id = $1 AND status IN ('dead', 'cancelled', 'failed') RETURNING {JOB_COLUMNS}",
        schema.qualify("jobs")
    );
    sqlx::query_as(AssertSqlSafe(sql)).persistent(false).bind(id).fetch_optional(&mut **tx).await
}

/// Deletes dead jobs (those in `ids`, or all finished before `before`) and
/// their logs. Returns `(id, kind, queue)` of each.
pub(crate) async fn delete_dead(
    tx: &mut Transaction<'_, Postgres>,
    schema: &SchemaName,
    ids: &[Uuid],
    before: Option<DateTime<Utc>>,
) -> Result<Vec<(Uuid, String, String)>, sqlx::Error> {
    let sql = format!(
        "DELETE FROM {} WHERE status = 'dead' \
           AND (cardinality($1::uuid[]) = 0 OR id = ANY($1)) \
           AND ($2::timestamptz IS NULL OR finished_at < $2) \
         RETURNING id, kind, queue",
        schema.qualify("jobs")
    );
    let deleted: Vec<(Uuid, String, String)> = sqlx::query_as(AssertSqlSafe(sql))
        .persistent(false)
        .bind(ids)
        .bind(before)
        .fetch_all(&mut **tx)
        .await?;
    delete_logs(tx, schema, &deleted.iter().map(|d| d.0).collect::<Vec<_>>()).await?;
    Ok(deleted)
}

async fn delete_logs(
    conn: &mut PgConnection,
    schema: &SchemaName,
    ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!("DELETE FROM {} WHERE job_id = ANY($1)", schema.qualify("job_logs"));
    sqlx::query(AssertSqlSafe(sql)).persistent(false).bind(ids).execute(conn).await?;
    Ok(())
}

pub(crate) async fn count_dead(
    pool: &PgPool,
    schema: &SchemaName,
    before: Option<DateTime<Utc>>,
) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "SELECT count(*) FROM {} WHERE status = 'dead' AND ($1::timestamptz IS NULL OR finished_at < $1)",
        schema.qualify("jobs")
    );
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
        .persistent(false)
        .bind(before)
        .fetch_one(pool)
        .await?;
    Ok(n.max(0) as u64)
}

pub(crate) async fn logs(
    pool: &PgPool,
    schema: &SchemaName,
    id: Uuid,
    after: Option<(i32, i32)>,
    limit: u32,
) -> Result<Vec<StoredLine>, sqlx::Error> {
    let (attempt, line_no) = after.unwrap_or((0, 0));
    let sql = format!(
        "SELECT attempt, line_no, at, level, line FROM {} \
         WHERE job_id = $1 AND (attempt, line_no) > ($2, $3) ORDER BY attempt, line_no LIMIT $4",
        schema.qualify("job_logs")
    );
    sqlx::query_as(AssertSqlSafe(sql))
        .persistent(false)
        .bind(id)
        .bind(attempt)
        .bind(line_no)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
}

/// A job a worker claimed: it runs now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Claimed {
    pub id: Uuid,
    pub kind: String,
    pub queue: String,
    pub payload: Value,
    pub attempts: i32,
    pub max_attempts: i32,
}

/// Marks the claimable jobs among `ids` running for `worker`: queued ones,
/// retry-waiting ones that are due, and running ones in `reclaimed` (their
/// worker was lost). Cancelled and finished jobs are not claimed.
///
/// Every job's start waits for this statement. It runs on one of the
/// worker's claim connections ([`CLAIM_SETUP`]), kept prepared there per
/// org (its text names the org's schema) with a generic plan: one round
/// trip, and no parsing or planning, which was more than half of it as a
/// simple query (0.32 against 0.15 ms by `pgbench` on an idle machine). The
/// first claim of an org on a connection prepares it (one round trip
/// more); the connection keeps the most recent orgs' statements.
pub(crate) async fn claim(
    conn: &mut PgConnection,
    schema: &SchemaName,
    worker: &str,
    ids: &[Uuid],
    reclaimed: &[Uuid],
) -> Result<Vec<Claimed>, sqlx::Error> {
    let sql = format!(
        "UPDATE {} SET status = 'running', attempts = attempts + 1, worker_id = $1, \
           started_at = now(), updated_at = now() \
         WHERE id = ANY($2) AND cancel_requested_at IS NULL AND attempts < max_attempts \
           AND ((status IN ('queued', 'failed') AND run_at <= now() + interval '1 second') \
                OR (status = 'running' AND id = ANY($3))) \
         RETURNING id, kind, queue, payload, attempts, max_attempts",
        schema.qualify("jobs"),
    );
    sqlx::query_as(AssertSqlSafe(sql)).bind(worker).bind(ids).bind(reclaimed).fetch_all(conn).await
}

/// How the worker's claim connections are set up (besides the empty
/// `search_path` every application connection has): claims committed without waiting
/// for the disk (a claim lost in a crash only means the job runs again,
/// which at-least-once delivery allows); the generic plan from the first
/// run of a claim, as every claim is the same primary-key lookup; and no
/// sequential scans, because that first run may be on an org's empty
/// table, where a scan looks cheaper than the index, and the plan is kept
/// while the table grows.
pub(crate) const CLAIM_SETUP: &str = "SET synchronous_commit = off; \
     SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off";

/// How the worker's outcome connections are set up (see [`finish`]): its
/// one join is a nested loop over the finished jobs, each found by its
/// primary key. Commits wait for the disk as on the pool: a recorded
/// outcome is never lost.
pub(crate) const OUTCOME_SETUP: &str =
    "SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off";

/// The state of jobs a worker could not claim, to decide what to do with
/// their deliveries.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Unclaimed {
    pub id: Uuid,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub cancel_requested: bool,
}

pub(crate) async fn inspect(
    pool: &PgPool,
    schema: &SchemaName,
    ids: &[Uuid],
) -> Result<Vec<Unclaimed>, sqlx::Error> {
    let sql = format!(
        "SELECT id, status, attempts, max_attempts, run_at, cancel_requested_at IS NOT NULL AS cancel_requested \
         FROM {} WHERE id = ANY($1)",
        schema.qualify("jobs")
    );
    sqlx::query_as(AssertSqlSafe(sql)).persistent(false).bind(ids).fetch_all(pool).await
}

/// A state change a worker records when a run ends.
#[derive(Debug, Clone)]
pub(crate) struct Finish {
    pub id: Uuid,
    /// The attempt that ran (the row's `attempts` when it was claimed).
    pub attempt: i32,
    pub status: JobStatus,
    pub result: Option<Value>,
    pub error: Option<String>,
    /// The next attempt's time, for `failed`.
    pub run_at: Option<DateTime<Utc>>,
    /// 1 when the attempt does not count (the worker stopped it to shut
    /// down, and the job is queued again).
    pub refund: i32,
}

/// A job whose state a worker changed, for events.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Changed {
    pub id: Uuid,
    pub kind: String,
    pub queue: String,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// Stores log lines and records finished runs in one statement (one round
/// trip, one commit). Finishes are fenced on the attempt: a run whose job
/// was meanwhile taken over (or cancelled and requeued) changes nothing.
/// Returns the jobs changed.
///
/// Runs on the worker's outcome connections ([`OUTCOME_SETUP`]), because
/// its plan must be a primary-key lookup per job whatever the statistics
/// say. Statistics taken while a backlog was all queued say that no job
/// runs, and the planner then reads every index entry for `status =
/// 'running'` (`jobs_unfinished_idx`), which holds one per job claimed
/// since the last vacuum: 126 ms per statement after 150,000 claims, and
/// the drain of a 1,000,000 backlog fell to a third of its rate. The
/// status test is written so that index cannot serve it (`IS TRUE`), and
/// the connections allow neither sequential scans nor hash or merge joins
/// (without them a small table was scanned whole for every statement).
pub(crate) async fn finish<'e>(
    executor: impl PgExecutor<'e>,
    schema: &SchemaName,
    lines: &[super::handler::LogLine],
    done: &[Finish],
) -> Result<Vec<Changed>, sqlx::Error> {
    if lines.is_empty() && done.is_empty() {
        return Ok(Vec::new());
    }
    let logs = if lines.is_empty() {
        String::new()
    } else {
        format!(
            "logs AS (INSERT INTO {} (job_id, attempt, line_no, at, level, line) \
               SELECT * FROM unnest($8::uuid[], $9::int4[], $10::int4[], $11::timestamptz[], $12::text[], $13::text[]) \
               ON CONFLICT DO NOTHING), ",
            schema.qualify("job_logs")
        )
    };
    let sql = format!(
        "WITH {logs}done AS (UPDATE {} AS j SET status = u.status, result = u.result, error = u.error, \
           run_at = COALESCE(u.run_at, j.run_at), attempts = j.attempts - u.refund, worker_id = NULL, \
           updated_at = now(), \
           started_at = CASE WHEN u.status = 'queued' THEN NULL ELSE j.started_at END, \
           finished_at = CASE WHEN u.status IN ('succeeded', 'cancelled', 'dead') THEN now() END \
         FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::jsonb[], $5::text[], $6::timestamptz[], $7::int4[]) \
           AS u(id, attempt, status, result, error, run_at, refund) \
         WHERE j.id = u.id AND (j.status = 'running') IS TRUE AND j.attempts = u.attempt \
         RETURNING j.id, j.kind, j.queue, j.status, j.attempts, j.max_attempts, j.run_at, j.error, j.updated_at) \
         SELECT * FROM done",
        schema.qualify("jobs")
    );
    let mut query = sqlx::query_as(AssertSqlSafe(sql))
        .persistent(false)
        .bind(done.iter().map(|d| d.id).collect::<Vec<_>>())
        .bind(done.iter().map(|d| d.attempt).collect::<Vec<_>>())
        .bind(done.iter().map(|d| d.status.as_str()).collect::<Vec<_>>())
        .bind(done.iter().map(|d| d.result.clone()).collect::<Vec<_>>())
        .bind(done.iter().map(|d| d.error.as_deref()).collect::<Vec<_>>())
        .bind(done.iter().map(|d| d.run_at).collect::<Vec<_>>())
        .bind(done.iter().map(|d| d.refund).collect::<Vec<_>>());
    if !lines.is_empty() {
        query = query
            .bind(lines.iter().map(|l| l.job_id).collect::<Vec<_>>())
            .bind(
                lines
                    .iter()
                    .map(|l| i32::try_from(l.attempt).unwrap_or(i32::MAX))
                    .collect::<Vec<_>>(),
            )
            .bind(
                lines
                    .iter()
                    .map(|l| i32::try_from(l.line_no).unwrap_or(i32::MAX))
                    .collect::<Vec<_>>(),
            )
            .bind(lines.iter().map(|l| l.at).collect::<Vec<_>>())
            .bind(lines.iter().map(|l| l.level.as_str()).collect::<Vec<_>>())
            .bind(lines.iter().map(|l| l.line.as_str()).collect::<Vec<_>>());
    }
    query.fetch_all(executor).await
}

/// Ends running jobs that cannot run on: cancelled ones whose worker was
/// lost, and those whose worker was lost on their last attempt. (The status
/// test is written as in [`finish`], for the same reason.)
pub(crate) async fn end_lost(
    pool: &PgPool,
    schema: &SchemaName,
    ids: &[Uuid],
    status: JobStatus,
    error: &str,
) -> Result<Vec<Changed>, sqlx::Error> {
    let sql = format!(
        "UPDATE {} SET status = $2, error = $3, worker_id = NULL, finished_at = now(), updated_at = now() \
         WHERE id = ANY($1) AND (status = 'running') IS TRUE \
         RETURNING id, kind, queue, status, attempts, max_attempts, run_at, error, updated_at",
        schema.qualify("jobs")
    );
    sqlx::query_as(AssertSqlSafe(sql))
        .persistent(false)
        .bind(ids)
        .bind(status.as_str())
        .bind(error)
        .fetch_all(pool)
        .await
}

/// An unfinished job the recovery sweep looks at.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Pending {
    pub id: Uuid,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    pub queue: String,
    pub worker_id: Option<String>,
}

/// Unfinished jobs not changed for `grace`, oldest change first.
pub(crate) async fn pending(
    pool: &PgPool,
    schema: &SchemaName,
    grace: std::time::Duration,
    limit: i64,
) -> Result<Vec<Pending>, sqlx::Error> {
    let sql = format!(
        "SELECT id, status, queue, worker_id FROM {} \
         WHERE status IN ('queued', 'running', 'failed') AND updated_at < now() - $1 \
         ORDER BY updated_at LIMIT $2",
        schema.qualify("jobs")
    );
    sqlx::query_as(AssertSqlSafe(sql))
        .persistent(false)
        .bind(grace)
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// Puts running jobs whose worker is gone back to queued (the attempt
/// counts); returns those changed. (The status test is written as in
/// [`finish`], for the same reason.)
pub(crate) async fn requeue_orphans(
    pool: &PgPool,
    schema: &SchemaName,
    orphans: &[(Uuid, String)],
) -> Result<Vec<Job>, sqlx::Error> {
    let sql = format!(
        "UPDATE {} AS j SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END, \
           error = CASE WHEN j.attempts >= j.max_attempts THEN 'the worker running its last attempt was lost' ELSE j.error END, \
           finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END, \
           worker_id = NULL, run_at = now(), updated_at = now() \
         FROM unnest($1::uuid[], $2::text[]) AS o(id, worker_id) \
         WHERE j.id = o.id AND (j.status = 'running') IS TRUE AND j.worker_id = o.worker_id \
         RETURNING {}",
        schema.qualify("jobs"),
        JOB_COLUMNS.split(", ").map(|c| format!("j.{c}")).collect::<Vec<_>>().join(", ")
    );
    sqlx::query_as(AssertSqlSafe(sql))
        .persistent(false)
        .bind(orphans.iter().map(|o| o.0).collect::<Vec<_>>())
        .bind(orphans.iter().map(|o| o.1.as_str()).collect::<Vec<_>>())
        .fetch_all(pool)
        .await
}

/// The jobs among `ids` (for re-dispatch).
pub(crate) async fn by_ids(
    pool: &PgPool,
    schema: &SchemaName,
    ids: &[Uuid],
) -> Result<Vec<Job>, sqlx::Error> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM {} WHERE id = ANY($1)", schema.qualify("jobs"));
    sqlx::query_as(AssertSqlSafe(sql)).persistent(false).bind(ids).fetch_all(pool).await
}

/// Dead jobs: `(id, queue, finished_at)`, for rebuilding the dead sets.
pub(crate) async fn dead(
    pool: &PgPool,
    schema: &SchemaName,
) -> Result<Vec<(Uuid, String, Option<DateTime<Utc>>)>, sqlx::Error> {
    let sql = format!(
        "SELECT id, queue, finished_at FROM {} WHERE status = 'dead'",
        schema.qualify("jobs")
    );
    sqlx::query_as(AssertSqlSafe(sql)).persistent(false).fetch_all(pool).await
}

/// Deletes succeeded and cancelled jobs finished before `before` (at most
/// `limit`), with their logs; returns how many.
pub(crate) async fn prune(
    pool: &PgPool,
    schema: &SchemaName,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let jobs = schema.qualify("jobs");
    let sql = format!(
        "DELETE FROM {jobs} WHERE id IN (SELECT id FROM {jobs} \
           WHERE status IN ('succeeded', 'cancelled') AND finished_at < $1 LIMIT $2) RETURNING id"
    );
    let mut tx = pool.begin().await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(AssertSqlSafe(sql))
        .persistent(false)
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    delete_logs(&mut tx, schema, &ids).await?;
    tx.commit().await?;
    Ok(ids.len() as u64)
}
