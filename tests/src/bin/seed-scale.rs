//! `seed-scale`: builds the data set the console is measured on: 10,000
//! orgs, 100,000 users with 10 memberships per org, 1,000,000 jobs with
//! logs, audit events, flags with overrides, one platform admin
//! (`ops@scale.example`), and the dead and waiting jobs in Redis, in a
//! database and key prefix of their own (see `orgstack_tests::scale`).
//!
//! ```text
//! scripts/seed-scale.sh [--orgs N] [--users N] [--jobs N] [--parallel N] [--no-vacuum]
//! ```
//!
//! Orgs are provisioned through `OrgRegistry::create` (row, schema and org
//! lineage), `--parallel` at a time. Users, memberships, jobs, job logs and
//! audit events are bulk `INSERT ... SELECT generate_series` statements
//! (users share one argon2id hash of one password). Flags, suspensions and
//! deletions go through the services, audited; Redis is filled by the
//! recovery sweep, as after a Redis that lost its data.
//!
//! Rerunning resumes: existing orgs are kept, users and memberships are
//! inserted only where missing, an org that has jobs gets no more.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use orgstack::accounts::users::NewUser;
use orgstack::accounts::{Actor, Email};
use orgstack::http::AppState;
use orgstack_tests::scale::{self, ScaleEnv};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tenancy::{Lineage, OrgId, OrgStatus, Slug};

/// See [`orgstack::alloc`].
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug)]
struct Options {
    orgs: u64,
    users: u64,
    jobs: u64,
    parallel: usize,
    vacuum: bool,
}

fn options() -> anyhow::Result<Options> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |name: &str, default: u64| -> anyhow::Result<u64> {
        match args.iter().position(|a| a == name) {
            None => Ok(default),
            Some(i) => args
                .get(i + 1)
                .and_then(|n| n.replace('_', "").parse().ok())
                .with_context(|| format!("{name} takes a number")),
        }
    };
    for arg in &args {
        let known = ["--orgs", "--users", "--jobs", "--parallel", "--no-vacuum"];
        anyhow::ensure!(
            !arg.starts_with("--") || known.contains(&arg.as_str()),
            "unknown option {arg}; known: {}",
            known.join(" ")
        );
    }
    Ok(Options {
        orgs: number("--orgs", 10_000)?,
        users: number("--users", 100_000)?,
        jobs: number("--jobs", 1_000_000)?,
        parallel: number("--parallel", 8)?.max(1) as usize,
        vacuum: !args.iter().any(|a| a == "--no-vacuum"),
    })
}

fn main() -> std::process::ExitCode {
    orgstack::alloc::tune();
    orgstack::cli::run_to_exit(run())
}

/// Prints what a step did and how long it took.
fn done(step: &str, started: Instant, what: impl std::fmt::Display) {
    println!("{step:<12} {:>8.1} s  {what}", started.elapsed().as_secs_f64());
}

