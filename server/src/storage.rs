//! Where uploaded files live: one small interface over two backends chosen
//! by configuration, the local filesystem (`STORAGE_DIR`, the default) and
//! any S3-compatible service (`STORAGE_URL=s3://bucket/prefix`), both by
//! the `object_store` crate.
//!
//! Object keys are `{org id}/{file id}`, never user text, so an org's
//! objects are listed and purged by its id. Writes stream: a
//! [`ObjectWriter`] sends parts as they fill (S3 multipart, or a temporary
//! file renamed into place on disk) and nothing shows until it completes.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use secrecy::ExposeSecret;
use tenancy::OrgId;
use uuid::Uuid;

use crate::config::StorageConfig;

/// A failure of the storage service.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no such object")]
    NotFound,
    #[error("storage: {0}")]
    Backend(#[from] object_store::Error),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage configuration: {0}")]
    Config(String),
}

fn from_store(err: object_store::Error) -> StorageError {
    match err {
        object_store::Error::NotFound { .. } => StorageError::NotFound,
        other => StorageError::Backend(other),
    }
}

/// The configured store. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Under this path in the store (the S3 URL's prefix; empty on disk).
    root: Path,
    /// `filesystem` or `s3`, for messages and metrics.
    kind: &'static str,
    /// How much of an upload is held before it is written out.
    part_bytes: usize,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("kind", &self.kind).field("root", &self.root).finish()
    }
}

/// An object being written; [`ObjectWriter::finish`] makes it visible,
/// [`ObjectWriter::abort`] (or dropping it, e.g. when the client goes away
/// mid-upload) leaves nothing behind.
pub struct ObjectWriter {
    inner: Option<BufWriter>,
    /// The part being filled, in memory of its own: the chunks a request
    /// body arrives in are slices of the connection's read buffer, and
    /// holding them would pin that buffer (hundreds of KiB each) until the
    /// part is written, instead of letting the connection reuse it.
    pending: bytes::BytesMut,
    part_bytes: usize,
}

impl std::fmt::Debug for ObjectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWriter").finish_non_exhaustive()
    }
}

impl ObjectWriter {
    fn writer(&mut self) -> Result<&mut BufWriter, StorageError> {
        self.inner
            .as_mut()
            .ok_or_else(|| StorageError::Io(std::io::Error::other("the upload already ended")))
    }

    /// Copies `bytes` into the part being filled; a full part is handed
    /// to the store.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.pending.capacity() == 0 {
                // Grows as bytes come: a small file on S3 (5 MiB parts)
                // does not take a whole part's memory.
                self.pending = bytes::BytesMut::with_capacity(self.part_bytes.min(64 << 10));
            }
            let room = self.part_bytes.saturating_sub(self.pending.len()).max(1);
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.pending.extend_from_slice(now);
            rest = later;
            if self.pending.len() >= self.part_bytes {
                self.flush_part().await?;
            }
        }
        Ok(())
    }

    /// Hands the part being filled to the store.
    async fn flush_part(&mut self) -> Result<(), StorageError> {
        let part = std::mem::take(&mut self.pending).freeze();
        if part.is_empty() {
            return Ok(());
        }
        self.writer()?.put(part).await.map_err(from_store)
    }

    pub async fn finish(mut self) -> Result<(), StorageError> {
        use tokio::io::AsyncWriteExt;
        if let Err(err) = self.flush_part().await {
            if let Some(mut inner) = self.inner.take()
                && let Err(abort) = inner.abort().await
            {
                tracing::warn!(error = %abort, "could not abort a failed upload");
            }
            return Err(err);
        }
        let mut inner = self
            .inner
            .take()
            .ok_or_else(|| StorageError::Io(std::io::Error::other("the upload already ended")))?;
        if let Err(err) = inner.shutdown().await {
            if let Err(abort) = inner.abort().await {
                tracing::warn!(error = %abort, "could not abort a failed upload");
            }
            return Err(err.into());
        }
        Ok(())
    }

    pub async fn abort(mut self) {
        if let Some(mut inner) = self.inner.take()
            && let Err(err) = inner.abort().await
        {
            tracing::warn!(error = %err, "could not abort an unfinished upload");
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        // Dropped unfinished (a request cut off): abort in the background
        // (removes the partial file, or the S3 multipart upload).
        if let Some(mut inner) = self.inner.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(err) = inner.abort().await {
                    tracing::warn!(error = %err, "could not abort an upload cut off");
                }
            });
        }
    }
}

