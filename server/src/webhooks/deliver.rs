//! `webhook.deliver`: sends one delivery, signed, to its endpoint, and
//! records how it went.
//!
//! Outbound requests are guarded against server-side request forgery: the
//! endpoint's host is resolved here and every address must be public
//! (no private, loopback, link-local, shared or multicast range) unless
//! `WEBHOOK_ALLOW_PRIVATE` is set; the request then goes to the address
//! that was checked (no second lookup to rebind), follows no redirect,
//! gives up after 10 seconds, and reads at most 64 KiB of the answer.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::DELIVER_KIND;
use crate::jobs::handler::{Handler, JobContext, JobError, JobResult};

/// The whole request, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// At most this much of an answer is read...
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// ...and this much kept with the delivery.
const EXCERPT_CHARS: usize = 500;

/// Why `ip` may not be called, if it may not.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_private() {
                Some("a private address")
            } else if v4.is_link_local() {
                Some("a link-local address")
            } else if a == 100 && (64..128).contains(&b) {
                Some("a shared (carrier-grade NAT) address")
            } else if v4.is_unspecified() || a == 0 {
                Some("an unspecified address")
            } else if v4.is_broadcast() || v4.is_multicast() || a >= 240 {
                Some("not a unicast address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("an unspecified address")
            } else if v6.is_multicast() {
                Some("not a unicast address")
            } else if first & 0xfe00 == 0xfc00 {
                Some("a private (unique local) address")
            } else if first & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else {
                None
            }
        }
    }
}

#[derive(Debug, serde::Deserialize)]
struct Payload {
    delivery_id: Uuid,
}

/// The handler.
#[derive(Debug)]
pub struct DeliverWebhook {
    allow_private: bool,
}

impl DeliverWebhook {
    pub fn new(allow_private: bool) -> Self {
        DeliverWebhook { allow_private }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct Target {
    url: String,
    kind: String,
    enabled: bool,
    secret: String,
    event_id: Uuid,
    event_type: String,
    payload: Value,
}

/// How one attempt went.
struct Attempt {
    status: Option<u16>,
    latency_ms: i32,
    excerpt: Option<String>,
    error: Option<String>,
}

impl Handler for DeliverWebhook {
    fn kind(&self) -> &'static str {
        DELIVER_KIND
    }

    fn queue(&self) -> &'static str {
        "webhooks"
    }

    fn max_attempts(&self) -> u32 {
        6
    }

    fn timeout(&self, _payload: &Value) -> Duration {
        TIMEOUT + Duration::from_secs(20)
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        serde_json::from_value::<Payload>(payload.clone())
            .map(|_| ())
            .map_err(|e| format!("expected {{\"delivery_id\": uuid}}: {e}"))
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> BoxFuture<'a, JobResult> {
        async move {
            let payload: Payload = serde_json::from_value(ctx.payload.clone())
                .map_err(|e| JobError::permanent(format!("bad payload: {e}")))?;
            let org =
                ctx.org.clone().ok_or_else(|| JobError::permanent("webhooks belong to an org"))?;
            let schema = org.schema();
            let target: Option<Target> = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT e.url, e.kind, e.enabled, e.secret, d.event_id, d.event_type, d.payload \
                 FROM {} d JOIN {} e ON e.id = d.endpoint_id WHERE d.id = $1",
                schema.qualify("webhook_deliveries"),
                schema.qualify("webhook_endpoints")
            )))
            .persistent(false)
            .bind(payload.delivery_id)
            .fetch_optional(ctx.jobs.pool())
            .await
            .map_err(anyhow::Error::from)?;
            let Some(target) = target else {
                ctx.log.info("the delivery or its endpoint is gone; nothing to send");
                return Ok(json!({ "skipped": "gone" }));
            };
            if !target.enabled {
                record(
                    ctx,
                    &org,
                    payload.delivery_id,
                    &Attempt {
                        status: None,
                        latency_ms: 0,
                        excerpt: None,
                        error: Some("the endpoint is disabled".into()),
                    },
                    Some("failed"),
                )
                .await?;
                return Ok(json!({ "skipped": "disabled" }));
            }
            let attempt = self.send(&target).await;
            let ok = attempt.status.is_some_and(|s| (200..300).contains(&s));
            let refused = attempt.error.as_deref().is_some_and(|e| e.starts_with("refused:"));
            let last = ctx.attempt >= ctx.max_attempts || refused;
            let status = if ok {
                Some("succeeded")
            } else if last {
                Some("failed")
            } else {
                None
            };
            record(ctx, &org, payload.delivery_id, &attempt, status).await?;
            if ok {
                ctx.log.info(format!(
                    "delivered: {} in {} ms",
                    attempt.status.unwrap_or(0),
                    attempt.latency_ms
                ));
                return Ok(json!({ "status": attempt.status, "latency_ms": attempt.latency_ms }));
            }
            let why = match (&attempt.error, attempt.status) {
                (Some(error), _) => error.clone(),
                (None, Some(status)) => format!("the endpoint answered {status}"),
                (None, None) => "no answer".to_owned(),
            };
            ctx.log.warn(format!("not delivered: {why}"));
            if refused { Err(JobError::permanent(why)) } else { Err(JobError::retry(why)) }
        }
        .boxed()
    }
}