async fn run() -> anyhow::Result<()> {
    let options = options()?;
    let env = ScaleEnv::from_env();
    let all = Instant::now();
    println!(
        "seeding {} (Redis prefix {:?}): {} orgs, {} users, {} jobs, {} at a time",
        orgstack::app::redact_url(&env.database_url),
        env.prefix,
        options.orgs,
        options.users,
        options.jobs,
        options.parallel
    );

    let started = Instant::now();
    let created = create_database(&env).await?;
    let pool_size = (options.parallel + 4).to_string();
    let config = env.config(&[("DB_POOL_SIZE", &pool_size)])?;
    let state = orgstack::app::connect_now(config).await?;
    let applied =
        tenancy::migrator::migrate_public(&state.db, &Lineage::public(), Duration::from_secs(10))
            .await?;
    done(
        "database",
        started,
        format!(
            "{}, {} public migrations applied",
            if created { "created" } else { "exists" },
            applied.len()
        ),
    );

    let ids = seed_orgs(&state, &options).await?;
    seed_operator(&state).await?;
    seed_users(&state, &options).await?;
    seed_memberships(&state, &options).await?;
    seed_jobs(&state, &options, &ids).await?;
    seed_flags(&state, &options, &ids).await?;

    let started = Instant::now();
    let report = orgstack::jobs::sweep::recover(&state.jobs, Duration::ZERO, true).await?;
    done(
        "redis",
        started,
        format!(
            "recovery sweep over {} orgs: {} waiting jobs dispatched, {} dead jobs indexed",
            report.orgs, report.redispatched, report.dead_indexed
        ),
    );

    seed_statuses(&state, &options).await?;

    if options.vacuum {
        let started = Instant::now();
        let mut conn = PgConnection::connect(&env.database_url).await?;
        sqlx::raw_sql("VACUUM (ANALYZE)").execute(&mut conn).await.context("VACUUM")?;
        done("vacuum", started, "VACUUM (ANALYZE) of the whole database");
    }

    let size: String =
        sqlx::query_scalar("SELECT pg_size_pretty(pg_database_size(current_database()))")
            .fetch_one(&state.db)
            .await?;
    done("total", all, format!("database size {size}"));
    Ok(())
}

/// Creates the database unless it exists; true when it was created.
async fn create_database(env: &ScaleEnv) -> anyhow::Result<bool> {
    let name = env.database_name()?;
    let mut admin = PgConnection::connect(&env.admin_url()?)
        .await
        .context("connecting to the server's postgres database")?;
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1)",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await?;
    if !exists {
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await?;
    }
    Ok(!exists)
}

/// Provisions the orgs that do not exist yet; returns every seeded org's id
/// by number (index 0 is org 1).
async fn seed_orgs(state: &AppState, options: &Options) -> anyhow::Result<Vec<OrgId>> {
    let started = Instant::now();
    let existing = org_ids(state).await?;
    let missing: Vec<u64> = (1..=options.orgs).filter(|k| !existing.contains_key(k)).collect();
    let total = missing.len();
    let mut times = Vec::with_capacity(total);
    let mut creations = futures::stream::iter(missing)
        .map(|k| async move {
            let slug = Slug::parse(&scale::org_slug(k)).map_err(|e| anyhow::anyhow!("{e}"))?;
            let started = Instant::now();
            state
                .orgs
                .create(&scale::org_name(k), &slug)
                .await
                .with_context(|| format!("{slug}"))?;
            anyhow::Ok(started.elapsed().as_secs_f64() * 1000.0)
        })
        .buffer_unordered(options.parallel);
    while let Some(ms) = creations.try_next().await? {
        times.push(ms);
        if times.len().is_multiple_of(1000) {
            println!(
                "  {} of {total} orgs provisioned ({:.0} s)",
                times.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let mut first: Vec<f64> = times.iter().take(500).copied().collect();
    let mut last: Vec<f64> = times.iter().rev().take(500).copied().collect();
    let (median, p99, _) = scale::summary(&mut times);
    let timing = if total == 0 {
        String::new()
    } else {
        format!(
            "; per org at {} at once: median {median:.1} ms, p99 {p99:.1} ms (first 500: {:.1} ms, last 500: {:.1} ms)",
            options.parallel,
            scale::summary(&mut first).0,
            scale::summary(&mut last).0,
        )
    };
    done("orgs", started, format!("{total} provisioned, {} existed{timing}", existing.len()));
    let ids = org_ids(state).await?;
    (1..=options.orgs)
        .map(|k| {
            ids.get(&k).copied().with_context(|| format!("org {} is missing", scale::org_slug(k)))
        })
        .collect()
}

/// The seeded orgs' ids by number.
async fn org_ids(state: &AppState) -> anyhow::Result<HashMap<u64, OrgId>> {
    let rows: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT id, slug FROM public.orgs WHERE slug LIKE 'scale-%'")
            .fetch_all(&state.db)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, slug)| {
            let k = slug.strip_prefix("scale-")?.parse().ok()?;
            Some((k, OrgId::from_uuid(id)))
        })
        .collect())
}

