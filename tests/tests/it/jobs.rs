//! Background jobs against real PostgreSQL and Redis: delivery survives a
//! killed worker and a Redis that lost its data, each job runs once,
//! retries back off, and delayed, unique, cancelled and timed-out jobs and
//! graceful shutdown behave.

use std::time::{Duration, Instant};

use fred::prelude::KeysInterface;
use futures::TryStreamExt;
use orgstack::accounts::Actor;
use orgstack::jobs::worker::WorkerOptions;
use orgstack::jobs::{Job, JobStatus, Jobs, NewJob};
use orgstack::queue::QueueName;
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use tenancy::Org;
use uuid::Uuid;

use crate::eventually;
use orgstack_tests::{TestContext, TestWorker};

async fn setup() -> (TestContext, Jobs, Org) {
    let ctx = TestContext::new().await;
    let jobs = ctx.jobs();
    let org = ctx.org("acme").await;
    (ctx, jobs, org)
}

fn sleep(payload: Value) -> NewJob {
    NewJob::new("sleep", payload)
}

async fn enqueue(jobs: &Jobs, org: &Org, job: NewJob) -> Job {
    jobs.enqueue(org, &Actor::System, job).await.expect("enqueue").job
}

async fn get(jobs: &Jobs, org: &Org, id: Uuid) -> Job {
    jobs.get(org, id).await.expect("job")
}

/// Waits until the job is in `status` (a failure bound, not a figure).
async fn wait_status(jobs: &Jobs, org: &Org, id: Uuid, status: JobStatus) -> Job {
    let reached = eventually(Duration::from_secs(30), || async {
        jobs.get(org, id).await.is_ok_and(|j| j.status == status)
    })
    .await;
    let job = get(jobs, org, id).await;
    assert!(reached, "job never became {status}: {job:?}");
    job
}

/// `(attempt, line_no, line)` of every stored line of a job.
async fn log_lines(ctx: &TestContext, org: &Org, id: Uuid) -> Vec<(i32, i32, String)> {
    let sql = format!(
        "SELECT attempt, line_no, line FROM {} WHERE job_id = $1 ORDER BY attempt, line_no",
        org.schema().qualify("job_logs")
    );
    sqlx::query_as(AssertSqlSafe(sql)).bind(id).fetch_all(&ctx.pool).await.expect("logs")
}

#[tokio::test]
async fn a_job_runs_once_and_its_record_tells_how_it_went() {
    let (ctx, jobs, org) = setup().await;
    let job =
        enqueue(&jobs, &org, sleep(json!({ "ms": 10, "lines": 2, "result": { "ok": true } })))
            .await;
    assert_eq!((job.status, job.attempts, job.queue.as_str()), (JobStatus::Queued, 0, "default"));
    assert_eq!(job.created_by, "system");

    let worker = TestWorker::start(&jobs, 4);
    let done = wait_status(&jobs, &org, job.id, JobStatus::Succeeded).await;
    assert_eq!(done.attempts, 1);
    assert_eq!(done.result, Some(json!({ "ok": true })));
    assert!(done.started_at.is_some_and(|s| s >= done.created_at));
    assert!(done.finished_at >= done.started_at);
    assert_eq!(done.worker_id, None, "a finished job belongs to no worker");
    // Logs are stored with the finish, in order.
    let lines = log_lines(&ctx, &org, job.id).await;
    assert_eq!(
        lines.iter().map(|(a, n, _)| (*a, *n)).collect::<Vec<_>>(),
        [(1, 1), (1, 2), (1, 3)]
    );
    assert!(lines[0].2.contains("attempt 1 of 5"), "{lines:?}");
    let report = worker.stop().await;
    assert_eq!((report.processed, report.failed), (1, 0));
    // Nothing is left in Redis for it.
    let stats = jobs.queue_stats().await.expect("stats");
    let default = stats.iter().find(|q| q.name.as_str() == "default").expect("default queue");
    assert_eq!((default.depth, default.in_flight, default.scheduled), (0, 0, 0));
    let index: i64 =
        fred::prelude::SetsInterface::scard(&ctx.redis, ctx.keys.queue_index("default"))
            .await
            .expect("scard");
    assert_eq!(index, 0, "finished jobs leave the queue index");
}

