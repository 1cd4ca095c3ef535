//! `orgstack org export|import` and the purge of soft-deleted orgs after
//! `ORG_RETENTION_DAYS`.

use orgstack::accounts::{Actor, Role};
use orgstack::jobs::NewJob;
use orgstack_tests::{TestContext, TestWorker};

use crate::{run_cli, stderr, stdout};

/// `SELECT count(*)` of `table` in `org`'s schema.
async fn rows(ctx: &TestContext, org: &tenancy::Org, table: &'static str) -> i64 {
    let sql = format!("SELECT count(*) FROM {}", org.schema().qualify(table));
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&ctx.pool).await.expect("count")
}

#[tokio::test]
async fn an_org_exported_and_imported_has_the_same_data_and_members() {
    let ctx = TestContext::new().await;
    let acme = ctx.org("acme").await;
    let accounts = ctx.accounts();
    let ada = ctx.user("ada@example.com", "a long enough password", false).await;
    let bob = ctx.user("bob@example.com", "a long enough password", false).await;
    accounts.add_owner(&Actor::System, &acme, ada.id).await.expect("owner");
    let acting = orgstack::accounts::members::Acting {
        actor: Actor::System,
        role: Role::Owner,
        user_id: None,
    };
    let bob_email = orgstack::accounts::Email::parse("bob@example.com").expect("email");
    accounts.add_member(&acting, &acme, &bob_email, Role::Viewer).await.expect("member");
    // Jobs with logs (run by a worker), a dead one, a schedule.
    let jobs = ctx.jobs();
    for i in 0..20 {
        let payload =
            serde_json::json!({ "ms": 1, "lines": 3, "fail_attempts": if i == 0 { 9 } else { 0 } });
        let job = NewJob { max_attempts: Some(1), ..NewJob::new("sleep", payload) };
        jobs.enqueue(&acme, &Actor::System, job).await.expect("enqueue");
    }
    let worker = TestWorker::start(&jobs, 4);
    ctx.drain(&acme, std::time::Duration::from_secs(30)).await;
    worker.stop().await;
    jobs.create_schedule(
        &acme,
        &Actor::System,
        orgstack::jobs::schedules::NewSchedule {
            name: "digest, \"weekly\"".into(),
            cron: "0 7 * * 1".into(),
            kind: "noop".into(),
            queue: None,
            payload: serde_json::json!({ "text": "line one\nline two, with a comma" }),
            enabled: true,
            skip_missed: false,
        },
    )
    .await
    .expect("schedule");

    // Two uploaded files: their records and their bytes travel.
    let app = ctx.spawn_app().await;
    let mut uploaded = Vec::new();
    for (name, body) in
        [("notes.txt", "one\ntwo\n".repeat(50_000)), ("data.csv", "a,b\n1,2\n".to_owned())]
    {
        let chunks =
            futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(body.clone()))]);
        let (file, _) = app
            .state
            .files
            .upload(&acme, &Actor::System, name, Some("text/csv"), Box::pin(chunks))
            .await
            .expect("upload");
        uploaded.push((file.id, body));
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("acme.tar.gz");
    let archive_arg = archive.to_string_lossy().into_owned();
    let out = run_cli(Some(&ctx), &["org", "export", "acme", "--out", &archive_arg], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("exported org 'acme'"), "{}", stdout(&out));
    assert!(stdout(&out).contains("2 members, 2 files"), "{}", stdout(&out));

    // A second user table: bob is gone here, so only ada comes back.
    sqlx::query("DELETE FROM public.users WHERE id = $1")
        .bind(bob.id)
        .execute(&ctx.pool)
        .await
        .expect("delete bob");
    let out = run_cli(
        Some(&ctx),
        &["org", "import", &archive_arg, "--slug", "acme-copy", "--name", "Acme (copy)"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("imported") && text.contains("'acme-copy'"), "{text}");
    assert!(text.contains("1 members added") && text.contains("bob@example.com"), "{text}");

    let copy = ctx
        .registry()
        .by_slug(&tenancy::Slug::parse("acme-copy").expect("slug"))
        .await
        .expect("lookup")
        .expect("the new org");
    let copy: tenancy::Org = (*copy).clone();
    assert_ne!(copy.id, acme.id, "a new org, with its own schema");
    assert_eq!(copy.name, "Acme (copy)");
    for table in ["jobs", "job_logs", "schedules", "audit_events"] {
        let (before, after) = (rows(&ctx, &acme, table).await, rows(&ctx, &copy, table).await);
        assert!(before > 0, "{table} has rows to copy");
        // The import records its own events: `org.created`, and ada added.
        let added = if table == "audit_events" { 2 } else { 0 };
        assert_eq!(after, before + added, "{table}");
    }
    // Values survive as they were: statuses, JSON with newlines and commas, names with quotes.
    let compare = |table: &'static str, columns: &'static str| {
        let acme = acme.clone();
        let copy = copy.clone();
        let pool = ctx.pool.clone();
        async move {
            let read = |org: tenancy::Org| {
                let pool = pool.clone();
                async move {
                    let sql = format!(
                        "SELECT string_agg(row_text, '|' ORDER BY row_text) FROM \
                         (SELECT ({columns})::text AS row_text FROM {}) t",
                        org.schema().qualify(table)
                    );
                    sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(sql))
                        .fetch_one(&pool)
                        .await
                        .expect("rows")
                }
            };
            assert_eq!(read(acme).await, read(copy).await, "{table}");
        }
    };
    compare("jobs", "id, kind, status, payload, result, error, attempts, created_at").await;
    compare("job_logs", "job_id, attempt, line_no, level, line").await;
    compare("schedules", "id, name, cron, payload, next_run_at").await;
    let member = accounts.member(&copy, ada.id).await.expect("member").expect("ada");
    assert_eq!(member.role, Role::Owner);
    compare("files", "id, name, content_type, size_bytes, sha256, status").await;
    assert!(text.contains("2 files"), "{text}");
    for (id, body) in &uploaded {
        let (_, read) = app.state.files.content(&copy, *id, None).await.expect("the copy's file");
        let bytes: Vec<u8> = futures::StreamExt::collect::<Vec<_>>(read.stream)
            .await
            .into_iter()
            .flat_map(|c| c.expect("chunk").to_vec())
            .collect();
        assert!(bytes == body.as_bytes(), "file {id} came back intact");
    }
    // The copy's bytes are its own: purging the original leaves them.
    app.state.files.purge_org(acme.id).await.expect("purge");
    assert_eq!(app.state.files.storage().list_org(copy.id).await.expect("list").len(), 2);

    // The same slug again is refused, and nothing is left half-made.
    let out = run_cli(Some(&ctx), &["org", "import", &archive_arg, "--slug", "acme-copy"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("acme-copy"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_damaged_or_foreign_archive_is_refused_and_leaves_nothing() {
    let ctx = TestContext::new().await;
    ctx.org("acme").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("acme.tar.gz");
    let archive_arg = archive.to_string_lossy().into_owned();
    let out = run_cli(Some(&ctx), &["org", "export", "acme", "--out", &archive_arg], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let orgs_before: i64 = sqlx::query_scalar("SELECT count(*) FROM public.orgs")
        .fetch_one(&ctx.pool)
        .await
        .expect("orgs");

    let junk = dir.path().join("junk.tar.gz");
    std::fs::write(&junk, b"not an archive at all").expect("junk");
    let junk_arg = junk.to_string_lossy().into_owned();
    let out = run_cli(Some(&ctx), &["org", "import", &junk_arg, "--slug", "junk"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not an org export") || stderr(&out).contains("damaged"),
        "{}",
        stderr(&out)
    );

    // An archive whose rows do not match its manifest: the import stops
    // and the half-made org is removed.
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).expect("dir");
    let status = std::process::Command::new("tar")
        .args(["-xzf", &archive_arg, "-C"])
        .arg(&unpacked)
        .status()
        .expect("tar");
    assert!(status.success());
    let manifest_path = unpacked.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("json");
    manifest["tables"][0]["rows"] = serde_json::json!(999);
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).expect("json")).expect("write");
    let bad = dir.path().join("bad.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&bad)
        .arg("-C")
        .arg(&unpacked)
        .args(["manifest.json", "tables"])
        .status()
        .expect("tar");
    assert!(status.success());
    let bad_arg = bad.to_string_lossy().into_owned();
    let out = run_cli(Some(&ctx), &["org", "import", &bad_arg, "--slug", "bad-copy"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("the manifest says 999"), "{}", stderr(&out));

    // Another lineage version is refused before anything is made.
    manifest["tables"][0]["rows"] = serde_json::json!(0);
    manifest["org_version"] = serde_json::json!(1);
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).expect("json")).expect("write");
    let old = dir.path().join("old.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&old)
        .arg("-C")
        .arg(&unpacked)
        .args(["manifest.json", "tables"])
        .status()
        .expect("tar");
    assert!(status.success());
    let old_arg = old.to_string_lossy().into_owned();
    let out = run_cli(Some(&ctx), &["org", "import", &old_arg, "--slug", "old-copy"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("org lineage version 1"), "{}", stderr(&out));

    let orgs_after: i64 = sqlx::query_scalar("SELECT count(*) FROM public.orgs")
        .fetch_one(&ctx.pool)
        .await
        .expect("orgs");
    assert_eq!(orgs_after, orgs_before, "no org left behind by a failed import");
    let schemas: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'org\\_%'")
            .fetch_one(&ctx.pool)
            .await
            .expect("schemas");
    assert_eq!(schemas, orgs_before, "no schema left behind");
}

#[tokio::test]
async fn soft_deleted_orgs_are_purged_after_the_retention_period() {
    let ctx = TestContext::new().await;
    let registry = ctx.registry();
    let old = ctx.org("old-one").await;
    let recent = ctx.org("recent-one").await;
    let kept = ctx.org("kept-one").await;
    for org in [&old, &recent] {
        registry.soft_delete(&org.slug).await.expect("delete");
    }
    sqlx::query("UPDATE public.orgs SET deleted_at = now() - interval '31 days' WHERE id = $1")
        .bind(old.id.as_uuid())
        .execute(&ctx.pool)
        .await
        .expect("backdate");

    let jobs = ctx.jobs();
    let id = jobs
        .enqueue_platform(NewJob::new("maintenance.purge_deleted_orgs", serde_json::Value::Null))
        .await
        .expect("enqueue");
    let worker = TestWorker::start(&jobs, 1);
    let gone = crate::eventually(std::time::Duration::from_secs(20), || async {
        !ctx.schema_exists(old.schema().as_str()).await
    })
    .await;
    worker.stop().await;
    assert!(gone, "the org deleted 31 days ago was not purged (job {id})");
    let left: Vec<String> = sqlx::query_scalar("SELECT slug FROM public.orgs ORDER BY slug")
        .fetch_all(&ctx.pool)
        .await
        .expect("orgs");
    assert_eq!(left, ["kept-one", "recent-one"], "the recent deletion waits; active orgs stay");
    assert!(ctx.schema_exists(recent.schema().as_str()).await);
    assert!(ctx.schema_exists(kept.schema().as_str()).await);
    let (actor, target, reason): (String, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT actor, target, details->>'reason' FROM public.audit_events WHERE action = 'org.purged'",
    )
    .fetch_one(&ctx.pool)
    .await
    .expect("the purge is audited");
    assert_eq!(
        (actor.as_str(), target, reason.as_deref()),
        ("system", Some(old.id.to_string()), Some("retention"))
    );
}
