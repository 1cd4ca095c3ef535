//! Cross-process cache invalidation over Redis pub/sub.
//!
//! A process that changes something publishes a short message on a channel;
//! every process that [`listen`]s applies it to its caches. When the
//! subscription (re)connects or falls behind, messages may have been missed,
//! so the handler is told to drop everything (`None`).

use std::time::Duration;

use fred::prelude::{Builder, ClientLike, EventInterface, PubsubInterface, ReconnectPolicy};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::TenancyError;

const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// How every Redis connection of the workspace reconnects: after 1 ms,
/// then 2, 4, 8, ... ms, at most 5 s apart, for ever.
///
/// fred waits the policy's delay (plus its jitter, 100 ms by default)
/// before the *first* connection attempt too. Starting at 100 ms, every new
/// connection (each process start, worker consumer and subscriber) sat
/// idle for 100–200 ms before connecting; `admin-tui` spent most of its
/// time to first frame there.
pub fn reconnect_policy() -> ReconnectPolicy {
    let mut policy = ReconnectPolicy::new_exponential(0, 1, 5_000, 2);
    policy.set_jitter(0);
    policy
}

/// A running subscription. Dropping it stops the task.
#[derive(Debug)]
pub struct Listener {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Unsubscribes, closes the Redis connection and waits for the task.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Subscribes to `channel` with a connection of its own (configured like
/// `redis`) and calls `on_message(Some(payload))` for each message, or
/// `on_message(None)` when messages may have been missed (after each
/// (re)connection and when the handler falls behind).
///
/// Returns once subscribed, or after three seconds when Redis does not
/// answer; the task then keeps retrying in the background.
pub async fn listen(
    redis: &fred::clients::Client,
    channel: String,
    on_message: impl Fn(Option<String>) + Send + 'static,
) -> Result<Listener, TenancyError> {
    let mut config = redis.client_config();
    config.fail_fast = false;
    let subscriber = Builder::from_config(config)
        .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(5))
        .set_policy(reconnect_policy())
        .build_subscriber_client()?;
    let (ready_tx, ready_rx) = oneshot::channel();
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut messages = subscriber.message_rx();
        let mut reconnects = subscriber.reconnect_rx();
        let _connection = subscriber.connect();
        let mut warned = false;
        // A SUBSCRIBE that failed is not restored by manage_subscriptions,
        // so keep trying until one succeeds.
        loop {
            match subscriber.subscribe(channel.clone()).await {
                Ok(()) => break,
                Err(err) => {
                    if !warned {
                        tracing::warn!(%channel, error = %err, "cannot subscribe yet; retrying");
                        warned = true;
                    }
                    tokio::select! {
                        _ = &mut stop_rx => {
                            let _ = subscriber.quit().await;
                            return;
                        }
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        }
        on_message(None);
        let _ = ready_tx.send(());
        let _resubscribe = subscriber.manage_subscriptions();
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                message = messages.recv() => match message {
                    Ok(message) => on_message(message.value.as_string()),
                    Err(RecvError::Lagged(_)) => on_message(None),
                    Err(RecvError::Closed) => break,
                },
                reconnect = reconnects.recv() => match reconnect {
                    Ok(_) | Err(RecvError::Lagged(_)) => on_message(None),
                    Err(RecvError::Closed) => break,
                },
            }
        }
        let _ = subscriber.quit().await;
    });
    if tokio::time::timeout(Duration::from_secs(3), ready_rx).await.is_err() {
        tracing::warn!("Redis is not answering; invalidations will be heard once it does");
    }
    Ok(Listener { stop: Some(stop_tx), task })
}

/// Publishes `payload` on `channel`. A failure is logged, not returned: the
/// change it announces is already committed, and caches expire on their own.
pub async fn announce(redis: &fred::clients::Client, channel: String, payload: String) {
    let publish = redis.publish::<i64, _, _>(channel.clone(), payload);
    let failure = match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
        Ok(Ok(_)) => return,
        Ok(Err(err)) => err.to_string(),
        Err(_) => "Redis did not answer".to_owned(),
    };
    tracing::warn!(%channel, error = %failure, "could not announce a change; other processes see it when their caches expire");
}