#[tokio::test]
async fn unknown_kinds_and_bad_payloads_are_refused_at_enqueue() {
    let (ctx, jobs, org) = setup().await;
    let err = jobs
        .enqueue(&org, &Actor::System, NewJob::new("nope", Value::Null))
        .await
        .expect_err("unknown");
    assert_eq!(err.to_string(), "unknown job kind 'nope'");
    let err = jobs
        .enqueue(&org, &Actor::System, sleep(json!({ "ms": "soon" })))
        .await
        .expect_err("bad payload");
    assert!(err.to_string().starts_with("invalid payload: sleep payload"), "{err}");
    let err = jobs
        .enqueue(&org, &Actor::System, NewJob { max_attempts: Some(0), ..sleep(Value::Null) })
        .await
        .expect_err("attempts");
    assert_eq!(err.to_string(), "max_attempts must be 1 to 100");
    assert!(ctx.job_counts(&org).await.is_empty(), "nothing recorded");
}

#[tokio::test]
async fn ten_thousand_jobs_through_three_workers_each_run_exactly_once() {
    let (ctx, jobs, org) = setup().await;
    for _ in 0..10 {
        let batch: Vec<NewJob> = (0..1000).map(|_| sleep(json!({ "lines": 1 }))).collect();
        jobs.enqueue_batch(&org, &Actor::System, batch).await.expect("batch");
    }
    // Three workers, each with its own connections, as three processes have.
    let workers: Vec<TestWorker> = (0..3)
        .map(|_| {
            let own = ctx.jobs();
            TestWorker::start(&own, 32)
        })
        .collect();
    ctx.drain(&org, Duration::from_secs(120)).await;
    let mut processed = 0;
    for worker in workers {
        processed += worker.stop().await.processed;
    }
    let sql = format!(
        "SELECT count(*) FILTER (WHERE status = 'succeeded' AND attempts = 1), count(*), count(DISTINCT worker_id) FROM {}",
        org.schema().qualify("jobs")
    );
    let (once, total, _): (i64, i64, i64) =
        sqlx::query_as(AssertSqlSafe(sql)).fetch_one(&ctx.pool).await.expect("count");
    assert_eq!((once, total), (10_000, 10_000), "every job claimed and run exactly once");
    assert_eq!(processed, 10_000, "and the workers ran 10,000 runs between them");
    let sql = format!("SELECT count(*) FROM {}", org.schema().qualify("job_logs"));
    let lines: i64 =
        sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&ctx.pool).await.expect("logs");
    assert_eq!(lines, 20_000, "two lines per run, one run per job");
}

#[tokio::test]
async fn after_redis_loses_its_data_the_sweep_runs_every_accepted_job_exactly_once() {
    let (ctx, jobs, org) = setup().await;
    // Some jobs finished before the loss: they must not run again.
    let early: Vec<Uuid> = jobs
        .enqueue_batch(&org, &Actor::System, (0..5).map(|_| sleep(Value::Null)).collect())
        .await
        .expect("early")
        .into_iter()
        .map(|e| e.job.id)
        .collect();
    let worker = TestWorker::start(&jobs, 4);
    ctx.drain(&org, Duration::from_secs(30)).await;
    worker.stop().await;

    let accepted: Vec<Uuid> = jobs
        .enqueue_batch(
            &org,
            &Actor::System,
            (0..100).map(|_| sleep(json!({ "lines": 1 }))).collect(),
        )
        .await
        .expect("accepted")
        .into_iter()
        .map(|e| e.job.id)
        .collect();
    // Redis loses every key of this deployment (FLUSHDB of our prefix).
    let keys: Vec<String> = ctx
        .redis
        .scan_buffered(ctx.keys.all_pattern(), Some(1000), None)
        .try_filter_map(|k| async move { Ok(k.as_str().map(str::to_owned)) })
        .try_collect()
        .await
        .expect("scan");
    assert!(!keys.is_empty());
    let _: i64 = ctx.redis.del(keys).await.expect("flush");

    let report = orgstack::jobs::sweep::recover(&jobs, Duration::ZERO, true).await.expect("sweep");
    assert_eq!((report.redispatched, report.orphans), (100, 0), "{report:?}");
    // A second sweep finds everything held again: nothing twice.
    let again = orgstack::jobs::sweep::recover(&jobs, Duration::ZERO, true).await.expect("sweep");
    assert_eq!(again.redispatched, 0, "{again:?}");

    let worker = TestWorker::start(&jobs, 8);
    ctx.drain(&org, Duration::from_secs(60)).await;
    worker.stop().await;
    let ids: Vec<Uuid> = accepted.iter().chain(&early).copied().collect();
    let sql = format!(
        "SELECT count(*) FROM {} WHERE id = ANY($1) AND status = 'succeeded' AND attempts = 1",
        org.schema().qualify("jobs")
    );
    let once: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(&ids)
        .fetch_one(&ctx.pool)
        .await
        .expect("count");
    assert_eq!(once, 105, "the 100 ran once; the 5 finished before did not run again");
}

