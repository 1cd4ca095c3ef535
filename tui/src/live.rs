//! Live updates: the changes other processes announce on Redis pub/sub
//! (orgs, users and sessions, flags, worker commands, job status changes
//! of every org), gathered for a quarter of a second and sent to the
//! console as one [`Message::Changed`], so a burst of job events costs one
//! refresh, not one per event.

use std::time::Duration;

use fred::prelude::{Builder, ClientLike, EventInterface, PubsubInterface};
use orgstack::http::AppState;
use tokio::sync::{broadcast, mpsc::UnboundedSender};

use crate::app::{Changes, Message};

/// How long changes are gathered before the console hears of them.
const GATHER: Duration = Duration::from_millis(250);

/// Listens until the console quits (its channel closes). A Redis outage
/// only pauses it: the subscriber reconnects and subscribes again, and the
/// one-second tick keeps the console current meanwhile.
pub async fn listen(state: AppState, tx: UnboundedSender<Message>) {
    if let Err(err) = run(&state, &tx).await {
        let why = format!("no live updates ({err}); refreshing every second");
        let _ = tx.send(Message::Done(Err(why)));
    }
}

async fn run(state: &AppState, tx: &UnboundedSender<Message>) -> Result<(), fred::error::Error> {
    let keys = state.jobs.keys();
    let mut config = state.redis.client_config();
    config.fail_fast = false;
    let subscriber = Builder::from_config(config)
        .set_policy(tenancy::invalidation::reconnect_policy())
        .build_subscriber_client()?;
    let _connection = subscriber.connect();
    subscriber.wait_for_connect().await?;
    let _resubscribe = subscriber.manage_subscriptions();
    let orgs = keys.org_invalidation_channel();
    let auth = keys.auth_invalidation_channel();
    let flags = keys.flags_invalidation_channel();
    let workers = keys.worker_control_channel();
    let mut messages = subscriber.message_rx();
    subscriber.subscribe(vec![orgs.clone(), auth.clone(), flags.clone(), workers.clone()]).await?;
    let events = format!("{}:org:*:events", keys.prefix());
    subscriber.psubscribe(events).await?;

    let mut pending = Changes::default();
    let mut flush = tokio::time::interval(GATHER);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Ok(message) => {
                    let channel = message.channel.to_string();
                    if channel == orgs {
                        pending.orgs = true;
                    } else if channel == auth {
                        pending.users = true;
                    } else if channel == flags {
                        pending.flags = true;
                    } else if channel == workers {
                        pending.workers = true;
                    } else {
                        pending.jobs = true;
                    }
                }
                // Missed some: something changed, refresh everything shown.
                Err(broadcast::error::RecvError::Lagged(_)) => pending = Changes::all(),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = flush.tick() => {
                if pending != Changes::default() {
                    if tx.send(Message::Changed(std::mem::take(&mut pending))).is_err() {
                        break; // the console quit
                    }
                } else if tx.is_closed() {
                    break;
                }
            }
        }
    }
    let _ = subscriber.quit().await;
    Ok(())
}
