//! Live job events over Redis pub/sub: job status changes on each org's
//! events channel, and each job's log lines on its own channel. The
//! [`Hub`] shares one subscriber connection per process among every
//! WebSocket that listens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fred::prelude::{Builder, ClientLike, EventInterface, KeysInterface, PubsubInterface};
use tenancy::{OrgId, RedisKeys};
use tokio::sync::{OnceCell, broadcast};
use uuid::Uuid;

use super::handler::LogLine;
use super::{Job, JobStatus};

/// A job's status changed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct JobEvent {
    /// Always `job.status`.
    pub event: String,
    pub job_id: Uuid,
    pub kind: String,
    pub queue: String,
    pub status: JobStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

impl JobEvent {
    pub(crate) fn of(job: &Job) -> Self {
        JobEvent {
            event: "job.status".into(),
            job_id: job.id,
            kind: job.kind.clone(),
            queue: job.queue.clone(),
            status: job.status,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            run_at: job.run_at,
            error: job.error.clone(),
            at: job.updated_at,
        }
    }

    pub(crate) fn of_change(c: &super::store::Changed) -> Self {
        JobEvent {
            event: "job.status".into(),
            job_id: c.id,
            kind: c.kind.clone(),
            queue: c.queue.clone(),
            status: c.status,
            attempts: c.attempts,
            max_attempts: c.max_attempts,
            run_at: c.run_at,
            error: c.error.clone(),
            at: c.updated_at,
        }
    }
}

/// A message on a job's log channel. A job's end is its final status on
/// the org's events channel (one message per batch of jobs, rather than
/// one per job on each log channel).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogMessage {
    /// New lines, in order.
    Lines(Vec<LogLine>),
}

const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

async fn publish(redis: &fred::clients::Client, channel: String, message: String) {
    let sent = redis.publish::<i64, _, _>(channel.clone(), message);
    match tokio::time::timeout(PUBLISH_TIMEOUT, sent).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => tracing::debug!(%channel, error = %err, "could not publish an event"),
        Err(_) => tracing::debug!(%channel, "could not publish an event: Redis did not answer"),
    }
}

/// Announces the status of `jobs` of `org` (one message for all).
pub(crate) async fn publish_jobs(
    redis: &fred::clients::Client,
    keys: &RedisKeys,
    org: OrgId,
    jobs: &[Job],
) {
    if jobs.is_empty() {
        return;
    }
    let events: Vec<JobEvent> = jobs.iter().map(JobEvent::of).collect();
    publish_events(redis, keys, org, &events).await;
}

pub(crate) async fn publish_events(
    redis: &fred::clients::Client,
    keys: &RedisKeys,
    org: OrgId,
    events: &[JobEvent],
) {
    if events.is_empty() {
        return;
    }
    let pipeline = redis.pipeline();
    publish_in(&pipeline, keys, org, events).await;
    match tokio::time::timeout(PUBLISH_TIMEOUT, pipeline.all::<Vec<fred::types::Value>>()).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            tracing::debug!(org_id = %org, error = %err, "could not publish job events")
        }
        Err(_) => {
            tracing::debug!(org_id = %org, "could not publish job events: Redis did not answer")
        }
    }
}

/// How long a list version outlives the org's last job change (a reader
/// finding none starts a new one).
const VERSION_TTL_SECS: i64 = 86_400;

/// Marks `org`'s job lists as changed: a new random version, so a page
/// cached under the old one is never served again. Part of every job
/// event (see [`publish_in`]); deletions, which announce nothing, call it
/// themselves.
pub(crate) async fn touch_in(
    pipeline: &fred::clients::Pipeline<fred::clients::Client>,
    keys: &RedisKeys,
    org: OrgId,
) {
    let _: Result<(), _> = pipeline
        .set(
            keys.org_jobs_version(org),
            Uuid::new_v4().simple().to_string(),
            Some(fred::types::Expiration::EX(VERSION_TTL_SECS)),
            None,
            false,
        )
        .await;
}