/// S3 parts: 5 MiB is S3's smallest (but for the last). An upload holds
/// about two parts in memory (one filling, one being sent).
const S3_PART_BYTES: usize = 5 << 20;
/// Filesystem parts: small, so many uploads at once hold little memory.
const FS_PART_BYTES: usize = 64 << 10;

/// One object read back.
pub struct ObjectRead {
    pub size: u64,
    /// The bytes served (all of them, or the range asked for).
    pub range: Range<u64>,
    pub stream: BoxStream<'static, Result<Bytes, StorageError>>,
}

impl std::fmt::Debug for ObjectRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectRead").field("size", &self.size).field("range", &self.range).finish()
    }
}

impl Storage {
    /// The backend `config` names; the filesystem folder is made if needed.
    pub fn from_config(config: &StorageConfig) -> Result<Self, StorageError> {
        match config {
            StorageConfig::Filesystem { dir } => {
                std::fs::create_dir_all(dir)?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(from_store)?;
                Ok(Storage {
                    store: Arc::new(store),
                    root: Path::default(),
                    kind: "filesystem",
                    part_bytes: FS_PART_BYTES,
                })
            }
            StorageConfig::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
            } => {
                // object_store's HTTP client takes TLS from the process's
                // rustls provider: ring (set once; a second call is a no-op).
                let _ = rustls::crypto::ring::default_provider().install_default();
                let mut builder = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(region);
                if let Some(endpoint) = endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        // Most S3-compatible servers want path-style URLs.
                        .with_virtual_hosted_style_request(false);
                }
                if let (Some(id), Some(secret)) = (access_key_id, secret_access_key) {
                    builder = builder
                        .with_access_key_id(id)
                        .with_secret_access_key(secret.expose_secret());
                }
                let store = builder.build().map_err(|e| StorageError::Config(e.to_string()))?;
                Ok(Storage {
                    store: Arc::new(store),
                    root: Path::from(prefix.as_str()),
                    kind: "s3",
                    part_bytes: S3_PART_BYTES,
                })
            }
        }
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    fn org_root(&self, org: OrgId) -> Path {
        self.root.clone().join(org.to_string())
    }

    /// Where a file of `org` is kept.
    pub fn key(&self, org: OrgId, file: Uuid) -> Path {
        self.org_root(org).join(file.to_string())
    }

    /// Starts writing `key`.
    pub fn writer(&self, key: &Path) -> ObjectWriter {
        // One part sent at a time: memory stays at about two parts.
        let inner = BufWriter::with_capacity(self.store.clone(), key.clone(), self.part_bytes)
            .with_max_concurrency(1);
        ObjectWriter {
            inner: Some(inner),
            pending: bytes::BytesMut::new(),
            part_bytes: self.part_bytes,
        }
    }

    /// Reads `key` whole, or `range` of it.
    pub async fn read(
        &self,
        key: &Path,
        range: Option<Range<u64>>,
    ) -> Result<ObjectRead, StorageError> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..Default::default() };
        let result = self.store.get_opts(key, options).await.map_err(from_store)?;
        let size = result.meta.size;
        let range = result.range.clone();
        let stream = result.into_stream().map_err(from_store).boxed();
        Ok(ObjectRead { size, range, stream })
    }

    /// Removes `key`; an object already gone is not an error.
    pub async fn delete(&self, key: &Path) -> Result<(), StorageError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(StorageError::Backend(err)),
        }
    }

    /// The keys and sizes of every object of `org`.
    pub async fn list_org(&self, org: OrgId) -> Result<Vec<(Path, u64)>, StorageError> {
        self.store
            .list(Some(&self.org_root(org)))
            .map_ok(|meta| (meta.location, meta.size))
            .try_collect()
            .await
            .map_err(from_store)
    }

    /// Removes every object of `org`; how many there were.
    pub async fn purge_org(&self, org: OrgId) -> Result<usize, StorageError> {
        let objects = self.list_org(org).await?;
        let count = objects.len();
        let keys = futures::stream::iter(
            objects.into_iter().map(|(key, _)| Ok::<_, object_store::Error>(key)),
        )
        .boxed();
        self.store.delete_stream(keys).try_collect::<Vec<_>>().await.map_err(from_store)?;
        Ok(count)
    }
}
