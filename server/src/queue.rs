//! Queue core: named queues on Redis Streams, one consumer group per queue
//! (the design of omniqueue's and svix's Redis backends).
//!
//! - [`Queue::enqueue_batch`] appends with `XADD`, pipelined.
//! - [`Consumer::fetch`] reads new entries with `XREADGROUP`; an entry read
//!   but not acknowledged stays in the group's pending list, so a consumer
//!   that dies does not lose it: [`Consumer::reclaim`] takes over entries
//!   idle longer than the visibility timeout (`XAUTOCLAIM`), and a consumer
//!   still working extends its lease with [`Consumer::extend`] (`XCLAIM`
//!   to itself, which resets the idle time).
//! - [`Queue::ack`] acknowledges and deletes finished entries (`XACK` +
//!   `XDEL`), so the stream holds only work not yet done.
//!
//! Delivery is at-least-once. This module knows nothing of job records,
//! retries or HTTP: those build on it.

use std::time::Duration;

use fred::prelude::{Builder, ClientLike, ReconnectPolicy, StreamsInterface};
use fred::types::Value;
use tenancy::RedisKeys;

/// The consumer group every worker of a queue belongs to.
pub const GROUP: &str = "workers";
/// The stream field holding an entry's payload.
const FIELD: &str = "p";

/// A queue name: 1 to 64 of `[a-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueName(String);

impl QueueName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(QueueName(name.to_owned()))
        } else {
            Err(format!("invalid queue name {name:?}: use 1 to 64 of a-z, 0-9, '_', '-'"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One delivered entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The stream entry id, used to acknowledge it.
    pub id: String,
    pub payload: String,
}

/// A queue's producer side and acknowledgements. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    redis: fred::clients::Client,
    name: QueueName,
    key: String,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("key", &self.key).finish_non_exhaustive()
    }
}

impl Queue {
    /// Opens `name`, creating its stream and consumer group if needed.
    pub async fn open(
        redis: &fred::clients::Client,
        keys: &RedisKeys,
        name: &QueueName,
    ) -> Result<Self, fred::error::Error> {
        let key = keys.queue_stream(name.as_str());
        let created: Result<Value, _> = redis.xgroup_create(&key, GROUP, "$", true).await;
        if let Err(err) = created
            && !err.details().contains("BUSYGROUP")
        {
            return Err(err);
        }
        Ok(Queue { redis: redis.clone(), name: name.clone(), key })
    }

    pub fn name(&self) -> &QueueName {
        &self.name
    }

    /// Appends one entry; returns its id.
    pub async fn enqueue(&self, payload: &str) -> Result<String, fred::error::Error> {
        self.redis.xadd(&self.key, true, None::<()>, "*", vec![(FIELD, payload)]).await
    }

    /// Appends many entries in one pipeline; returns their ids in order.
    pub async fn enqueue_batch<S: AsRef<str>>(
        &self,
        payloads: &[S],
    ) -> Result<Vec<String>, fred::error::Error> {
        let pipeline = self.redis.pipeline();
        for payload in payloads {
            let _: () = pipeline
                .xadd(&self.key, true, None::<()>, "*", vec![(FIELD, payload.as_ref())])
                .await?;
        }
        pipeline.all().await
    }

    /// Acknowledges finished entries and removes them from the stream.
    pub async fn ack(&self, ids: &[String]) -> Result<(), fred::error::Error> {
        if ids.is_empty() {
            return Ok(());
        }
        let pipeline = self.redis.pipeline();
        let _: () = pipeline.xack(&self.key, GROUP, ids.to_vec()).await?;
        let _: () = pipeline.xdel(&self.key, ids.to_vec()).await?;
        let _: Vec<Value> = pipeline.all().await?;
        Ok(())
    }

    /// Entries in the stream (waiting or being worked on).
    pub async fn depth(&self) -> Result<u64, fred::error::Error> {
        self.redis.xlen(&self.key).await
    }

    /// Entries delivered and not yet acknowledged.
    pub async fn in_flight(&self) -> Result<u64, fred::error::Error> {
        let summary: Value = self.redis.xpending(&self.key, GROUP, ()).await?;
        Ok(match summary {
            Value::Array(parts) => parts.first().and_then(Value::as_u64).unwrap_or(0),
            _ => 0,
        })
    }
}

