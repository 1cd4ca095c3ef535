//! Webhooks: org admins register endpoints for events (`job.succeeded`,
//! `job.dead`, `file.ready`, `member.added`); each event becomes one
//! delivery per subscribed endpoint, sent by a `webhook.deliver` job
//! (retried with backoff) and kept with its outcome (status, latency, an
//! excerpt of the answer), listable and replayable.
//!
//! Standard endpoints get the event as JSON signed per the Standard
//! Webhooks spec (`webhook-id`, `webhook-timestamp`, `webhook-signature`:
//! HMAC-SHA256 under the endpoint's `whsec_` secret, shown once). Discord
//! endpoints get a message in Discord's format.
//!
//! Which endpoints an org has is cached per process for a few seconds, so
//! an event in an org without webhooks costs no query.

pub mod deliver;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use tenancy::{Org, OrgId};
use uuid::Uuid;

use crate::accounts::Actor;
use crate::jobs::{Jobs, JobsError, NewJob};

/// The events an endpoint can subscribe to.
pub const EVENT_TYPES: [&str; 4] = ["job.succeeded", "job.dead", "file.ready", "member.added"];
/// The job kind that sends one delivery.
pub const DELIVER_KIND: &str = "webhook.deliver";
/// How long a process trusts its list of an org's endpoints.
const CACHE_TTL: Duration = Duration::from_secs(5);

const ENDPOINT_COLUMNS: &str =
    "id, url, kind, event_types, enabled, description, created_by, created_at, updated_at";
const DELIVERY_COLUMNS: &str = "id, endpoint_id, event_id, event_type, payload, status, attempts, job_id, response_status, latency_ms, response_excerpt, error, created_at, last_attempt_at, delivered_at";

/// An endpoint as admins see it (never its secret).
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    /// `standard` or `discord`.
    pub kind: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub description: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One delivery of one event to one endpoint.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    /// Also the `webhook-id` header: the same on a retry or replay.
    pub event_id: Uuid,
    pub event_type: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    /// pending, succeeded or failed.
    pub status: String,
    pub attempts: i32,
    pub job_id: Option<Uuid>,
    pub response_status: Option<i32>,
    pub latency_ms: Option<i32>,
    /// The start of the endpoint's answer.
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Why a webhook operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Refused(String),
    #[error("no such webhook")]
    NotFound,
    #[error("no such delivery")]
    DeliveryNotFound,
    #[error(transparent)]
    Jobs(#[from] JobsError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// What an endpoint is made of.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub url: String,
    pub kind: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub description: String,
}

/// A change to an endpoint (absent fields stay).
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub description: Option<String>,
}

/// The webhook services. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    jobs: Jobs,
    allow_private: bool,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").field("allow_private", &self.allow_private).finish()
    }
}

/// An org's enabled endpoints: (id, events), cached per process.
type Subscriptions = Arc<Vec<(Uuid, Vec<String>)>>;

fn cache() -> &'static moka::sync::Cache<OrgId, Subscriptions> {
    static CACHE: std::sync::OnceLock<moka::sync::Cache<OrgId, Subscriptions>> =
        std::sync::OnceLock::new();
    CACHE.get_or_init(|| {
        moka::sync::Cache::builder().max_capacity(100_000).time_to_live(CACHE_TTL).build()
    })
}

/// A new `whsec_` secret (32 random bytes).
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn check_events(events: &[String]) -> Result<(), WebhookError> {
    if events.is_empty() {
        return Err(WebhookError::Invalid("event_types must name at least one event".into()));
    }
    if let Some(bad) = events.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
        return Err(WebhookError::Invalid(format!(
            "unknown event type {bad:?} (known: {})",
            EVENT_TYPES.join(", ")
        )));
    }
    Ok(())
}

impl Webhooks {
    pub fn new(jobs: Jobs, allow_private: bool) -> Self {
        Webhooks { jobs, allow_private }
    }

