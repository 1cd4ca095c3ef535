//! Org schedules: cron expressions that enqueue a job of a kind, kept in
//! the org's `schedules` table and fired by `orgstack scheduler`.
//!
//! Cron expressions have five fields (minute hour day-of-month month
//! day-of-week) or six (seconds first), or a nickname such as `@daily`,
//! and are read in UTC.

use chrono::{DateTime, Utc};
use fred::interfaces::SortedSetsInterface;
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgExecutor};
use tenancy::{Org, OrgId, RedisKeys, SchemaName};
use uuid::Uuid;

use super::{Jobs, JobsError, NewJob};
use crate::accounts::Actor;
use crate::queue::QueueName;

/// A cron schedule of an org.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Schedule {
    pub id: Uuid,
    pub name: String,
    /// Cron expression (UTC), 5 or 6 fields, or a nickname like `@hourly`.
    pub cron: String,
    pub kind: String,
    /// The queue its jobs go to (`null`: the kind's queue).
    pub queue: Option<String>,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub enabled: bool,
    /// After a time with no scheduler running, skip the missed tick instead
    /// of running it once.
    pub skip_missed: bool,
    /// The last tick that fired.
    pub last_fire_at: Option<DateTime<Utc>>,
    /// The job that tick made.
    pub last_job_id: Option<Uuid>,
    /// The next tick (`null` when disabled).
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, cron, kind, queue, payload, enabled, skip_missed, last_fire_at, \
    last_job_id, next_run_at, created_by, created_at, updated_at";

/// A new schedule.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    pub name: String,
    pub cron: String,
    pub kind: String,
    pub queue: Option<QueueName>,
    pub payload: Value,
    pub enabled: bool,
    pub skip_missed: bool,
}

/// Changes to a schedule; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ScheduleChange {
    pub name: Option<String>,
    pub cron: Option<String>,
    pub kind: Option<String>,
    pub queue: Option<Option<QueueName>>,
    pub payload: Option<Value>,
    pub enabled: Option<bool>,
    pub skip_missed: Option<bool>,
}

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct Cron(croner::Cron);

impl Cron {
    /// Parses 5 or 6 fields (seconds first) or a nickname.
    pub fn parse(expression: &str) -> Result<Self, JobsError> {
        let expression = expression.trim();
        if expression.is_empty() || expression.len() > 200 {
            return Err(JobsError::Invalid("cron must be 1 to 200 characters".into()));
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|e| {
                JobsError::Invalid(format!("invalid cron expression '{expression}': {e}"))
            })?;
        let parsed = Cron(cron);
        if parsed.next_after(Utc::now()).is_none() {
            return Err(JobsError::Invalid(format!("cron expression '{expression}' never fires")));
        }
        Ok(parsed)
    }

    /// The first tick strictly after `time`.
    pub fn next_after(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.0.find_next_occurrence(&time, false).ok()
    }

    /// The last tick at or before `time`.
    pub fn last_at_or_before(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.0.find_previous_occurrence(&time, true).ok()
    }
}

fn check_name(name: &str) -> Result<String, JobsError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(JobsError::Invalid("name must be 1 to 100 characters".into()));
    }
    Ok(name.to_owned())
}

fn from_db(err: sqlx::Error, name: &str) -> JobsError {
    if super::store::is_unique_violation(&err, "schedules_name_key") {
        JobsError::ScheduleNameTaken(name.to_owned())
    } else {
        JobsError::Database(err)
    }
}

/// The member of the due index for one schedule.
pub(crate) fn due_member(org: OrgId, schedule: Uuid) -> String {
    format!("{org}:{schedule}")
}

/// Puts a schedule in the due index at its next tick, or takes it out.
pub(crate) async fn index(
    redis: &fred::clients::Client,
    keys: &RedisKeys,
    org: OrgId,
    schedule: &Schedule,
) -> Result<(), fred::error::Error> {
    let member = due_member(org, schedule.id);
    match (schedule.enabled, schedule.next_run_at) {
        (true, Some(next)) => {
            let _: i64 = redis
                .zadd(
                    keys.schedules_due(),
                    None,
                    None,
                    false,
                    false,
                    (next.timestamp_millis() as f64, member),
                )
                .await?;
        }
        _ => {
            let _: i64 = redis.zrem(keys.schedules_due(), member).await?;
        }
    }
    Ok(())
}

