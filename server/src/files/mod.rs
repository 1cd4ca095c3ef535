//! Files of an org: uploads streamed to [`crate::storage`], recorded in the
//! org schema's `files`, processed in the background by `file.process`.
//!
//! An upload's type is sniffed from its first bytes (never taken from the
//! client's header) and must be in `UPLOAD_CONTENT_TYPES`; its size may not
//! pass `MAX_UPLOAD_BYTES`; its SHA-256 is computed on the way through. A
//! refused upload leaves nothing in storage or the database.
//!
//! Status: `uploaded` → `processing` → `ready` | `failed`. Each change is
//! announced on the org's events channel (`file.status`). While a file is
//! processed its lock (`file:{id}`, renewed while held) is taken, so it is
//! never processed twice at once; asking then answers 409.

pub mod process;

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::AssertSqlSafe;
use tenancy::{Org, SchemaName};
use uuid::Uuid;

use crate::accounts::Actor;
use crate::jobs::{Enqueued, Jobs, JobsError, NewJob};
use crate::storage::{Storage, StorageError};

/// How much of the start of a file decides its type.
const SNIFF_BYTES: usize = 8192;
/// The processing lock's time to live (renewed every third of it).
pub const LOCK_TTL: Duration = Duration::from_secs(10);
/// The job kind that processes an upload.
pub const PROCESS_KIND: &str = "file.process";

pub(crate) const FILE_COLUMNS: &str = "id, name, content_type, size_bytes, encode(sha256, 'hex') AS sha256, status, metadata, error, job_id, uploaded_by, created_at, updated_at, processed_at";

/// A file as clients see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct File {
    pub id: Uuid,
    /// The name it was uploaded with (shown, never used as a storage key).
    pub name: String,
    /// Sniffed from the bytes.
    pub content_type: String,
    pub size_bytes: i64,
    /// Hex SHA-256 of the bytes, computed while they were received.
    pub sha256: String,
    /// uploaded, processing, ready or failed.
    pub status: String,
    /// What processing found (counts, dimensions, ...).
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub error: Option<String>,
    /// The latest processing job.
    pub job_id: Option<Uuid>,
    pub uploaded_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
}

/// Why a file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("the file is larger than the limit of {limit} bytes (MAX_UPLOAD_BYTES)")]
    TooLarge { limit: u64 },
    #[error("files of type {found} are not accepted (allowed: {allowed})")]
    UnsupportedType { found: String, allowed: String },
    #[error("the file is empty")]
    Empty,
    #[error("{0}")]
    BadUpload(String),
    #[error("no such file")]
    NotFound,
    #[error("this file is being processed now; ask again when its status is ready or failed")]
    Busy,
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Jobs(#[from] JobsError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("redis error: {0}")]
    Redis(#[from] fred::error::Error),
}

/// Upload rules from the configuration.
#[derive(Debug, Clone)]
pub struct UploadRules {
    pub max_bytes: u64,
    pub allowed_types: Vec<String>,
}

/// The files services. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Files {
    jobs: Jobs,
    storage: Storage,
    rules: UploadRules,
}

/// The sniffed type of `head` (the first bytes of a file): a known binary
/// signature, else text (UTF-8, no NUL) refined by `declared` when that is
/// a text type, else `application/octet-stream`.
pub fn sniff(head: &[u8], declared: Option<&str>) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    let text = !head.contains(&0)
        && match std::str::from_utf8(head) {
            Ok(_) => true,
            // A multi-byte character cut at the end of the head.
            Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
        };
    if !text {
        return "application/octet-stream".to_owned();
    }
    let declared = declared.map(|d| d.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    match declared.as_deref() {
        Some(
            d @ ("text/csv" | "text/markdown" | "text/tab-separated-values" | "application/json"),
        ) => d.to_owned(),
        _ => {
            let trimmed = head.iter().position(|b| !b.is_ascii_whitespace()).map(|i| head[i]);
            if matches!(trimmed, Some(b'{' | b'[')) && declared.as_deref() != Some("text/plain") {
                "application/json".to_owned()
            } else {
                "text/plain".to_owned()
            }
        }
    }
}