    /// Checks `url`: http(s), a host, and (unless private addresses are
    /// allowed) not a private, loopback or link-local address written as
    /// an IP or `localhost`. Names are resolved and checked again at
    /// each delivery.
    fn check_url(&self, url: &str) -> Result<(), WebhookError> {
        let parsed = url::Url::parse(url)
            .map_err(|_| WebhookError::Invalid(format!("url {url:?} is not a URL")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(WebhookError::Invalid("url must be an http:// or https:// URL".into()));
        }
        if url.len() > 2000 {
            return Err(WebhookError::Invalid("url is longer than 2000 characters".into()));
        }
        if !self.allow_private {
            let why = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => deliver::forbidden(ip.into()),
                Some(url::Host::Ipv6(ip)) => deliver::forbidden(ip.into()),
                Some(url::Host::Domain(d))
                    if d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost") =>
                {
                    Some("a loopback address")
                }
                _ => None,
            };
            if let Some(why) = why {
                return Err(WebhookError::Refused(format!(
                    "{} is {why}; webhooks go to public addresses (WEBHOOK_ALLOW_PRIVATE allows others)",
                    parsed.host_str().unwrap_or_default()
                )));
            }
        }
        Ok(())
    }

    /// Registers an endpoint; returns it and its secret (shown this once).
    pub async fn create(
        &self,
        org: &Org,
        actor: &Actor,
        new: NewEndpoint,
    ) -> Result<(Endpoint, String), WebhookError> {
        self.check_url(&new.url)?;
        check_events(&new.event_types)?;
        if !matches!(new.kind.as_str(), "standard" | "discord") {
            return Err(WebhookError::Invalid("kind must be standard or discord".into()));
        }
        let secret = new_secret();
        let schema = org.schema();
        let mut tx = self.jobs.pool().begin().await?;
        let endpoint = sqlx::query_as::<_, Endpoint>(AssertSqlSafe(format!(
            "INSERT INTO {} (id, url, kind, event_types, enabled, secret, description, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {ENDPOINT_COLUMNS}",
            schema.qualify("webhook_endpoints")
        )))
        .persistent(false)
        .bind(Uuid::now_v7())
        .bind(&new.url)
        .bind(&new.kind)
        .bind(&new.event_types)
        .bind(new.enabled)
        .bind(&secret)
        .bind(new.description.trim())
        .bind(actor.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let details = json!({ "url": endpoint.url, "kind": endpoint.kind, "event_types": endpoint.event_types });
        crate::accounts::audit::record_org(
            &mut tx,
            &schema,
            actor,
            "webhook.created",
            Some(&endpoint.id.to_string()),
            details,
        )
        .await?;
        tx.commit().await?;
        cache().invalidate(&org.id);
        Ok((endpoint, secret))
    }

    pub async fn list(&self, org: &Org) -> Result<Vec<Endpoint>, WebhookError> {
        Ok(sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM {} ORDER BY id",
            org.schema().qualify("webhook_endpoints")
        )))
        .persistent(false)
        .fetch_all(self.jobs.pool())
        .await?)
    }

    pub async fn get(&self, org: &Org, id: Uuid) -> Result<Endpoint, WebhookError> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM {} WHERE id = $1",
            org.schema().qualify("webhook_endpoints")
        )))
        .persistent(false)
        .bind(id)
        .fetch_optional(self.jobs.pool())
        .await?
        .ok_or(WebhookError::NotFound)
    }

    pub async fn update(
        &self,
        org: &Org,
        actor: &Actor,
        id: Uuid,
        change: EndpointChange,
    ) -> Result<Endpoint, WebhookError> {
        if let Some(url) = &change.url {
            self.check_url(url)?;
        }
        if let Some(events) = &change.event_types {
            check_events(events)?;
        }
        let schema = org.schema();
        let mut tx = self.jobs.pool().begin().await?;
        let endpoint = sqlx::query_as::<_, Endpoint>(AssertSqlSafe(format!(
            "UPDATE {} SET url = COALESCE($2, url), event_types = COALESCE($3, event_types), \
             enabled = COALESCE($4, enabled), description = COALESCE($5, description), \
             updated_at = now() WHERE id = $1 RETURNING {ENDPOINT_COLUMNS}",
            schema.qualify("webhook_endpoints")
        )))
        .persistent(false)
        .bind(id)
        .bind(&change.url)
        .bind(&change.event_types)
        .bind(change.enabled)
        .bind(change.description.as_deref().map(str::trim))
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(WebhookError::NotFound)?;
        let details = json!({ "url": endpoint.url, "event_types": endpoint.event_types, "enabled": endpoint.enabled });
        crate::accounts::audit::record_org(
            &mut tx,
            &schema,
            actor,
            "webhook.updated",
            Some(&id.to_string()),
            details,
        )
        .await?;
        tx.commit().await?;
        cache().invalidate(&org.id);
        Ok(endpoint)
    }

    pub async fn delete(&self, org: &Org, actor: &Actor, id: Uuid) -> Result<(), WebhookError> {
        let schema = org.schema();
        let mut tx = self.jobs.pool().begin().await?;
        let url: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "DELETE FROM {} WHERE id = $1 RETURNING url",
            schema.qualify("webhook_endpoints")
        )))
        .persistent(false)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let url = url.ok_or(WebhookError::NotFound)?;
        crate::accounts::audit::record_org(
            &mut tx,
            &schema,
            actor,
            "webhook.deleted",
            Some(&id.to_string()),
            json!({ "url": url }),
        )
        .await?;
        tx.commit().await?;
        cache().invalidate(&org.id);
        Ok(())
    }

    /// Deliveries to `endpoint`, newest first, `limit` after the cursor.
    pub async fn deliveries(
        &self,
        org: &Org,
        endpoint: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Delivery>, WebhookError> {
        self.get(org, endpoint).await?;
        Ok(sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM {} WHERE endpoint_id = $1 \
             AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
            org.schema().qualify("webhook_deliveries")
        )))
        .persistent(false)
        .bind(endpoint)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.jobs.pool())
        .await?)
    }

    /// Every org's delivery `id`, wherever it is (for the CLI).
    pub async fn delivery(&self, org: &Org, id: Uuid) -> Result<Delivery, WebhookError> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM {} WHERE id = $1",
            org.schema().qualify("webhook_deliveries")
        )))
        .persistent(false)
        .bind(id)
        .fetch_optional(self.jobs.pool())
        .await?
        .ok_or(WebhookError::DeliveryNotFound)
    }

    /// Sends delivery `id`'s event again, as a new delivery (same event id).
    pub async fn replay(
        &self,
        org: &Org,
        actor: &Actor,
        endpoint: Option<Uuid>,
        id: Uuid,
    ) -> Result<Delivery, WebhookError> {
        let original = self.delivery(org, id).await?;
        if endpoint.is_some_and(|e| e != original.endpoint_id) {
            return Err(WebhookError::DeliveryNotFound);
        }
        let row = NewDelivery {
            endpoint_id: original.endpoint_id,
            event_id: original.event_id,
            event_type: &original.event_type,
            payload: &original.payload,
        };
        let mut made = insert_deliveries(&self.jobs, org, &[row]).await?;
        let delivery = made.pop().ok_or(WebhookError::DeliveryNotFound)?;
        enqueue(&self.jobs, org, actor, std::slice::from_ref(&delivery)).await?;
        self.delivery(org, delivery.id).await
    }
}

