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
//! - Entries due later (delayed jobs, retries after backoff) wait in a
//!   sorted set scored by due time; [`Queue::promote_due`] moves the due
//!   ones into the stream atomically (a Lua script), so every worker may
//!   run it without duplicating entries.
//! - [`Queue::hand_back`] returns entries a worker took but will not run
//!   (graceful shutdown) to the stream at once, for another worker.
//!
//! Every key of one queue shares the `{name}` hash tag, so the scripts that
//! touch several of them work on Redis Cluster.
//!
//! Delivery is at-least-once. This module knows nothing of job records,
//! retries or HTTP: those build on it.

use std::time::Duration;

use fred::interfaces::{KeysInterface, LuaInterface, SetsInterface, SortedSetsInterface};
use fred::prelude::{Builder, ClientLike, StreamsInterface};
use fred::types::Value;
use tenancy::RedisKeys;

/// The consumer group every worker of a queue belongs to.
pub const GROUP: &str = "workers";
/// The stream field holding an entry's payload.
const FIELD: &str = "p";

/// Moves due members of the scheduled set (KEYS[1]) into the stream
/// (KEYS[2]): ARGV[1] = now in ms, ARGV[2] = at most this many.
const PROMOTE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'p', member)
end
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return #due
";

/// Re-appends entries still pending for consumer ARGV[2] of group ARGV[1]
/// in stream KEYS[1], then acknowledges and deletes the originals. ARGV[3..]
/// are pairs of (entry id, payload). Returns how many were handed back.
const HAND_BACK: &str = r"
local n = 0
for i = 3, #ARGV, 2 do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #pending == 1 then
    redis.call('XADD', KEYS[1], '*', 'p', ARGV[i + 1])
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
    redis.call('XDEL', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
";

/// Resets the idle time of those entries among ARGV[3..] that are still
/// pending for consumer ARGV[2] of group ARGV[1] in stream KEYS[1] (an
/// entry another consumer took over is left alone). Returns their ids.
const EXTEND: &str = r"
local claim = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
local mine = {}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #pending == 1 then
    claim[#claim + 1] = ARGV[i]
    mine[#mine + 1] = ARGV[i]
  end
end
if #mine > 0 then
  claim[#claim + 1] = 'JUSTID'
  redis.call(unpack(claim))
end
return mine
";

/// A queue name: 1 to 64 of `[a-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
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

    /// The queue jobs go to unless their kind or the caller says otherwise.
    pub fn default_queue() -> Self {
        QueueName("default".to_owned())
    }
}

impl std::fmt::Display for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

impl std::str::FromStr for QueueName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        QueueName::parse(s)
    }
}

/// One delivered entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The stream entry id, used to acknowledge it.
    pub id: String,
    pub payload: String,
}

/// What a queue holds right now.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    #[schema(value_type = String)]
    pub name: QueueName,
    /// Entries waiting to be fetched.
    pub depth: u64,
    /// Entries fetched by a worker and not yet acknowledged.
    pub in_flight: u64,
    /// Entries waiting for a time (delayed jobs, retries after backoff).
    pub scheduled: u64,
    /// Dead jobs of this queue.
    pub dead: u64,
    /// Age in seconds of the oldest waiting entry (0 when none waits).
    pub oldest_age_secs: f64,
    /// Workers do not fetch from a paused queue.
    pub paused: bool,
    /// Entries acknowledged (finished) since the queue was created: the
    /// difference between two readings is its throughput.
    pub done: u64,
}

/// The keys of one queue (all with the queue's hash tag).
#[derive(Debug, Clone)]
pub struct QueueKeys {
    pub stream: String,
    pub scheduled: String,
    pub index: String,
    pub dead: String,
    pub paused: String,
    pub done: String,
}

