//! Files: storage backends (the filesystem and a real S3-compatible server,
//! the same suite over each), uploads streamed and checked, processing in
//! the background with a lock, downloads with ranges.

use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::accounts::PW;
use crate::{eventually, spawn_cli};
use orgstack::config::StorageConfig;
use orgstack::storage::Storage;
use orgstack_tests::{TestApp, TestContext, TestWorker, s3};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The same checks over any backend: write, read whole and in part, list
/// and purge one org without touching another.
async fn storage_suite(storage: Storage) {
    let (a, b) = (tenancy::OrgId::new(), tenancy::OrgId::new());
    let (f1, f2, f3) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    // More than one part (parts are 5 MiB).
    let big: Vec<u8> = (0..12_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut writer = storage.writer(&storage.key(a, f1));
    for chunk in big.chunks(700_000) {
        writer.write(chunk).await.expect("write");
    }
    writer.finish().await.expect("finish");
    for (org, id) in [(a, f2), (b, f3)] {
        let mut writer = storage.writer(&storage.key(org, id));
        writer.write(b"hello").await.expect("write");
        writer.finish().await.expect("finish");
    }
    // An aborted write leaves nothing.
    let mut aborted = storage.writer(&storage.key(a, uuid::Uuid::now_v7()));
    aborted.write(&vec![1u8; 6 << 20]).await.expect("write");
    aborted.abort().await;

    let read = storage.read(&storage.key(a, f1), None).await.expect("read");
    assert_eq!(read.size, big.len() as u64);
    let bytes: Vec<u8> = read.stream.map(|c| c.expect("chunk").to_vec()).concat().await;
    assert!(bytes == big, "read back intact");
    let part = storage.read(&storage.key(a, f1), Some(1000..1010)).await.expect("range");
    assert_eq!(part.range, 1000..1010);
    let bytes: Vec<u8> = part.stream.map(|c| c.expect("chunk").to_vec()).concat().await;
    assert_eq!(bytes, big[1000..1010]);
    assert!(matches!(
        storage.read(&storage.key(b, f1), None).await,
        Err(orgstack::storage::StorageError::NotFound)
    ));

    let mut listed = storage.list_org(a).await.expect("list");
    listed.sort();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(storage.purge_org(a).await.expect("purge"), 2);
    assert!(storage.list_org(a).await.expect("list").is_empty());
    assert_eq!(storage.list_org(b).await.expect("list").len(), 1, "the other org is untouched");
    storage.delete(&storage.key(b, f3)).await.expect("delete");
    storage.delete(&storage.key(b, f3)).await.expect("deleting twice is fine");
    assert!(storage.list_org(b).await.expect("list").is_empty());
}

#[tokio::test]
async fn filesystem_storage_writes_reads_ranges_lists_and_purges() {
    let dir = tempfile::tempdir().expect("dir");
    let storage =
        Storage::from_config(&StorageConfig::Filesystem { dir: dir.path().join("files") })
            .expect("storage");
    storage_suite(storage).await;
}

#[tokio::test]
async fn s3_storage_writes_reads_ranges_lists_and_purges() {
    let config = s3::server().bucket("some/prefix").await;
    storage_suite(Storage::from_config(&config).expect("storage")).await;
}

/// A member's token and an org, on `app`.
async fn member(ctx: &TestContext, app: &TestApp) -> (String, tenancy::Org) {
    let user = ctx.user("owner@example.com", PW, false).await;
    let token = app.login("owner@example.com", PW).await;
    let org = ctx.org("acme").await;
    ctx.accounts()
        .add_owner(&orgstack::accounts::Actor::System, &org, user.id)
        .await
        .expect("owner");
    (token, org)
}

async fn upload(
    app: &TestApp,
    token: &str,
    name: &str,
    mime: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str(mime)
        .expect("mime");
    let form = reqwest::multipart::Form::new().part("file", part);
    let response = app
        .client
        .post(app.url("/api/v1/orgs/acme/files"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert_eq!(content_type, "application/problem+json");
    }
    (status, body)
}

/// The file once its status is `status` (a failure after a minute).
async fn wait_file(app: &TestApp, token: &str, id: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, file) = app
            .call(Method::GET, &format!("/api/v1/orgs/acme/files/{id}"), Some(token), None)
            .await;
        if file["status"] == status {
            return file;
        }
        assert!(std::time::Instant::now() < deadline, "file {id} never became {status}: {file}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn upload_process_download(ctx: &TestContext, app: &TestApp) {
    let (token, _org) = member(ctx, app).await;
    let text = "one two three\nfour five\nsix\n".repeat(1000);
    let (status, body) =
        upload(app, &token, "../notes.txt", "text/plain", text.clone().into_bytes()).await;
    assert_eq!(status, 201, "{body}");
    let file = &body["file"];
    let id = file["id"].as_str().expect("id").to_owned();
    assert_eq!(file["name"], "notes.txt", "the path is dropped");
    assert_eq!(file["content_type"], "text/plain");
    assert_eq!(file["size_bytes"], text.len());
    assert_eq!(file["sha256"], hex(&Sha256::digest(text.as_bytes())));
    assert_eq!(file["status"], "uploaded");
    assert_eq!(body["job"]["kind"], "file.process");

    let worker = TestWorker::start_all(&app.state.jobs, 2);
    let ready = wait_file(app, &token, &id, "ready").await;
    assert_eq!(ready["metadata"]["lines"], 3000);
    assert_eq!(ready["metadata"]["words"], 6000);
    assert_eq!(ready["metadata"]["sha256_verified"], true);
    worker.stop().await;

    let response = app
        .client
        .get(app.url(&format!("/api/v1/orgs/acme/files/{id}/content")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("download");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.headers()["accept-ranges"], "bytes");
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"notes.txt\"; filename*=UTF-8''notes.txt"
    );
    assert_eq!(response.text().await.expect("body"), text);

    let response = app
        .client
        .get(app.url(&format!("/api/v1/orgs/acme/files/{id}/content")))
        .bearer_auth(&token)
        .header("range", "bytes=4-12")
        .send()
        .await
        .expect("range");
    assert_eq!(response.status(), 206);
    assert_eq!(response.headers()["content-range"], format!("bytes 4-12/{}", text.len()));
    assert_eq!(response.text().await.expect("body"), "two three");
    let response = app
        .client
        .get(app.url(&format!("/api/v1/orgs/acme/files/{id}/content")))
        .bearer_auth(&token)
        .header("range", format!("bytes={}-", text.len() + 5))
        .send()
        .await
        .expect("range");
    assert_eq!(response.status(), 416);
    assert_eq!(response.headers()["content-range"], format!("bytes */{}", text.len()));

    let (status, page) =
        app.call(Method::GET, "/api/v1/orgs/acme/files?status=ready", Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let (_, none) =
        app.call(Method::GET, "/api/v1/orgs/acme/files?status=failed", Some(&token), None).await;
    assert_eq!(none["items"].as_array().map(Vec::len), Some(0));

    let (status, _) = app
        .call(Method::DELETE, &format!("/api/v1/orgs/acme/files/{id}"), Some(&token), None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = app
        .call(Method::GET, &format!("/api/v1/orgs/acme/files/{id}/content"), Some(&token), None)
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("file_not_found")));
    let org = ctx.registry().get(&tenancy::Slug::parse("acme").expect("slug")).await.expect("org");
    assert!(app.state.files.storage().list_org(org.id).await.expect("list").is_empty());
    let actions: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT action FROM {} WHERE action LIKE 'file.%' ORDER BY id",
        org.schema().qualify("audit_events")
    )))
    .fetch_all(&ctx.pool)
    .await
    .expect("audit");
    assert_eq!(actions, ["file.uploaded", "file.deleted"]);
}

