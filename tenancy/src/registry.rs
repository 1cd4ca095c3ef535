//! The org registry: provisioning, lookups through an in-process cache, and
//! the org lifecycle (active → suspended → deleted → purged).
//!
//! Lookups are cached per process. Every change is announced on a Redis
//! pub/sub channel with the org id, and every registry that listens
//! ([`OrgRegistry::listen`]) evicts that org as soon as the message arrives.
//! Entries also expire after a minute, and a listener drops its whole cache
//! whenever its subscription (re)connects, so a missed message cannot keep a
//! stale org for long.
//!
//! Changes are made by slug against the database (`WHERE slug = $1`), never
//! through a cached slug-to-id mapping, so a stale cache cannot make a
//! change land on the wrong org.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fred::prelude::KeysInterface;
use futures::TryStreamExt;
use moka::sync::Cache;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgPool, Row};

use crate::invalidation::{self, Listener};
use crate::migrations::{Lineage, Target};
use crate::{OrgId, RedisKeys, SchemaName, Slug, TenancyError};

/// Where an org is in its lifecycle. A purged org has no row at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgStatus {
    Active,
    Suspended,
    Deleted,
}

impl OrgStatus {
    pub const ALL: [OrgStatus; 3] = [OrgStatus::Active, OrgStatus::Suspended, OrgStatus::Deleted];

    pub fn as_str(self) -> &'static str {
        match self {
            OrgStatus::Active => "active",
            OrgStatus::Suspended => "suspended",
            OrgStatus::Deleted => "deleted",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        OrgStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for OrgStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// An organization as recorded in `public.orgs`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Org {
    pub id: OrgId,
    pub slug: Slug,
    pub name: String,
    pub status: OrgStatus,
    /// Highest org-lineage migration applied to the org's schema.
    pub org_version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Org {
    /// The org's schema, derived from its id.
    pub fn schema(&self) -> SchemaName {
        self.id.schema()
    }
}

/// What a purge removed (or, as a dry run, would remove).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PurgeReport {
    pub slug: String,
    pub schema: String,
    pub tables: i64,
    pub redis_keys: u64,
    pub dry_run: bool,
}

const ORG_COLUMNS: &str = "id, slug, name, status, org_version, created_at, updated_at, deleted_at";
const CACHE_TTL: Duration = Duration::from_secs(60);

/// Looks up, provisions and changes orgs. Cheap to clone.
#[derive(Clone)]
pub struct OrgRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OrgRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgRegistry").field("keys", &self.inner.keys).finish_non_exhaustive()
    }
}

struct Inner {
    pool: PgPool,
    redis: fred::clients::Client,
    keys: RedisKeys,
    lineage: Lineage,
    by_slug: Cache<String, Arc<Org>>,
    by_id: Cache<OrgId, Arc<Org>>,
    /// Bumped by every eviction. A lookup caches its row only if no
    /// eviction happened while it was reading, so a row read just before a
    /// change cannot be cached after the change was announced.
    generation: AtomicU64,
}