impl DeliverWebhook {
    /// One attempt: resolve and check the host, sign, send, read a little.
    async fn send(&self, target: &Target) -> Attempt {
        let started = Instant::now();
        let fail = |error: String| Attempt {
            status: None,
            latency_ms: i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX),
            excerpt: None,
            error: Some(error),
        };
        let Ok(url) = url::Url::parse(&target.url) else {
            return fail("refused: the endpoint's URL does not parse".into());
        };
        let Some(host) = url.host_str().map(str::to_owned) else {
            return fail("refused: the endpoint's URL has no host".into());
        };
        let port = url.port_or_known_default().unwrap_or(443);
        let lookup_host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let addresses: Vec<std::net::SocketAddr> =
            match tokio::net::lookup_host((lookup_host.as_str(), port)).await {
                Ok(found) => found.collect(),
                Err(err) => return fail(format!("cannot resolve {host}: {err}")),
            };
        let Some(address) = addresses.first().copied() else {
            return fail(format!("{host} has no address"));
        };
        if !self.allow_private
            && let Some((ip, why)) =
                addresses.iter().find_map(|a| forbidden(a.ip()).map(|why| (a.ip(), why)))
        {
            return fail(format!(
                "refused: {host} resolves to {ip}, {why} (WEBHOOK_ALLOW_PRIVATE is off)"
            ));
        }
        let body = match target.kind.as_str() {
            "discord" => json!({
                "content": discord_text(&target.event_type, &target.payload),
                "allowed_mentions": { "parse": [] },
            })
            .to_string(),
            _ => target.payload.to_string(),
        };
        let msg_id = format!("msg_{}", target.event_id.simple());
        let timestamp = chrono::Utc::now().timestamp();
        let signature = match standardwebhooks::Webhook::new(&target.secret)
            .and_then(|w| w.sign(&msg_id, timestamp, body.as_bytes()))
        {
            Ok(signature) => signature,
            Err(err) => {
                return fail(format!("refused: cannot sign with this endpoint's secret: {err}"));
            }
        };
        let client = match client_for(&lookup_host, address) {
            Ok(client) => client,
            Err(err) => return fail(format!("cannot build the request: {err}")),
        };
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .header(standardwebhooks::HEADER_WEBHOOK_ID, &msg_id)
            .header(standardwebhooks::HEADER_WEBHOOK_TIMESTAMP, timestamp.to_string())
            .header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(err) if err.is_timeout() => {
                return fail(format!("no answer within {} s", TIMEOUT.as_secs()));
            }
            Err(err) => return fail(format!("cannot reach {host}: {}", without_url(&err))),
        };
        let status = response.status().as_u16();
        let mut read: Vec<u8> = Vec::new();
        while read.len() < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => read.extend_from_slice(&chunk),
                _ => break,
            }
        }
        let excerpt: String = String::from_utf8_lossy(&read).chars().take(EXCERPT_CHARS).collect();
        Attempt {
            status: Some(status),
            latency_ms: i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX),
            excerpt: Some(excerpt),
            error: None,
        }
    }
}

