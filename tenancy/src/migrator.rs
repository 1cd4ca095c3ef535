//! Brings `public` and every org schema up to date.
//!
//! Each org's applied version is recorded in `public.orgs.org_version`, so
//! orgs that are already current are skipped without a query on their schema.
//! Pending orgs migrate with bounded parallelism, each in its own transaction
//! that first takes an advisory lock on the schema (so two migrators never
//! apply the same migration) under a `lock_timeout`. One org's failure is
//! recorded in `public.orgs.migrate_error` and does not stop the others; a
//! rerun picks up whatever is still behind.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use sqlx::{AssertSqlSafe, PgConnection, PgPool};
use uuid::Uuid;

use crate::SchemaName;
use crate::migrations::{HISTORY_TABLE, Lineage, Target};
use crate::{OrgId, TenancyError};

/// How `migrate` runs.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Org schemas migrated at once.
    pub jobs: usize,
    /// How long to wait for a lock (another migrator, a busy table) before
    /// giving up on one org.
    pub lock_timeout: Duration,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions { jobs: 4, lock_timeout: Duration::from_secs(10) }
    }
}

/// What one `migrate` run did.
#[derive(Debug, Default, serde::Serialize)]
pub struct MigrateReport {
    pub public_applied: Vec<String>,
    pub target_version: i32,
    pub orgs_total: i64,
    /// Orgs that were already current and were not touched.
    pub orgs_current: i64,
    pub migrated: Vec<OrgMigrated>,
    pub failed: Vec<OrgFailed>,
    pub elapsed_ms: u128,
}

