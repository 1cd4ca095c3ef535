//! `file.process`: checks an upload (its SHA-256 again, from storage),
//! counts it and extracts metadata, holding the file's lock throughout.
//!
//! A second run for the same file (a reclaimed job whose first worker is
//! still alive) waits for the lock, then finds the file ready and stops. A
//! run on a worker that died leaves the status `processing` and the lock
//! expiring within [`super::LOCK_TTL`]; the job is reclaimed and its next
//! attempt takes over. The last failed attempt marks the file `failed`.

use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::{FILE_COLUMNS, File, LOCK_TTL, PROCESS_KIND, lock_name};
use crate::jobs::handler::{Handler, JobContext, JobError, JobResult};
use crate::storage::Storage;

/// How long a run waits for another run's lock on the same file.
const LOCK_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, serde::Deserialize)]
struct Payload {
    file_id: Uuid,
}

/// The handler; holds the storage it reads from.
#[derive(Debug)]
pub struct ProcessFile {
    storage: Storage,
}

impl ProcessFile {
    pub fn new(storage: Storage) -> Self {
        ProcessFile { storage }
    }
}

impl Handler for ProcessFile {
    fn kind(&self) -> &'static str {
        PROCESS_KIND
    }

    fn queue(&self) -> &'static str {
        "files"
    }

    fn max_attempts(&self) -> u32 {
        5
    }

    fn timeout(&self, _payload: &Value) -> Duration {
        Duration::from_secs(1800)
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        serde_json::from_value::<Payload>(payload.clone())
            .map(|_| ())
            .map_err(|e| format!("expected {{\"file_id\": uuid}}: {e}"))
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> BoxFuture<'a, JobResult> {
        async move {
            let payload: Payload = serde_json::from_value(ctx.payload.clone())
                .map_err(|e| JobError::permanent(format!("bad payload: {e}")))?;
            let org =
                ctx.org.clone().ok_or_else(|| JobError::permanent("file.process needs an org"))?;
            let locks = ctx.jobs.locks();
            let deadline = Instant::now() + LOCK_WAIT;
            let mut lock = loop {
                if let Some(lock) = locks
                    .try_acquire_in_org(org.id, &lock_name(payload.file_id), LOCK_TTL)
                    .await
                    .map_err(anyhow::Error::from)?
                {
                    break lock;
                }
                if Instant::now() > deadline || ctx.is_cancelled() {
                    return Err(JobError::retry("another run holds this file's lock"));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            lock.keep_alive();
            let outcome = self.process(ctx, &org, payload.file_id).await;
            let _ = lock.release().await;
            outcome
        }
        .boxed()
    }
}

impl ProcessFile {
    async fn process(&self, ctx: &JobContext, org: &tenancy::Org, id: Uuid) -> JobResult {
        let pool = ctx.jobs.pool();
        let schema = org.schema();
        let Some(file) = super::get(pool, &schema, id).await.map_err(anyhow::Error::from)? else {
            ctx.log.warn(format!("file {id} no longer exists; nothing to do"));
            return Ok(json!({ "skipped": "deleted" }));
        };
        // A run that waited for another one's lock: that one did the work.
        if file.status == "ready"
            && file.processed_at.is_some_and(|at| at > ctx_started(ctx, &file))
        {
            ctx.log.info("already processed by another run");
            return Ok(json!({ "skipped": "already processed" }));
        }
        let file = set_status(ctx, org, id, "processing", None, None).await?;
        ctx.log.info(format!(
            "processing {} ({} bytes, {})",
            file.name, file.size_bytes, file.content_type
        ));
        match self.inspect(ctx, org, &file).await {
            Ok(metadata) => {
                let ready = set_status(ctx, org, id, "ready", Some(metadata.clone()), None).await?;
                ctx.log.info("ready");
                let event = serde_json::to_value(&ready).unwrap_or_default();
                crate::webhooks::emit(&ctx.jobs, org.id, vec![("file.ready", event)]).await;
                Ok(metadata)
            }
            Err(err) => {
                let message = err.message().to_owned();
                let last = ctx.attempt >= ctx.max_attempts || matches!(err, JobError::Permanent(_));
                if last {
                    set_status(ctx, org, id, "failed", None, Some(&message)).await?;
                }
                ctx.log.error(format!("processing failed: {message}"));
                Err(err)
            }
        }
    }

    /// Reads the bytes back: checks size and SHA-256, counts lines, words
    /// and characters of text, reads image dimensions.
    async fn inspect(
        &self,
        ctx: &JobContext,
        org: &tenancy::Org,
        file: &File,
    ) -> Result<Value, JobError> {
        let read = self
            .storage
            .read(&self.storage.key(org.id, file.id), None)
            .await
            .map_err(|e| JobError::retry(format!("reading the stored file: {e}")))?;
        let mut stream = read.stream;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let text =
            file.content_type.starts_with("text/") || file.content_type == "application/json";
        let mut lines: u64 = 0;
        let mut words: u64 = 0;
        let mut in_word = false;
        let mut last: Option<u8> = None;
        let mut head: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            if ctx.is_cancelled() {
                return Err(JobError::retry("cancelled"));
            }
            let chunk =
                chunk.map_err(|e| JobError::retry(format!("reading the stored file: {e}")))?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
            if head.len() < 64 * 1024 {
                let take = (64 * 1024 - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            if text {
                for &b in chunk.iter() {
                    if b == b'\n' {
                        lines += 1;
                    }
                    let space = b.is_ascii_whitespace();
                    if !space && !in_word {
                        words += 1;
                    }
                    in_word = !space;
                }
                last = chunk.last().copied().or(last);
            }
        }
        let digest: [u8; 32] = hasher.finalize().into();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        if size != u64::try_from(file.size_bytes).unwrap_or(0) || hex != file.sha256 {
            return Err(JobError::permanent(format!(
                "the stored bytes do not match the upload (size {size}, sha256 {hex})"
            )));
        }
        let mut metadata = json!({ "bytes": size, "sha256_verified": true });
        if text {
            if last.is_some_and(|b| b != b'\n') {
                lines += 1;
            }
            metadata["lines"] = json!(lines);
            metadata["words"] = json!(words);
        }
        if file.content_type.starts_with("image/")
            && let Ok(dim) = imagesize::blob_size(&head)
        {
            metadata["width"] = json!(dim.width);
            metadata["height"] = json!(dim.height);
        }
        Ok(metadata)
    }
}

/// When the job asking for this run was made (a run that waited for a lock
/// compares it with the file's `processed_at`).
fn ctx_started(ctx: &JobContext, file: &File) -> chrono::DateTime<chrono::Utc> {
    // Job ids are UUIDv7: their first 48 bits are the creation time in ms.
    let ms = (ctx.id.as_u128() >> 80) as i64;
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or(file.created_at)
}

async fn set_status(
    ctx: &JobContext,
    org: &tenancy::Org,
    id: Uuid,
    status: &str,
    metadata: Option<Value>,
    error: Option<&str>,
) -> Result<File, JobError> {
    let sql = format!(
        "UPDATE {} SET status = $2, metadata = COALESCE($3, metadata), error = $4, \
         processed_at = CASE WHEN $2 IN ('ready', 'failed') THEN now() ELSE processed_at END, \
         updated_at = now() WHERE id = $1 RETURNING {FILE_COLUMNS}",
        org.schema().qualify("files")
    );
    let file: Option<File> = sqlx::query_as(AssertSqlSafe(sql))
        .persistent(false)
        .bind(id)
        .bind(status)
        .bind(metadata)
        .bind(error)
        .fetch_optional(ctx.jobs.pool())
        .await
        .map_err(anyhow::Error::from)?;
    let file = file.ok_or_else(|| JobError::permanent("the file was deleted while processed"))?;
    super::announce(&ctx.jobs, org, &file).await;
    Ok(file)
}
