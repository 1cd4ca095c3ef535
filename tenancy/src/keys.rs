//! Every Redis key and channel name is built here: the configured prefix
//! first, then the org id for org data, so an org's keys can be listed and
//! purged and tests can share one Redis with a prefix each.

use crate::OrgId;

/// Builds Redis keys under one prefix.
#[derive(Debug, Clone)]
pub struct RedisKeys {
    prefix: String,
}

impl RedisKeys {
    pub fn new(prefix: impl Into<String>) -> Self {
        RedisKeys { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Pub/sub channel on which org changes are announced (payload: org id).
    pub fn org_invalidation_channel(&self) -> String {
        format!("{}:tenancy:org-changed", self.prefix)
    }

    /// Pub/sub channel on which session, API key, membership and user
    /// changes are announced.
    pub fn auth_invalidation_channel(&self) -> String {
        format!("{}:auth:changed", self.prefix)
    }

    /// Pub/sub channel on which feature flag changes are announced.
    pub fn flags_invalidation_channel(&self) -> String {
        format!("{}:flags:changed", self.prefix)
    }

    /// The Redis stream of queue `name`. The `{name}` hash tag keeps every
    /// key of one queue in one Redis Cluster slot.
    pub fn queue_stream(&self, name: &str) -> String {
        format!("{}:queue:{{{}}}:stream", self.prefix, name)
    }

    /// The sorted set of queue `name`'s entries waiting for a time (delayed
    /// jobs and retries after backoff), scored by due time in milliseconds.
    pub fn queue_scheduled(&self, name: &str) -> String {
        format!("{}:queue:{{{}}}:scheduled", self.prefix, name)
    }

    /// The set of org job ids that queue `name` holds (in its stream or its
    /// scheduled set): what the recovery sweep compares PostgreSQL against.
    pub fn queue_index(&self, name: &str) -> String {
        format!("{}:queue:{{{}}}:jobs", self.prefix, name)
    }

    /// The sorted set of queue `name`'s dead jobs, scored by time of death.
    pub fn queue_dead(&self, name: &str) -> String {
        format!("{}:queue:{{{}}}:dead", self.prefix, name)
    }

    /// Present while queue `name` is paused (workers do not fetch from it).
    pub fn queue_paused(&self, name: &str) -> String {
        format!("{}:queue:{{{}}}:paused", self.prefix, name)
    }

    /// Entries of a queue acknowledged since it was created (a counter:
    /// the console's throughput per queue).
    pub fn queue_done(&self, name: &str) -> String {
        format!("{}:queue:{{{}}}:done", self.prefix, name)
    }

    /// The set of every queue name ever used.
    pub fn queues(&self) -> String {
        format!("{}:queues", self.prefix)
    }

    /// A worker's heartbeat hash.
    pub fn worker(&self, id: &str) -> String {
        format!("{}:worker:{}", self.prefix, id)
    }

    /// The sorted set of worker ids, scored by their last heartbeat (ms).
    pub fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }

    /// Pub/sub channel carrying job cancellations and worker commands.
    pub fn worker_control_channel(&self) -> String {
        format!("{}:workers:control", self.prefix)
    }

    /// Pub/sub channel of one org's events (job status changes).
    pub fn org_events_channel(&self, org: OrgId) -> String {
        format!("{}:org:{}:events", self.prefix, org)
    }

    /// The version of one org's job lists: a random value replaced
    /// whenever one of its jobs changes, so readers can cache a list page
    /// for as long as the version stays.
    pub fn org_jobs_version(&self, org: OrgId) -> String {
        format!("{}:org:{}:jobs:version", self.prefix, org)
    }

    /// Pub/sub channel of one job's live log lines.
    pub fn job_log_channel(&self, org: OrgId, job: &str) -> String {
        format!("{}:org:{}:job:{}:log", self.prefix, org, job)
    }

    /// The sorted set of org schedules by next due time (ms), members
    /// `org_id:schedule_id`. Rebuilt from PostgreSQL when lost.
    pub fn schedules_due(&self) -> String {
        format!("{}:schedules:due", self.prefix)
    }

    /// Marks that global schedule `name` fired for the tick at `tick_ms`.
    pub fn schedule_fired(&self, name: &str, tick_ms: i64) -> String {
        format!("{}:schedules:fired:{}:{}", self.prefix, name, tick_ms)
    }

    /// Set once by the scheduler; when it is missing, Redis lost its data
    /// (or is new) and the recovery sweep runs at once.
    pub fn jobs_sentinel(&self) -> String {
        format!("{}:jobs:sentinel", self.prefix)
    }

    /// A distributed lock on `name` (platform-wide work).
    pub fn lock_key(&self, name: &str) -> String {
        format!("{}:lock:{}", self.prefix, name)
    }

    /// A counter key used for throttling (`kind` such as `login-email`).
    pub fn throttle_key(&self, kind: &str, subject: &str) -> String {
        format!("{}:throttle:{}:{}", self.prefix, kind, subject)
    }

    /// Short-lived sign-in state (`kind` such as `oidc-flow`), named by a
    /// hash of its secret, never the secret itself.
    pub fn auth_key(&self, kind: &str, hashed: &str) -> String {
        format!("{}:auth:{}:{}", self.prefix, kind, hashed)
    }

    /// A key holding data of one org: `{prefix}:org:{id}:{name}`.
    pub fn org_key(&self, org: OrgId, name: &str) -> String {
        format!("{}:org:{}:{}", self.prefix, org, name)
    }

    /// The pattern matching every key of one org (for purge).
    pub fn org_pattern(&self, org: OrgId) -> String {
        format!("{}:org:{}:*", self.prefix, org)
    }

    /// The pattern matching every key under this prefix.
    pub fn all_pattern(&self) -> String {
        format!("{}:*", self.prefix)
    }
}
