//! `migrate`: orgs behind are brought current, current orgs are not touched,
//! failures are isolated, reruns resume, and two migrators never collide.

use std::time::Duration;

use sqlx::AssertSqlSafe;
use tenancy::migrations::Target;
use tenancy::migrator::{self, MigrateOptions};
use tenancy::{Lineage, Org, Slug};

use orgstack_tests::TestContext;

/// The real org lineage's latest version; the test migrations come after it.
fn base() -> i32 {
    Lineage::org().latest_version()
}

/// The versions of the real lineage, then `extra`.
fn versions(extra: &[i32]) -> Vec<i32> {
    (1..=base()).chain(extra.iter().copied()).collect()
}

fn v2() -> Lineage {
    Lineage::org()
        .extended(&[(
            "V900__notes.sql",
            "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);\n\
             CREATE TABLE applied_log (n int);\nINSERT INTO applied_log VALUES (900);\n\
             SELECT pg_catalog.pg_sleep(0.02);",
        )])
        .expect("lineage")
}

fn v3() -> Lineage {
    v2().extended(&[(
        "V901__more.sql",
        "ALTER TABLE notes ADD COLUMN title text;\nINSERT INTO applied_log VALUES (901);",
    )])
    .expect("lineage")
}

async fn provision(ctx: &TestContext, n: usize) -> Vec<Org> {
    let registry = ctx.registry();
    let mut orgs = Vec::new();
    for i in 0..n {
        let slug = Slug::parse(&format!("org-{i:03}")).expect("slug");
        orgs.push(registry.create(&format!("Org {i}"), &slug).await.expect("provisioned"));
    }
    orgs
}

async fn history(ctx: &TestContext, org: &Org) -> Vec<i32> {
    let sql = format!(
        "SELECT version FROM {} ORDER BY version",
        org.schema().qualify("refinery_schema_history")
    );
    sqlx::query_scalar(AssertSqlSafe(sql)).fetch_all(&ctx.pool).await.expect("history")
}

async fn recorded_version(ctx: &TestContext, org: &Org) -> (i32, Option<String>) {
    sqlx::query_as("SELECT org_version, migrate_error FROM public.orgs WHERE id = $1")
        .bind(org.id.as_uuid())
        .fetch_one(&ctx.pool)
        .await
        .expect("row")
}

#[tokio::test]
async fn behind_orgs_are_migrated_current_ones_untouched_and_a_broken_one_isolated() {
    let ctx = TestContext::new().await;
    let orgs = provision(&ctx, 4).await;
    let (current, behind, broken) = (&orgs[0], &orgs[1..3], &orgs[3]);

    // `current` already has V2; `broken` has a table in the way of V2.
    let options = MigrateOptions { jobs: 2, lock_timeout: Duration::from_millis(500) };
    let mut tx = ctx.pool.begin().await.expect("tx");
    v2().apply_in_tx(&mut tx, Target::Org(&current.schema())).await.expect("v2 on current");
    sqlx::query("UPDATE public.orgs SET org_version = 900 WHERE id = $1")
        .bind(current.id.as_uuid())
        .execute(&mut *tx)
        .await
        .expect("record");
    tx.commit().await.expect("commit");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE {} (x int)",
        broken.schema().qualify("notes")
    )))
    .execute(&ctx.pool)
    .await
    .expect("obstacle");

    // Hold a lock on the current org's tables: touching its schema would
    // block and fail on the lock timeout.
    let mut blocker = ctx.pool.begin().await.expect("blocker");
    let lock = format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        current.schema().qualify("refinery_schema_history")
    );
    sqlx::raw_sql(AssertSqlSafe(lock)).execute(&mut *blocker).await.expect("lock");

    let report = migrator::migrate_orgs(&ctx.pool, &v2(), &options).await.expect("migrate runs");
    assert_eq!(report.orgs_total, 4);
    assert_eq!(report.orgs_current, 1, "{report:?}");
    let migrated: Vec<&str> = report.migrated.iter().map(|m| m.slug.as_str()).collect();
    assert_eq!(migrated, [behind[0].slug.as_str(), behind[1].slug.as_str()]);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].slug, broken.slug.as_str());
    assert!(report.failed[0].error.contains("already exists"), "{}", report.failed[0].error);
    blocker.rollback().await.expect("release");

    for org in behind {
        assert_eq!(history(&ctx, org).await, versions(&[900]));
        assert_eq!(recorded_version(&ctx, org).await, (900, None));
    }
    assert_eq!(history(&ctx, broken).await, versions(&[]), "the failed migration rolled back");
    let (version, error) = recorded_version(&ctx, broken).await;
    assert_eq!(version, base());
    assert!(error.is_some_and(|e| e.contains("already exists")));

    let status = migrator::status(&ctx.pool, &Lineage::public(), &v2()).await.expect("status");
    assert_eq!(
        status.laggards().map(|o| o.slug.as_str()).collect::<Vec<_>>(),
        [broken.slug.as_str()]
    );
    assert_eq!(status.failures().count(), 1);

    // Fix the broken org; a rerun resumes with it alone.
    sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {}", broken.schema().qualify("notes"))))
        .execute(&ctx.pool)
        .await
        .expect("fix");
    let rerun = migrator::migrate_orgs(&ctx.pool, &v2(), &options).await.expect("rerun");
    assert_eq!((rerun.orgs_current, rerun.migrated.len(), rerun.failed.len()), (3, 1, 0));
    assert_eq!(recorded_version(&ctx, broken).await, (900, None));

    // Nothing left to do: a third run touches no org.
    let noop = migrator::migrate_orgs(&ctx.pool, &v2(), &options).await.expect("noop");
    assert_eq!((noop.orgs_current, noop.migrated.len()), (4, 0));
}

#[tokio::test]
async fn two_migrators_at_once_apply_each_migration_exactly_once() {
    let ctx = TestContext::new().await;
    let orgs = provision(&ctx, 12).await;
    let other = ctx.other_process_registry().await;
    let options = MigrateOptions { jobs: 3, lock_timeout: Duration::from_secs(30) };
    let lineage = v3();
    let public = Lineage::public();

    let (a, b) = tokio::join!(
        migrator::migrate_all(&ctx.pool, &public, &lineage, &options),
        migrator::migrate_all(other.pool(), &public, &lineage, &options),
    );
    let (a, b) = (a.expect("first migrator"), b.expect("second migrator"));
    assert!(a.failed.is_empty() && b.failed.is_empty(), "{a:?} {b:?}");
    assert_eq!(
        a.migrated.len() + b.migrated.len(),
        orgs.len(),
        "each org migrated by exactly one of them"
    );

    for org in &orgs {
        assert_eq!(history(&ctx, org).await, versions(&[900, 901]));
        let sql = format!("SELECT n FROM {} ORDER BY n", org.schema().qualify("applied_log"));
        let log: Vec<i32> =
            sqlx::query_scalar(AssertSqlSafe(sql)).fetch_all(&ctx.pool).await.expect("log");
        assert_eq!(log, [900, 901], "each migration ran once in {}", org.slug);
        assert_eq!(recorded_version(&ctx, org).await, (901, None));
    }
}

#[tokio::test]
async fn public_lineage_is_idempotent() {
    let ctx = TestContext::new().await;
    let applied = migrator::migrate_public(&ctx.pool, &Lineage::public(), Duration::from_secs(5))
        .await
        .expect("public");
    assert!(applied.is_empty(), "the template already has the public lineage");
}