impl OrgRegistry {
    /// A registry over `pool` (connections with an empty `search_path`),
    /// announcing changes on `redis`, provisioning with `lineage`.
    pub fn new(
        pool: PgPool,
        redis: fred::clients::Client,
        keys: RedisKeys,
        lineage: Lineage,
    ) -> Self {
        OrgRegistry {
            inner: Arc::new(Inner {
                pool,
                redis,
                keys,
                lineage,
                by_slug: Cache::builder().max_capacity(100_000).time_to_live(CACHE_TTL).build(),
                by_id: Cache::builder().max_capacity(100_000).time_to_live(CACHE_TTL).build(),
                generation: AtomicU64::new(0),
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub fn lineage(&self) -> &Lineage {
        &self.inner.lineage
    }

    pub fn keys(&self) -> &RedisKeys {
        &self.inner.keys
    }

    /// Subscribes to org-change announcements and evicts changed orgs from
    /// this registry's cache until the returned [`Listener`] is stopped or
    /// dropped (see [`invalidation::listen`]). The whole cache is dropped
    /// whenever the subscription (re)connects.
    pub async fn listen(&self) -> Result<Listener, TenancyError> {
        let registry = self.clone();
        invalidation::listen(
            &self.inner.redis,
            self.inner.keys.org_invalidation_channel(),
            move |message| match message.and_then(|s| s.parse().ok()) {
                Some(id) => registry.evict(OrgId::from_uuid(id)),
                None => registry.evict_all(),
            },
        )
        .await
    }

    /// The org with this slug, in any status (cached).
    pub async fn by_slug(&self, slug: &Slug) -> Result<Option<Arc<Org>>, TenancyError> {
        if let Some(org) = self.inner.by_slug.get(slug.as_str()) {
            return Ok(Some(org));
        }
        let generation = self.inner.generation.load(Ordering::Acquire);
        let org = self.fetch_by_slug(slug).await?;
        Ok(org.map(|org| self.remember(org, generation)))
    }

    /// The org with this id, in any status (cached).
    pub async fn by_id(&self, id: OrgId) -> Result<Option<Arc<Org>>, TenancyError> {
        if let Some(org) = self.inner.by_id.get(&id) {
            return Ok(Some(org));
        }
        let generation = self.inner.generation.load(Ordering::Acquire);
        let sql = format!("SELECT {ORG_COLUMNS} FROM public.orgs WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.as_uuid())
            .fetch_optional(&self.inner.pool)
            .await?;
        let org = row.map(|row| org_from_row(&row)).transpose()?;
        Ok(org.map(|org| self.remember(org, generation)))
    }

    /// The orgs among `ids` (any status): those cached, and the rest in one
    /// query (a page naming hundreds of orgs costs one round trip).
    pub async fn by_ids(&self, ids: &[OrgId]) -> Result<Vec<Arc<Org>>, TenancyError> {
        let mut found = Vec::with_capacity(ids.len());
        let mut missing: Vec<uuid::Uuid> = Vec::new();
        for id in ids {
            match self.inner.by_id.get(id) {
                Some(org) => found.push(org),
                None if !missing.contains(&id.as_uuid()) => missing.push(id.as_uuid()),
                None => {}
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let generation = self.inner.generation.load(Ordering::Acquire);
        let sql = format!("SELECT {ORG_COLUMNS} FROM public.orgs WHERE id = ANY($1)");
        let rows =
            sqlx::query(AssertSqlSafe(sql)).bind(&missing).fetch_all(&self.inner.pool).await?;
        for row in &rows {
            found.push(self.remember(org_from_row(row)?, generation));
        }
        Ok(found)
    }

    /// Like [`by_slug`](Self::by_slug), but a missing org is an error.
    pub async fn get(&self, slug: &Slug) -> Result<Arc<Org>, TenancyError> {
        self.by_slug(slug).await?.ok_or_else(|| TenancyError::NotFound(slug.to_string()))
    }

    /// The org as the database has it now (no cache).
    async fn fetch_by_slug(&self, slug: &Slug) -> Result<Option<Org>, TenancyError> {
        let sql = format!("SELECT {ORG_COLUMNS} FROM public.orgs WHERE slug = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(slug.as_str())
            .fetch_optional(&self.inner.pool)
            .await?;
        Ok(row.map(|row| org_from_row(&row)).transpose()?)
    }

    /// Soft-deleted orgs deleted before `cutoff`, oldest deletion first.
    pub async fn deleted_before(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Org>, TenancyError> {
        let sql = format!(
            "SELECT {ORG_COLUMNS} FROM public.orgs WHERE status = 'deleted' AND deleted_at < $1 \
             ORDER BY deleted_at"
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(cutoff).fetch_all(&self.inner.pool).await?;
        Ok(rows.iter().map(org_from_row).collect::<Result<_, _>>()?)
    }

    /// Every org, oldest first (not cached).
    pub async fn list(&self) -> Result<Vec<Org>, TenancyError> {
        let sql = format!("SELECT {ORG_COLUMNS} FROM public.orgs ORDER BY created_at, id");
        let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&self.inner.pool).await?;
        Ok(rows.iter().map(org_from_row).collect::<Result<_, _>>()?)
    }

    /// Up to `limit` orgs whose slug or name contains `filter` (any case),
    /// by slug: a page for consoles, never the whole table.
    pub async fn search(&self, filter: &str, limit: i64) -> Result<Vec<Org>, TenancyError> {
        let pattern =
            format!("%{}%", filter.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        let sql = format!(
            "SELECT {ORG_COLUMNS} FROM public.orgs WHERE slug ILIKE $1 OR name ILIKE $1 \
             ORDER BY slug LIMIT $2"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(pattern)
            .bind(limit)
            .fetch_all(&self.inner.pool)
            .await?;
        Ok(rows.iter().map(org_from_row).collect::<Result<_, _>>()?)
    }

    /// Number of orgs in each status.
    pub async fn count_by_status(&self) -> Result<Vec<(OrgStatus, i64)>, TenancyError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, count(*) FROM public.orgs GROUP BY status")
                .fetch_all(&self.inner.pool)
                .await?;
        Ok(OrgStatus::ALL
            .into_iter()
            .map(|st| (st, rows.iter().find(|(s, _)| s == st.as_str()).map_or(0, |(_, n)| *n)))
            .collect())
    }

    /// Provisions an org: its row, its schema and the whole org lineage, in
    /// one transaction. A failure at any step leaves neither row nor schema.
    #[tracing::instrument(skip_all, fields(slug = %slug))]
    pub async fn create(&self, name: &str, slug: &Slug) -> Result<Org, TenancyError> {
        let name = validate_name(name)?;
        let id = OrgId::new();
        let schema = id.schema();
        let lineage = &self.inner.lineage;
        let mut tx = self.inner.pool.begin().await?;
        let sql = format!(
            "INSERT INTO public.orgs (id, slug, name, schema_name, org_version, migrated_at) \
             VALUES ($1, $2, $3, $4, $5, now()) RETURNING {ORG_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.as_uuid())
            .bind(slug.as_str())
            .bind(name)
            .bind(schema.as_str())
            .bind(lineage.latest_version())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| TenancyError::from_insert(e, slug.as_str()))?;
        let org = org_from_row(&row)?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {}", schema.quoted())))
            .execute(&mut *tx)
            .await?;
        lineage.apply_in_tx(&mut tx, Target::Org(&schema)).await?;
        tx.commit().await?;
        tracing::info!(org_id = %id, schema = %schema, "org provisioned");
        Ok(org)
    }

    /// Renames an org (its display name).
    pub async fn rename(&self, slug: &Slug, name: &str) -> Result<Org, TenancyError> {
        let name = validate_name(name)?;
        let sql = format!(
            "UPDATE public.orgs SET name = $2, updated_at = now() WHERE slug = $1 RETURNING {ORG_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(slug.as_str())
            .bind(name)
            .fetch_optional(&self.inner.pool)
            .await?
            .ok_or_else(|| TenancyError::NotFound(slug.to_string()))?;
        self.changed(org_from_row(&row)?).await
    }

    /// Gives an org a new slug. Its schema and id do not change.
    pub async fn change_slug(&self, slug: &Slug, new_slug: &Slug) -> Result<Org, TenancyError> {
        let sql = format!(
            "UPDATE public.orgs SET slug = $2, updated_at = now() WHERE slug = $1 RETURNING {ORG_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(slug.as_str())
            .bind(new_slug.as_str())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|e| TenancyError::from_insert(e, new_slug.as_str()))?
            .ok_or_else(|| TenancyError::NotFound(slug.to_string()))?;
        self.changed(org_from_row(&row)?).await
    }

    /// Active → suspended: the API stops serving the org; data stays.
    pub async fn suspend(&self, slug: &Slug) -> Result<Org, TenancyError> {
        self.transition(slug, "suspend", &[OrgStatus::Active], OrgStatus::Suspended).await
    }

    /// Suspended → active.
    pub async fn resume(&self, slug: &Slug) -> Result<Org, TenancyError> {
        self.transition(slug, "resume", &[OrgStatus::Suspended], OrgStatus::Active).await
    }

    /// Active or suspended → deleted (soft): the schema stays until purge.
    pub async fn soft_delete(&self, slug: &Slug) -> Result<Org, TenancyError> {
        self.transition(
            slug,
            "delete",
            &[OrgStatus::Active, OrgStatus::Suspended],
            OrgStatus::Deleted,
        )
        .await
    }

    async fn transition(
        &self,
        slug: &Slug,
        action: &'static str,
        from: &[OrgStatus],
        to: OrgStatus,
    ) -> Result<Org, TenancyError> {
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let sql = format!(
            "UPDATE public.orgs SET status = $2, updated_at = now(), \
             deleted_at = CASE WHEN $2 = 'deleted' THEN now() ELSE NULL END \
             WHERE slug = $1 AND status = ANY($3) RETURNING {ORG_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(slug.as_str())
            .bind(to.as_str())
            .bind(&from)
            .fetch_optional(&self.inner.pool)
            .await?;
        if let Some(row) = row {
            return self.changed(org_from_row(&row)?).await;
        }
        let current = self
            .fetch_by_slug(slug)
            .await?
            .ok_or_else(|| TenancyError::NotFound(slug.to_string()))?;
        Err(TenancyError::WrongStatus {
            slug: slug.to_string(),
            status: current.status.as_str(),
            action,
            required: if from.len() == 1 { from[0] } else { "active or suspended" },
        })
    }

    /// Removes a soft-deleted org for good: its Redis keys, its schema and
    /// its row. With `dry_run`, only reports what would go.
    ///
    /// Redis keys go first (deleting them again is harmless), so a Redis
    /// failure stops the purge before anything irreversible; keys written
    /// while the schema is dropped are swept once more at the end.
    #[tracing::instrument(skip_all, fields(slug = %slug, dry_run))]
    pub async fn purge(&self, slug: &Slug, dry_run: bool) -> Result<PurgeReport, TenancyError> {
        let org = self
            .fetch_by_slug(slug)
            .await?
            .ok_or_else(|| TenancyError::NotFound(slug.to_string()))?;
        if org.status != OrgStatus::Deleted {
            return Err(TenancyError::WrongStatus {
                slug: slug.to_string(),
                status: org.status.as_str(),
                action: "purge",
                required: "deleted",
            });
        }
        let schema = org.schema();
        let tables: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = $1")
                .bind(schema.as_str())
                .fetch_one(&self.inner.pool)
                .await?;
        let pattern = self.inner.keys.org_pattern(org.id);
        let keys = self.scan_keys(&pattern).await?;
        let report = PurgeReport {
            slug: slug.to_string(),
            schema: schema.to_string(),
            tables,
            redis_keys: keys.len() as u64,
            dry_run,
        };
        if dry_run {
            return Ok(report);
        }
        self.unlink(&keys).await?;
        let mut tx = self.inner.pool.begin().await?;
        sqlx::query("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))")
            .bind(schema.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", schema.quoted())))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM public.orgs WHERE id = $1 AND status = 'deleted'")
            .bind(org.id.as_uuid())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.announce(org.id).await;
        let late = self.scan_keys(&pattern).await?;
        self.unlink(&late).await?;
        tracing::info!(org_id = %org.id, schema = %schema, "org purged");
        Ok(report)
    }

    async fn scan_keys(&self, pattern: &str) -> Result<Vec<String>, TenancyError> {
        let mut keys = Vec::new();
        let mut pages = self.inner.redis.scan_buffered(pattern, Some(500), None);
        while let Some(key) = pages.try_next().await? {
            if let Some(key) = key.as_str() {
                keys.push(key.to_owned());
            }
        }
        Ok(keys)
    }

    async fn unlink(&self, keys: &[String]) -> Result<(), TenancyError> {
        for chunk in keys.chunks(500) {
            self.inner.redis.unlink::<i64, _>(chunk.to_vec()).await?;
        }
        Ok(())
    }

    /// Drops one org from this process's cache.
    pub fn evict(&self, id: OrgId) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.by_id.invalidate(&id);
        for (slug, org) in self.inner.by_slug.iter() {
            if org.id == id {
                self.inner.by_slug.invalidate(slug.as_str());
            }
        }
    }

    /// Drops every org from this process's cache.
    pub fn evict_all(&self) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.by_id.invalidate_all();
        self.inner.by_slug.invalidate_all();
    }

    /// Caches `org` unless an eviction happened since `generation` was read.
    fn remember(&self, org: Org, generation: u64) -> Arc<Org> {
        let org = Arc::new(org);
        if self.inner.generation.load(Ordering::Acquire) == generation {
            self.inner.by_slug.insert(org.slug.to_string(), org.clone());
            self.inner.by_id.insert(org.id, org.clone());
            // An eviction between the check and the inserts: undo them.
            if self.inner.generation.load(Ordering::Acquire) != generation {
                self.inner.by_slug.invalidate(org.slug.as_str());
                self.inner.by_id.invalidate(&org.id);
            }
        }
        org
    }

    async fn changed(&self, org: Org) -> Result<Org, TenancyError> {
        self.announce(org.id).await;
        Ok(org)
    }

    /// Evicts locally and tells every other process.
    async fn announce(&self, id: OrgId) {
        self.evict(id);
        invalidation::announce(
            &self.inner.redis,
            self.inner.keys.org_invalidation_channel(),
            id.to_string(),
        )
        .await;
    }
}

fn validate_name(name: &str) -> Result<&str, TenancyError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(TenancyError::InvalidName);
    }
    Ok(name)
}

fn org_from_row(row: &PgRow) -> Result<Org, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(Org {
        id: OrgId::from_uuid(row.try_get("id")?),
        slug: Slug::from_db(row.try_get("slug")?),
        name: row.try_get("name")?,
        status: OrgStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown org status {status:?}").into()))?,
        org_version: row.try_get("org_version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        deleted_at: row.try_get("deleted_at")?,
    })
}
