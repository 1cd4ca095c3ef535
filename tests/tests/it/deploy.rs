//! The files of `deploy/`: every metric the Grafana dashboard and the alert
//! rules query is one the processes export (checked against a real scrape of
//! a server and of an `orgstack worker` process after traffic and job
//! activity), the dashboard's queries are valid PromQL, and the systemd
//! units run command lines that parse.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts::PW;
use crate::{eventually, spawn_cli};
use orgstack_tests::{TestApp, TestContext};

/// Names the dashboard and the rules query that no Orgstack process exports,
/// with where they come from. Every other name must be in the scrape. The
/// exporters' names were checked against Debian 12's
/// prometheus-blackbox-exporter 0.23 and prometheus-redis-exporter 1.45.
const NOT_FROM_ORGSTACK: &[(&str, &str)] = &[
    ("up", "Prometheus's own series per target: whether the last scrape succeeded"),
    ("probe_success", "the blackbox exporter's probe of GET /readyz (job orgstack-readyz)"),
    ("redis_up", "the Redis exporter (job redis): Orgstack exports no Redis metric of its own"),
    ("redis_evicted_keys_total", "the Redis exporter (job redis)"),
    ("redis_connected_clients", "the Redis exporter (job redis)"),
    ("redis_memory_used_bytes", "the Redis exporter (job redis)"),
    ("redis_memory_max_bytes", "the Redis exporter (job redis)"),
    ("redis_commands_processed_total", "the Redis exporter (job redis)"),
];

/// Labels Prometheus adds from the scrape configuration, not the process.
const TARGET_LABELS: &[&str] = &["job", "instance", "role"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path))
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

// ---------------------------------------------------------------------------
// PromQL: the metric names and label matchers of an expression.

/// A vector selector: a metric name and its `{label op "value"}` matchers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selector {
    name: String,
    matchers: Vec<(String, String, String)>,
}

/// Aggregations, operators and modifiers: identifiers that are not metrics.
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "start",
    "end",
];
/// Modifiers followed by a parenthesised list of label names.
const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The selectors of a PromQL expression, found by a small tokenizer: string
/// literals, `[range]`s, Grafana `$variables`, numbers and durations are
/// skipped; an identifier followed by `(` is a function; label lists after
/// `by`, `without`, `on`, `ignoring`, `group_left` and `group_right` are
/// skipped; every other identifier is a metric name, with the matchers in
/// the braces after it.
fn selectors(expr: &str) -> Vec<Selector> {
    let chars: Vec<char> = expr.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let skip_ws = |mut i: usize| {
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        i
    };
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(c) = at(i) {
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '[' => i = chars[i..].iter().position(|&c| c == ']').map_or(chars.len(), |n| i + n + 1),
            '{' => panic!("a selector without a metric name in {expr:?}"),
            '$' => {
                i += 1;
                if at(i) == Some('{') {
                    i = chars[i..]
                        .iter()
                        .position(|&c| c == '}')
                        .map_or(chars.len(), |n| i + n + 1);
                } else {
                    while at(i).is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_digit()
                || (c == '.' && at(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                while at(i).is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while at(i).is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = skip_ws(i);
                if GROUPING.contains(&word.as_str()) {
                    if at(next) == Some('(') {
                        i = chars[next..]
                            .iter()
                            .position(|&c| c == ')')
                            .map_or(chars.len(), |n| next + n + 1);
                    }
                } else if KEYWORDS.contains(&word.as_str()) || at(next) == Some('(') {
                    // An aggregation, operator or function.
                } else {
                    let mut matchers = Vec::new();
                    if at(next) == Some('{') {
                        let (parsed, end) = parse_matchers(&chars, next, expr);
                        matchers = parsed;
                        i = end;
                    }
                    found.push(Selector { name: word, matchers });
                }
            }
            _ => i += 1,
        }
    }
    found
}

/// The index after the string literal starting at `start`.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    panic!("an unterminated string in {:?}", chars.iter().collect::<String>())
}

/// The matchers of the `{...}` at `open`, and the index after it.
fn parse_matchers(
    chars: &[char],
    open: usize,
    expr: &str,
) -> (Vec<(String, String, String)>, usize) {
    let mut matchers = Vec::new();
    let mut i = open + 1;
    loop {
        while chars.get(i).is_some_and(|c| c.is_whitespace() || *c == ',') {
            i += 1;
        }
        match chars.get(i) {
            Some('}') => return (matchers, i + 1),
            None => panic!("an unclosed selector in {expr:?}"),
            _ => {}
        }
        let start = i;
        while chars.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
            i += 1;
        }
        let label: String = chars[start..i].iter().collect();
        while chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        let op_start = i;
        while chars.get(i).is_some_and(|c| matches!(c, '=' | '!' | '~')) {
            i += 1;
        }
        let op: String = chars[op_start..i].iter().collect();
        assert!(
            !label.is_empty() && ["=", "!=", "=~", "!~"].contains(&op.as_str()),
            "a malformed matcher in {expr:?}"
        );
        while chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        assert!(
            matches!(chars.get(i), Some('"' | '\'' | '`')),
            "a matcher value must be a string in {expr:?}"
        );
        let end = skip_string(chars, i);
        let raw: String = chars[i + 1..end - 1].iter().collect();
        matchers.push((label, op, raw.replace("\\\"", "\"").replace("\\\\", "\\")));
        i = end;
    }
}