impl Files {
    pub fn new(jobs: Jobs, storage: Storage, rules: UploadRules) -> Self {
        Files { jobs, storage, rules }
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Streams `body` to storage as a new file of `org` named `name`, then
    /// records it and enqueues its processing. Nothing is kept when it is
    /// refused or fails.
    pub async fn upload<S, E>(
        &self,
        org: &Org,
        actor: &Actor,
        name: &str,
        declared_type: Option<&str>,
        mut body: S,
    ) -> Result<(File, Option<Enqueued>), FilesError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let name = clean_name(name);
        let id = Uuid::now_v7();
        let key = self.storage.key(org.id, id);
        let mut writer = self.storage.writer(&key);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut head: Vec<u8> = Vec::new();
        let mut content_type: Option<String> = None;
        let outcome: Result<(), FilesError> = async {
            while let Some(chunk) = body.next().await {
                let chunk =
                    chunk.map_err(|e| FilesError::BadUpload(format!("reading the upload: {e}")))?;
                size += chunk.len() as u64;
                if size > self.rules.max_bytes {
                    return Err(FilesError::TooLarge { limit: self.rules.max_bytes });
                }
                hasher.update(&chunk);
                if content_type.is_none() {
                    head.extend_from_slice(&chunk);
                    if head.len() < SNIFF_BYTES {
                        continue;
                    }
                    content_type = Some(self.decide(&head, declared_type)?);
                    writer.write(&std::mem::take(&mut head)).await?;
                } else {
                    writer.write(&chunk).await?;
                }
            }
            if size == 0 {
                return Err(FilesError::Empty);
            }
            if content_type.is_none() {
                content_type = Some(self.decide(&head, declared_type)?);
                writer.write(&std::mem::take(&mut head)).await?;
            }
            Ok(())
        }
        .await;
        if let Err(err) = outcome {
            writer.abort().await;
            return Err(err);
        }
        writer.finish().await?;
        let content_type = content_type.unwrap_or_else(|| "application/octet-stream".to_owned());
        let sha256: [u8; 32] = hasher.finalize().into();
        let inserted = self.record(org, actor, id, &name, &content_type, size, &sha256).await;
        let file = match inserted {
            Ok(file) => file,
            Err(err) => {
                let _ = self.storage.delete(&key).await;
                return Err(err);
            }
        };
        self.announce(org, &file).await;
        match self.enqueue_processing(org, actor, &file).await {
            Ok(job) => {
                let file = self.get(org, file.id).await?;
                Ok((file, Some(job)))
            }
            // The file is kept: `POST .../files/{id}/process` asks again.
            Err(err) => {
                tracing::warn!(org_id = %org.id, file_id = %file.id, error = %err, "stored a file but could not enqueue its processing");
                Ok((file, None))
            }
        }
    }

    /// The row of a stored upload, and `file.uploaded` in the org's audit
    /// log, in one transaction.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        org: &Org,
        actor: &Actor,
        id: Uuid,
        name: &str,
        content_type: &str,
        size: u64,
        sha256: &[u8; 32],
    ) -> Result<File, FilesError> {
        let schema = org.schema();
        let mut tx = self.jobs.pool().begin().await?;
        let file = sqlx::query_as::<_, File>(AssertSqlSafe(format!(
            "INSERT INTO {} (id, name, content_type, size_bytes, sha256, uploaded_by) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {FILE_COLUMNS}",
            schema.qualify("files")
        )))
        .persistent(false)
        .bind(id)
        .bind(name)
        .bind(content_type)
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .bind(sha256.as_slice())
        .bind(actor.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let details = json!({ "name": file.name, "content_type": file.content_type, "size_bytes": file.size_bytes, "sha256": file.sha256 });
        crate::accounts::audit::record_org(
            &mut tx,
            &schema,
            actor,
            "file.uploaded",
            Some(&id.to_string()),
            details,
        )
        .await?;
        tx.commit().await?;
        Ok(file)
    }

    fn decide(&self, head: &[u8], declared: Option<&str>) -> Result<String, FilesError> {
        let found = sniff(head, declared);
        if self.rules.allowed_types.iter().any(|t| t == &found) {
            Ok(found)
        } else {
            Err(FilesError::UnsupportedType { found, allowed: self.rules.allowed_types.join(", ") })
        }
    }

    async fn enqueue_processing(
        &self,
        org: &Org,
        actor: &Actor,
        file: &File,
    ) -> Result<Enqueued, FilesError> {
        let mut job = NewJob::new(PROCESS_KIND, json!({ "file_id": file.id }));
        job.unique_key = Some(format!("{PROCESS_KIND}:{}", file.id));
        let enqueued = self.jobs.enqueue(org, actor, job).await?;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET job_id = $2, updated_at = now() WHERE id = $1",
            org.schema().qualify("files")
        )))
        .persistent(false)
        .bind(file.id)
        .bind(enqueued.job.id)
        .execute(self.jobs.pool())
        .await?;
        Ok(enqueued)
    }

    /// Asks for `id` to be processed (again). 409 while it is being
    /// processed; while a processing job is still waiting, that job.
    pub async fn process(
        &self,
        org: &Org,
        actor: &Actor,
        id: Uuid,
    ) -> Result<Enqueued, FilesError> {
        let file = self.get(org, id).await?;
        if self.jobs.locks().is_held_in_org(org.id, &lock_name(id)).await? {
            return Err(FilesError::Busy);
        }
        self.enqueue_processing(org, actor, &file).await
    }

    pub async fn get(&self, org: &Org, id: Uuid) -> Result<File, FilesError> {
        get(self.jobs.pool(), &org.schema(), id).await?.ok_or(FilesError::NotFound)
    }

    /// Newest first, `limit` after the cursor (a file id), optionally of
    /// one status.
    pub async fn list(
        &self,
        org: &Org,
        status: Option<&str>,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<File>, FilesError> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM {} WHERE ($1::text IS NULL OR status = $1) \
             AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
            org.schema().qualify("files")
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .persistent(false)
            .bind(status)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(self.jobs.pool())
            .await?)
    }

    /// Reads the bytes of `id` (or `range` of them).
    pub async fn content(
        &self,
        org: &Org,
        id: Uuid,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<(File, crate::storage::ObjectRead), FilesError> {
        let file = self.get(org, id).await?;
        let read =
            self.storage.read(&self.storage.key(org.id, id), range).await.map_err(|e| match e {
                StorageError::NotFound => FilesError::NotFound,
                other => FilesError::Storage(other),
            })?;
        Ok((file, read))
    }

    /// Deletes the row (audited as `file.deleted`), then the bytes.
    pub async fn delete(&self, org: &Org, actor: &Actor, id: Uuid) -> Result<(), FilesError> {
        let schema = org.schema();
        let mut tx = self.jobs.pool().begin().await?;
        let name: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "DELETE FROM {} WHERE id = $1 RETURNING name",
            schema.qualify("files")
        )))
        .persistent(false)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let name = name.ok_or(FilesError::NotFound)?;
        crate::accounts::audit::record_org(
            &mut tx,
            &schema,
            actor,
            "file.deleted",
            Some(&id.to_string()),
            json!({ "name": name }),
        )
        .await?;
        tx.commit().await?;
        self.storage.delete(&self.storage.key(org.id, id)).await?;
        Ok(())
    }

    /// How many files `org` has.
    pub async fn count(&self, org: &Org) -> Result<i64, FilesError> {
        Ok(sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            org.schema().qualify("files")
        )))
        .persistent(false)
        .fetch_one(self.jobs.pool())
        .await?)
    }

    /// Deletes every file of `org`: the records, then every stored object
    /// (also those no record points at). Returns (records, objects).
    pub async fn purge_all(&self, org: &Org, actor: &Actor) -> Result<(u64, usize), FilesError> {
        let deleted =
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {}", org.schema().qualify("files"))))
                .persistent(false)
                .execute(self.jobs.pool())
                .await?;
        let objects = self.storage.purge_org(org.id).await?;
        tracing::info!(org_id = %org.id, records = deleted.rows_affected(), objects, actor = %actor, "files purged");
        Ok((deleted.rows_affected(), objects))
    }

    /// Removes every stored object of `org` (after the org is purged).
    pub async fn purge_org(&self, org: tenancy::OrgId) -> Result<usize, FilesError> {
        Ok(self.storage.purge_org(org).await?)
    }

    pub(crate) async fn announce(&self, org: &Org, file: &File) {
        announce(&self.jobs, org, file).await;
    }
}