#[tokio::test]
async fn an_upload_is_processed_in_the_background_and_downloaded_on_the_filesystem() {
    let ctx = TestContext::new().await;
    let app = ctx.spawn_app().await;
    upload_process_download(&ctx, &app).await;
}

#[tokio::test]
async fn an_upload_is_processed_in_the_background_and_downloaded_on_s3() {
    let ctx = TestContext::new().await;
    let mut config = ctx.config.clone();
    config.storage = Some(s3::server().bucket("").await);
    let app = orgstack_tests::spawn_app(config).await;
    upload_process_download(&ctx, &app).await;
}

#[tokio::test]
async fn too_large_or_forbidden_uploads_are_refused_and_nothing_is_kept() {
    let ctx = TestContext::new().await;
    let mut config = ctx.config.clone();
    config.max_upload_bytes = 10_000;
    let app = orgstack_tests::spawn_app(config).await;
    let (token, org) = member(&ctx, &app).await;

    let (status, body) = upload(&app, &token, "big.txt", "text/plain", vec![b'a'; 10_001]).await;
    assert_eq!((status, body["code"].as_str()), (413, Some("file_too_large")), "{body}");
    // A program named like a text file: the bytes say what it is.
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec();
    exe.resize(4096, 0);
    let (status, body) = upload(&app, &token, "notes.txt", "text/plain", exe).await;
    assert_eq!((status, body["code"].as_str()), (415, Some("unsupported_file_type")), "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("application/vnd.microsoft.portable-executable"))
    );
    let (status, body) = upload(&app, &token, "empty.txt", "text/plain", Vec::new()).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("empty_file")), "{body}");

    // A viewer reads but cannot upload.
    let viewer = ctx.user("viewer@example.com", PW, false).await;
    sqlx::query("INSERT INTO public.memberships (org_id, user_id, role) VALUES ($1, $2, 'viewer')")
        .bind(org.id.as_uuid())
        .bind(viewer.id)
        .execute(&ctx.pool)
        .await
        .expect("viewer");
    let viewer_token = app.login("viewer@example.com", PW).await;
    let (status, _) = upload(&app, &viewer_token, "a.txt", "text/plain", b"hi".to_vec()).await;
    assert_eq!(status, 403);
    let (status, _) =
        app.call(Method::GET, "/api/v1/orgs/acme/files", Some(&viewer_token), None).await;
    assert_eq!(status, 200);

    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}",
        org.schema().qualify("files")
    )))
    .fetch_one(&ctx.pool)
    .await
    .expect("count");
    assert_eq!(rows, 0);
    assert!(
        app.state.files.storage().list_org(org.id).await.expect("list").is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn a_file_is_never_processed_twice_at_once() {
    let ctx = TestContext::new().await;
    let app = ctx.spawn_app().await;
    let (token, org) = member(&ctx, &app).await;
    let (_, body) = upload(&app, &token, "a.csv", "text/csv", b"a,b\n1,2\n".to_vec()).await;
    let id = body["file"]["id"].as_str().expect("id").to_owned();
    assert_eq!(body["file"]["content_type"], "text/csv");

    // Two requests at once, no worker yet: both get the one waiting job.
    let path = format!("/api/v1/orgs/acme/files/{id}/process");
    let (first, second) = tokio::join!(
        app.call(Method::POST, &path, Some(&token), None),
        app.call(Method::POST, &path, Some(&token), None)
    );
    assert_eq!((first.0, second.0), (202, 202));
    assert_eq!(first.1["id"], body["job"]["id"]);
    assert_eq!(second.1["id"], body["job"]["id"]);

    // While a run holds the file's lock, asking again is refused.
    let file_id: uuid::Uuid = id.parse().expect("uuid");
    let lock = app
        .state
        .jobs
        .locks()
        .try_acquire_in_org(org.id, &format!("file:{file_id}"), Duration::from_secs(30))
        .await
        .expect("redis")
        .expect("free");
    let (status, problem) = app.call(Method::POST, &path, Some(&token), None).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("file_busy")));
    lock.release().await.expect("release");

    let worker = TestWorker::start_all(&app.state.jobs, 4);
    wait_file(&app, &token, &id, "ready").await;
    ctx.drain(&org, Duration::from_secs(30)).await;
    worker.stop().await;
    let runs: Vec<(String, i32)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT status, attempts FROM {} WHERE kind = 'file.process'",
        org.schema().qualify("jobs")
    )))
    .fetch_all(&ctx.pool)
    .await
    .expect("jobs");
    assert_eq!(runs, [("succeeded".to_owned(), 1)], "one job, run once");
}

