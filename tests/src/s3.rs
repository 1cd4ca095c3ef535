//! An S3-compatible server for the storage tests: `moto_server` (PyPI's
//! `moto[server]`), started once per test process on a free port; each test
//! makes a bucket of its own.

use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use orgstack::config::StorageConfig;

/// The server this process shares.
#[derive(Debug)]
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Mutex<Child>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
        }
    }
}

/// A free TCP port on 127.0.0.1 (free when this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `moto_server` once per process.
pub fn server() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("orgstack-moto-{}.log", std::process::id()));
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("moto log file"))
            .spawn()
            .unwrap_or_else(|err| {
                panic!("starting moto_server (pip install 'moto[server]'): {err}")
            });
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start; see {}", log.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server { endpoint, child: Mutex::new(child) }
    })
}

impl S3Server {
    /// Makes a new bucket; the storage configuration for it under `prefix`.
    pub async fn bucket(&self, prefix: &str) -> StorageConfig {
        let name = format!("orgstack-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let response = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .expect("creating a bucket");
        assert!(response.status().is_success(), "creating a bucket: {}", response.status());
        StorageConfig::S3 {
            bucket: name,
            prefix: prefix.to_owned(),
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".to_owned(),
            access_key_id: Some("testing".to_owned()),
            secret_access_key: Some("testing".to_owned().into()),
        }
    }
}