#[tokio::test]
async fn retries_back_off_in_order_then_the_job_is_dead_and_can_be_retried() {
    let (ctx, jobs, org) = setup().await;
    let worker = TestWorker::start(&jobs, 4);
    // Fails attempts 1-3, succeeds on the 4th.
    let job = enqueue(
        &jobs,
        &org,
        NewJob { max_attempts: Some(4), ..sleep(json!({ "fail_attempts": 3 })) },
    )
    .await;
    let done = wait_status(&jobs, &org, job.id, JobStatus::Succeeded).await;
    assert_eq!(done.attempts, 4);
    let sql = format!(
        "SELECT attempt, min(at), max(at) FROM {} WHERE job_id = $1 GROUP BY attempt ORDER BY attempt",
        org.schema().qualify("job_logs")
    );
    let spans: Vec<(i32, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as(AssertSqlSafe(sql)).bind(job.id).fetch_all(&ctx.pool).await.expect("spans");
    assert_eq!(spans.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
    // Each retry waited at least half its exponential delay (50 ms, 100 ms,
    // 200 ms before jitter): the gaps are ordered and never early.
    for (k, pair) in spans.windows(2).enumerate() {
        let gap = (pair[1].1 - pair[0].2).to_std().expect("ordered");
        let least = Duration::from_millis(25 << k);
        assert!(gap >= least, "retry {} came after {gap:?}, before its backoff {least:?}", k + 2);
    }

    // No attempts left: dead, counted in the queue's dead set.
    let doomed = enqueue(
        &jobs,
        &org,
        NewJob {
            max_attempts: Some(2),
            ..sleep(json!({ "fail_until": chrono::Utc::now() + chrono::Duration::seconds(2) }))
        },
    )
    .await;
    let dead = wait_status(&jobs, &org, doomed.id, JobStatus::Dead).await;
    assert_eq!(dead.attempts, 2);
    assert_eq!(dead.error.as_deref(), Some("failing attempt 2 as asked"));
    let dead_count = |jobs: Jobs| async move {
        jobs.queue_stats()
            .await
            .expect("stats")
            .into_iter()
            .find(|q| q.name.as_str() == "default")
            .map_or(0, |q| q.dead)
    };
    assert_eq!(dead_count(jobs.clone()).await, 1);

    // Retried once the cause is gone: a fresh set of attempts, and it runs.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let retried = jobs.retry(&org, &Actor::System, doomed.id).await.expect("retry");
    assert_eq!((retried.status, retried.attempts), (JobStatus::Queued, 0));
    assert_eq!(dead_count(jobs.clone()).await, 0, "no longer dead");
    let done = wait_status(&jobs, &org, doomed.id, JobStatus::Succeeded).await;
    assert_eq!(done.attempts, 1);
    // A permanent error is dead at once.
    let permanent =
        enqueue(&jobs, &org, sleep(json!({ "fail_attempts": 1, "permanent": true }))).await;
    let dead = wait_status(&jobs, &org, permanent.id, JobStatus::Dead).await;
    assert_eq!(dead.attempts, 1, "no retry after a permanent error");
    worker.stop().await;
}

#[tokio::test]
async fn a_run_that_times_out_counts_as_a_failed_attempt() {
    let (_ctx, jobs, org) = setup().await;
    let worker = TestWorker::start(&jobs, 2);
    let started = Instant::now();
    let job = enqueue(
        &jobs,
        &org,
        NewJob { max_attempts: Some(1), ..sleep(json!({ "ms": 60_000, "timeout_ms": 200 })) },
    )
    .await;
    let dead = wait_status(&jobs, &org, job.id, JobStatus::Dead).await;
    assert!(started.elapsed() < Duration::from_secs(30), "the run was cut short");
    assert_eq!(dead.error.as_deref(), Some("timed out after 0.2 s"));
    worker.stop().await;
}

#[tokio::test]
async fn a_unique_key_returns_the_unfinished_job_and_frees_up_when_it_ends() {
    let (ctx, jobs, org) = setup().await;
    let unique = |ms: u64| NewJob {
        unique_key: Some("report:2026-12".into()),
        ..sleep(json!({ "ms": ms }))
    };
    let first = jobs.enqueue(&org, &Actor::System, unique(10)).await.expect("first");
    let second = jobs.enqueue(&org, &Actor::System, unique(10)).await.expect("second");
    assert!(first.created && !second.created);
    assert_eq!(second.job.id, first.job.id);
    // In one batch too.
    let batch = jobs
        .enqueue_batch(&org, &Actor::System, vec![unique(10), unique(10)])
        .await
        .expect("batch");
    assert!(batch.iter().all(|e| !e.created && e.job.id == first.job.id));
    assert_eq!(ctx.job_counts(&org).await, [("queued".to_owned(), 1)]);

    let worker = TestWorker::start(&jobs, 2);
    wait_status(&jobs, &org, first.job.id, JobStatus::Succeeded).await;
    let third = jobs.enqueue(&org, &Actor::System, unique(10)).await.expect("third");
    assert!(third.created, "the key is free once its job finished");
    assert_ne!(third.job.id, first.job.id);
    ctx.drain(&org, Duration::from_secs(30)).await;
    worker.stop().await;
}

#[tokio::test]
async fn a_delayed_job_waits_for_its_time() {
    let (ctx, jobs, org) = setup().await;
    let worker = TestWorker::start(&jobs, 2);
    let run_at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let job = enqueue(&jobs, &org, NewJob { run_at: Some(run_at), ..sleep(Value::Null) }).await;
    let stats = jobs.queue_stats().await.expect("stats");
    assert_eq!(stats.iter().map(|q| q.scheduled).sum::<u64>(), 1, "waits in the scheduled set");
    let done = wait_status(&jobs, &org, job.id, JobStatus::Succeeded).await;
    assert!(done.started_at.expect("started") >= run_at, "not before its time: {done:?}");
    ctx.drain(&org, Duration::from_secs(10)).await;
    worker.stop().await;
}

#[tokio::test]
async fn a_cancelled_queued_job_never_starts_and_a_running_one_stops() {
    let (ctx, jobs, org) = setup().await;
    let queued = enqueue(&jobs, &org, sleep(json!({ "ms": 10 }))).await;
    let cancelled = jobs.cancel(&org, &Actor::System, queued.id).await.expect("cancel");
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert_eq!(cancelled.error.as_deref(), Some("cancelled by system"));

    let worker = TestWorker::start(&jobs, 2);
    let running = enqueue(&jobs, &org, sleep(json!({ "ms": 60_000 }))).await;
    wait_status(&jobs, &org, running.id, JobStatus::Running).await;
    let asked = jobs.cancel(&org, &Actor::System, running.id).await.expect("cancel running");
    assert_eq!(asked.status, JobStatus::Running);
    assert!(asked.cancel_requested_at.is_some());
    let stopped = wait_status(&jobs, &org, running.id, JobStatus::Cancelled).await;
    assert_eq!(stopped.attempts, 1);
    // The queued one never ran, even with a worker up.
    ctx.drain(&org, Duration::from_secs(10)).await;
    let never = get(&jobs, &org, queued.id).await;
    assert_eq!((never.status, never.attempts, never.started_at), (JobStatus::Cancelled, 0, None));
    // Finished jobs cannot be cancelled.
    let err = jobs.cancel(&org, &Actor::System, queued.id).await.expect_err("final");
    assert_eq!(
        err.to_string(),
        "the job is cancelled; cancel needs it to be queued, failed or running"
    );
    worker.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_hands_back_unfinished_jobs_at_once() {
    let (ctx, jobs, org) = setup().await;
    let worker = TestWorker::start_with(
        &jobs,
        WorkerOptions {
            queues: vec![(QueueName::default_queue(), 1)],
            concurrency: 1,
            autoscale: None,
            shutdown_timeout: Duration::from_millis(300),
        },
    );
    let ids: Vec<Uuid> = jobs
        .enqueue_batch(
            &org,
            &Actor::System,
            (0..3).map(|_| sleep(json!({ "ms": 30_000 }))).collect(),
        )
        .await
        .expect("batch")
        .into_iter()
        .map(|e| e.job.id)
        .collect();
    wait_status(&jobs, &org, ids[0], JobStatus::Running).await;
    let report = worker.stop().await;
    // One was running (stopped after the timeout), two were fetched and
    // waiting: all three are back in the stream, not stuck in the worker.
    assert_eq!(report.handed_back, 3, "{report:?}");
    let stats = jobs.queue_stats().await.expect("stats");
    let default = stats.iter().find(|q| q.name.as_str() == "default").expect("default");
    assert_eq!((default.depth, default.in_flight), (3, 0));
    let interrupted = get(&jobs, &org, ids[0]).await;
    assert_eq!(
        (interrupted.status, interrupted.attempts),
        (JobStatus::Queued, 0),
        "the interrupted attempt does not count"
    );

    // Another worker takes them at once (no visibility timeout to wait for).
    for id in &ids {
        jobs.cancel(&org, &Actor::System, *id).await.expect("cancel the long ones");
    }
    let short = enqueue(&jobs, &org, sleep(json!({ "ms": 10 }))).await;
    let next = TestWorker::start(&jobs, 2);
    wait_status(&jobs, &org, short.id, JobStatus::Succeeded).await;
    ctx.drain(&org, Duration::from_secs(10)).await;
    next.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_lets_running_jobs_finish_within_the_timeout() {
    let (_ctx, jobs, org) = setup().await;
    let worker = TestWorker::start(&jobs, 2);
    let job = enqueue(&jobs, &org, sleep(json!({ "ms": 500 }))).await;
    wait_status(&jobs, &org, job.id, JobStatus::Running).await;
    let report = worker.stop().await;
    assert_eq!((report.processed, report.handed_back), (1, 0));
    assert_eq!(get(&jobs, &org, job.id).await.status, JobStatus::Succeeded);
}

#[tokio::test]
async fn a_worker_killed_mid_job_loses_nothing_the_job_runs_again_and_finishes_once() {
    let (ctx, jobs, org) = setup().await;
    let job = enqueue(&jobs, &org, sleep(json!({ "ms": 4000, "lines": 4 }))).await;
    let mut first = crate::spawn_cli(&ctx, &["worker", "--concurrency", "2"]);
    let running = wait_status(&jobs, &org, job.id, JobStatus::Running).await;
    let lost_worker = running.worker_id.clone().expect("claimed by a worker");
    nix::sys::signal::kill(first.pid(), nix::sys::signal::Signal::SIGKILL).expect("kill -9");
    first.child.wait().expect("reaped");

    let second = TestWorker::start(&ctx.jobs(), 2);
    let done = wait_status(&jobs, &org, job.id, JobStatus::Succeeded).await;
    assert_eq!(done.attempts, 2, "run again after the visibility timeout");
    assert_ne!(Some(lost_worker), done.worker_id);
    // Exactly one job, finished once, nothing left running or queued.
    assert_eq!(ctx.job_counts(&org).await, [("succeeded".to_owned(), 1)]);
    let attempts: Vec<i32> = log_lines(&ctx, &org, job.id)
        .await
        .iter()
        .filter(|l| l.2.starts_with("attempt"))
        .map(|l| l.0)
        .collect();
    assert_eq!(attempts, [2], "the killed attempt's unsaved lines are gone; the second logged");
    let stats = jobs.queue_stats().await.expect("stats");
    let default = stats.iter().find(|q| q.name.as_str() == "default").expect("default");
    assert_eq!((default.depth, default.in_flight), (0, 0));
    second.stop().await;
}

#[tokio::test]
async fn workers_publish_heartbeats_and_leave_when_stopped() {
    let (ctx, jobs, _org) = setup().await;
    let worker = TestWorker::start(&jobs, 3);
    let id = worker.id.clone();
    let seen = eventually(Duration::from_secs(10), || async {
        orgstack::jobs::worker::list_workers(&jobs)
            .await
            .is_ok_and(|w| w.iter().any(|w| w.id == id && !w.stale))
    })
    .await;
    assert!(seen, "the worker appears");
    let listed = orgstack::jobs::worker::list_workers(&jobs).await.expect("list");
    let me = listed.iter().find(|w| w.id == id).expect("listed");
    assert_eq!((me.concurrency, me.pid, me.state.as_str()), (3, std::process::id(), "running"));
    assert_eq!(me.queues, ["default:1"]);
    let ttl: i64 = ctx.redis.ttl(ctx.keys.worker(&id)).await.expect("ttl");
    assert!(ttl > 0, "heartbeats expire");
    worker.stop().await;
    let listed = orgstack::jobs::worker::list_workers(&jobs).await.expect("list");
    assert!(listed.iter().all(|w| w.id != id), "a stopped worker removes itself");
}

#[tokio::test]
async fn queue_weights_keep_a_busy_queue_from_starving_another() {
    let (ctx, jobs, org) = setup().await;
    let busy = QueueName::parse("busy").expect("name");
    let light = QueueName::parse("light").expect("name");
    let on =
        |queue: &QueueName| NewJob { queue: Some(queue.clone()), ..sleep(json!({ "ms": 20 })) };
    jobs.enqueue_batch(&org, &Actor::System, (0..200).map(|_| on(&busy)).collect())
        .await
        .expect("busy");
    let light_ids: Vec<Uuid> = jobs
        .enqueue_batch(&org, &Actor::System, (0..10).map(|_| on(&light)).collect())
        .await
        .expect("light")
        .into_iter()
        .map(|e| e.job.id)
        .collect();
    let worker = TestWorker::start_with(
        &jobs,
        WorkerOptions {
            queues: vec![(busy.clone(), 1), (light.clone(), 1)],
            concurrency: 2,
            autoscale: None,
            shutdown_timeout: Duration::from_secs(10),
        },
    );
    for id in &light_ids {
        wait_status(&jobs, &org, *id, JobStatus::Succeeded).await;
    }
    // The light queue finished while most of the busy one still waited.
    let sql = format!(
        "SELECT count(*) FROM {} WHERE queue = 'busy' AND status = 'succeeded'",
        org.schema().qualify("jobs")
    );
    let busy_done: i64 =
        sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&ctx.pool).await.expect("count");
    assert!(busy_done < 100, "{busy_done} busy jobs ran before the 10 light ones finished");
    worker.stop().await;
}

#[tokio::test]
async fn autoscale_grows_while_work_waits_and_respects_its_maximum() {
    let (ctx, jobs, org) = setup().await;
    jobs.enqueue_batch(
        &org,
        &Actor::System,
        (0..40).map(|_| sleep(json!({ "ms": 2000 }))).collect(),
    )
    .await
    .expect("batch");
    let worker = TestWorker::start_with(
        &jobs,
        WorkerOptions {
            queues: vec![(QueueName::default_queue(), 1)],
            concurrency: 1,
            autoscale: Some((6, 1)),
            shutdown_timeout: Duration::from_millis(100),
        },
    );
    let sql =
        format!("SELECT count(*) FROM {} WHERE status = 'running'", org.schema().qualify("jobs"));
    let grew = eventually(Duration::from_secs(20), || async {
        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.clone()))
            .fetch_one(&ctx.pool)
            .await
            .is_ok_and(|n| n == 6)
    })
    .await;
    assert!(grew, "grew to 6 slots");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let running: i64 =
        sqlx::query_scalar(AssertSqlSafe(sql.clone())).fetch_one(&ctx.pool).await.expect("count");
    assert!(running <= 6, "never beyond the maximum: {running}");
    worker.stop().await;
}

#[tokio::test]
async fn platform_jobs_run_from_redis_alone_and_retry() {
    let (_ctx, jobs, _org) = setup().await;
    let worker = TestWorker::start(&jobs, 4);
    jobs.enqueue_platform_batch("noop", (0..50).map(|_| Value::Null).collect())
        .await
        .expect("batch");
    jobs.enqueue_platform(NewJob { max_attempts: Some(2), ..sleep(json!({ "fail_attempts": 5 })) })
        .await
        .expect("failing");
    let settled = eventually(Duration::from_secs(20), || async {
        jobs.queue_stats().await.is_ok_and(|s| {
            s.iter().any(|q| {
                q.name.as_str() == "default"
                    && q.dead == 1
                    && q.depth == 0
                    && q.in_flight == 0
                    && q.scheduled == 0
            })
        })
    })
    .await;
    assert!(
        settled,
        "50 ran, the failing one is dead after 2 attempts: {:?}",
        jobs.queue_stats().await
    );
    let report = worker.stop().await;
    assert_eq!((report.processed, report.failed), (52, 2));
}

#[test]
fn retry_delays_grow_and_never_shrink() {
    let config = orgstack::jobs::JobsConfig {
        retry_backoff: Duration::from_millis(100),
        retry_max: Duration::from_secs(5),
        ..Default::default()
    };
    let cap = Duration::from_secs(5);
    for attempt in 1..40u32 {
        let full = Duration::from_millis(100).saturating_mul(1 << (attempt - 1).min(31));
        let (lower, upper) = ((full / 2).min(cap), full.min(cap));
        let next_lower = full.min(cap);
        for _ in 0..50 {
            let delay = config.retry_delay(attempt);
            assert!(
                delay >= lower && delay <= upper,
                "attempt {attempt}: {delay:?} not in [{lower:?}, {upper:?}]"
            );
            assert!(delay <= next_lower, "the next delay can never be shorter");
        }
    }
    assert_eq!(config.retry_delay(39), cap);
}

#[tokio::test]
async fn jobs_queues_and_workers_from_the_command_line() {
    use crate::{run_cli, stderr, stdout};
    let (ctx, jobs, org) = setup().await;
    let cli = |args: &[&str]| run_cli(Some(&ctx), args, &[]);

    let out = cli(&[
        "jobs",
        "enqueue",
        "acme",
        "sleep",
        "--payload",
        r#"{"ms":10,"lines":1}"#,
        "--delay",
        "3600",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = stdout(&out).split_whitespace().nth(1).expect("id").to_owned();
    assert!(stdout(&out).starts_with(&format!("enqueued {id} (sleep) on queue default")));
    let out = cli(&["queues"]);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("default") && l.split_whitespace().nth(3) == Some("1")),
        "one scheduled:\n{}",
        stdout(&out)
    );
    let out = cli(&["jobs", "list", "--org", "acme", "--status", "queued"]);
    assert!(stdout(&out).contains(&id), "{}", stdout(&out));

    let out = cli(&["jobs", "cancel", "acme", &id]);
    assert_eq!(stdout(&out).trim(), format!("job {id} cancelled"));
    let out = cli(&["jobs", "retry", "acme", &id]);
    assert_eq!(stdout(&out).trim(), format!("job {id} queued again (0 of 5 attempts used)"));
    let worker = TestWorker::start(&jobs, 2);
    let id = id.parse().expect("uuid");
    wait_status(&jobs, &org, id, JobStatus::Succeeded).await;
    let out = cli(&["jobs", "show", "acme", &id.to_string(), "--logs"]);
    assert!(stdout(&out).contains("status:       succeeded"), "{}", stdout(&out));
    assert!(stdout(&out).contains("line 1 of 1"), "{}", stdout(&out));

    let doomed = enqueue(
        &jobs,
        &org,
        NewJob { max_attempts: Some(1), ..sleep(json!({ "fail_attempts": 1 })) },
    )
    .await;
    wait_status(&jobs, &org, doomed.id, JobStatus::Dead).await;
    let out = cli(&["jobs", "list", "--status", "dead", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed[0]["id"], doomed.id.to_string());
    assert_eq!(listed[0]["org"], "acme");
    let out = cli(&["workers"]);
    assert!(stdout(&out).contains(&worker.id), "{}", stdout(&out));
    assert!(stdout(&out).contains("1 worker(s), 1 live"), "{}", stdout(&out));
    let out = cli(&["jobs", "purge-dead"]);
    assert!(stdout(&out).contains("dry run: would delete 1 dead job(s)"), "{}", stdout(&out));
    assert_eq!(
        get(&jobs, &org, doomed.id).await.status,
        JobStatus::Dead,
        "a dry run deletes nothing"
    );
    let out = cli(&["jobs", "purge-dead", "--yes"]);
    assert!(stdout(&out).contains("deleted 1 dead job(s)"), "{}", stdout(&out));
    assert!(jobs.get(&org, doomed.id).await.is_err());

    // Paused queues are not fetched from.
    assert_eq!(cli(&["queues", "pause", "default"]).status.code(), Some(0));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let waiting = enqueue(&jobs, &org, sleep(Value::Null)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get(&jobs, &org, waiting.id).await.status, JobStatus::Queued, "paused");
    let out = cli(&["queues"]);
    assert!(
        stdout(&out).lines().any(|l| l.starts_with("default") && l.ends_with("paused")),
        "{}",
        stdout(&out)
    );
    assert_eq!(cli(&["queues", "resume", "default"]).status.code(), Some(0));
    wait_status(&jobs, &org, waiting.id, JobStatus::Succeeded).await;

    // Bad input names the problem.
    let out = cli(&["jobs", "enqueue", "acme", "nope"]);
    assert_eq!(
        (out.status.code(), stderr(&out).trim()),
        (Some(1), "error: unknown job kind 'nope'")
    );
    let out = cli(&["jobs", "enqueue", "acme", "noop", "--payload", "{oops"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error: --payload is not valid JSON"), "{}", stderr(&out));
    let out = cli(&["jobs", "list", "--status", "lost"]);
    assert_eq!(out.status.code(), Some(2), "bad usage");
    let out = cli(&["worker", "--queues", "Bad Name"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid queue name"), "{}", stderr(&out));
    worker.stop().await;
}

#[tokio::test]
async fn a_leading_scheduler_notices_that_redis_lost_its_data_and_recovers() {
    use orgstack::jobs::scheduler::{Scheduler, SchedulerOptions};
    let (ctx, jobs, org) = setup().await;
    let ids: Vec<Uuid> = jobs
        .enqueue_batch(&org, &Actor::System, (0..20).map(|_| sleep(Value::Null)).collect())
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| e.job.id)
        .collect();
    // Accepted a minute ago (past the sweep's grace for jobs being dispatched).
    let sql = format!(
        "UPDATE {} SET updated_at = now() - interval '1 minute'",
        org.schema().qualify("jobs")
    );
    sqlx::query(AssertSqlSafe(sql)).execute(&ctx.pool).await.expect("backdate");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = SchedulerOptions {
        tick: Duration::from_millis(100),
        globals: Vec::new(),
        ..Default::default()
    };
    let scheduler = tokio::spawn(Scheduler::new(jobs.clone(), options).run(async move {
        let _ = stopped.await;
    }));
    let sentinel = ctx.keys.jobs_sentinel();
    let armed = eventually(Duration::from_secs(10), || async {
        ctx.redis.exists::<i64, _>(&sentinel).await.is_ok_and(|n| n == 1)
    })
    .await;
    assert!(armed, "the scheduler keeps a sentinel");
    let keys: Vec<String> = ctx
        .redis
        .scan_buffered(ctx.keys.all_pattern(), Some(1000), None)
        .try_filter_map(|k| async move { Ok(k.as_str().map(str::to_owned)) })
        .try_collect()
        .await
        .expect("scan");
    let _: i64 = ctx.redis.del(keys).await.expect("flush");
    let index = ctx.keys.queue_index("default");
    let recovered = eventually(Duration::from_secs(20), || async {
        fred::prelude::SetsInterface::scard::<i64, _>(&ctx.redis, &index)
            .await
            .is_ok_and(|n| n == 20)
    })
    .await;
    assert!(recovered, "the sweep ran by itself and put the 20 jobs back");
    let worker = TestWorker::start(&jobs, 8);
    ctx.drain(&org, Duration::from_secs(30)).await;
    worker.stop().await;
    let _ = stop.send(());
    scheduler.await.expect("task").expect("scheduler");
    let sql = format!(
        "SELECT count(*) FROM {} WHERE id = ANY($1) AND status = 'succeeded' AND attempts = 1",
        org.schema().qualify("jobs")
    );
    let once: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(&ids)
        .fetch_one(&ctx.pool)
        .await
        .expect("count");
    assert_eq!(once, 20);
}