pub(crate) async fn get_in<'e>(
    executor: impl PgExecutor<'e>,
    schema: &SchemaName,
    id: Uuid,
    lock: bool,
) -> Result<Option<Schedule>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM {} WHERE id = $1{}",
        schema.qualify("schedules"),
        if lock { " FOR UPDATE" } else { "" }
    );
    sqlx::query_as(AssertSqlSafe(sql)).persistent(false).bind(id).fetch_optional(executor).await
}

/// Every enabled schedule of one org (to rebuild the due index).
pub(crate) async fn enabled<'e>(
    executor: impl PgExecutor<'e>,
    schema: &SchemaName,
) -> Result<Vec<Schedule>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM {} WHERE enabled", schema.qualify("schedules"));
    sqlx::query_as(AssertSqlSafe(sql)).persistent(false).fetch_all(executor).await
}

/// Records that `tick` fired (making `job`) and when the next is, unless a
/// tick at or after it already fired: this is what makes each tick fire
/// once, whatever the number of schedulers.
pub(crate) async fn mark_fired<'e>(
    executor: impl PgExecutor<'e>,
    schema: &SchemaName,
    id: Uuid,
    tick: DateTime<Utc>,
    job: Option<Uuid>,
    next: Option<DateTime<Utc>>,
) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "UPDATE {} SET last_fire_at = $2, last_job_id = COALESCE($3, last_job_id), next_run_at = $4 \
         WHERE id = $1 AND (last_fire_at IS NULL OR last_fire_at < $2)",
        schema.qualify("schedules")
    );
    let done = sqlx::query(AssertSqlSafe(sql))
        .persistent(false)
        .bind(id)
        .bind(tick)
        .bind(job)
        .bind(next)
        .execute(executor)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves the next tick without firing (a skipped missed tick).
pub(crate) async fn set_next<'e>(
    executor: impl PgExecutor<'e>,
    schema: &SchemaName,
    id: Uuid,
    next: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    let sql = format!("UPDATE {} SET next_run_at = $2 WHERE id = $1", schema.qualify("schedules"));
    sqlx::query(AssertSqlSafe(sql)).persistent(false).bind(id).bind(next).execute(executor).await?;
    Ok(())
}

impl Jobs {
    /// Checks kind, queue and payload as an enqueue would.
    fn check_schedule_job(
        &self,
        kind: &str,
        queue: Option<&QueueName>,
        payload: &Value,
    ) -> Result<(), JobsError> {
        let probe = NewJob { queue: queue.cloned(), ..NewJob::new(kind, payload.clone()) };
        self.check(&probe).map(|_| ())
    }

    /// Creates a schedule; its first tick is the next one after now.
    pub async fn create_schedule(
        &self,
        org: &Org,
        actor: &Actor,
        new: NewSchedule,
    ) -> Result<Schedule, JobsError> {
        let name = check_name(&new.name)?;
        let cron = Cron::parse(&new.cron)?;
        self.check_schedule_job(&new.kind, new.queue.as_ref(), &new.payload)?;
        let next = if new.enabled { cron.next_after(Utc::now()) } else { None };
        let schema = org.schema();
        let mut tx = self.pool().begin().await?;
        let sql = format!(
            "INSERT INTO {} (id, name, cron, kind, queue, payload, enabled, skip_missed, next_run_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}",
            schema.qualify("schedules")
        );
        let schedule: Schedule = sqlx::query_as(AssertSqlSafe(sql))
            .persistent(false)
            .bind(Uuid::now_v7())
            .bind(&name)
            .bind(new.cron.trim())
            .bind(&new.kind)
            .bind(new.queue.as_ref().map(QueueName::as_str))
            .bind(&new.payload)
            .bind(new.enabled)
            .bind(new.skip_missed)
            .bind(next)
            .bind(actor.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| from_db(e, &name))?;
        crate::accounts::audit::record_org(
            &mut tx,
            &schema,
            actor,
            "schedule.created",
            Some(&schedule.id.to_string()),
            serde_json::json!({ "name": schedule.name, "cron": schedule.cron, "kind": schedule.kind }),
        )
        .await?;
        tx.commit().await?;
        index(self.redis(), self.keys(), org.id, &schedule).await?;
        Ok(schedule)
    }

