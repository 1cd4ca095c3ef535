//! Provisioning an org: row, schema, org lineage and its history, atomically.

use tenancy::{Lineage, OrgStatus, Slug, TenancyError};

use orgstack_tests::TestContext;

fn slug(s: &str) -> Slug {
    Slug::parse(s).expect("valid slug")
}

#[tokio::test]
async fn provisioning_creates_schema_tables_history_and_records_the_version() {
    let ctx = TestContext::new().await;
    let registry = ctx.registry();
    let org = registry.create("Acme Corp", &slug("acme")).await.expect("provisioned");

    assert_eq!(org.status, OrgStatus::Active);
    assert_eq!(org.org_version, Lineage::org().latest_version());
    let schema = org.schema();
    assert!(ctx.schema_exists(schema.as_str()).await);

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = $1 ORDER BY 1",
    )
    .bind(schema.as_str())
    .fetch_all(&ctx.pool)
    .await
    .expect("tables");
    assert_eq!(
        tables,
        [
            "audit_events",
            "files",
            "job_logs",
            "jobs",
            "refinery_schema_history",
            "schedules",
            "webhook_deliveries",
            "webhook_endpoints"
        ]
    );

    let history: Vec<(i32, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT version, name FROM {} ORDER BY version",
        schema.qualify("refinery_schema_history")
    )))
    .fetch_all(&ctx.pool)
    .await
    .expect("history");
    assert_eq!(
        history,
        [
            (1, "audit_events".to_owned()),
            (2, "jobs".to_owned()),
            (3, "jobs_cancelled_index".to_owned()),
            (4, "files".to_owned()),
            (5, "webhooks".to_owned())
        ]
    );

    let (recorded, schema_name): (i32, String) =
        sqlx::query_as("SELECT org_version, schema_name FROM public.orgs WHERE id = $1")
            .bind(org.id.as_uuid())
            .fetch_one(&ctx.pool)
            .await
            .expect("row");
    assert_eq!(recorded, 5);
    assert_eq!(schema_name, schema.as_str());
    // The public lineage keeps its own history, separate from the org's.
    let public_history: i64 =
        sqlx::query_scalar("SELECT count(*) FROM public.refinery_schema_history")
            .fetch_one(&ctx.pool)
            .await
            .expect("public history");
    assert_eq!(public_history, Lineage::public().migrations().len() as i64);
}

#[tokio::test]
async fn a_provisioning_that_fails_midway_leaves_no_row_and_no_schema() {
    let ctx = TestContext::new().await;
    let broken = Lineage::org()
        .extended(&[(
            "V900__broken.sql",
            "CREATE TABLE half_done (id int);\nSELECT * FROM missing_table;",
        )])
        .expect("lineage");
    let registry = ctx.registry_with(broken);

    let err = registry.create("Broken", &slug("broken")).await.expect_err("second migration fails");
    assert!(matches!(err, TenancyError::Migration { .. }), "{err}");
    assert!(err.to_string().contains("missing_table"), "{err}");

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM public.orgs")
        .fetch_one(&ctx.pool)
        .await
        .expect("count");
    assert_eq!(rows, 0, "no org row may survive a failed provisioning");
    let org_schemas: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname LIKE 'org\\_%'",
    )
    .fetch_one(&ctx.pool)
    .await
    .expect("schemas");
    assert_eq!(org_schemas, 0, "no org schema may survive a failed provisioning");

    // The slug is free again and a correct lineage provisions it.
    ctx.registry().create("Broken", &slug("broken")).await.expect("provisioned after the failure");
}

#[tokio::test]
async fn slugs_are_unique_and_names_are_checked() {
    let ctx = TestContext::new().await;
    let registry = ctx.registry();
    registry.create("First", &slug("taken")).await.expect("first");
    let err = registry.create("Second", &slug("taken")).await.expect_err("duplicate slug");
    assert_eq!(err.to_string(), "the slug 'taken' is already taken");
    let err = registry.create("   ", &slug("blank-name")).await.expect_err("blank name");
    assert!(matches!(err, TenancyError::InvalidName));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM public.orgs")
        .fetch_one(&ctx.pool)
        .await
        .expect("count");
    assert_eq!(count, 1);
}

#[tokio::test]
async fn lifecycle_moves_through_suspend_delete_and_purge() {
    let ctx = TestContext::new().await;
    let registry = ctx.registry();
    let org = registry.create("Lifecycle", &slug("life")).await.expect("org");
    let schema = org.schema();
    let key = ctx.keys.org_key(org.id, "something");
    let _: () = fred::prelude::KeysInterface::set(&ctx.redis, &key, "x", None, None, false)
        .await
        .expect("set");

    assert_eq!(
        registry.suspend(&slug("life")).await.expect("suspend").status,
        OrgStatus::Suspended
    );
    let err = registry.suspend(&slug("life")).await.expect_err("already suspended");
    assert_eq!(err.to_string(), "org 'life' is suspended; suspend needs it to be active");
    assert_eq!(registry.resume(&slug("life")).await.expect("resume").status, OrgStatus::Active);

    let err =
        registry.purge(&slug("life"), false).await.expect_err("purge needs a soft delete first");
    assert!(err.to_string().contains("needs it to be deleted"), "{err}");

    let deleted = registry.soft_delete(&slug("life")).await.expect("delete");
    assert_eq!(deleted.status, OrgStatus::Deleted);
    assert!(deleted.deleted_at.is_some());
    assert!(ctx.schema_exists(schema.as_str()).await, "soft delete keeps the schema");

    let dry = registry.purge(&slug("life"), true).await.expect("dry run");
    assert!(dry.dry_run);
    let tables = ctx.table_count(schema.as_str()).await;
    assert!(tables >= 2, "the org lineage's tables and its history");
    assert_eq!((dry.tables, dry.redis_keys), (tables, 1));
    assert!(ctx.schema_exists(schema.as_str()).await, "a dry run changes nothing");

    registry.purge(&slug("life"), false).await.expect("purge");
    assert!(!ctx.schema_exists(schema.as_str()).await);
    assert!(registry.by_slug(&slug("life")).await.expect("lookup").is_none());
    let exists: i64 = fred::prelude::KeysInterface::exists(&ctx.redis, &key).await.expect("exists");
    assert_eq!(exists, 0, "the org's Redis keys are purged");
}