impl QueueKeys {
    pub fn new(keys: &RedisKeys, name: &QueueName) -> Self {
        QueueKeys {
            stream: keys.queue_stream(name.as_str()),
            scheduled: keys.queue_scheduled(name.as_str()),
            index: keys.queue_index(name.as_str()),
            dead: keys.queue_dead(name.as_str()),
            paused: keys.queue_paused(name.as_str()),
            done: keys.queue_done(name.as_str()),
        }
    }
}

/// A queue's producer side and acknowledgements. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    redis: fred::clients::Client,
    name: QueueName,
    key: String,
    keys: QueueKeys,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("key", &self.key).finish_non_exhaustive()
    }
}

impl Queue {
    /// Opens `name`, creating its stream and consumer group if needed, and
    /// records the name among the known queues.
    pub async fn open(
        redis: &fred::clients::Client,
        keys: &RedisKeys,
        name: &QueueName,
    ) -> Result<Self, fred::error::Error> {
        let queue_keys = QueueKeys::new(keys, name);
        let key = queue_keys.stream.clone();
        create_group(redis, &key).await?;
        let _: i64 = redis.sadd(keys.queues(), name.as_str()).await?;
        Ok(Queue { redis: redis.clone(), name: name.clone(), key, keys: queue_keys })
    }

    /// The names of every queue ever opened under `keys`' prefix, sorted.
    pub async fn known(
        redis: &fred::clients::Client,
        keys: &RedisKeys,
    ) -> Result<Vec<QueueName>, fred::error::Error> {
        let names: Vec<String> = redis.smembers(keys.queues()).await?;
        let mut names: Vec<QueueName> =
            names.iter().filter_map(|n| QueueName::parse(n).ok()).collect();
        names.sort();
        Ok(names)
    }

    pub fn name(&self) -> &QueueName {
        &self.name
    }

