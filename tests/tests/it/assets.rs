//! `ASSETS_FOLDER`: a small built single-page app served at `/` beside the
//! API.

use orgstack_tests::TestContext;

/// A built app as a bundler leaves it: index.html, hashed assets, a plain
/// file.
fn built_app() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("assets")).expect("assets dir");
    std::fs::write(
        root.join("index.html"),
        "<!doctype html><html><head><title>Acme console</title>\
         <script type=\"module\" src=\"/assets/app.3f2a9c1b.js\"></script></head>\
         <body><div id=\"root\"></div></body></html>\n",
    )
    .expect("index.html");
    let script = "export function render(root) { root.textContent = 'hello'; }\n".repeat(200);
    std::fs::write(root.join("assets/app.3f2a9c1b.js"), script).expect("script");
    std::fs::write(root.join("robots.txt"), "User-agent: *\nDisallow:\n").expect("robots");
    dir
}

#[tokio::test]
async fn the_built_app_is_served_with_its_fallback_caching_and_compression() {
    let ctx = TestContext::new().await;
    let dir = built_app();
    let mut config = ctx.config.clone();
    config.assets_folder = Some(dir.path().to_owned());
    let app = orgstack_tests::spawn_app(config).await;
    let client = reqwest::Client::builder().no_gzip().build().expect("client");
    let get = |path: &str, gzip: bool| {
        let mut request = client.get(app.url(path));
        if gzip {
            request = request.header("accept-encoding", "gzip");
        }
        request.send()
    };
    let header = |r: &reqwest::Response, name: &str| {
        r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    };

    // `/` and any route of the app: index.html, revalidated every time.
    for path in ["/", "/orgs/acme/settings", "/index.html"] {
        let response = get(path, false).await.expect("GET");
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "cache-control"), "no-cache", "{path}");
        assert!(header(&response, "content-type").starts_with("text/html"), "{path}");
        assert!(response.text().await.expect("body").contains("<title>Acme console</title>"));
    }
    // A hashed asset: cached for good, compressed when asked.
    let response = get("/assets/app.3f2a9c1b.js", true).await.expect("GET asset");
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "cache-control"), "public, max-age=31536000, immutable");
    assert_eq!(header(&response, "content-encoding"), "gzip");
    assert!(header(&response, "content-type").contains("javascript"));
    let compressed = response.bytes().await.expect("body").len();
    assert!(compressed < 1_000, "gzip shrinks a repetitive 12 kB script: {compressed} bytes");
    let response = get("/assets/app.3f2a9c1b.js", false).await.expect("GET asset");
    assert_eq!(header(&response, "content-encoding"), "");
    let plain = std::fs::metadata(dir.path().join("assets/app.3f2a9c1b.js")).expect("size").len();
    assert_eq!(response.bytes().await.expect("body").len() as u64, plain);
    // A plain file is revalidated; a missing file is a 404, not the app.
    let response = get("/robots.txt", false).await.expect("GET robots");
    assert_eq!(
        (response.status().as_u16(), header(&response, "cache-control")),
        (200, "no-cache".into())
    );
    for path in ["/assets/missing.4e5f6a7b.js", "/../Cargo.toml", "/assets/../../etc/passwd.txt"] {
        let response = get(path, false).await.expect("GET");
        assert_eq!(response.status(), 404, "{path}");
    }

    // The API, health and docs are never shadowed.
    let response = get("/api/v1/nope", false).await.expect("GET api");
    assert_eq!(response.status(), 404);
    assert_eq!(header(&response, "content-type"), "application/problem+json");
    assert_eq!(get("/healthz", false).await.expect("healthz").status(), 200);
    assert_eq!(get("/readyz", false).await.expect("readyz").status(), 200);
    assert_eq!(get("/api/openapi.json", false).await.expect("openapi").status(), 200);
    let response = client.post(app.url("/orgs")).send().await.expect("POST");
    assert_eq!(response.status(), 405, "files are read-only");
}

#[test]
fn a_folder_without_index_html_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = dir.path().to_string_lossy().into_owned();
    let err = orgstack::config::Config::from_lookup(|name| {
        (name == "ASSETS_FOLDER").then(|| folder.clone())
    })
    .expect_err("no index.html");
    let message = err.to_string();
    assert!(message.contains("ASSETS_FOLDER") && message.contains("index.html"), "{message}");
}
