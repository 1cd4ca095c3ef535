//! Feature flags (as in Dalgo): declared here in code with a description and
//! a default; a global value and per-org overrides live in
//! `public.feature_flags`. The effective value for an org is its override,
//! else the global value, else the default.
//!
//! All values are small, so each process keeps them all in memory, loaded on
//! first use and dropped whenever any process announces a change on
//! `{prefix}:flags:changed`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sqlx::PgPool;
use tenancy::{Listener, OrgId, RedisKeys, invalidation};

use crate::accounts::{Actor, audit};

/// A flag declared in code.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct FlagDef {
    pub name: &'static str,
    pub description: &'static str,
    pub default: bool,
}

/// Every flag the program knows. Unknown names are refused everywhere.
pub const FLAGS: &[FlagDef] = &[
    FlagDef {
        name: "file_uploads",
        description: "Members may upload files to the org (processed in the background).",
        default: true,
    },
    FlagDef {
        name: "webhooks",
        description: "Admins may register webhook endpoints for org events.",
        default: false,
    },
    FlagDef {
        name: "weekly_digest",
        description: "Org admins get a weekly summary email.",
        default: false,
    },
    FlagDef {
        name: "job_log_streaming",
        description: "Job logs stream live over WebSocket while jobs run.",
        default: true,
    },
];

/// The flag declared as `name`, if any.
pub fn find(name: &str) -> Option<&'static FlagDef> {
    FLAGS.iter().find(|f| f.name == name)
}

/// Where an effective value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Default,
    Global,
    Org,
}

/// A flag's value for one org.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Effective {
    pub name: &'static str,
    pub description: &'static str,
    pub enabled: bool,
    pub source: Source,
}

/// A flag's values everywhere, for platform admins.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FlagState {
    pub name: &'static str,
    pub description: &'static str,
    pub default: bool,
    pub global: Option<bool>,
    /// Org id → override.
    pub overrides: Vec<(OrgId, bool)>,
}

#[derive(Debug, Default)]
struct Snapshot {
    global: HashMap<String, bool>,
    orgs: HashMap<(String, OrgId), bool>,
}

/// A snapshot and when it was read.
type Loaded = (Arc<Snapshot>, std::time::Instant);

/// Reads and changes flag values. Cheap to clone.
#[derive(Clone)]
pub struct Flags {
    pool: PgPool,
    redis: fred::clients::Client,
    keys: RedisKeys,
    snapshot: Arc<RwLock<Option<Loaded>>>,
    /// Bumped on every eviction: a snapshot read before a change is not
    /// stored after it (see `OrgRegistry`).
    generation: Arc<std::sync::atomic::AtomicU64>,
}

/// Snapshots also expire, so a lost announcement heals on its own.
const SNAPSHOT_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flags").finish_non_exhaustive()
    }
}