    /// A page of schedules by name, after `after`.
    pub async fn list_schedules(
        &self,
        org: &Org,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Schedule>, JobsError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE name COLLATE \"C\" > $1 ORDER BY name COLLATE \"C\" LIMIT $2",
            org.schema().qualify("schedules")
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .persistent(false)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn get_schedule(&self, org: &Org, id: Uuid) -> Result<Schedule, JobsError> {
        get_in(self.pool(), &org.schema(), id, false).await?.ok_or(JobsError::ScheduleNotFound)
    }

    /// Changes a schedule; a new cron or enabling it sets the next tick
    /// from now.
    pub async fn update_schedule(
        &self,
        org: &Org,
        actor: &Actor,
        id: Uuid,
        change: ScheduleChange,
    ) -> Result<Schedule, JobsError> {
        let schema = org.schema();
        let mut tx = self.pool().begin().await?;
        let current =
            get_in(&mut *tx, &schema, id, true).await?.ok_or(JobsError::ScheduleNotFound)?;
        let name =
            change.name.as_deref().map(check_name).transpose()?.unwrap_or(current.name.clone());
        let cron_text = change.cron.as_deref().map(str::trim).unwrap_or(&current.cron).to_owned();
        let cron = Cron::parse(&cron_text)?;
        let kind = change.kind.clone().unwrap_or(current.kind.clone());
        let queue = match &change.queue {
            Some(q) => q.clone(),
            None => current.queue.as_deref().and_then(|q| QueueName::parse(q).ok()),
        };
        let payload = change.payload.clone().unwrap_or(current.payload.clone());
        self.check_schedule_job(&kind, queue.as_ref(), &payload)?;
        let enabled = change.enabled.unwrap_or(current.enabled);
        let skip_missed = change.skip_missed.unwrap_or(current.skip_missed);
        let retimed = change.cron.is_some() || (enabled && !current.enabled);
        let next = match (enabled, retimed) {
            (false, _) => None,
            (true, true) => cron.next_after(Utc::now()),
            (true, false) => current.next_run_at.or_else(|| cron.next_after(Utc::now())),
        };
        let sql = format!(
            "UPDATE {} SET name = $2, cron = $3, kind = $4, queue = $5, payload = $6, enabled = $7, \
               skip_missed = $8, next_run_at = $9, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}",
            schema.qualify("schedules")
        );
        let schedule: Schedule = sqlx::query_as(AssertSqlSafe(sql))
            .persistent(false)
            .bind(id)
            .bind(&name)
            .bind(&cron_text)
            .bind(&kind)
            .bind(queue.as_ref().map(QueueName::as_str))
            .bind(&payload)
            .bind(enabled)
            .bind(skip_missed)
            .bind(next)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| from_db(e, &name))?;
        crate::accounts::audit::record_org(
            &mut tx,
            &schema,
            actor,
            "schedule.updated",
            Some(&id.to_string()),
            serde_json::json!({ "name": schedule.name, "cron": schedule.cron, "enabled": schedule.enabled }),
        )
        .await?;
        tx.commit().await?;
        index(self.redis(), self.keys(), org.id, &schedule).await?;
        Ok(schedule)
    }

    pub async fn delete_schedule(
        &self,
        org: &Org,
        actor: &Actor,
        id: Uuid,
    ) -> Result<(), JobsError> {
        let schema = org.schema();
        let mut tx = self.pool().begin().await?;
        let sql =
            format!("DELETE FROM {} WHERE id = $1 RETURNING name", schema.qualify("schedules"));
        let name: Option<String> = sqlx::query_scalar(AssertSqlSafe(sql))
            .persistent(false)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(name) = name else { return Err(JobsError::ScheduleNotFound) };
        crate::accounts::audit::record_org(
            &mut tx,
            &schema,
            actor,
            "schedule.deleted",
            Some(&id.to_string()),
            serde_json::json!({ "name": name }),
        )
        .await?;
        tx.commit().await?;
        let _: i64 = self.redis().zrem(self.keys().schedules_due(), due_member(org.id, id)).await?;
        Ok(())
    }

    /// Enqueues the schedule's job now, outside its cron ticks.
    pub async fn run_schedule_now(
        &self,
        org: &Org,
        actor: &Actor,
        id: Uuid,
    ) -> Result<super::Enqueued, JobsError> {
        let schedule = self.get_schedule(org, id).await?;
        let job = NewJob {
            queue: schedule.queue.as_deref().and_then(|q| QueueName::parse(q).ok()),
            ..NewJob::new(schedule.kind, schedule.payload)
        };
        self.enqueue(org, actor, job).await
    }
}