pub(crate) fn lock_name(id: Uuid) -> String {
    format!("file:{id}")
}

pub(crate) async fn get(
    pool: &sqlx::PgPool,
    schema: &SchemaName,
    id: Uuid,
) -> Result<Option<File>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {FILE_COLUMNS} FROM {} WHERE id = $1",
        schema.qualify("files")
    )))
    .persistent(false)
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Tells the org's live listeners that `file`'s status changed.
pub(crate) async fn announce(jobs: &Jobs, org: &Org, file: &File) {
    let event = json!({
        "event": "file.status",
        "file_id": file.id,
        "name": file.name,
        "status": file.status,
        "error": file.error,
        "at": Utc::now(),
    });
    crate::jobs::events::publish_values(jobs.redis(), jobs.keys(), org.id, &[event]).await;
}

/// A shown name: no path, no control characters, at most 255 characters.
fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    let cleaned = cleaned.trim().to_owned();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "upload".to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_bytes_not_the_header() {
        let png =
            [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R'];
        assert_eq!(sniff(&png, Some("text/plain")), "image/png");
        assert_eq!(sniff(b"%PDF-1.7\n", Some("image/png")), "application/pdf");
        assert_eq!(sniff(b"a,b\n1,2\n", Some("text/csv")), "text/csv");
        assert_eq!(sniff(b"hello", Some("application/pdf")), "text/plain");
        assert_eq!(sniff(b" {\"a\": 1}", None), "application/json");
        assert_eq!(
            sniff(b"MZ\x90\x00\x03\x00\x00\x00", Some("text/plain")),
            "application/vnd.microsoft.portable-executable"
        );
        assert_eq!(sniff(&[0, 1, 2, 3, 0xff], None), "application/octet-stream");
        // A character cut at the sniffing boundary is still text.
        assert_eq!(sniff("naïve".as_bytes().split_at(3).0, None), "text/plain");
    }

    #[test]
    fn shown_names_lose_paths_and_control_characters() {
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("C:\\Users\\a\\report.pdf"), "report.pdf");
        assert_eq!(clean_name("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(clean_name(".."), "upload");
        assert_eq!(clean_name(""), "upload");
    }
}