#[tokio::test]
async fn a_worker_killed_mid_processing_leaves_the_file_ready_after_a_retry() {
    let ctx = TestContext::new().await;
    let app = ctx.spawn_app().await;
    let (token, org) = member(&ctx, &app).await;
    // Big enough that checking it takes a while.
    let text = "lorem ipsum dolor sit amet\n".repeat(3_000_000);
    let (status, body) = upload(&app, &token, "big.txt", "text/plain", text.into_bytes()).await;
    assert_eq!(status, 201);
    let id = body["file"]["id"].as_str().expect("id").to_owned();

    let mut first = spawn_cli(&ctx, &["worker", "--queues", "files"]);
    wait_file(&app, &token, &id, "processing").await;
    nix::sys::signal::kill(first.pid(), nix::sys::signal::Signal::SIGKILL).expect("kill -9");
    first.child.wait().expect("reaped");

    let second = TestWorker::start_all(&app.state.jobs, 2);
    let ready = wait_file(&app, &token, &id, "ready").await;
    assert_eq!(ready["metadata"]["lines"], 3_000_000);
    ctx.drain(&org, Duration::from_secs(30)).await;
    second.stop().await;
    let (_, job) = app
        .call(
            Method::GET,
            &format!("/api/v1/orgs/acme/jobs/{}", body["job"]["id"].as_str().expect("job")),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["attempts"], 2, "the killed attempt, then the one that finished");
}