    pub fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    /// Adds entries that become due later: `(payload, due in ms since the
    /// epoch)`. [`Queue::promote_due`] moves them into the stream.
    pub async fn schedule<S: AsRef<str>>(
        &self,
        entries: &[(S, i64)],
    ) -> Result<(), fred::error::Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let values: Vec<(f64, &str)> =
            entries.iter().map(|(p, due)| (*due as f64, p.as_ref())).collect();
        let _: i64 =
            self.redis.zadd(&self.keys.scheduled, None, None, false, false, values).await?;
        Ok(())
    }

    /// Moves up to `limit` entries due at `now_ms` from the scheduled set
    /// into the stream; returns how many moved.
    pub async fn promote_due(&self, now_ms: i64, limit: u32) -> Result<u64, fred::error::Error> {
        self.redis
            .eval(
                PROMOTE,
                vec![self.keys.scheduled.clone(), self.key.clone()],
                vec![now_ms.to_string(), limit.max(1).to_string()],
            )
            .await
    }

    /// Returns entries that `consumer` took but will not run to the stream,
    /// where any worker fetches them at once. Entries no longer pending for
    /// `consumer` (taken over by another) are left alone.
    pub async fn hand_back(
        &self,
        consumer: &str,
        entries: &[Delivery],
    ) -> Result<u64, fred::error::Error> {
        let mut handed = 0;
        for chunk in entries.chunks(200) {
            let mut args = vec![GROUP.to_owned(), consumer.to_owned()];
            for entry in chunk {
                args.push(entry.id.clone());
                args.push(entry.payload.clone());
            }
            let n: u64 = self.redis.eval(HAND_BACK, vec![self.key.clone()], args).await?;
            handed += n;
        }
        Ok(handed)
    }

    /// Stops workers fetching from this queue (until [`Queue::resume`]).
    pub async fn pause(&self) -> Result<(), fred::error::Error> {
        self.redis.set(&self.keys.paused, "1", None, None, false).await
    }

    pub async fn resume(&self) -> Result<(), fred::error::Error> {
        let _: i64 = self.redis.del(&self.keys.paused).await?;
        Ok(())
    }

    pub async fn is_paused(&self) -> Result<bool, fred::error::Error> {
        let n: i64 = self.redis.exists(&self.keys.paused).await?;
        Ok(n > 0)
    }

    /// Depth, in flight, scheduled, dead, the age of the oldest waiting
    /// entry, and whether the queue is paused.
    pub async fn stats(&self) -> Result<QueueStats, fred::error::Error> {
        let pipeline = self.redis.pipeline();
        let _: () = pipeline.xlen(&self.key).await?;
        let _: () = pipeline.xpending(&self.key, GROUP, ()).await?;
        let _: () = pipeline.zcard(&self.keys.scheduled).await?;
        let _: () = pipeline.zcard(&self.keys.dead).await?;
        let _: () = pipeline.exists(&self.keys.paused).await?;
        let _: () = pipeline.xinfo_groups(&self.key).await?;
        let _: () = pipeline.get(&self.keys.done).await?;
        let replies: Vec<Value> = pipeline.all().await?;
        let number = |i: usize| replies.get(i).and_then(Value::as_u64).unwrap_or(0);
        let length = number(0);
        let in_flight = match replies.get(1) {
            Some(Value::Array(parts)) => parts.first().and_then(Value::as_u64).unwrap_or(0),
            _ => 0,
        };
        let depth = length.saturating_sub(in_flight);
        let oldest_age_secs = match (depth, replies.get(5).and_then(last_delivered_id)) {
            (0, _) | (_, None) => 0.0,
            (_, Some(last)) => self.oldest_after(&last).await?.map_or(0.0, |ms| {
                (chrono::Utc::now().timestamp_millis() - ms).max(0) as f64 / 1000.0
            }),
        };
        Ok(QueueStats {
            name: self.name.clone(),
            depth,
            in_flight,
            scheduled: number(2),
            dead: number(3),
            oldest_age_secs,
            paused: number(4) > 0,
            done: replies.get(6).and_then(Value::as_u64).unwrap_or(0),
        })
    }

    /// The time (ms) of the first entry after `last` (the group's last
    /// delivered entry): the oldest entry not yet fetched.
    async fn oldest_after(&self, last: &str) -> Result<Option<i64>, fred::error::Error> {
        let reply: Value = self.redis.xrange(&self.key, last, "+", Some(2)).await?;
        let Value::Array(items) = reply else { return Ok(None) };
        Ok(items
            .iter()
            .filter_map(|item| match item {
                Value::Array(parts) => parts.first().and_then(Value::as_string),
                _ => None,
            })
            .find(|id| id != last)
            .and_then(|id| id.split('-').next()?.parse().ok()))
    }

    /// Takes over up to `count` entries that some consumer received but has
    /// not acknowledged for at least `visibility` (it died, or hangs), for
    /// `consumer`.
    pub async fn reclaim(
        &self,
        consumer: &str,
        visibility: Duration,
        count: u64,
    ) -> Result<Vec<Delivery>, fred::error::Error> {
        let min_idle = u64::try_from(visibility.as_millis()).unwrap_or(u64::MAX);
        let reply: Value = self
            .redis
            .xautoclaim(&self.key, GROUP, consumer, min_idle, "0-0", Some(count), false)
            .await?;
        // [next-start, [[id, [field, value, ...]], ...], (Redis 7: deleted ids)]
        Ok(match reply {
            Value::Array(mut parts) if parts.len() >= 2 => entries(parts.swap_remove(1)),
            _ => Vec::new(),
        })
    }

    /// Renews `consumer`'s lease on entries it is still working on (resets
    /// their idle time, so they are not reclaimed). Entries another
    /// consumer has taken over are not taken back; returns the ids whose
    /// lease was renewed.
    pub async fn extend(
        &self,
        consumer: &str,
        ids: &[String],
    ) -> Result<Vec<String>, fred::error::Error> {
        let mut renewed = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut args = vec![GROUP.to_owned(), consumer.to_owned()];
            args.extend(chunk.iter().cloned());
            let mine: Vec<String> = self.redis.eval(EXTEND, vec![self.key.clone()], args).await?;
            renewed.extend(mine);
        }
        Ok(renewed)
    }

    /// Entries pending for `consumer` (delivered to it, not acknowledged),
    /// with their payloads: what a stopping worker still holds.
    pub async fn pending_for(
        &self,
        consumer: &str,
        count: u64,
    ) -> Result<Vec<Delivery>, fred::error::Error> {
        let reply: Value = self
            .redis
            .xreadgroup(GROUP, consumer, Some(count), None, false, &self.key, "0")
            .await?;
        Ok(parse_read(reply))
    }

    /// Forgets a consumer of the group (after it handed back its entries).
    pub async fn remove_consumer(&self, consumer: &str) -> Result<(), fred::error::Error> {
        let _: Value = self.redis.xgroup_delconsumer(&self.key, GROUP, consumer).await?;
        Ok(())
    }

    /// Appends one entry; returns its id.
    pub async fn enqueue(&self, payload: &str) -> Result<String, fred::error::Error> {
        self.redis.xadd(&self.key, false, None::<()>, "*", vec![(FIELD, payload)]).await
    }

    /// Appends many entries in one pipeline; returns their ids in order.
    pub async fn enqueue_batch<S: AsRef<str>>(
        &self,
        payloads: &[S],
    ) -> Result<Vec<String>, fred::error::Error> {
        let pipeline = self.redis.pipeline();
        for payload in payloads {
            let _: () = pipeline
                .xadd(&self.key, false, None::<()>, "*", vec![(FIELD, payload.as_ref())])
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
        self.ack_in(&pipeline, ids).await?;
        let _: Vec<Value> = pipeline.all().await?;
        Ok(())
    }

    /// Adds the acknowledgement of `ids` to `pipeline` (sent with the rest
    /// of it): acknowledge, remove from the stream, count as finished. Every
    /// acknowledgement goes through here, so the count is whole.
    pub async fn ack_in(
        &self,
        pipeline: &fred::clients::Pipeline<fred::clients::Client>,
        ids: &[String],
    ) -> Result<(), fred::error::Error> {
        let _: () = pipeline.xack(&self.key, GROUP, ids.to_vec()).await?;
        let _: () = pipeline.xdel(&self.key, ids.to_vec()).await?;
        let _: () = pipeline.incr_by(&self.keys.done, ids.len() as i64).await?;
        Ok(())
    }

    /// Up to `count` entries not yet fetched by any worker, oldest first.
    pub async fn waiting(&self, count: u64) -> Result<Vec<Delivery>, fred::error::Error> {
        let groups: Value = self.redis.xinfo_groups(&self.key).await?;
        let start = last_delivered_id(&groups).unwrap_or_else(|| "0-0".to_owned());
        // Exclusive start: `(id` (Redis 6.2+).
        let reply: Value =
            self.redis.xrange(&self.key, format!("({start}"), "+", Some(count)).await?;
        Ok(entries(reply))
    }

    /// Up to `count` entries fetched and not acknowledged, oldest first,
    /// with the consumer holding each and how long it has held it (ms).
    pub async fn pending_entries(
        &self,
        count: u64,
    ) -> Result<Vec<(Delivery, String, u64)>, fred::error::Error> {
        let reply: Value = self.redis.xpending(&self.key, GROUP, ("-", "+", count)).await?;
        let Value::Array(rows) = reply else { return Ok(Vec::new()) };
        let held: Vec<(String, String, u64)> = rows
            .into_iter()
            .filter_map(|row| {
                let Value::Array(parts) = row else { return None };
                Some((
                    parts.first()?.as_string()?,
                    parts.get(1)?.as_string()?,
                    parts.get(2)?.as_u64().unwrap_or(0),
                ))
            })
            .collect();
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let pipeline = self.redis.pipeline();
        for (id, _, _) in &held {
            let _: () = pipeline.xrange(&self.key, id.as_str(), id.as_str(), Some(1)).await?;
        }
        let payloads: Vec<Value> = pipeline.all().await?;
        Ok(held
            .into_iter()
            .zip(payloads)
            .filter_map(|((_, consumer, idle), reply)| {
                entries(reply).into_iter().next().map(|d| (d, consumer, idle))
            })
            .collect())
    }

    /// Up to `count` members of the scheduled set with their due time (ms),
    /// soonest first.
    pub async fn scheduled_entries(
        &self,
        count: i64,
    ) -> Result<Vec<(String, f64)>, fred::error::Error> {
        self.redis.zrange(&self.keys.scheduled, 0, count - 1, None, false, None, true).await
    }

    /// Up to `count` members of the dead set with the time they died (ms),
    /// newest first.
    pub async fn dead_entries(&self, count: i64) -> Result<Vec<(String, f64)>, fred::error::Error> {
        self.redis.zrevrange(&self.keys.dead, 0, count - 1, true).await
    }

    /// Removes waiting entries (they were never fetched) from the stream;
    /// returns how many went.
    pub async fn remove(&self, ids: &[String]) -> Result<u64, fred::error::Error> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.redis.xdel(&self.key, ids.to_vec()).await
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
            .set_policy(tenancy::invalidation::reconnect_policy())
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
        let read = || {
            self.client.xreadgroup::<Value, _, _, _, _>(
                GROUP,
                self.name.as_str(),
                Some(count),
                Some(block_ms),
                false,
                &self.queue.key,
                ">",
            )
        };
        let reply = match read().await {
            // The stream or its group is gone (Redis lost its data): make
            // them again and read on.
            Err(err) if err.details().contains("NOGROUP") => {
                create_group(&self.queue.redis, &self.queue.key).await?;
                read().await?
            }
            other => other?,
        };
        Ok(parse_read(reply))
    }

    /// Takes over up to `count` entries that some consumer received but has
    /// not acknowledged for at least `visibility` (it died, or hangs).
    pub async fn reclaim(
        &self,
        visibility: Duration,
        count: u64,
    ) -> Result<Vec<Delivery>, fred::error::Error> {
        self.queue.reclaim(&self.name, visibility, count).await
    }

    /// Renews the lease on entries this consumer is still working on;
    /// returns those still its own.
    pub async fn extend(&self, ids: &[String]) -> Result<Vec<String>, fred::error::Error> {
        self.queue.extend(&self.name, ids).await
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Closes the consumer's connection.
    pub async fn close(self) {
        let _ = self.client.quit().await;
    }
}

