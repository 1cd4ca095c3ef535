//! Queue core benchmark: batch enqueue and drain of no-op entries on one
//! Redis (no job records, no handlers: the Redis side of platform jobs).
//!
//! Run: `cargo bench -p orgstack-tests --bench queue [-- --jobs N --consumers C]`.
//! Uses `REDIS_URL` when set, otherwise a private Redis in a temporary folder.

use std::time::{Duration, Instant};

use orgstack::local::LocalRedis;
use orgstack::queue::{Consumer, Queue, QueueName};
use tenancy::RedisKeys;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let jobs = arg(&args, "--jobs", 200_000);
    let consumers = arg(&args, "--consumers", 4);
    let scratch = tempfile::tempdir()?;
    let (_redis, url) = match std::env::var("REDIS_URL").ok().filter(|s| !s.is_empty()) {
        Some(url) => (None, url),
        None => {
            let redis = LocalRedis::start(scratch.path(), false).await?;
            let url = redis.url();
            (Some(redis), url)
        }
    };
    let client = orgstack::redis::connect(&url, Duration::from_secs(5)).await?;
    let keys = RedisKeys::new(format!("bench-{}", std::process::id()));
    let queue =
        Queue::open(&client, &keys, &QueueName::parse("bench").map_err(anyhow::Error::msg)?)
            .await?;
    let payload = r#"{"kind":"noop"}"#;
    let batch: Vec<&str> = vec![payload; 1_000];

    let started = Instant::now();
    for _ in 0..jobs / batch.len() {
        queue.enqueue_batch(&batch).await?;
    }
    let enqueue = started.elapsed();
    println!(
        "enqueue {jobs} in batches of 1,000: {:.0} jobs/s ({:.2} s)",
        jobs as f64 / enqueue.as_secs_f64(),
        enqueue.as_secs_f64()
    );

    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..consumers {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let consumer = Consumer::new(&queue, &format!("c{c}")).await?;
            let mut done = 0usize;
            loop {
                let got = consumer.fetch(500, Duration::from_millis(50)).await?;
                if got.is_empty() {
                    break;
                }
                done += got.len();
                queue.ack(&got.into_iter().map(|d| d.id).collect::<Vec<_>>()).await?;
            }
            consumer.close().await;
            Ok::<usize, anyhow::Error>(done)
        }));
    }
    let mut drained = 0;
    for task in tasks {
        drained += task.await??;
    }
    // The last empty fetch of each consumer waited 50 ms for nothing.
    let drain = started.elapsed().saturating_sub(Duration::from_millis(50));
    println!(
        "drain {drained} with {consumers} consumers (fetch 500, ack in batch): {:.0} jobs/s ({:.2} s)",
        drained as f64 / drain.as_secs_f64(),
        drain.as_secs_f64()
    );
    anyhow::ensure!(drained == jobs / batch.len() * batch.len(), "drained {drained}");
    Ok(())
}