/// The platform admin the console runs as.
async fn seed_operator(state: &AppState) -> anyhow::Result<()> {
    let started = Instant::now();
    let email = Email::parse(scale::OPERATOR)?;
    let what = match state.accounts.user_by_email(&email).await? {
        Some(user) if user.is_platform_admin => "exists",
        Some(_) => {
            state.accounts.promote_user(&Actor::Cli, &email).await?;
            "promoted"
        }
        None => {
            let password = std::env::var("SCALE_OPS_PASSWORD")
                .unwrap_or_else(|_| scale::DEFAULT_OPERATOR_PASSWORD.to_owned());
            let new = NewUser {
                email: &email,
                name: "Scale Operator",
                password: Some(password),
                platform_admin: true,
            };
            state.accounts.create_user(&Actor::Cli, new).await?;
            "created"
        }
    };
    done("operator", started, format!("{} {what} (platform admin)", scale::OPERATOR));
    Ok(())
}

/// A UUIDv7 (as `Uuid::now_v7` makes them: time-ordered) from the SQL
/// timestamp `ts` and the random-looking md5 hex `h`, so ids sort as the
/// rows were created.
fn uuid_v7(ts: &str, h: &str) -> String {
    format!(
        "(lpad(to_hex((extract(epoch FROM {ts}) * 1000)::bigint), 12, '0') || '7' \
         || substr({h}, 1, 3) || '8' || substr({h}, 4, 3) || substr({h}, 7, 12))::uuid"
    )
}

/// Users `user-000001@scale.example` ..., one a minute up to now, every
/// 50th inactive, all with the same password; each with its platform
/// `user.created` audit event.
async fn seed_users(state: &AppState, options: &Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let hash = orgstack::accounts::password::hash(scale::USER_PASSWORD.to_owned()).await?;
    let sql = format!(
        "WITH g AS ( \
           SELECT i, md5('user:' || i) AS h, now() - (($2 - i)::float8 * interval '1 minute') AS ts \
           FROM generate_series($1::bigint, $3::bigint) AS i \
         ), new AS ( \
           INSERT INTO public.users (id, email, name, password_hash, is_active, last_login_at, created_at, updated_at) \
           SELECT {id}, 'user-' || lpad(i::text, 6, '0') || '@scale.example', 'User ' || i, $4, i % 50 <> 0, \
                  CASE WHEN i % 3 = 0 THEN least(ts + interval '1 day', now()) END, ts, ts \
           FROM g ON CONFLICT (email) DO NOTHING \
           RETURNING id, email, created_at \
         ) \
         INSERT INTO public.audit_events (id, occurred_at, actor, action, target, details) \
         SELECT md5('user.created:' || id)::uuid, created_at, 'cli', 'user.created', id::text, \
                jsonb_build_object('email', email, 'platform_admin', false) \
         FROM new ON CONFLICT (id) DO NOTHING",
        id = uuid_v7("ts", "h")
    );
    let mut inserted = 0;
    let batch = 10_000;
    let mut from = 1;
    while from <= options.users {
        let to = (from + batch - 1).min(options.users);
        let done = sqlx::query(AssertSqlSafe(sql.clone()))
            .bind(from as i64)
            .bind(options.users as i64)
            .bind(to as i64)
            .bind(&hash)
            .execute(&state.db)
            .await
            .with_context(|| format!("users {from} to {to}"))?;
        inserted += done.rows_affected();
        from = to + 1;
    }
    done(
        "users",
        started,
        format!("{inserted} inserted (with their audit events) of {}", options.users),
    );
    Ok(())
}