#[tokio::test]
async fn a_large_upload_streams_through_a_server_whose_memory_stays_flat() {
    let ctx = TestContext::new().await;
    let port = s3::free_port();
    let addr = format!("127.0.0.1:{port}");
    let metrics = format!("127.0.0.1:{}", s3::free_port());
    let storage_dir = tempfile::tempdir().expect("dir");
    let mut server = crate::spawn_cli_with(
        &ctx,
        &["serve"],
        &[
            ("BIND_ADDR", addr.as_str()),
            ("METRICS_ADDR", metrics.as_str()),
            ("STORAGE_DIR", storage_dir.path().to_str().expect("utf-8")),
            ("MAX_UPLOAD_BYTES", "1073741824"),
            ("DEFAULT_ADMIN_EMAIL", "owner@example.com"),
            ("DEFAULT_ADMIN_PASSWORD", PW),
        ],
    );
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let ready = eventually(Duration::from_secs(30), || async {
        client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready, "the server never became ready");
    ctx.org("acme").await;
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "email": "owner@example.com", "password": PW }))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("body");
    let token = login["token"].as_str().expect("token").to_owned();

    // 256 MiB generated on the fly: 256 times the request body limit
    // (MAX_BODY_BYTES, 1 MiB) and far more than the server's memory.
    const MIB: usize = 1 << 20;
    let total = 256 * MIB;
    let block: Vec<u8> = (0..MIB).map(|i| b"abcdefghijklmnopqrstuvwxyz\n"[i % 27]).collect();
    let mut hasher = Sha256::new();
    for _ in 0..256 {
        hasher.update(&block);
    }
    let expected = hex(&hasher.finalize());
    let chunks = futures::stream::iter(
        (0..256).map(move |_| Ok::<_, std::io::Error>(bytes::Bytes::from(block.clone()))),
    );
    let part = reqwest::multipart::Part::stream_with_length(
        reqwest::Body::wrap_stream(chunks),
        total as u64,
    )
    .file_name("big.txt")
    .mime_str("text/plain")
    .expect("mime");
    let before = rss_kb(server.pid(), "VmRSS");
    let response = client
        .post(format!("{base}/api/v1/orgs/acme/files"))
        .bearer_auth(&token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("body");
    assert_eq!(body["file"]["size_bytes"], total);
    assert_eq!(body["file"]["sha256"], expected, "stored intact");
    let peak = rss_kb(server.pid(), "VmHWM");
    // The stored object is the whole file.
    let org = ctx.registry().get(&tenancy::Slug::parse("acme").expect("slug")).await.expect("org");
    let stored =
        storage_dir.path().join(org.id.to_string()).join(body["file"]["id"].as_str().expect("id"));
    assert_eq!(std::fs::metadata(&stored).expect("stored").len(), total as u64);
    assert!(
        peak < before + 64 * 1024,
        "the server's peak memory grew from {before} kB to {peak} kB for a {total}-byte upload"
    );
    nix::sys::signal::kill(server.pid(), nix::sys::signal::Signal::SIGTERM).expect("stop");
    server.child.wait().expect("reaped");
}