/// True when this process knows (from its cache) that `org` has no
/// enabled webhook: events need not even be built.
pub fn known_quiet(org: OrgId) -> bool {
    cache().get(&org).is_some_and(|s| s.is_empty())
}

/// The enabled endpoints of `org` and their events (cached).
async fn subscriptions(jobs: &Jobs, org: OrgId) -> Result<Subscriptions, sqlx::Error> {
    if let Some(found) = cache().get(&org) {
        return Ok(found);
    }
    let rows: Vec<(Uuid, Vec<String>)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT id, event_types FROM {} WHERE enabled",
        org.schema().qualify("webhook_endpoints")
    )))
    .persistent(false)
    .fetch_all(jobs.pool())
    .await?;
    let found = Arc::new(rows);
    cache().insert(org, found.clone());
    Ok(found)
}

/// One delivery to record: an event for one endpoint.
struct NewDelivery<'a> {
    endpoint_id: Uuid,
    event_id: Uuid,
    event_type: &'a str,
    payload: &'a Value,
}

/// Records deliveries in one statement, in the order given.
async fn insert_deliveries(
    jobs: &Jobs,
    org: &Org,
    rows: &[NewDelivery<'_>],
) -> Result<Vec<Delivery>, sqlx::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query_as(AssertSqlSafe(format!(
        "INSERT INTO {} (id, endpoint_id, event_id, event_type, payload) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::jsonb[]) \
         RETURNING {DELIVERY_COLUMNS}",
        org.schema().qualify("webhook_deliveries")
    )))
    .persistent(false)
    .bind(&ids)
    .bind(rows.iter().map(|r| r.endpoint_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.event_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.event_type).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.payload).collect::<Vec<_>>())
    .fetch_all(jobs.pool())
    .await
}