/// Users `(k-1)*10+1 ..= k*10` are members of org `k`: an owner, an admin,
/// six members and two viewers.
async fn seed_memberships(state: &AppState, options: &Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let sql = "INSERT INTO public.memberships (org_id, user_id, role, created_at, updated_at) \
         SELECT o.id, u.id, \
                CASE (i - 1) % $3 WHEN 0 THEN 'owner' WHEN 1 THEN 'admin' WHEN $3 - 1 THEN 'viewer' WHEN $3 - 2 THEN 'viewer' ELSE 'member' END, \
                greatest(o.created_at, u.created_at), greatest(o.created_at, u.created_at) \
         FROM generate_series($1::bigint, $2::bigint) AS i \
         JOIN public.users u ON u.email = 'user-' || lpad(i::text, 6, '0') || '@scale.example' \
         JOIN public.orgs o ON o.slug = 'scale-' || lpad(((i - 1) / $3 + 1)::text, 5, '0') \
         ON CONFLICT DO NOTHING";
    let last = options.users.min(options.orgs * scale::MEMBERS_PER_ORG);
    let mut inserted = 0;
    let mut from = 1;
    while from <= last {
        let to = (from + 10_000 - 1).min(last);
        inserted += sqlx::query(sql)
            .bind(from as i64)
            .bind(to as i64)
            .bind(scale::MEMBERS_PER_ORG as i64)
            .execute(&state.db)
            .await
            .with_context(|| format!("memberships of users {from} to {to}"))?
            .rows_affected();
        from = to + 1;
    }
    done("memberships", started, format!("{inserted} inserted of {last}"));
    Ok(())
}

/// Each org's jobs (see [`scale::job_counts`]), spread over the last ten
/// days, newest five minutes ago: per thousand, 5 queued and 5 waiting for
/// a retry (both due in 30 days, so a worker leaves them alone), 10 dead,
/// 2 cancelled, the rest succeeded; a fifth are `sleep` jobs, a fifth go to
/// the emails, reports and webhooks queues. Failed, dead and succeeded
/// `sleep` jobs get log lines (two per attempt). Each org's audit log gets
/// its creation and its members' additions.
async fn seed_jobs(state: &AppState, options: &Options, ids: &[OrgId]) -> anyhow::Result<()> {
    let started = Instant::now();
    let counts = scale::job_counts(options.orgs, options.jobs);
    let work: Vec<(u64, OrgId, u64)> =
        ids.iter().zip(counts).enumerate().map(|(i, (id, n))| (i as u64 + 1, *id, n)).collect();
    let results: Vec<(u64, u64)> = futures::stream::iter(work)
        .map(|(k, id, n)| async move {
            org_jobs(state, k, id, n)
                .await
                .with_context(|| format!("jobs of {}", scale::org_slug(k)))
        })
        .buffer_unordered(options.parallel)
        .try_collect()
        .await?;
    let jobs: u64 = results.iter().map(|(j, _)| j).sum();
    let lines: u64 = results.iter().map(|(_, l)| l).sum();
    let seeded = results.iter().filter(|(j, _)| *j > 0).count();
    done(
        "jobs",
        started,
        format!(
            "{jobs} jobs and {lines} log lines inserted in {seeded} orgs (the others had jobs)"
        ),
    );
    Ok(())
}

