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

    /// A distributed lock on `name` (platform-wide work).
    pub fn lock_key(&self, name: &str) -> String {
        format!("{}:lock:{}", self.prefix, name)
    }

    /// A counter key used for throttling (`kind` such as `login-email`).
    pub fn throttle_key(&self, kind: &str, subject: &str) -> String {
        format!("{}:throttle:{}:{}", self.prefix, kind, subject)
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
