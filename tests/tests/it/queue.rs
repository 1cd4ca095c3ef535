//! The Redis Streams queue core: order, acknowledgement, reclaiming work
//! from a consumer that died, lease extension, and no double delivery.

use std::collections::HashSet;
use std::time::Duration;

use orgstack::queue::{Consumer, Queue, QueueName};

use orgstack_tests::TestContext;

async fn queue(ctx: &TestContext, name: &str) -> Queue {
    Queue::open(&ctx.redis, &ctx.keys, &QueueName::parse(name).expect("name")).await.expect("queue")
}

#[tokio::test]
async fn entries_arrive_in_order_and_acknowledged_ones_are_gone() {
    let ctx = TestContext::new().await;
    let q = queue(&ctx, "default").await;
    // Opening twice is fine (the group exists).
    queue(&ctx, "default").await;
    let ids = q.enqueue_batch(&["a", "b", "c"]).await.expect("enqueue");
    assert_eq!(ids.len(), 3);
    let one = q.enqueue("d").await.expect("enqueue");
    assert_eq!(q.depth().await.expect("len"), 4);

    let consumer = Consumer::new(&q, "w1").await.expect("consumer");
    let got = consumer.fetch(10, Duration::from_millis(100)).await.expect("fetch");
    let payloads: Vec<&str> = got.iter().map(|d| d.payload.as_str()).collect();
    assert_eq!(payloads, ["a", "b", "c", "d"]);
    assert_eq!(got[3].id, one);
    assert_eq!(q.in_flight().await.expect("pending"), 4);

    q.ack(&got.iter().map(|d| d.id.clone()).collect::<Vec<_>>()).await.expect("ack");
    assert_eq!((q.depth().await.expect("len"), q.in_flight().await.expect("pending")), (0, 0));
    assert!(consumer.fetch(10, Duration::from_millis(50)).await.expect("fetch").is_empty());
    consumer.close().await;
}

#[tokio::test]
async fn work_of_a_dead_consumer_is_reclaimed_after_the_visibility_timeout() {
    let ctx = TestContext::new().await;
    let q = queue(&ctx, "emails").await;
    q.enqueue("job-1").await.expect("enqueue");
    let dying = Consumer::new(&q, "dying").await.expect("consumer");
    let taken = dying.fetch(1, Duration::from_millis(100)).await.expect("fetch");
    assert_eq!(taken.len(), 1);
    dying.close().await; // never acknowledges

    let survivor = Consumer::new(&q, "survivor").await.expect("consumer");
    assert!(
        survivor.fetch(1, Duration::from_millis(50)).await.expect("fetch").is_empty(),
        "not redelivered as new"
    );
    assert!(
        survivor.reclaim(Duration::from_secs(60), 10).await.expect("reclaim").is_empty(),
        "not idle long enough yet"
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    let reclaimed = survivor.reclaim(Duration::from_millis(100), 10).await.expect("reclaim");
    assert_eq!(reclaimed, taken, "the same entry, taken over");
    q.ack(&[reclaimed[0].id.clone()]).await.expect("ack");
    assert_eq!(q.depth().await.expect("len"), 0);
    survivor.close().await;
}

#[tokio::test]
async fn extending_the_lease_keeps_others_from_reclaiming() {
    let ctx = TestContext::new().await;
    let q = queue(&ctx, "long").await;
    q.enqueue("slow job").await.expect("enqueue");
    let worker = Consumer::new(&q, "worker").await.expect("consumer");
    let other = Consumer::new(&q, "other").await.expect("consumer");
    let taken = worker.fetch(1, Duration::from_millis(100)).await.expect("fetch");
    tokio::time::sleep(Duration::from_millis(150)).await;
    worker.extend(&[taken[0].id.clone()]).await.expect("extend");
    assert!(
        other.reclaim(Duration::from_millis(100), 10).await.expect("reclaim").is_empty(),
        "lease renewed"
    );
    worker.close().await;
    other.close().await;
}

#[tokio::test]
async fn concurrent_consumers_get_each_entry_once() {
    let ctx = TestContext::new().await;
    let q = queue(&ctx, "bulk").await;
    let payloads: Vec<String> = (0..2_000).map(|i| format!("job-{i}")).collect();
    for chunk in payloads.chunks(500) {
        q.enqueue_batch(chunk).await.expect("enqueue");
    }
    let mut workers = Vec::new();
    for w in 0..3 {
        let q = q.clone();
        workers.push(tokio::spawn(async move {
            let consumer = Consumer::new(&q, &format!("w{w}")).await.expect("consumer");
            let mut seen = Vec::new();
            loop {
                let batch = consumer.fetch(100, Duration::from_millis(100)).await.expect("fetch");
                if batch.is_empty() {
                    break;
                }
                q.ack(&batch.iter().map(|d| d.id.clone()).collect::<Vec<_>>()).await.expect("ack");
                seen.extend(batch.into_iter().map(|d| d.payload));
            }
            consumer.close().await;
            seen
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (2_000, 2_000), "each entry delivered exactly once");
    assert_eq!(q.depth().await.expect("len"), 0);
}

#[test]
fn queue_names_are_checked() {
    assert!(QueueName::parse("default").is_ok());
    assert!(QueueName::parse("canvas_dbt-2").is_ok());
    for bad in ["", "Default", "a b", "x{y}", &"q".repeat(65)] {
        assert!(QueueName::parse(bad).is_err(), "{bad:?}");
    }
}
