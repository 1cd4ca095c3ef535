//! `orgstack dev`'s private servers: started from the installed binaries in
//! an empty folder, working, stopped cleanly, and their data kept.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use fred::prelude::{ClientLike, KeysInterface};
use orgstack::dev::start_services;
use orgstack_tests::config_with;

#[tokio::test]
async fn dev_brings_up_postgres_and_redis_from_nothing_and_stops_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    // PostgreSQL may run as another user (when tests run as root).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = config_with(&[]);
    let mut services =
        start_services(&config, &dir.path().join("dev")).await.expect("private servers start");
    let pg_port = services.postgres.as_ref().expect("private postgres").port();
    let redis_port = services.redis.as_ref().expect("private redis").port();
    assert!(services.database_url.ends_with("/orgstack"), "{}", services.database_url);

    let pool =
        tenancy::db::connect(&services.database_url, &Default::default()).await.expect("connect");
    sqlx::raw_sql(
        "CREATE TABLE public.marker (note text); INSERT INTO public.marker VALUES ('kept')",
    )
    .execute(&pool)
    .await
    .expect("write");
    pool.close().await;
    let redis =
        orgstack::redis::connect(&services.redis_url, Duration::from_secs(5)).await.expect("redis");
    let _: () = redis.set("marker", "kept", None, None, false).await.expect("set");
    let _ = redis.quit().await;

    services.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", pg_port)).is_err(), "postgres stopped");
    assert!(std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_err(), "redis stopped");
    assert!(
        !dir.path().join("dev/postgres/data/postmaster.pid").exists(),
        "postgres shut down cleanly"
    );

    // Data is kept between runs.
    let mut again = start_services(&config, &dir.path().join("dev")).await.expect("restart");
    let pool = tenancy::db::connect(&again.database_url, &Default::default())
        .await
        .expect("connect again");
    let note: String = sqlx::query_scalar("SELECT note FROM public.marker")
        .fetch_one(&pool)
        .await
        .expect("kept row");
    assert_eq!(note, "kept");
    pool.close().await;
    let redis =
        orgstack::redis::connect(&again.redis_url, Duration::from_secs(5)).await.expect("redis");
    let kept: Option<String> = redis.get("marker").await.expect("get");
    assert_eq!(kept.as_deref(), Some("kept"), "Redis data is kept between runs");
    let _ = redis.quit().await;
    again.stop();
}