#[test]
fn the_tokenizer_finds_metrics_and_skips_functions_labels_and_variables() {
    let found = selectors(
        r#"histogram_quantile(0.99, sum by (route, le) (rate(orgstack_http_request_duration_seconds_bucket{status=~"5..", route!="/x{y}"}[$__rate_interval])))
           / ignoring(state) group_left max without (instance) (orgstack_db_pool_max_connections offset 15m) > bool 1e3
           unless on (queue) up{job="a,b"} == 0 or absent(probe_success) and label_replace(x_total, "dst", "$1", "src", "(.*)")"#,
    );
    let names: Vec<&str> = found.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "orgstack_http_request_duration_seconds_bucket",
            "orgstack_db_pool_max_connections",
            "up",
            "probe_success",
            "x_total"
        ]
    );
    assert_eq!(
        found[0].matchers,
        [
            ("status".to_owned(), "=~".to_owned(), "5..".to_owned()),
            ("route".to_owned(), "!=".to_owned(), "/x{y}".to_owned())
        ]
    );
    assert_eq!(found[2].matchers, [("job".to_owned(), "=".to_owned(), "a,b".to_owned())]);
}

// ---------------------------------------------------------------------------
// The expressions of the dashboard and of the rules.

/// `(where, expression)` for every query of the Grafana dashboard: panel
/// targets (rows included) and query variables (`label_values(m, l)`
/// counts as `m`).
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value =
        serde_json::from_str(&read("deploy/grafana/orgstack.json")).expect("dashboard JSON");
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("every target has a PromQL expr");
                out.push((format!("panel {title:?} {}", target["refId"]), expr.to_owned()));
            }
            walk(panel["panels"].as_array().map_or(&[], Vec::as_slice), out);
        }
    }
    let mut out = Vec::new();
    walk(dashboard["panels"].as_array().expect("panels"), &mut out);
    assert!(out.len() > 20, "the dashboard has its panels");
    for var in dashboard["templating"]["list"].as_array().expect("variables") {
        if var["type"] == "datasource" {
            assert_eq!(var["query"], "prometheus", "the datasource variable picks Prometheus");
            continue;
        }
        let query =
            var["query"]["query"].as_str().or(var["query"].as_str()).expect("variable query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.rsplit_once(','))
            .map_or(query, |(metric, _)| metric);
        out.push((format!("variable {}", var["name"]), inner.trim().to_owned()));
    }
    out
}

/// `(where, expression)` for every rule of `deploy/alerts.yml`, checking on
/// the way that each alert has a `for`, a severity and both annotations.
fn alert_queries() -> Vec<(String, String)> {
    let rules: serde_norway::Value =
        serde_norway::from_str(&read("deploy/alerts.yml")).expect("alerts YAML");
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("alert rules only");
            assert!(rule["for"].as_str().is_some(), "{name} has a `for`");
            assert!(
                matches!(rule["labels"]["severity"].as_str(), Some("critical" | "warning")),
                "{name} has a severity"
            );
            for key in ["summary", "description"] {
                assert!(rule["annotations"][key].as_str().is_some(), "{name} has a {key}");
            }
            out.push((format!("alert {name}"), rule["expr"].as_str().expect("expr").to_owned()));
        }
    }
    let names: BTreeSet<&str> = out.iter().map(|(w, _)| w.as_str()).collect();
    for needed in [
        "alert OrgstackHighErrorRate",
        "alert OrgstackHighLatencyP99",
        "alert OrgstackQueueBacklog",
        "alert OrgstackDeadJobs",
        "alert OrgstackNoLiveWorker",
        "alert OrgstackNotReady",
    ] {
        assert!(names.contains(needed), "deploy/alerts.yml has {needed}");
    }
    out
}

