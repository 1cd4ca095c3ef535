//! The `Org` extractor: resolves the `{org}` path segment to an active org
//! and hands out its schema-qualified tables, so a handler cannot forget the
//! tenant scope.
//!
//! Statuses answered when the org cannot be served (all identical, so the
//! answer does not reveal whether a slug exists):
//! - unknown slug, or not a valid slug → 404 `org_not_found`
//! - deleted (soft) → 404 `org_not_found`
//! - suspended → 404 `org_not_found`

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use sea_query::TableName;
use tenancy::{Org, OrgRegistry, OrgStatus, SchemaName, Slug};

use crate::error::ApiError;

/// An active org resolved from the `{org}` path parameter.
#[derive(Debug, Clone)]
pub struct OrgScope {
    org: Arc<Org>,
    schema: SchemaName,
}

impl OrgScope {
    pub fn org(&self) -> &Org {
        &self.org
    }

    pub fn schema(&self) -> &SchemaName {
        &self.schema
    }

    /// `"org_…"."table"` for sea-query.
    pub fn table(&self, table: &'static str) -> TableName {
        self.schema.table(table)
    }
}

pub(super) fn not_found(slug: &str) -> ApiError {
    ApiError::not_found("org_not_found", format!("No org named '{slug}'."))
}

impl<S> FromRequestParts<S> for OrgScope
where
    OrgRegistry: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state).await.map_err(|_| {
            ApiError::internal(anyhow::anyhow!("OrgScope used on a route without path parameters"))
        })?;
        let raw = params
            .iter()
            .find(|(name, _)| *name == "org")
            .map(|(_, value)| value.to_owned())
            .ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("OrgScope used on a route without {{org}}"))
            })?;
        let shown: String = raw.chars().take(64).collect();
        let slug = Slug::parse(&raw).map_err(|_| not_found(&shown))?;
        let registry = OrgRegistry::from_ref(state);
        let org = registry.by_slug(&slug).await?.ok_or_else(|| not_found(&shown))?;
        if org.status != OrgStatus::Active {
            return Err(not_found(&shown));
        }
        tracing::Span::current().record("org_id", tracing::field::display(org.id));
        let schema = org.schema();
        Ok(OrgScope { org, schema })
    }
}
