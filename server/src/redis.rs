//! Redis connections (fred).

use std::time::Duration;

use fred::prelude::{Builder, ClientLike, Config as RedisConfig, ReconnectPolicy};

/// A Redis client that reconnects on its own. It does not wait for the first
/// connection: commands queue until Redis answers, and `/readyz` reports a
/// Redis that does not.
pub fn client(url: &str) -> Result<fred::clients::Client, fred::error::Error> {
    let config = RedisConfig::from_url(url)?;
    Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(5);
            c.internal_command_timeout = Duration::from_secs(5);
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
        .build()
}

/// A client connected (or failing) within `timeout`.
pub async fn connect(url: &str, timeout: Duration) -> Result<fred::clients::Client, anyhow::Error> {
    let client = client(url)?;
    let _task = client.connect();
    match tokio::time::timeout(timeout, client.wait_for_connect()).await {
        Ok(Ok(())) => Ok(client),
        Ok(Err(err)) => Err(anyhow::anyhow!("cannot connect to Redis: {err}")),
        Err(_) => Err(anyhow::anyhow!(
            "cannot connect to Redis within {}s",
            timeout.as_secs()
        )),
    }
}