fn rss_kb(pid: nix::unistd::Pid, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .expect("field")
}

#[tokio::test]
async fn the_cli_lists_and_purges_an_orgs_files() {
    let ctx = TestContext::new().await;
    let app = ctx.spawn_app().await;
    let (token, org) = member(&ctx, &app).await;
    let (status, body) =
        upload(&app, &token, "report.csv", "text/csv", b"a,b\n1,2\n".to_vec()).await;
    assert_eq!(status, 201);
    let id = body["file"]["id"].as_str().expect("id").to_owned();

    let out = crate::run_cli(Some(&ctx), &["files", "list", "acme"], &[]);
    assert!(out.status.success(), "{}", crate::stderr(&out));
    let listed = crate::stdout(&out);
    assert!(
        listed.contains(&id) && listed.contains("report.csv") && listed.contains("text/csv"),
        "{listed}"
    );

    let out = crate::run_cli(Some(&ctx), &["files", "purge", "acme"], &[]);
    assert!(out.status.success(), "{}", crate::stderr(&out));
    assert!(
        crate::stdout(&out)
            .starts_with("dry run: would delete 1 file records and 1 stored objects")
    );
    assert_eq!(app.state.files.storage().list_org(org.id).await.expect("list").len(), 1);

    let out = crate::run_cli(Some(&ctx), &["files", "purge", "acme", "--yes"], &[]);
    assert!(out.status.success(), "{}", crate::stderr(&out));
    assert!(crate::stdout(&out).starts_with("deleted 1 file records and 1 stored objects"));
    assert!(app.state.files.storage().list_org(org.id).await.expect("list").is_empty());
    let (status, _) =
        app.call(Method::GET, &format!("/api/v1/orgs/acme/files/{id}"), Some(&token), None).await;
    assert_eq!(status, 404);

    let out = crate::run_cli(Some(&ctx), &["files", "list", "nope"], &[]);
    assert!(!out.status.success());
    assert!(crate::stderr(&out).contains("nope"), "{}", crate::stderr(&out));
}

#[tokio::test]
async fn another_orgs_files_are_invisible() {
    let ctx = TestContext::new().await;
    let app = ctx.spawn_app().await;
    let (token, _acme) = member(&ctx, &app).await;
    // Org B, with its own member and file.
    let bella = ctx.user("bella@example.com", PW, false).await;
    let beta = ctx.org("beta").await;
    ctx.accounts()
        .add_owner(&orgstack::accounts::Actor::System, &beta, bella.id)
        .await
        .expect("owner");
    let bella_token = app.login("bella@example.com", PW).await;
    let part = reqwest::multipart::Part::bytes(b"secret plans\n".to_vec()).file_name("plans.txt");
    let response = app
        .client
        .post(app.url("/api/v1/orgs/beta/files"))
        .bearer_auth(&bella_token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("body");
    let beta_file = body["file"]["id"].as_str().expect("id").to_owned();

    // Acme's member asks for it through acme, and through beta.
    for path in [
        format!("/api/v1/orgs/acme/files/{beta_file}"),
        format!("/api/v1/orgs/acme/files/{beta_file}/content"),
        format!("/api/v1/orgs/beta/files/{beta_file}"),
        format!("/api/v1/orgs/beta/files/{beta_file}/content"),
        "/api/v1/orgs/beta/files".to_owned(),
    ] {
        let (status, _) = app.call(Method::GET, &path, Some(&token), None).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _) = app
        .call(Method::DELETE, &format!("/api/v1/orgs/acme/files/{beta_file}"), Some(&token), None)
        .await;
    assert_eq!(status, 404);
    let (_, page) = app.call(Method::GET, "/api/v1/orgs/acme/files", Some(&token), None).await;
    assert_eq!(page["items"], json!([]));
    // Still there for its own org.
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/api/v1/orgs/beta/files/{beta_file}"),
            Some(&bella_token),
            None,
        )
        .await;
    assert_eq!(status, 200);
}