/// Creates the stream and its consumer group unless they exist. The group
/// starts at the beginning of the stream: the stream holds only work not
/// yet done (entries are deleted when acknowledged), so a group created
/// after entries were added (Redis lost the group, then a sweep re-added
/// work) still delivers them.
async fn create_group(redis: &fred::clients::Client, key: &str) -> Result<(), fred::error::Error> {
    let created: Result<Value, _> = redis.xgroup_create(key, GROUP, "0", true).await;
    match created {
        Err(err) if !err.details().contains("BUSYGROUP") => Err(err),
        _ => Ok(()),
    }
}

/// The `last-delivered-id` of group [`GROUP`] in an `XINFO GROUPS` reply.
fn last_delivered_id(reply: &Value) -> Option<String> {
    let Value::Array(groups) = reply else { return None };
    groups.iter().find_map(|group| {
        let fields: Vec<(String, Value)> = match group {
            Value::Array(kv) => kv
                .chunks(2)
                .filter_map(|c| Some((c.first()?.as_string()?, c.get(1)?.clone())))
                .collect(),
            Value::Map(map) => map
                .clone()
                .inner()
                .into_iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v)))
                .collect(),
            _ => return None,
        };
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        (field("name")?.as_string()? == GROUP).then(|| field("last-delivered-id")?.as_string())?
    })
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
