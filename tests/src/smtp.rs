//! A real SMTP server per test: `tests/smtp/server.py` (PyPI's `aiosmtpd`),
//! which appends each message it receives to a file as a JSON line.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// One running server; stopped when dropped.
#[derive(Debug)]
pub struct SmtpServer {
    /// `smtp://127.0.0.1:PORT` (plain, as on a local relay).
    pub url: String,
    messages: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("smtp dir");
        let messages = dir.path().join("messages.jsonl");
        let port = crate::s3::free_port();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("smtp/server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&messages)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the SMTP server (python3 with aiosmtpd: pip install aiosmtpd)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout).read_line(&mut line).expect("SMTP server output");
        assert!(
            line.starts_with("listening"),
            "SMTP server said {line:?} (is aiosmtpd installed?)"
        );
        SmtpServer { url: format!("smtp://127.0.0.1:{port}"), messages, child, _dir: dir }
    }

    /// Every message received so far, in order.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.messages)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