async fn enqueue(
    jobs: &Jobs,
    org: &Org,
    actor: &Actor,
    deliveries: &[Delivery],
) -> Result<(), JobsError> {
    let batch: Vec<NewJob> = deliveries
        .iter()
        .map(|d| NewJob::new(DELIVER_KIND, json!({ "delivery_id": d.id })))
        .collect();
    let enqueued = jobs.enqueue_batch(org, actor, batch).await?;
    let ids: Vec<Uuid> = deliveries.iter().map(|d| d.id).collect();
    let job_ids: Vec<Uuid> = enqueued.iter().map(|e| e.job.id).collect();
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {} d SET job_id = u.job_id FROM unnest($1::uuid[], $2::uuid[]) AS u(id, job_id) WHERE d.id = u.id",
        org.schema().qualify("webhook_deliveries")
    )))
    .persistent(false)
    .bind(&ids)
    .bind(&job_ids)
    .execute(jobs.pool())
    .await?;
    Ok(())
}

/// Announces events in `org` (type and data each) to the endpoints that
/// subscribed: a delivery and a job each. Returns how many deliveries.
/// Never fails the caller's work: errors are logged. In an org without
/// webhooks this is a cache lookup.
pub async fn emit(jobs: &Jobs, org: OrgId, events: Vec<(&'static str, Value)>) -> usize {
    if events.is_empty() {
        return 0;
    }
    match try_emit(jobs, org, events).await {
        Ok(n) => n,
        Err(err) => {
            tracing::warn!(org_id = %org, error = %err, "could not emit webhook events");
            0
        }
    }
}

async fn try_emit(
    jobs: &Jobs,
    org_id: OrgId,
    events: Vec<(&'static str, Value)>,
) -> Result<usize, WebhookError> {
    let subscriptions = match subscriptions(jobs, org_id).await {
        Ok(s) => s,
        // An org not yet migrated to the webhooks lineage version: quiet
        // until the cache forgets it.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => {
            cache().insert(org_id, Arc::new(Vec::new()));
            return Ok(0);
        }
        Err(err) => return Err(err.into()),
    };
    if subscriptions.is_empty() {
        return Ok(0);
    }
    let mut org: Option<Arc<Org>> = None;
    // Every event of the call in one insert and one enqueue: a worker that
    // finishes a batch of jobs announces them together.
    let mut events_made: Vec<(Vec<Uuid>, Uuid, &'static str, Value)> = Vec::new();
    for (event_type, data) in events {
        let targets: Vec<Uuid> = subscriptions
            .iter()
            .filter(|(_, subscribed)| subscribed.iter().any(|e| e == event_type))
            .map(|(id, _)| *id)
            .collect();
        if targets.is_empty() {
            continue;
        }
        let org = match &org {
            Some(org) => org.clone(),
            None => {
                let Some(found) = jobs.orgs().by_id(org_id).await.map_err(JobsError::from)? else {
                    return Ok(0);
                };
                org = Some(found.clone());
                found
            }
        };
        let payload = json!({
            "type": event_type,
            "timestamp": Utc::now(),
            "org": { "id": org.id.to_string(), "slug": org.slug.to_string() },
            "data": data,
        });
        events_made.push((targets, Uuid::now_v7(), event_type, payload));
    }
    let Some(org) = org else {
        return Ok(0);
    };
    let rows: Vec<NewDelivery<'_>> = events_made
        .iter()
        .flat_map(|(targets, event_id, event_type, payload)| {
            targets.iter().map(move |endpoint_id| NewDelivery {
                endpoint_id: *endpoint_id,
                event_id: *event_id,
                event_type,
                payload,
            })
        })
        .collect();
    let deliveries = insert_deliveries(jobs, &org, &rows).await?;
    enqueue(jobs, &org, &Actor::System, &deliveries).await?;
    Ok(deliveries.len())
}
