//! Upload throughput: 100 concurrent 10 MB uploads to the real server
//! (`orgstack serve`, a separate process, local storage), its memory while
//! they stream, against the raw disk write speed of the same folder
//! measured in the same run (100 concurrent 10 MB file writes).
//!
//! Run: `cargo bench -p orgstack-tests --bench files` (add `-- --uploads N
//! --mb M --runs R`). Uses `DATABASE_URL`/`REDIS_URL` when set, otherwise
//! private servers, like the tests.

use std::time::{Duration, Instant};

use anyhow::Context;
use orgstack_tests::TestContext;
use orgstack_tests::scale::summary;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let uploads = arg(&args, "--uploads", 100);
    let mb = arg(&args, "--mb", 10);
    let runs = arg(&args, "--runs", 3);
    let ctx = TestContext::new().await;
    let storage = ctx.files_dir.path().to_owned();
    let port = orgstack_tests::s3::free_port();
    let addr = format!("127.0.0.1:{port}");
    let metrics = format!("127.0.0.1:{}", orgstack_tests::s3::free_port());
    let work = tempfile::tempdir()?;
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_orgstack-cli"));
    server
        .arg("serve")
        .current_dir(work.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(ctx.env())
        .env("RUST_LOG", "warn")
        .env("BIND_ADDR", &addr)
        .env("METRICS_ADDR", &metrics)
        .env("DEFAULT_ADMIN_EMAIL", "bench@example.com")
        .env("DEFAULT_ADMIN_PASSWORD", "bench password 1234")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut server = server.spawn().context("starting orgstack serve")?;
    let pid = server.id();
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder().pool_max_idle_per_host(uploads).build()?;
    let started = Instant::now();
    while client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ctx.org("bench").await;
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(
            &serde_json::json!({ "email": "bench@example.com", "password": "bench password 1234" }),
        )
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().context("token")?.to_owned();
    let size = mb << 20;
    let body: bytes::Bytes =
        (0..size).map(|i| b"abcdefghijklmnopqrstuvwxyz\n"[i % 27]).collect::<Vec<u8>>().into();
    let total_mb = (uploads * size) as f64 / (1 << 20) as f64;
    println!(
        "{uploads} concurrent uploads of {mb} MiB ({total_mb:.0} MiB per run), {runs} runs; storage {}",
        storage.display()
    );

    let mut disk = Vec::new();
    let mut upload = Vec::new();
    let mut peaks = Vec::new();
    let mut idle = Vec::new();
    for run in 0..runs {
        // Raw disk: the same bytes, the same concurrency, the same folder.
        let raw = storage.join(format!("raw-{run}"));
        std::fs::create_dir_all(&raw)?;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..uploads {
            let (path, body) = (raw.join(i.to_string()), body.clone());
            tasks.push(tokio::spawn(async move { tokio::fs::write(path, &body).await }));
        }
        for task in tasks {
            task.await??;
        }
        disk.push(total_mb / start.elapsed().as_secs_f64());
        std::fs::remove_dir_all(&raw)?;

        idle.push(rss_kb(pid, "VmRSS") as f64 / 1024.0);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..uploads {
            let (client, body, token, url) = (
                client.clone(),
                body.clone(),
                token.clone(),
                format!("{base}/api/v1/orgs/bench/files"),
            );
            tasks.push(tokio::spawn(async move {
                let part = reqwest::multipart::Part::stream_with_length(
                    reqwest::Body::from(body),
                    size as u64,
                )
                .file_name(format!("upload-{i}.txt"))
                .mime_str("text/plain")?;
                let response = client
                    .post(url)
                    .bearer_auth(token)
                    .multipart(reqwest::multipart::Form::new().part("file", part))
                    .send()
                    .await?;
                anyhow::ensure!(response.status() == 201, "upload answered {}", response.status());
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        upload.push(total_mb / start.elapsed().as_secs_f64());
        // VmHWM: the peak since the server started (it only grows).
        peaks.push(rss_kb(pid, "VmHWM") as f64 / 1024.0);
        // Make room for the next run.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_orgstack-cli"))
            .args(["files", "purge", "bench", "--yes"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(ctx.env())
            .output()?;
        anyhow::ensure!(out.status.success(), "purge: {}", String::from_utf8_lossy(&out.stderr));
    }
    let (disk_median, _, _) = summary(&mut disk);
    let (upload_median, _, _) = summary(&mut upload);
    let (idle_median, _, _) = summary(&mut idle);
    let peak = peaks.iter().copied().fold(0.0, f64::max);
    println!("raw disk write (same folder, same concurrency)   median {disk_median:>8.1} MiB/s");
    println!(
        "uploads through the server (sniffed, hashed)      median {upload_median:>8.1} MiB/s ({:.0}% of the disk's)",
        100.0 * upload_median / disk_median
    );
    println!("server RSS before the uploads                    median {idle_median:>8.1} MiB");
    println!("server peak RSS (VmHWM, over every run)                  {peak:>8.1} MiB");
    let _ = server.kill();
    let _ = server.wait();
    Ok(())
}
