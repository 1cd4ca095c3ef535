//! Distributed locks on Redis: guard work that must not run twice at once
//! (one scheduler tick, one uploaded file being processed).
//!
//! A lock is `SET key token NX PX ttl` with a random token. Release and
//! renewal are Lua scripts that act only when the key still holds *our*
//! token, so a holder whose lock expired and was taken by someone else can
//! neither release nor extend the new holder's lock. A held lock can renew
//! itself in the background ([`Lock::keep_alive`]) while long work runs;
//! if the process dies, the lock expires after its TTL.

use std::time::{Duration, Instant};

use fred::interfaces::LuaInterface;
use fred::prelude::KeysInterface;
use fred::types::{Expiration, SetOptions};
use rand::RngCore;
use tenancy::{OrgId, RedisKeys};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
const EXTEND: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

/// Takes locks. Cheap to clone.
#[derive(Clone)]
pub struct Locks {
    redis: fred::clients::Client,
    keys: RedisKeys,
}

impl std::fmt::Debug for Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locks").field("keys", &self.keys).finish_non_exhaustive()
    }
}

/// A held lock. Release it with [`Lock::release`]; dropping it stops any
/// renewal and lets it expire.
#[derive(Debug)]
pub struct Lock {
    redis: fred::clients::Client,
    key: String,
    token: String,
    ttl: Duration,
    renewal: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    lost: Option<watch::Receiver<bool>>,
}

impl Locks {
    pub fn new(redis: fred::clients::Client, keys: RedisKeys) -> Self {
        Locks { redis, keys }
    }

    /// Takes the platform-wide lock `name` if nobody holds it.
    pub async fn try_acquire(
        &self,
        name: &str,
        ttl: Duration,
    ) -> Result<Option<Lock>, fred::error::Error> {
        self.try_acquire_key(self.keys.lock_key(name), ttl).await
    }

    /// Takes `name` within one org (its key is purged with the org).
    pub async fn try_acquire_in_org(
        &self,
        org: OrgId,
        name: &str,
        ttl: Duration,
    ) -> Result<Option<Lock>, fred::error::Error> {
        self.try_acquire_key(self.keys.org_key(org, &format!("lock:{name}")), ttl).await
    }

    /// Whether someone holds `name` within `org` now.
    pub async fn is_held_in_org(&self, org: OrgId, name: &str) -> Result<bool, fred::error::Error> {
        use fred::prelude::KeysInterface;
        let held: i64 = self.redis.exists(self.keys.org_key(org, &format!("lock:{name}"))).await?;
        Ok(held > 0)
    }

    /// Waits up to `wait` for `name`, retrying with a short backoff.
    pub async fn acquire(
        &self,
        name: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<Lock>, fred::error::Error> {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(lock) = self.try_acquire(name, ttl).await? {
                return Ok(Some(lock));
            }
            if Instant::now() + pause > deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    async fn try_acquire_key(
        &self,
        key: String,
        ttl: Duration,
    ) -> Result<Option<Lock>, fred::error::Error> {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let set: Option<String> = self
            .redis
            .set(&key, token.as_str(), Some(Expiration::PX(millis)), Some(SetOptions::NX), false)
            .await?;
        Ok(set.map(|_| Lock {
            redis: self.redis.clone(),
            key,
            token,
            ttl,
            renewal: None,
            lost: None,
        }))
    }

    /// Releases `name` only if it holds `token` (for operators and tests).
    pub async fn release_with_token(
        &self,
        name: &str,
        token: &str,
    ) -> Result<bool, fred::error::Error> {
        release(&self.redis, &self.keys.lock_key(name), token).await
    }
}

async fn release(
    redis: &fred::clients::Client,
    key: &str,
    token: &str,
) -> Result<bool, fred::error::Error> {
    let deleted: i64 = redis.eval(RELEASE, vec![key.to_owned()], vec![token.to_owned()]).await?;
    Ok(deleted == 1)
}

async fn extend(
    redis: &fred::clients::Client,
    key: &str,
    token: &str,
    ttl: Duration,
) -> Result<bool, fred::error::Error> {
    let millis = ttl.as_millis().max(1).to_string();
    let extended: i64 =
        redis.eval(EXTEND, vec![key.to_owned()], vec![token.to_owned(), millis]).await?;
    Ok(extended == 1)
}

impl Lock {
    /// The random token that proves ownership.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Pushes the expiry out by the lock's TTL, if it is still ours.
    pub async fn extend(&self) -> Result<bool, fred::error::Error> {
        extend(&self.redis, &self.key, &self.token, self.ttl).await
    }

    /// Renews the lock every third of its TTL until released or dropped.
    /// If a renewal finds the lock gone (it expired and someone else took
    /// it), renewal stops and [`Lock::is_lost`] turns true.
    pub fn keep_alive(&mut self) {
        if self.renewal.is_some() {
            return;
        }
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let (lost_tx, lost_rx) = watch::channel(false);
        let (redis, key, token, ttl) =
            (self.redis.clone(), self.key.clone(), self.token.clone(), self.ttl);
        let task = tokio::spawn(async move {
            let every = (ttl / 3).max(Duration::from_millis(10));
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => return,
                    () = tokio::time::sleep(every) => {}
                }
                match extend(&redis, &key, &token, ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(%key, "lock lost: it expired and was taken, or was removed");
                        let _ = lost_tx.send(true);
                        return;
                    }
                    // A Redis hiccup: try again at the next beat; the TTL
                    // covers two more attempts.
                    Err(err) => tracing::warn!(%key, error = %err, "could not renew a lock"),
                }
            }
        });
        self.renewal = Some((stop_tx, task));
        self.lost = Some(lost_rx);
    }

    /// True once renewal found the lock no longer ours.
    pub fn is_lost(&self) -> bool {
        self.lost.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Stops renewing and deletes the lock if it is still ours. Returns
    /// whether it was.
    pub async fn release(mut self) -> Result<bool, fred::error::Error> {
        self.stop_renewal();
        release(&self.redis, &self.key, &self.token).await
    }

    fn stop_renewal(&mut self) {
        if let Some((stop, task)) = self.renewal.take() {
            let _ = stop.send(true);
            task.abort();
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.stop_renewal();
    }
}
