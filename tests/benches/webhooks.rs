//! Webhook delivery: deliveries/s to a local receiver and the latency from
//! an event's emission to its arrival (p50/p99), through the real path
//! (a delivery row and a `webhook.deliver` job per event, a worker that
//! resolves, signs and POSTs), beside the receiver's own speed for plain
//! POSTs at the same concurrency as the baseline.
//!
//! Run: `cargo bench -p orgstack-tests --bench webhooks` (add `-- --events N
//! --concurrency C --steady N --rate R`: the latency phase sends N events one
//! at a time at R per second). Uses `DATABASE_URL`/`REDIS_URL` when set, otherwise
//! private servers, like the tests.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orgstack::accounts::Actor;
use orgstack::jobs::worker::WorkerOptions;
use orgstack_tests::scale::summary;
use orgstack_tests::{TestContext, TestWorker};
use serde_json::{Value, json};

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Waits until `n` deliveries arrived.
async fn wait_for(delays: &Mutex<Vec<f64>>, n: usize, start: Instant) -> anyhow::Result<()> {
    while delays.lock().expect("lock").len() < n {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(600), "deliveries did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let events = arg(&args, "--events", 2000);
    let concurrency = arg(&args, "--concurrency", 32);
    let steady = arg(&args, "--steady", 2000);
    let rate = arg(&args, "--rate", 200);

    // The receiver: records each arrival's delay after the event's stamp.
    let delays: Arc<Mutex<Vec<f64>>> = Arc::default();
    let seen = delays.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let seen = seen.clone();
            async move {
                if let Ok(event) = serde_json::from_str::<Value>(&body)
                    && let Some(stamp) = event["data"]["stamp"].as_i64()
                {
                    seen.lock().expect("lock").push((now_micros() - stamp) as f64 / 1000.0);
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Baseline: the receiver alone, plain POSTs at the same concurrency.
    let client = reqwest::Client::new();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, url) = (client.clone(), url.clone());
        let share = events / concurrency + usize::from(worker < events % concurrency);
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                client.post(&url).body("{}").send().await?.error_for_status()?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let baseline = events as f64 / start.elapsed().as_secs_f64();

    let ctx = TestContext::new().await;
    let mut config = ctx.config.clone();
    config.webhook_allow_private = true;
    let state = orgstack::app::build_state(config).await?;
    let org = ctx.org("bench").await;
    state.flags.set(&Actor::System, "webhooks", Some(org.id), true).await?;
    let new = orgstack::webhooks::NewEndpoint {
        url: url.clone(),
        kind: "standard".into(),
        event_types: vec!["job.succeeded".into()],
        enabled: true,
        description: "bench".into(),
    };
    state.webhooks.create(&org, &Actor::System, new).await?;
    let worker = TestWorker::start_with(
        &state.jobs,
        WorkerOptions {
            queues: WorkerOptions::parse_queues("webhooks").map_err(anyhow::Error::msg)?,
            concurrency,
            autoscale: None,
            shutdown_timeout: Duration::from_secs(30),
        },
    );

    // Throughput: emitted in batches of 100 as fast as they go (as a busy
    // org's finished jobs would be); latency here includes the backlog.
    let start = Instant::now();
    let mut emitted = 0;
    while emitted < events {
        let batch: Vec<(&'static str, Value)> = (emitted..(emitted + 100).min(events))
            .map(|i| ("job.succeeded", json!({ "id": i, "kind": "bench", "stamp": now_micros() })))
            .collect();
        emitted += orgstack::webhooks::emit(&state.jobs, org.id, batch).await;
    }
    wait_for(&delays, events, start).await?;
    let elapsed = start.elapsed();
    let mut burst = std::mem::take(&mut *delays.lock().expect("lock"));

    // Latency: one event at a time at a steady rate below capacity.
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    for i in 0..steady {
        ticker.tick().await;
        let event = json!({ "id": i, "kind": "bench", "stamp": now_micros() });
        let (jobs, org) = (state.jobs.clone(), org.id);
        tokio::spawn(async move {
            orgstack::webhooks::emit(&jobs, org, vec![("job.succeeded", event)]).await
        });
    }
    wait_for(&delays, steady, start).await?;
    let mut steady_delays = std::mem::take(&mut *delays.lock().expect("lock"));
    worker.stop().await;
    println!("{events} events, one endpoint, worker concurrency {concurrency}");
    println!("receiver alone (plain POSTs, {concurrency} at once)    {baseline:>8.0} requests/s");
    println!(
        "webhook deliveries (row, job, sign, POST, record) {:>8.0} deliveries/s",
        events as f64 / elapsed.as_secs_f64()
    );
    for (label, latencies) in [
        (format!("{events} at once, emission to arrival"), &mut burst),
        (format!("{steady} at {rate}/s, emission to arrival"), &mut steady_delays),
    ] {
        let (p50, p99, max) = summary(latencies);
        let p90 = orgstack_tests::scale::percentile(latencies, 0.9);
        println!("{label}: p50 {p50:.1} ms, p90 {p90:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");
    }
    Ok(())
}
