//! Audit events: org-scoped ones in the org's `audit_events`, platform ones
//! in `public.audit_events`. Written in the same transaction as the change
//! they describe.
//!
//! Org-scoped statements are not kept prepared: their text names the org's
//! schema, so a prepared-statement cache would hold one per org (and per
//! connection), which thousands of orgs would fill.

use chrono::{DateTime, Utc};
use sea_query::{Expr, ExprTrait, Order, PostgresQueryBuilder, Query};
use sea_query_sqlx::SqlxBinder;
use sqlx::PgConnection;
use tenancy::{OrgId, SchemaName};
use uuid::Uuid;

use super::Actor;

/// One audit event as listed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditEvent {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// Records an event in one org's schema.
pub async fn record_org(
    conn: &mut PgConnection,
    schema: &SchemaName,
    actor: &Actor,
    action: &str,
    target: Option<&str>,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let (sql, values) = Query::insert()
        .into_table(schema.table("audit_events"))
        .columns(["id", "actor", "action", "target", "details"])
        .values_panic([
            Uuid::now_v7().into(),
            actor.to_string().into(),
            action.into(),
            target.map(str::to_owned).into(),
            details.into(),
        ])
        .build_sqlx(PostgresQueryBuilder);
    sqlx::query_with(sqlx::AssertSqlSafe(sql), values).persistent(false).execute(conn).await?;
    Ok(())
}

/// Records a platform event in `public.audit_events`.
pub async fn record_platform(
    conn: &mut PgConnection,
    actor: &Actor,
    action: &str,
    target: Option<&str>,
    org: Option<OrgId>,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO public.audit_events (id, actor, action, target, org_id, details) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(Uuid::now_v7())
    .bind(actor.to_string())
    .bind(action)
    .bind(target)
    .bind(org.map(|o| o.as_uuid()))
    .bind(details)
    .execute(conn)
    .await?;
    Ok(())
}

/// A page of an org's events, newest first, strictly after `cursor`
/// (the `(occurred_at, id)` of the last event of the previous page).
pub async fn list_org(
    pool: &sqlx::PgPool,
    schema: &SchemaName,
    cursor: Option<(DateTime<Utc>, Uuid)>,
    limit: u64,
) -> Result<Vec<AuditEvent>, sqlx::Error> {
    let mut query = Query::select();
    query
        .columns(["id", "occurred_at", "actor", "action", "target", "details"])
        .from(schema.table("audit_events"))
        .order_by("occurred_at", Order::Desc)
        .order_by("id", Order::Desc)
        .limit(limit);
    if let Some((at, id)) = cursor {
        query.and_where(
            Expr::tuple([Expr::col("occurred_at"), Expr::col("id")])
                .lt(Expr::tuple([Expr::val(at), Expr::val(id)])),
        );
    }
    let (sql, values) = query.build_sqlx(PostgresQueryBuilder);
    sqlx::query_as_with(sqlx::AssertSqlSafe(sql), values).persistent(false).fetch_all(pool).await
}

/// What to look for among audit events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSearch {
    /// The actor contains this (any case).
    pub actor: Option<String>,
    /// The action starts with this (`job.` finds every job action).
    pub action: Option<String>,
}

/// The newest events matching `search` (at most `limit`): an org's log
/// when `schema` is given, the platform's otherwise.
pub async fn search(
    pool: &sqlx::PgPool,
    schema: Option<&SchemaName>,
    search: &AuditSearch,
    limit: u64,
) -> Result<Vec<AuditEvent>, sqlx::Error> {
    let mut query = Query::select();
    query
        .columns(["id", "occurred_at", "actor", "action", "target", "details"])
        .order_by("occurred_at", Order::Desc)
        .order_by("id", Order::Desc)
        .limit(limit);
    match schema {
        Some(schema) => query.from(schema.table("audit_events")),
        None => query.from(("public", "audit_events")),
    };
    if let Some(actor) = search.actor.as_deref().filter(|a| !a.is_empty()) {
        let pattern = format!("%{}%", super::users::like_escape(actor));
        query.and_where(sea_query::extension::postgres::PgExpr::ilike(Expr::col("actor"), pattern));
    }
    if let Some(action) = search.action.as_deref().filter(|a| !a.is_empty()) {
        let pattern = format!("{}%", super::users::like_escape(action));
        query.and_where(Expr::col("action").like(pattern));
    }
    let (sql, values) = query.build_sqlx(PostgresQueryBuilder);
    sqlx::query_as_with(sqlx::AssertSqlSafe(sql), values).persistent(false).fetch_all(pool).await
}