/// Why a flag change was refused.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("unknown flag '{0}'; known flags: {known}", known = FLAGS.iter().map(|f| f.name).collect::<Vec<_>>().join(", "))]
    Unknown(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl Flags {
    pub fn new(pool: PgPool, redis: fred::clients::Client, keys: RedisKeys) -> Self {
        Flags {
            pool,
            redis,
            keys,
            snapshot: Arc::new(RwLock::new(None)),
            generation: Default::default(),
        }
    }

    /// Drops the cached values when another process changes one.
    pub async fn listen(&self) -> Result<Listener, tenancy::TenancyError> {
        let flags = self.clone();
        invalidation::listen(&self.redis, self.keys.flags_invalidation_channel(), move |_| {
            flags.evict()
        })
        .await
    }

    fn evict(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if let Ok(mut guard) = self.snapshot.write() {
            *guard = None;
        }
    }

    async fn snapshot(&self) -> Result<Arc<Snapshot>, FlagError> {
        if let Ok(guard) = self.snapshot.read()
            && let Some((snapshot, loaded)) = guard.as_ref()
            && loaded.elapsed() < SNAPSHOT_TTL
        {
            return Ok(snapshot.clone());
        }
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        let rows: Vec<(String, Option<uuid::Uuid>, bool)> =
            sqlx::query_as("SELECT name, org_id, enabled FROM public.feature_flags")
                .fetch_all(&self.pool)
                .await?;
        let mut snapshot = Snapshot::default();
        for (name, org, enabled) in rows {
            match org {
                None => {
                    snapshot.global.insert(name, enabled);
                }
                Some(org) => {
                    snapshot.orgs.insert((name, OrgId::from_uuid(org)), enabled);
                }
            }
        }
        let snapshot = Arc::new(snapshot);
        if let Ok(mut guard) = self.snapshot.write()
            && self.generation.load(std::sync::atomic::Ordering::Acquire) == generation
        {
            *guard = Some((snapshot.clone(), std::time::Instant::now()));
        }
        Ok(snapshot)
    }

    /// Every flag's effective value for `org`.
    pub async fn for_org(&self, org: OrgId) -> Result<Vec<Effective>, FlagError> {
        let snapshot = self.snapshot().await?;
        Ok(FLAGS
            .iter()
            .map(|def| {
                let (enabled, source) = match snapshot.orgs.get(&(def.name.to_owned(), org)) {
                    Some(v) => (*v, Source::Org),
                    None => match snapshot.global.get(def.name) {
                        Some(v) => (*v, Source::Global),
                        None => (def.default, Source::Default),
                    },
                };
                Effective { name: def.name, description: def.description, enabled, source }
            })
            .collect())
    }

    /// Whether `name` is on for `org`.
    pub async fn enabled(&self, name: &str, org: OrgId) -> Result<bool, FlagError> {
        let def = find(name).ok_or_else(|| FlagError::Unknown(name.to_owned()))?;
        Ok(self
            .for_org(org)
            .await?
            .into_iter()
            .find(|e| e.name == def.name)
            .is_some_and(|e| e.enabled))
    }

    /// Every flag with its default, global value and overrides.
    pub async fn all(&self) -> Result<Vec<FlagState>, FlagError> {
        let snapshot = self.snapshot().await?;
        Ok(FLAGS
            .iter()
            .map(|def| {
                let mut overrides: Vec<(OrgId, bool)> = snapshot
                    .orgs
                    .iter()
                    .filter(|((name, _), _)| name == def.name)
                    .map(|((_, org), v)| (*org, *v))
                    .collect();
                overrides.sort();
                FlagState {
                    name: def.name,
                    description: def.description,
                    default: def.default,
                    global: snapshot.global.get(def.name).copied(),
                    overrides,
                }
            })
            .collect())
    }

    /// Sets the global value (`org` None) or an org's override.
    pub async fn set(
        &self,
        actor: &Actor,
        name: &str,
        org: Option<OrgId>,
        enabled: bool,
    ) -> Result<(), FlagError> {
        let def = find(name).ok_or_else(|| FlagError::Unknown(name.to_owned()))?;
        let mut tx = self.pool.begin().await?;
        let sql = if org.is_some() {
            "INSERT INTO public.feature_flags (name, org_id, enabled, updated_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name, org_id) WHERE org_id IS NOT NULL \
             DO UPDATE SET enabled = EXCLUDED.enabled, updated_at = now(), updated_by = EXCLUDED.updated_by \
             WHERE feature_flags.enabled IS DISTINCT FROM EXCLUDED.enabled"
        } else {
            "INSERT INTO public.feature_flags (name, org_id, enabled, updated_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) WHERE org_id IS NULL \
             DO UPDATE SET enabled = EXCLUDED.enabled, updated_at = now(), updated_by = EXCLUDED.updated_by \
             WHERE feature_flags.enabled IS DISTINCT FROM EXCLUDED.enabled"
        };
        let changed = sqlx::query(sql)
            .bind(def.name)
            .bind(org.map(|o| o.as_uuid()))
            .bind(enabled)
            .bind(actor.to_string())
            .execute(&mut *tx)
            .await?;
        if changed.rows_affected() == 0 {
            // Already so: nothing to record or announce.
            return Ok(());
        }
        let details = serde_json::json!({ "enabled": enabled });
        record_change(&mut tx, actor, def.name, org, details).await?;
        tx.commit().await?;
        self.announce().await;
        Ok(())
    }

    /// Removes the global value or an org's override (back to the next
    /// level). True when there was one.
    pub async fn clear(
        &self,
        actor: &Actor,
        name: &str,
        org: Option<OrgId>,
    ) -> Result<bool, FlagError> {
        let def = find(name).ok_or_else(|| FlagError::Unknown(name.to_owned()))?;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "DELETE FROM public.feature_flags WHERE name = $1 AND org_id IS NOT DISTINCT FROM $2",
        )
        .bind(def.name)
        .bind(org.map(|o| o.as_uuid()))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            record_change(&mut tx, actor, def.name, org, serde_json::json!({ "cleared": true }))
                .await?;
        }
        tx.commit().await?;
        self.announce().await;
        Ok(done.rows_affected() > 0)
    }

    async fn announce(&self) {
        self.evict();
        invalidation::announce(&self.redis, self.keys.flags_invalidation_channel(), "flags".into())
            .await;
    }
}

/// Audits a flag change in `public` and, for an org override, in the org.
async fn record_change(
    tx: &mut sqlx::PgConnection,
    actor: &Actor,
    name: &str,
    org: Option<OrgId>,
    mut details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    details["scope"] = serde_json::json!(if org.is_some() { "org" } else { "global" });
    audit::record_platform(tx, actor, "flag.changed", Some(name), org, details.clone()).await?;
    if let Some(org) = org {
        audit::record_org(tx, &org.schema(), actor, "flag.changed", Some(name), details).await?;
    }
    Ok(())
}
