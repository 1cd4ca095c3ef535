//! The `orgstack` command line, run as a user would: exit codes, one-line
//! errors, and the rows it leaves behind.

use serde_json::Value;

use crate::{run_cli, stderr, stdout};
use orgstack_tests::TestContext;

#[tokio::test]
async fn org_commands_walk_the_whole_lifecycle() {
    let ctx = TestContext::new().await;
    let cli = |args: &[&str]| run_cli(Some(&ctx), args, &[]);

    let out = cli(&["org", "create", "Acme Corp"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("created org 'acme-corp' (Acme Corp) with schema org_"),
        "{}",
        stdout(&out)
    );

    let again = cli(&["org", "create", "Acme Corp"]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(stderr(&again).trim(), "error: the slug 'acme-corp' is already taken");

    let bad = cli(&["org", "create", "Whatever", "--slug", "a;drop schema public"]);
    assert_eq!(bad.status.code(), Some(2), "bad usage");
    assert!(
        stderr(&bad)
            .contains("may contain only lowercase letters a-z, digits and hyphens; found ';'"),
        "{}",
        stderr(&bad)
    );

    let list = cli(&["org", "list", "--json"]);
    assert_eq!(list.status.code(), Some(0));
    let orgs: Value = serde_json::from_slice(&list.stdout).expect("json list");
    assert_eq!(orgs.as_array().map(Vec::len), Some(1));
    assert_eq!(orgs[0]["slug"], "acme-corp");
    assert_eq!(orgs[0]["status"], "active");

    assert_eq!(cli(&["org", "suspend", "acme-corp"]).status.code(), Some(0));
    let twice = cli(&["org", "suspend", "acme-corp"]);
    assert_eq!(twice.status.code(), Some(1));
    assert_eq!(
        stderr(&twice).trim(),
        "error: org 'acme-corp' is suspended; suspend needs it to be active"
    );
    assert_eq!(cli(&["org", "resume", "acme-corp"]).status.code(), Some(0));

    let dry = cli(&["org", "delete", "acme-corp"]);
    assert_eq!(dry.status.code(), Some(0));
    assert!(
        stdout(&dry).starts_with("dry run: would soft-delete org 'acme-corp'"),
        "{}",
        stdout(&dry)
    );
    let status: String = sqlx::query_scalar("SELECT status FROM public.orgs")
        .fetch_one(&ctx.pool)
        .await
        .expect("row");
    assert_eq!(status, "active", "a dry run changes nothing");

    assert_eq!(cli(&["org", "delete", "acme-corp", "--yes"]).status.code(), Some(0));
    let status: String = sqlx::query_scalar("SELECT status FROM public.orgs")
        .fetch_one(&ctx.pool)
        .await
        .expect("row");
    assert_eq!(status, "deleted");

    let dry = cli(&["org", "purge", "acme-corp"]);
    assert_eq!(dry.status.code(), Some(0));
    assert!(stdout(&dry).contains("dry run: would purge org 'acme-corp'"), "{}", stdout(&dry));
    assert!(stdout(&dry).contains("(8 tables)"), "{}", stdout(&dry));

    let purge = cli(&["org", "purge", "acme-corp", "--yes"]);
    assert_eq!(purge.status.code(), Some(0), "{}", stderr(&purge));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM public.orgs")
        .fetch_one(&ctx.pool)
        .await
        .expect("count");
    assert_eq!(rows, 0);
    let schemas: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname LIKE 'org\\_%'",
    )
    .fetch_one(&ctx.pool)
    .await
    .expect("count");
    assert_eq!(schemas, 0);

    let missing = cli(&["org", "suspend", "acme-corp"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stderr(&missing).trim(), "error: no org with slug or id 'acme-corp'");
}

#[tokio::test]
async fn migrate_and_migrate_status() {
    let ctx = TestContext::new().await;
    assert_eq!(run_cli(Some(&ctx), &["org", "create", "One"], &[]).status.code(), Some(0));
    let out = run_cli(Some(&ctx), &["migrate", "--jobs", "2"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("orgs: 1 total, 1 already current, 0 migrated, 0 failed"),
        "{}",
        stdout(&out)
    );

    let out = run_cli(Some(&ctx), &["migrate", "status", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status["public_version"], status["public_target"]);
    assert_eq!(status["orgs"][0]["slug"], "one");
    assert_eq!(status["orgs"][0]["version"], status["org_target"]);

    let out = run_cli(Some(&ctx), &["migrate", "status"], &[]);
    assert!(
        stdout(&out).contains(&format!(
            "1 orgs, target version {}: 0 behind, 0 failed",
            tenancy::Lineage::org().latest_version()
        )),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn migrate_reports_a_failing_org_and_exits_1() {
    let ctx = TestContext::new().await;
    assert_eq!(run_cli(Some(&ctx), &["org", "create", "Good"], &[]).status.code(), Some(0));
    assert_eq!(run_cli(Some(&ctx), &["org", "create", "Bad"], &[]).status.code(), Some(0));
    // Make `bad` look unmigrated while its tables exist: V1 cannot apply.
    let schema: String =
        sqlx::query_scalar("SELECT schema_name FROM public.orgs WHERE slug = 'bad'")
            .fetch_one(&ctx.pool)
            .await
            .expect("schema");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DELETE FROM \"{schema}\".refinery_schema_history; UPDATE public.orgs SET org_version = 0 WHERE slug = 'bad'"
    )))
    .execute(&ctx.pool)
    .await
    .expect("break");

    let out = run_cli(Some(&ctx), &["migrate"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("bad: FAILED at version 0:"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("orgs: 2 total, 1 already current, 0 migrated, 1 failed"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        stderr(&out).lines().last().unwrap_or_default(),
        "error: 1 org(s) failed to migrate; fix them and rerun `orgstack migrate`"
    );
    let status = run_cli(Some(&ctx), &["migrate", "status"], &[]);
    assert!(stdout(&status).contains("FAILED:"), "{}", stdout(&status));
    assert!(
        stdout(&status).contains(&format!(
            "2 orgs, target version {}: 1 behind, 1 failed",
            tenancy::Lineage::org().latest_version()
        )),
        "{}",
        stdout(&status)
    );
}

#[test]
fn check_deploy_fails_on_development_defaults() {
    let out = run_cli(None, &["check", "--deploy"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for setting in
        ["ENVIRONMENT:", "DATABASE_URL:", "REDIS_URL:", "SECRET_KEY:", "DEFAULT_ADMIN_PASSWORD:"]
    {
        assert!(text.contains(setting), "{setting} missing from:\n{text}");
    }
    assert_eq!(stderr(&out).trim(), "error: 7 unsafe production setting(s)");
}

#[test]
fn check_deploy_passes_on_a_safe_configuration() {
    let safe = [
        ("ENVIRONMENT", "production"),
        ("DATABASE_URL", "postgres://app:pw@db.internal:5432/orgstack"),
        ("REDIS_URL", "redis://cache.internal:6379"),
        ("SECRET_KEY", "3c1f0e6e2b9a4d7c8f5e1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d"),
        ("LOG_FORMAT", "json"),
        ("SMTP_URL", "smtp://mail.internal:587?tls=required"),
        ("STORAGE_DIR", "/var/lib/orgstack/files"),
    ];
    let out = run_cli(None, &["check", "--deploy"], &safe);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out).trim(), "no unsafe production settings found");
}

#[test]
fn production_serve_refuses_the_development_admin_password() {
    let env = [
        ("ENVIRONMENT", "production"),
        ("DATABASE_URL", "postgres://app:pw@127.0.0.1:1/orgstack"),
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("SECRET_KEY", "3c1f0e6e2b9a4d7c8f5e1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d"),
        ("DEFAULT_ADMIN_PASSWORD", orgstack::config::DEV_ADMIN_PASSWORD),
    ];
    let out = run_cli(None, &["serve"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: DEFAULT_ADMIN_PASSWORD is the development default"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_configuration_names_the_variable() {
    let out = run_cli(None, &["version"], &[("DB_POOL_SIZE", "lots")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "error: DB_POOL_SIZE=\"lots\": expected a whole number from 1 to 1000"
    );

    let out = run_cli(None, &["org", "list"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error: DATABASE_URL: is required"), "{}", stderr(&out));

    let out = run_cli(None, &["no-such-command"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn version_prints_the_version() {
    let out = run_cli(None, &["version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out).trim(), format!("orgstack {}", env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn seed_loads_a_fixture_and_is_idempotent() {
    let ctx = TestContext::new().await;
    let dir = tempfile::tempdir().expect("dir");
    let yaml = dir.path().join("fixture.yaml");
    std::fs::write(
        &yaml,
        r#"
orgs:
  - { name: Acme, slug: acme, flags: { webhooks: true } }
  - { name: Beta Labs }
users:
  - email: ada@example.com
    name: Ada
    password_env: ADA_PASSWORD
    memberships:
      - { org: acme, role: owner }
      - { org: beta-labs, role: viewer }
  - email: root@example.com
    password: root horse battery
    platform_admin: true
flags:
  weekly_digest: true
"#,
    )
    .expect("write");
    let env = [("ADA_PASSWORD", "ada horse battery")];
    let yaml_arg = yaml.to_str().expect("utf-8 path");
    let first = run_cli(Some(&ctx), &["seed", yaml_arg], &env);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(
        stdout(&first).contains("2 orgs created, 2 users created, 2 memberships changed"),
        "{}",
        stdout(&first)
    );
    let counts = || async {
        sqlx::query_as::<_, (i64, i64, i64, i64)>(
            "SELECT (SELECT count(*) FROM public.orgs), (SELECT count(*) FROM public.users), \
             (SELECT count(*) FROM public.memberships), (SELECT count(*) FROM public.feature_flags)",
        )
        .fetch_one(&ctx.pool)
        .await
        .expect("counts")
    };
    let after_first = counts().await;
    assert_eq!(after_first, (2, 2, 2, 2));

    let second = run_cli(Some(&ctx), &["seed", yaml_arg], &env);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert!(
        stdout(&second).contains("0 orgs created, 0 users created, 0 memberships changed"),
        "{}",
        stdout(&second)
    );
    assert_eq!(counts().await, after_first, "no duplicates on the second run");

    // The same data as JSON is also accepted; a bad fixture names the problem.
    let json_path = dir.path().join("fixture.json");
    std::fs::write(&json_path, r#"{"orgs": [{"name": "Acme", "slug": "acme"}]}"#).expect("write");
    assert_eq!(
        run_cli(Some(&ctx), &["seed", json_path.to_str().expect("utf-8")], &[]).status.code(),
        Some(0)
    );
    std::fs::write(&json_path, r#"{"orgz": []}"#).expect("write");
    let bad = run_cli(Some(&ctx), &["seed", json_path.to_str().expect("utf-8")], &[]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("is not a valid fixture")
            && stderr(&bad).contains("unknown field `orgz`"),
        "{}",
        stderr(&bad)
    );

    let app = ctx.spawn_app().await;
    app.login("ada@example.com", "ada horse battery").await;
}