/// [`touch_in`] on its own.
pub(crate) async fn touch(redis: &fred::clients::Client, keys: &RedisKeys, org: OrgId) {
    let pipeline = redis.pipeline();
    touch_in(&pipeline, keys, org).await;
    if let Err(err) = pipeline.all::<Vec<fred::types::Value>>().await {
        tracing::debug!(org_id = %org, error = %err, "could not mark the job lists changed");
    }
}

/// The current version of `org`'s job lists, started if there is none
/// (one round trip: `SET NX GET`). `None` when Redis cannot say, and
/// then nothing may be cached.
pub(crate) async fn list_version(
    redis: &fred::clients::Client,
    keys: &RedisKeys,
    org: OrgId,
) -> Option<String> {
    let fresh = Uuid::new_v4().simple().to_string();
    let previous: Result<Option<String>, _> = redis
        .set(
            keys.org_jobs_version(org),
            fresh.as_str(),
            Some(fred::types::Expiration::EX(VERSION_TTL_SECS)),
            Some(fred::types::SetOptions::NX),
            true,
        )
        .await;
    match previous {
        Ok(Some(version)) => Some(version),
        Ok(None) => Some(fresh),
        Err(err) => {
            tracing::debug!(org_id = %org, error = %err, "cannot read the job list version");
            None
        }
    }
}

/// Announces events of other kinds (e.g. `file.status`) on the org's
/// events channel, in the same shape (a JSON array).
pub(crate) async fn publish_values(
    redis: &fred::clients::Client,
    keys: &RedisKeys,
    org: OrgId,
    events: &[serde_json::Value],
) {
    if events.is_empty() {
        return;
    }
    let message = serde_json::to_string(events).unwrap_or_default();
    publish(redis, keys.org_events_channel(org), message).await;
}

/// Adds the announcement of `events` to a pipeline (sent with the rest of
/// its commands, in order).
pub(crate) async fn publish_in(
    pipeline: &fred::clients::Pipeline<fred::clients::Client>,
    keys: &RedisKeys,
    org: OrgId,
    events: &[JobEvent],
) {
    if events.is_empty() {
        return;
    }
    let message = serde_json::to_string(events).unwrap_or_default();
    touch_in(pipeline, keys, org).await;
    let _: Result<(), _> = pipeline.publish(keys.org_events_channel(org), message).await;
}

/// Publishes log lines of one job.
pub(crate) async fn publish_lines(
    redis: &fred::clients::Client,
    keys: &RedisKeys,
    org: Option<Uuid>,
    job: Uuid,
    lines: Vec<LogLine>,
) {
    let Some(org) = org else { return };
    let channel = keys.job_log_channel(OrgId::from_uuid(org), &job.to_string());
    let message = serde_json::to_string(&LogMessage::Lines(lines)).unwrap_or_default();
    publish(redis, channel, message).await;
}

/// What a [`Subscription`] yields.
#[derive(Debug, Clone)]
pub enum Received {
    Message(Arc<str>),
    /// Messages may have been lost (a reconnection, or the reader fell
    /// behind): re-read what matters from PostgreSQL.
    Gap,
}

/// One process's pub/sub connection, shared by every live listener.
/// Cheap to clone; connects on first use.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

struct HubInner {
    redis: fred::clients::Client,
    subscriber: OnceCell<fred::clients::SubscriberClient>,
    channels: Mutex<HashMap<String, (broadcast::Sender<Received>, usize)>>,
}

/// Messages a slow listener may fall behind by before it sees a gap.
const CHANNEL_CAPACITY: usize = 1024;

