//! Distributed locks on a real Redis.

use std::time::Duration;

use fred::prelude::KeysInterface;
use orgstack::locks::Locks;

use crate::eventually;
use orgstack_tests::TestContext;

fn locks(ctx: &TestContext) -> Locks {
    Locks::new(ctx.redis.clone(), ctx.keys.clone())
}

#[tokio::test]
async fn a_held_lock_refuses_a_second_holder_until_released() {
    let ctx = TestContext::new().await;
    let locks = locks(&ctx);
    let first =
        locks.try_acquire("tick", Duration::from_secs(30)).await.expect("redis").expect("free");
    assert!(locks.try_acquire("tick", Duration::from_secs(30)).await.expect("redis").is_none());
    // Another name is independent.
    assert!(locks.try_acquire("other", Duration::from_secs(30)).await.expect("redis").is_some());
    assert!(first.release().await.expect("redis"), "released by its holder");
    assert!(locks.try_acquire("tick", Duration::from_secs(30)).await.expect("redis").is_some());
}

#[tokio::test]
async fn release_with_a_wrong_token_does_nothing() {
    let ctx = TestContext::new().await;
    let locks = locks(&ctx);
    let held =
        locks.try_acquire("file", Duration::from_secs(30)).await.expect("redis").expect("free");
    assert!(!locks.release_with_token("file", "not-the-token").await.expect("redis"));
    let stored: Option<String> = ctx.redis.get(ctx.keys.lock_key("file")).await.expect("get");
    assert_eq!(stored.as_deref(), Some(held.token()), "the holder still has it");
    assert!(locks.try_acquire("file", Duration::from_secs(30)).await.expect("redis").is_none());
}

#[tokio::test]
async fn an_expired_lock_can_be_taken_and_the_old_holder_cannot_touch_it() {
    let ctx = TestContext::new().await;
    let locks = locks(&ctx);
    let old =
        locks.try_acquire("job", Duration::from_millis(100)).await.expect("redis").expect("free");
    let taken = eventually(Duration::from_secs(5), || async {
        locks.try_acquire("job", Duration::from_secs(30)).await.ok().flatten().is_some_and(|new| {
            // Keep the new lock held: forget it without releasing.
            std::mem::forget(new);
            true
        })
    })
    .await;
    assert!(taken, "an expired lock can be taken");
    assert!(!old.extend().await.expect("redis"), "the old holder cannot extend it");
    assert!(!old.release().await.expect("redis"), "nor release it");
    assert!(
        locks.try_acquire("job", Duration::from_secs(30)).await.expect("redis").is_none(),
        "still held"
    );
}

#[tokio::test]
async fn keep_alive_holds_a_lock_past_its_ttl_and_acquire_waits_for_it() {
    let ctx = TestContext::new().await;
    let locks = locks(&ctx);
    let mut held =
        locks.try_acquire("long", Duration::from_millis(300)).await.expect("redis").expect("free");
    held.keep_alive();
    // Several TTLs later it is still held (renewed), not lost.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(locks.try_acquire("long", Duration::from_secs(1)).await.expect("redis").is_none());
    assert!(!held.is_lost());

    let waiter = {
        let locks = locks.clone();
        tokio::spawn(async move {
            locks.acquire("long", Duration::from_secs(5), Duration::from_secs(10)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(held.release().await.expect("redis"));
    let next = waiter.await.expect("task").expect("redis");
    assert!(next.is_some(), "a waiter gets the lock once it is released");
    // And a wait that runs out gives up.
    assert!(
        locks
            .acquire("long", Duration::from_secs(5), Duration::from_millis(100))
            .await
            .expect("redis")
            .is_none()
    );
}