/// The `job_name`s of `deploy/prometheus.yml`.
fn scrape_jobs() -> BTreeSet<String> {
    let config: serde_norway::Value =
        serde_norway::from_str(&read("deploy/prometheus.yml")).expect("prometheus YAML");
    config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .map(|c| c["job_name"].as_str().expect("job_name").to_owned())
        .collect()
}

// ---------------------------------------------------------------------------
// The exposition text.

/// A scrape: every sample's name with its labels, and each family's type.
#[derive(Debug, Default)]
struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>)>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(text: &str, into: &mut Scrape) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    into.types.insert(name.to_owned(), kind.to_owned());
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = line[..end].to_owned();
            let mut labels = BTreeMap::new();
            if line[end..].starts_with('{') {
                let chars: Vec<char> = line[end..].chars().collect();
                let (matchers, _) = parse_matchers(&chars, 0, line);
                labels = matchers.into_iter().map(|(k, _, v)| (k, v)).collect();
            }
            into.samples.push((name, labels));
        }
    }

    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _)| n == name)
    }

    fn has_label(&self, name: &str, label: &str, value: &str) -> bool {
        self.samples.iter().any(|(n, l)| n == name && l.get(label).is_some_and(|v| v == value))
    }
}

/// Every name queried is exported (or an explained exemption), a
/// `_bucket`/`_sum`/`_count` name belongs to a histogram, every equality
/// matcher on an exported label names a value the scrape has, and every
/// `job` matcher names a job of prometheus.yml.
fn check_queries(queries: &[(String, String)], scrape: &Scrape) {
    let jobs = scrape_jobs();
    let exempt: BTreeMap<&str, &str> = NOT_FROM_ORGSTACK.iter().copied().collect();
    let mut used_exemptions = BTreeSet::new();
    let mut problems = Vec::new();
    for (place, expr) in queries {
        let found = selectors(expr);
        if found.is_empty() {
            problems.push(format!("{place}: no metric in {expr:?}"));
        }
        for selector in found {
            let name = selector.name.as_str();
            for (label, op, value) in &selector.matchers {
                if label == "job" && !value.contains('$') {
                    let named: Vec<&str> =
                        if op == "=~" { value.split('|').collect() } else { vec![value.as_str()] };
                    for job in named {
                        if op.starts_with('=') && !jobs.contains(job) {
                            problems.push(format!(
                                "{place}: job {job:?} is not a scrape job of deploy/prometheus.yml"
                            ));
                        }
                    }
                }
            }
            if let Some(from) = exempt.get(name) {
                assert!(!from.is_empty(), "{name}: say where it comes from");
                used_exemptions.insert(name.to_owned());
                continue;
            }
            if !name.starts_with("orgstack_") {
                problems.push(format!(
                    "{place}: {name} is neither an Orgstack metric nor a listed exemption"
                ));
                continue;
            }
            if !scrape.has(name) {
                problems.push(format!("{place}: {name} is not in the scrape"));
                continue;
            }
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(family) = name.strip_suffix(suffix)
                    && scrape.types.contains_key(family)
                {
                    let kind = &scrape.types[family];
                    if kind != "histogram" && kind != "summary" {
                        problems.push(format!("{place}: {name} but {family} is a {kind}"));
                    }
                }
            }
            for (label, op, value) in &selector.matchers {
                if op == "="
                    && !value.contains('$')
                    && !TARGET_LABELS.contains(&label.as_str())
                    && !scrape.has_label(name, label, value)
                {
                    problems.push(format!(
                        "{place}: no series {name}{{{label}=\"{value}\"}} in the scrape"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let unused: Vec<&str> =
        exempt.keys().copied().filter(|n| !used_exemptions.contains(*n)).collect();
    assert!(unused.is_empty(), "exemptions no query uses: {unused:?}");
}

// ---------------------------------------------------------------------------

async fn enqueue(app: &TestApp, token: &str, body: Value) -> String {
    let (status, job) =
        app.call(Method::POST, "/api/v1/orgs/deploy/jobs", Some(token), Some(body)).await;
    assert_eq!(status, 201, "{job}");
    job["id"].as_str().expect("job id").to_owned()
}

async fn job_status(app: &TestApp, token: &str, id: &str) -> String {
    let (_, job) =
        app.call(Method::GET, &format!("/api/v1/orgs/deploy/jobs/{id}"), Some(token), None).await;
    job["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn every_metric_of_the_dashboard_and_the_alert_rules_is_exported() {
    let ctx = TestContext::new().await;
    ctx.user("root@example.com", PW, true).await;
    let org = ctx.org("deploy").await;
    let app = ctx.spawn_app().await;
    let root = app.login("root@example.com", PW).await;
    // Requests: health, readiness (the probe's target), an API read, a 404.
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200, "the readiness probe's target");
    assert_eq!(app.call(Method::GET, "/api/v1/orgs/deploy", Some(&root), None).await.0, 200);
    assert_eq!(app.get("/no/such/page").await.status(), 404);

    // A worker dies (kill -9) running the last attempt of a job: the next
    // worker reclaims the entry after the visibility timeout and the job is
    // dead.
    let lost = enqueue(
        &app,
        &root,
        json!({ "kind": "sleep", "payload": { "ms": 60_000 }, "max_attempts": 1 }),
    )
    .await;
    let mut doomed = spawn_cli(&ctx, &["worker", "--concurrency", "1"]);
    let running = eventually(Duration::from_secs(30), || async {
        job_status(&app, &root, &lost).await == "running"
    })
    .await;
    assert!(running, "the first worker runs the job");
    nix::sys::signal::kill(doomed.pid(), nix::sys::signal::Signal::SIGKILL).expect("kill -9");
    doomed.child.wait().expect("reaped");

    // The worker Prometheus scrapes, as systemd runs it (WORKER_ARGS).
    let port = orgstack::local::free_port().expect("port");
    let metrics_addr = format!("127.0.0.1:{port}");
    let _worker =
        spawn_cli(&ctx, &["worker", "--concurrency", "4", "--metrics-addr", &metrics_addr]);
    let worker_metrics = format!("http://{metrics_addr}/metrics");
    // Outcomes: succeeded, retried then succeeded, dead.
    enqueue(&app, &root, json!({ "kind": "noop" })).await;
    enqueue(&app, &root, json!({ "kind": "sleep", "payload": { "fail_attempts": 1 } })).await;
    enqueue(
        &app,
        &root,
        json!({ "kind": "sleep", "payload": { "fail_attempts": 1, "permanent": true } }),
    )
    .await;
    ctx.drain(&org, Duration::from_secs(60)).await;
    assert_eq!(job_status(&app, &root, &lost).await, "dead");

    // The worker's counters are written with its outcomes, its in-flight
    // gauge with its heartbeat (every 2 s).
    let needles = [
        "orgstack_jobs_reclaimed_total{",
        "outcome=\"dead\"",
        "outcome=\"retried\"",
        "outcome=\"succeeded\"",
        "orgstack_worker_in_flight ",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let worker_text = loop {
        let text = match app.client.get(&worker_metrics).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if needles.iter().all(|needle| text.contains(needle)) {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker's scrape lacks job activity:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let server_text =
        app.client.get(app.metrics_url()).send().await.expect("scrape").text().await.expect("text");

    // Prometheus scrapes both kinds of process (deploy/prometheus.yml).
    let mut scrape = Scrape::default();
    Scrape::parse(&server_text, &mut scrape);
    Scrape::parse(&worker_text, &mut scrape);
    let dashboard = dashboard_queries();
    let alerts = alert_queries();
    check_queries(&[dashboard.clone(), alerts].concat(), &scrape);
    // The dashboard alone covers every area the operations issue names.
    let names: BTreeSet<String> =
        dashboard.iter().flat_map(|(_, e)| selectors(e)).map(|s| s.name).collect();
    for needed in [
        "orgstack_http_requests_total",
        "orgstack_http_request_duration_seconds_bucket",
        "orgstack_jobs_finished_total",
        "orgstack_queue_depth",
        "orgstack_queue_oldest_age_seconds",
        "orgstack_queue_dead",
        "orgstack_workers",
        "orgstack_db_pool_connections",
        "redis_up",
    ] {
        assert!(names.contains(needed), "the dashboard shows {needed}");
    }
}

/// Every dashboard query is valid PromQL, checked by promtool as recording
/// rules (with Grafana's variables given sample values). Needs promtool
/// (Debian: `apt-get install prometheus`, as .ci/run does); without it the
/// test says so and passes, except under CI where it fails.
#[test]
fn dashboard_queries_are_valid_promql() {
    let promtool = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|p| p.join("promtool")).find(|p| p.is_file())
    });
    let Some(promtool) = promtool else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing (apt-get install prometheus)"
        );
        eprintln!("skipped: promtool is not installed (apt-get install prometheus)");
        return;
    };
    let queries = dashboard_queries();
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(n, (place, expr))| {
            let expr = expr.replace("$__rate_interval", "5m").replace("$queue", ".*");
            assert!(!expr.contains('$'), "{place}: an unknown Grafana variable in {expr:?}");
            json!({ "record": format!("dashboard:query_{n}"), "expr": expr })
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dashboard.rules.yml");
    let doc = json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    std::fs::write(&file, doc.to_string()).expect("write rules");
    let out = std::process::Command::new(promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("running promtool");
    let places: Vec<String> =
        queries.iter().enumerate().map(|(n, (place, _))| format!("query_{n}: {place}")).collect();
    assert!(
        out.status.success(),
        "promtool rejects a dashboard query:\n{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        places.join("\n")
    );
}

// ---------------------------------------------------------------------------
// systemd units.

/// `(key, value)` of every `Key=value` line of a unit file.
fn unit_settings(name: &str) -> Vec<(String, String)> {
    read(&format!("deploy/systemd/{name}"))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn setting<'a>(settings: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    settings.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
}

#[test]
fn systemd_units_run_valid_commands_with_hardening_and_graceful_stops() {
    use orgstack::cli::{Cli, Command};
    let defaults = orgstack_tests::config_with(&[]);
    let worker_default = match Cli::try_parse_from(["orgstack", "worker"]).expect("worker").command
    {
        Command::Worker(args) => args.shutdown_timeout,
        other => panic!("{other:?}"),
    };
    for (unit, subcommand, drain_secs) in [
        ("orgstack.service", "serve", Some(defaults.shutdown_timeout.as_secs())),
        ("orgstack-worker@.service", "worker", Some(worker_default)),
        ("orgstack-scheduler.service", "scheduler", None),
        ("orgstack-migrate.service", "migrate", None),
    ] {
        let settings = unit_settings(unit);
        let exec = setting(&settings, "ExecStart");
        assert_eq!(exec.len(), 1, "{unit}: one ExecStart");
        // systemd drops an unset `$VAR` and splits a set one into words.
        let words: Vec<&str> = exec[0].split_whitespace().filter(|w| !w.starts_with('$')).collect();
        assert_eq!(words[..2], ["/usr/local/bin/orgstack", subcommand], "{unit}");
        let mut argv = vec!["orgstack"];
        argv.extend(&words[1..]);
        Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{unit}: {argv:?}: {e}"));
        for (key, value) in [
            ("User", "orgstack"),
            ("EnvironmentFile", "/etc/orgstack/orgstack.env"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("PartOf", "orgstack.target"),
        ] {
            assert!(setting(&settings, key).contains(&value), "{unit}: {key}={value}");
        }
        if unit != "orgstack-migrate.service" {
            assert_eq!(setting(&settings, "Restart"), ["on-failure"], "{unit}");
            assert_eq!(setting(&settings, "KillSignal"), ["SIGTERM"], "{unit}");
            assert_eq!(setting(&settings, "WantedBy"), ["orgstack.target"], "{unit}");
            assert!(setting(&settings, "Wants").contains(&"orgstack-migrate.service"), "{unit}");
            assert!(
                setting(&settings, "After")
                    .iter()
                    .any(|a| a.split_whitespace().any(|u| u == "orgstack-migrate.service")),
                "{unit} starts after the migrations"
            );
        }
        if let Some(drain) = drain_secs {
            let stop: u64 = setting(&settings, "TimeoutStopSec")[0].parse().expect("seconds");
            assert!(stop >= drain + 15, "{unit}: TimeoutStopSec {stop} leaves room after {drain}s");
        }
    }
    // The worker template's documented WORKER_ARGS example parses too.
    let worker = read("deploy/systemd/orgstack-worker@.service");
    let example = worker
        .lines()
        .find_map(|l| l.trim_start_matches('#').trim().strip_prefix("WORKER_ARGS="))
        .expect("a WORKER_ARGS example");
    let mut argv = vec!["orgstack", "worker"];
    argv.extend(example.split("  ").next().unwrap_or(example).split_whitespace());
    Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let queues = worker
        .lines()
        .find_map(|l| l.trim_start_matches('#').trim().strip_prefix("WORKER_QUEUES="))
        .and_then(|l| l.split_whitespace().next())
        .expect("a WORKER_QUEUES example");
    orgstack::jobs::worker::WorkerOptions::parse_queues(queues).expect("WORKER_QUEUES example");
    assert!(worker.contains("EnvironmentFile=-/etc/orgstack/worker-%i.env"));
}