/// A consumer of one queue with a connection of its own: `XREADGROUP
/// BLOCK` holds its connection, which must not stall other commands.
pub struct Consumer {
    client: fred::clients::Client,
    queue: Queue,
    name: String,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.queue.key)
            .field("name", &self.name)
            .finish()
    }
}

impl Consumer {
    /// A consumer named `name` (unique per worker slot) of `queue`.
    pub async fn new(queue: &Queue, name: &str) -> Result<Self, fred::error::Error> {
        let mut config = queue.redis.client_config();
        config.fail_fast = false;
        let client = Builder::from_config(config)
            .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(60))
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build()?;
        let _connection = client.connect();
        client.wait_for_connect().await?;
        Ok(Consumer { client, queue: queue.clone(), name: name.to_owned() })
    }

    /// Up to `count` new entries, waiting up to `block` for the first.
    pub async fn fetch(
        &self,
        count: u64,
        block: Duration,
    ) -> Result<Vec<Delivery>, fred::error::Error> {
        let block_ms = u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1);
        let reply: Value = self
            .client
            .xreadgroup(
                GROUP,
                self.name.as_str(),
                Some(count),
                Some(block_ms),
                false,
                &self.queue.key,
                ">",
            )
            .await?;
        Ok(parse_read(reply))
    }

    /// Takes over up to `count` entries that some consumer received but has
    /// not acknowledged for at least `visibility` (it died, or hangs).
    pub async fn reclaim(
        &self,
        visibility: Duration,
        count: u64,
    ) -> Result<Vec<Delivery>, fred::error::Error> {
        let min_idle = u64::try_from(visibility.as_millis()).unwrap_or(u64::MAX);
        let reply: Value = self
            .client
            .xautoclaim(
                &self.queue.key,
                GROUP,
                self.name.as_str(),
                min_idle,
                "0-0",
                Some(count),
                false,
            )
            .await?;
        // [next-start, [[id, [field, value, ...]], ...], (Redis 7: deleted ids)]
        Ok(match reply {
            Value::Array(mut parts) if parts.len() >= 2 => entries(parts.swap_remove(1)),
            _ => Vec::new(),
        })
    }

    /// Renews the lease on entries this consumer is still working on.
    pub async fn extend(&self, ids: &[String]) -> Result<(), fred::error::Error> {
        if ids.is_empty() {
            return Ok(());
        }
        let _: Value = self
            .client
            .xclaim(
                &self.queue.key,
                GROUP,
                self.name.as_str(),
                0,
                ids.to_vec(),
                None,
                None,
                None,
                false,
                true,
            )
            .await?;
        Ok(())
    }

    /// Closes the consumer's connection.
    pub async fn close(self) {
        let _ = self.client.quit().await;
    }
}

/// `XREADGROUP` reply: `[[key, [[id, [field, value, ...]], ...]]]` (RESP2),
/// or a map of key to entries (RESP3).
fn parse_read(reply: Value) -> Vec<Delivery> {
    match reply {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|stream| match stream {
                Value::Array(mut pair) if pair.len() == 2 => entries(pair.swap_remove(1)),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(map) => map.inner().into_values().flat_map(entries).collect(),
        _ => Vec::new(),
    }
}

fn entries(value: Value) -> Vec<Delivery> {
    let Value::Array(items) = value else { return Vec::new() };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(mut parts) = item else { return None };
            if parts.len() != 2 {
                return None;
            }
            let fields = parts.pop()?;
            let id = parts.pop()?.as_string()?;
            let payload = match fields {
                Value::Array(kv) => kv
                    .chunks(2)
                    .find(|c| c[0].as_str().as_deref() == Some(FIELD))
                    .and_then(|c| c.get(1)?.as_string()),
                Value::Map(map) => map
                    .inner()
                    .into_iter()
                    .find(|(k, _)| k.as_str() == Some(FIELD))
                    .and_then(|(_, v)| v.as_string()),
                _ => None,
            }?;
            Some(Delivery { id, payload })
        })
        .collect()
}