/// Seeds org `k`'s jobs, logs and audit events in one transaction, unless
/// it has jobs already; returns (jobs, log lines) inserted.
async fn org_jobs(state: &AppState, k: u64, id: OrgId, n: u64) -> anyhow::Result<(u64, u64)> {
    let schema = id.schema();
    let jobs = schema.qualify("jobs");
    let mut tx = state.db.begin().await?;
    let has_jobs: bool =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT EXISTS (SELECT 1 FROM {jobs})")))
            .persistent(false)
            .fetch_one(&mut *tx)
            .await?;
    if has_jobs || n == 0 {
        return Ok((0, 0));
    }
    let step = 10.0 * 86_400.0 / n as f64;
    let insert = format!(
        "INSERT INTO {jobs} (id, kind, queue, status, payload, result, error, attempts, max_attempts, \
                             run_at, created_by, created_at, updated_at, started_at, finished_at) \
         SELECT {id}, kind, queue, status, \
                CASE WHEN kind = 'sleep' THEN jsonb_build_object('ms', 20, 'lines', 2) ELSE jsonb_build_object('n', i) END, \
                CASE WHEN status = 'succeeded' THEN CASE WHEN kind = 'sleep' THEN '{{\"slept_ms\": 20}}'::jsonb ELSE 'null'::jsonb END END, \
                CASE status WHEN 'failed' THEN 'attempt 2 of 5: connection reset by peer' \
                            WHEN 'dead' THEN 'attempt 5 of 5: upstream answered 503 Service Unavailable' \
                            WHEN 'cancelled' THEN 'cancelled by user:{operator}' END, \
                CASE status WHEN 'queued' THEN 0 WHEN 'cancelled' THEN 0 WHEN 'failed' THEN 2 WHEN 'dead' THEN 5 ELSE 1 END, \
                5, \
                CASE WHEN status IN ('queued', 'failed') THEN now() + interval '30 days' + b * interval '1 minute' ELSE ts END, \
                CASE c % 4 WHEN 0 THEN 'system' WHEN 1 THEN 'cli' \
                     ELSE 'user:user-' || lpad(($4 + 1 + c % $5)::text, 6, '0') || '@scale.example' END, \
                ts, ts + interval '2 seconds', \
                CASE WHEN status IN ('succeeded', 'failed', 'dead') THEN ts + interval '1 second' END, \
                CASE WHEN status IN ('succeeded', 'dead', 'cancelled') THEN ts + interval '2 seconds' END \
         FROM ( \
           SELECT i, h, ts, b, \
                  CASE WHEN b < 5 THEN 'queued' WHEN b < 10 THEN 'failed' WHEN b < 20 THEN 'dead' \
                       WHEN b < 22 THEN 'cancelled' ELSE 'succeeded' END AS status, \
                  CASE WHEN c % 5 = 0 THEN 'sleep' ELSE 'noop' END AS kind, \
                  CASE (c / 5) % 20 WHEN 0 THEN 'emails' WHEN 1 THEN 'reports' WHEN 2 THEN 'webhooks' ELSE 'default' END AS queue, \
                  c \
           FROM ( \
             SELECT i, h, ts, ('x' || substr(h, 26, 7))::bit(28)::int % 1000 AS b, \
                    ('x' || substr(h, 19, 7))::bit(28)::int AS c \
             FROM ( \
               SELECT i, md5($1 || ':' || i) AS h, \
                      now() - interval '5 minutes' - (($2 - i)::float8 * $3) * interval '1 second' AS ts \
               FROM generate_series(1, $2::bigint) AS i \
             ) AS g \
           ) AS g2 \
         ) AS g3",
        id = uuid_v7("ts", "h"),
        operator = scale::OPERATOR,
    );
    let inserted = sqlx::query(AssertSqlSafe(insert))
        .persistent(false)
        .bind(scale::org_slug(k))
        .bind(n as i64)
        .bind(step)
        .bind(((k - 1) * scale::MEMBERS_PER_ORG) as i64)
        .bind(scale::MEMBERS_PER_ORG as i64)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let logs = format!(
        "INSERT INTO {logs} (job_id, attempt, line_no, at, level, line) \
         SELECT j.id, a, l, j.created_at + a * interval '1 second', \
                CASE WHEN l = 2 AND j.status IN ('failed', 'dead') THEN 'error' ELSE 'info' END, \
                CASE WHEN l = 1 THEN format('attempt %s of %s: started', a, j.max_attempts) \
                     WHEN j.status IN ('failed', 'dead') THEN j.error ELSE 'slept 20 ms' END \
         FROM {jobs} AS j, generate_series(1, greatest(j.attempts, 1)) AS a, generate_series(1, 2) AS l \
         WHERE j.status IN ('failed', 'dead') OR (j.kind = 'sleep' AND j.status = 'succeeded')",
        logs = schema.qualify("job_logs"),
    );
    let lines =
        sqlx::query(AssertSqlSafe(logs)).persistent(false).execute(&mut *tx).await?.rows_affected();
    let audit = format!(
        "INSERT INTO {audit} (id, occurred_at, actor, action, target, details) \
         SELECT md5($1 || ':audit:' || e)::uuid, o.created_at + e * interval '1 minute', 'cli', \
                CASE WHEN e = 0 THEN 'org.created' ELSE 'member.added' END, \
                CASE WHEN e = 0 THEN o.id::text ELSE 'user-' || lpad(($2 + e)::text, 6, '0') || '@scale.example' END, \
                '{{}}'::jsonb \
         FROM public.orgs AS o, generate_series(0, $3::bigint) AS e WHERE o.id = $4 \
         ON CONFLICT (id) DO NOTHING",
        audit = schema.qualify("audit_events"),
    );
    sqlx::query(AssertSqlSafe(audit))
        .persistent(false)
        .bind(scale::org_slug(k))
        .bind(((k - 1) * scale::MEMBERS_PER_ORG) as i64)
        .bind(scale::MEMBERS_PER_ORG as i64)
        .bind(id.as_uuid())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((inserted, lines))
}