impl Hub {
    pub fn new(redis: fred::clients::Client) -> Self {
        Hub {
            inner: Arc::new(HubInner {
                redis,
                subscriber: OnceCell::new(),
                channels: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn channels(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (broadcast::Sender<Received>, usize)>> {
        self.inner.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn subscriber(&self) -> Result<&fred::clients::SubscriberClient, fred::error::Error> {
        self.inner
            .subscriber
            .get_or_try_init(|| async {
                let mut config = self.inner.redis.client_config();
                config.fail_fast = false;
                let subscriber = Builder::from_config(config)
                    .with_performance_config(|p| {
                        p.default_command_timeout = Duration::from_secs(5);
                        p.broadcast_channel_capacity = 16 * 1024;
                    })
                    .set_policy(tenancy::invalidation::reconnect_policy())
                    .build_subscriber_client()?;
                let _connection = subscriber.connect();
                subscriber.wait_for_connect().await?;
                let _resubscribe = subscriber.manage_subscriptions();
                let hub = self.clone();
                let mut messages = subscriber.message_rx();
                let mut reconnects = subscriber.reconnect_rx();
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            message = messages.recv() => match message {
                                Ok(message) => {
                                    let text: Option<String> = message.value.convert().ok();
                                    if let Some(text) = text {
                                        hub.deliver(&message.channel.to_string(), Received::Message(text.into()));
                                    }
                                }
                                Err(broadcast::error::RecvError::Lagged(_)) => hub.deliver_all(Received::Gap),
                                Err(broadcast::error::RecvError::Closed) => return,
                            },
                            reconnect = reconnects.recv() => match reconnect {
                                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => hub.deliver_all(Received::Gap),
                                Err(broadcast::error::RecvError::Closed) => return,
                            },
                        }
                    }
                });
                Ok(subscriber)
            })
            .await
    }

    fn deliver(&self, channel: &str, message: Received) {
        if let Some((sender, _)) = self.channels().get(channel) {
            let _ = sender.send(message);
        }
    }

    fn deliver_all(&self, message: Received) {
        for (sender, _) in self.channels().values() {
            let _ = sender.send(message.clone());
        }
    }

    /// Listens on `channel` until the returned subscription is dropped.
    /// Messages published after this returns are received.
    pub async fn subscribe(&self, channel: String) -> Result<Subscription, fred::error::Error> {
        let subscriber = self.subscriber().await?;
        let receiver = {
            let mut channels = self.channels();
            let entry = channels
                .entry(channel.clone())
                .or_insert_with(|| (broadcast::channel(CHANNEL_CAPACITY).0, 0));
            entry.1 += 1;
            entry.0.subscribe()
        };
        let subscription = Subscription { hub: self.clone(), channel: channel.clone(), receiver };
        // Idempotent: a second listener's SUBSCRIBE makes sure the first
        // one's is active before this returns.
        subscriber.subscribe(channel).await?;
        Ok(subscription)
    }

    fn release(&self, channel: &str) {
        let last = {
            let mut channels = self.channels();
            match channels.get_mut(channel) {
                Some(entry) if entry.1 > 1 => {
                    entry.1 -= 1;
                    false
                }
                Some(_) => {
                    channels.remove(channel);
                    true
                }
                None => false,
            }
        };
        if last && let Some(subscriber) = self.inner.subscriber.get() {
            let subscriber = subscriber.clone();
            let channel = channel.to_owned();
            let hub = self.clone();
            tokio::spawn(async move {
                // Unless someone subscribed again meanwhile.
                if !hub.channels().contains_key(&channel) {
                    let _ = subscriber.unsubscribe(channel).await;
                }
            });
        }
    }
}

/// A live listener on one channel. Dropping it unsubscribes when it was the
/// last one on its channel.
#[derive(Debug)]
pub struct Subscription {
    hub: Hub,
    channel: String,
    receiver: broadcast::Receiver<Received>,
}

impl Subscription {
    /// The next message, or `None` when the hub shut down.
    pub async fn recv(&mut self) -> Option<Received> {
        match self.receiver.recv().await {
            Ok(message) => Some(message),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Received::Gap),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.release(&self.channel);
    }
}