/// A client pinned to `address` for `host` (so the request goes where the
/// guard looked), kept a minute for its connections and TLS setup; the
/// guard itself runs on every delivery.
fn client_for(host: &str, address: std::net::SocketAddr) -> reqwest::Result<reqwest::Client> {
    static CLIENTS: std::sync::OnceLock<
        moka::sync::Cache<(String, std::net::SocketAddr), reqwest::Client>,
    > = std::sync::OnceLock::new();
    let clients = CLIENTS.get_or_init(|| {
        moka::sync::Cache::builder()
            .max_capacity(10_000)
            .time_to_live(Duration::from_secs(60))
            .build()
    });
    let key = (host.to_owned(), address);
    if let Some(client) = clients.get(&key) {
        return Ok(client);
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .resolve(host, address)
        .user_agent(concat!("Orgstack-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?;
    clients.insert(key, client.clone());
    Ok(client)
}

/// A reqwest error without its URL (which may carry a token in its path).
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "the endpoint");
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The event as a short Discord message.
fn discord_text(event_type: &str, payload: &Value) -> String {
    let org = payload["org"]["slug"].as_str().unwrap_or("?");
    let data = &payload["data"];
    let detail = match event_type {
        "job.succeeded" | "job.dead" => format!(
            "job `{}` ({})",
            data["kind"].as_str().unwrap_or("?"),
            data["id"].as_str().unwrap_or("?")
        ),
        "file.ready" => format!("file **{}** is ready", data["name"].as_str().unwrap_or("?")),
        "member.added" => format!(
            "{} joined as {}",
            data["email"].as_str().unwrap_or("someone"),
            data["role"].as_str().unwrap_or("member")
        ),
        _ => String::new(),
    };
    format!("**{event_type}** in `{org}`: {detail}")
}

async fn record(
    ctx: &JobContext,
    org: &tenancy::Org,
    delivery: Uuid,
    attempt: &Attempt,
    status: Option<&str>,
) -> Result<(), JobError> {
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {} SET attempts = attempts + 1, last_attempt_at = now(), \
         response_status = $2, latency_ms = $3, response_excerpt = $4, error = $5, \
         status = COALESCE($6, status), \
         delivered_at = CASE WHEN $6 = 'succeeded' THEN now() ELSE delivered_at END \
         WHERE id = $1",
        org.schema().qualify("webhook_deliveries")
    )))
    .persistent(false)
    .bind(delivery)
    .bind(attempt.status.map(i32::from))
    .bind(attempt.latency_ms)
    .bind(&attempt.excerpt)
    .bind(&attempt.error)
    .bind(status)
    .execute(ctx.jobs.pool())
    .await
    .map_err(anyhow::Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_unicast_addresses_are_called() {
        for (ip, expected) in [
            ("127.0.0.1", Some("a loopback address")),
            ("10.1.2.3", Some("a private address")),
            ("172.16.0.1", Some("a private address")),
            ("192.168.1.1", Some("a private address")),
            ("169.254.169.254", Some("a link-local address")),
            ("100.64.0.1", Some("a shared (carrier-grade NAT) address")),
            ("0.0.0.0", Some("an unspecified address")),
            ("224.0.0.1", Some("not a unicast address")),
            ("::1", Some("a loopback address")),
            ("fd00::1", Some("a private (unique local) address")),
            ("fe80::1", Some("a link-local address")),
            ("::ffff:127.0.0.1", Some("a loopback address")),
            ("93.184.216.34", None),
            ("2606:4700::1111", None),
        ] {
            assert_eq!(forbidden(ip.parse().expect("ip")), expected, "{ip}");
        }
    }
}