/// Global values for two flags and overrides for about 1,300 orgs, through
/// the flags service (audited; unchanged values are left alone).
async fn seed_flags(state: &AppState, options: &Options, ids: &[OrgId]) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut values: Vec<(&str, Option<OrgId>, bool)> =
        vec![("weekly_digest", None, true), ("job_log_streaming", None, true)];
    for k in 1..=options.orgs {
        let id = Some(ids[(k - 1) as usize]);
        if k % 10 == 1 {
            values.push(("webhooks", id, true));
        }
        if k % 100 == 7 {
            values.push(("file_uploads", id, false));
        }
        if k % 50 == 3 {
            values.push(("job_log_streaming", id, false));
        }
        if k % 40 == 9 {
            values.push(("weekly_digest", id, false));
        }
    }
    let total = values.len();
    futures::stream::iter(values)
        .map(|(name, org, enabled)| state.flags.set(&Actor::Cli, name, org, enabled))
        .buffer_unordered(options.parallel)
        .try_collect::<Vec<()>>()
        .await?;
    done("flags", started, format!("{total} values set (2 global, the rest org overrides)"));
    Ok(())
}

/// Every 100th org (50, 150, ...) suspended and every 1000th (999, 1999,
/// ...) deleted, as `orgstack org suspend|delete` do it.
async fn seed_statuses(state: &AppState, options: &Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mut suspended, mut deleted) = (0, 0);
    for k in 1..=options.orgs {
        let target = match k {
            k if k % 1000 == 999 => OrgStatus::Deleted,
            k if k % 100 == 50 => OrgStatus::Suspended,
            _ => continue,
        };
        let slug = Slug::parse(&scale::org_slug(k)).map_err(|e| anyhow::anyhow!("{e}"))?;
        let org = state.orgs.get(&slug).await?;
        if org.status == target {
            continue;
        }
        let (org, action) = if target == OrgStatus::Deleted {
            deleted += 1;
            (state.orgs.soft_delete(&slug).await?, "org.deleted")
        } else {
            suspended += 1;
            (state.orgs.suspend(&slug).await?, "org.suspended")
        };
        state.accounts.record_org_status(&Actor::Cli, &org, action).await?;
    }
    done("statuses", started, format!("{suspended} orgs suspended, {deleted} deleted"));
    Ok(())
}