#[derive(Debug, serde::Serialize)]
pub struct OrgMigrated {
    pub slug: String,
    pub schema: String,
    pub from_version: i32,
    pub to_version: i32,
    pub applied: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct OrgFailed {
    pub slug: String,
    pub schema: String,
    pub version: i32,
    pub error: String,
}

/// Applies the public lineage, then the org lineage to every org.
pub async fn migrate_all(
    pool: &PgPool,
    public: &Lineage,
    org: &Lineage,
    options: &MigrateOptions,
) -> Result<MigrateReport, TenancyError> {
    let started = Instant::now();
    let public_applied = migrate_public(pool, public, options.lock_timeout).await?;
    let mut report = migrate_orgs(pool, org, options).await?;
    report.public_applied = public_applied;
    report.elapsed_ms = started.elapsed().as_millis();
    Ok(report)
}

/// Applies the public lineage under an advisory lock.
pub async fn migrate_public(
    pool: &PgPool,
    lineage: &Lineage,
    lock_timeout: Duration,
) -> Result<Vec<String>, TenancyError> {
    let mut tx = pool.begin().await?;
    lock_schema(&mut tx, Target::Public.schema(), lock_timeout).await?;
    let applied = lineage.apply_in_tx(&mut tx, Target::Public).await?;
    tx.commit().await?;
    Ok(applied)
}

/// Applies the org lineage to every org that is behind it.
///
/// Orgs provisioned while this runs (by a process with an older lineage,
/// during a rolling deploy) are picked up too: the pending list is read
/// again until it holds no org this run has not tried.
pub async fn migrate_orgs(
    pool: &PgPool,
    lineage: &Lineage,
    options: &MigrateOptions,
) -> Result<MigrateReport, TenancyError> {
    let started = Instant::now();
    let target = lineage.latest_version();
    let mut report = MigrateReport { target_version: target, ..MigrateReport::default() };
    let mut tried: HashSet<Uuid> = HashSet::new();
    loop {
        let pending: Vec<(Uuid, String, i32)> = sqlx::query_as(
            "SELECT id, slug, org_version FROM public.orgs WHERE org_version < $1 ORDER BY created_at, id",
        )
        .bind(target)
        .fetch_all(pool)
        .await?;
        let pending: Vec<_> = pending.into_iter().filter(|(id, _, _)| tried.insert(*id)).collect();
        if pending.is_empty() {
            break;
        }
        let outcomes: Vec<_> = futures::stream::iter(pending)
            .map(|(id, slug, version)| async move {
                let schema = OrgId::from_uuid(id).schema();
                let result = migrate_one(pool, lineage, id, &schema, options.lock_timeout).await;
                (id, slug, schema, version, result)
            })
            .buffer_unordered(options.jobs.max(1))
            .collect()
            .await;
        for (id, slug, schema, version, result) in outcomes {
            match result {
                // Another migrator got there first: nothing was left to apply.
                Ok(applied) if applied.is_empty() => {}
                Ok(applied) => report.migrated.push(OrgMigrated {
                    slug,
                    schema: schema.to_string(),
                    from_version: version,
                    to_version: target,
                    applied,
                }),
                Err(err) => {
                    let error = err.to_string();
                    tracing::error!(org_id = %id, schema = %schema, error = %error, "org migration failed");
                    sqlx::query("UPDATE public.orgs SET migrate_error = $2 WHERE id = $1")
                        .bind(id)
                        .bind(&error)
                        .execute(pool)
                        .await?;
                    report.failed.push(OrgFailed {
                        slug,
                        schema: schema.to_string(),
                        version,
                        error,
                    });
                }
            }
        }
    }
    report.orgs_total =
        sqlx::query_scalar("SELECT count(*) FROM public.orgs").fetch_one(pool).await?;
    report.orgs_current = report.orgs_total - (report.migrated.len() + report.failed.len()) as i64;
    report.migrated.sort_by(|a, b| a.slug.cmp(&b.slug));
    report.failed.sort_by(|a, b| a.slug.cmp(&b.slug));
    report.elapsed_ms = started.elapsed().as_millis();
    Ok(report)
}

async fn migrate_one(
    pool: &PgPool,
    lineage: &Lineage,
    id: Uuid,
    schema: &SchemaName,
    lock_timeout: Duration,
) -> Result<Vec<String>, TenancyError> {
    let mut tx = pool.begin().await?;
    lock_schema(&mut tx, schema.as_str(), lock_timeout).await?;
    let applied = lineage.apply_in_tx(&mut tx, Target::Org(schema)).await?;
    sqlx::query(
        "UPDATE public.orgs SET org_version = $2, migrate_error = NULL, migrated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(lineage.latest_version())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(applied)
}

/// Sets a transaction-local `lock_timeout` and waits for the schema's
/// advisory lock, which is held until the transaction ends.
async fn lock_schema(
    conn: &mut PgConnection,
    schema: &str,
    lock_timeout: Duration,
) -> Result<(), TenancyError> {
    let set = format!("SET LOCAL lock_timeout = '{}ms'", lock_timeout.as_millis().max(1));
    sqlx::raw_sql(AssertSqlSafe(set)).execute(&mut *conn).await?;
    sqlx::query("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))")
        .bind(schema)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Each org's migration state, for `migrate status`.
#[derive(Debug, serde::Serialize)]
pub struct MigrationStatus {
    pub public_version: i32,
    pub public_target: i32,
    pub org_target: i32,
    pub orgs: Vec<OrgVersion>,
}

#[derive(Debug, serde::Serialize, sqlx::FromRow)]
pub struct OrgVersion {
    pub slug: String,
    pub schema_name: String,
    pub status: String,
    pub version: i32,
    pub migrate_error: Option<String>,
    pub migrated_at: Option<DateTime<Utc>>,
}

impl MigrationStatus {
    /// Orgs behind the org lineage.
    pub fn laggards(&self) -> impl Iterator<Item = &OrgVersion> {
        self.orgs.iter().filter(move |o| o.version < self.org_target)
    }

    /// Orgs whose last migration failed.
    pub fn failures(&self) -> impl Iterator<Item = &OrgVersion> {
        self.orgs.iter().filter(|o| o.migrate_error.is_some())
    }
}

/// Reads the applied versions of `public` and of every org.
pub async fn status(
    pool: &PgPool,
    public: &Lineage,
    org: &Lineage,
) -> Result<MigrationStatus, TenancyError> {
    let history = format!("SELECT coalesce(max(version), 0) FROM public.{HISTORY_TABLE}");
    let public_version: i32 = sqlx::query_scalar(AssertSqlSafe(history)).fetch_one(pool).await?;
    let orgs = sqlx::query_as(
        "SELECT slug, schema_name, status, org_version AS version, migrate_error, migrated_at \
         FROM public.orgs ORDER BY slug",
    )
    .fetch_all(pool)
    .await?;
    Ok(MigrationStatus {
        public_version,
        public_target: public.latest_version(),
        org_target: org.latest_version(),
        orgs,
    })
}
