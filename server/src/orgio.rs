//! `orgstack org export|import`: one org's data as one archive, and back
//! into a new org.
//!
//! The archive is a gzipped tar holding `manifest.json` (the org, the org
//! lineage version its tables are at, each table with its row count, the
//! members by email and role, and each stored file with its size and
//! SHA-256), `files/<file id>` (the bytes of each file, from storage) and
//! `tables/<name>.csv`: each table of
//! the org's schema as `COPY … (FORMAT csv, HEADER)`, read in one
//! repeatable-read transaction, so the tables agree with each other.
//! Tables are listed parents first (by their foreign keys), which is the
//! order an import loads them in.
//!
//! An import provisions a new org (its own id, schema and slug), loads
//! every table in one transaction, and adds the members whose users exist
//! here. Anything wrong (an archive of another lineage version, a damaged
//! file, a row the schema refuses) stops it and removes the new org, so it
//! either lands whole or not at all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sqlx::{Acquire, AssertSqlSafe};
use tenancy::{Org, SchemaName, Slug};
use tokio::io::AsyncWriteExt;

use crate::accounts::members::Acting;
use crate::accounts::{Actor, Email, Role};
use crate::http::AppState;

/// The archive format this build writes and reads.
const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub exported_at: DateTime<Utc>,
    pub org: ExportedOrg,
    /// The org lineage version of the tables.
    pub org_version: i32,
    /// Parents first.
    pub tables: Vec<ExportedTable>,
    pub members: Vec<ExportedMember>,
    /// The bytes of each row of `files`, under `files/<id>`.
    #[serde(default)]
    pub files: Vec<ExportedFile>,
    /// Rows of `files` whose bytes were missing from storage at export.
    #[serde(default)]
    pub missing_files: Vec<uuid::Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportedFile {
    pub id: uuid::Uuid,
    pub bytes: u64,
    /// Hex SHA-256 of the bytes (checked again at import).
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportedOrg {
    pub id: uuid::Uuid,
    pub slug: String,
    pub name: String,
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportedTable {
    pub name: String,
    pub rows: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportedMember {
    pub email: String,
    pub role: Role,
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub org: Org,
    pub rows: u64,
    pub members_added: usize,
    /// Files whose bytes were stored for the new org.
    pub files: usize,
    /// Members of the exported org with no user here (by email).
    pub members_missing: Vec<String>,
}

/// The migration history of the org lineage: made by provisioning, so
/// neither exported nor loaded (the manifest carries the version).
const HISTORY_TABLE: &str = "refinery_schema_history";

/// The data tables of `schema`, parents before children.
async fn tables(conn: &mut sqlx::PgConnection, schema: &SchemaName) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = $1 AND table_type = 'BASE TABLE' AND table_name <> $2 \
         ORDER BY table_name",
    )
    .bind(schema.as_str())
    .bind(HISTORY_TABLE)
    .fetch_all(&mut *conn)
    .await?;
    let edges: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c \
         JOIN pg_namespace n ON n.oid = c.connamespace WHERE c.contype = 'f' AND n.nspname = $1",
    )
    .bind(schema.as_str())
    .fetch_all(&mut *conn)
    .await?;
    // `regclass::text` may be schema-qualified: keep the table name.
    let bare = |name: &str| name.rsplit('.').next().unwrap_or(name).trim_matches('"').to_owned();
    let mut parents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (child, parent) in edges {
        let (child, parent) = (bare(&child), bare(&parent));
        if child != parent {
            parents.entry(child).or_default().insert(parent);
        }
    }
    let mut ordered: Vec<String> = Vec::with_capacity(names.len());
    let mut left: Vec<String> = names;
    while !left.is_empty() {
        let ready: Vec<String> = left
            .iter()
            .filter(|t| {
                parents
                    .get(*t)
                    .is_none_or(|ps| ps.iter().all(|p| ordered.contains(p) || !left.contains(p)))
            })
            .cloned()
            .collect();
        if ready.is_empty() {
            bail!("the tables of {schema} have a foreign-key cycle: {left:?}");
        }
        left.retain(|t| !ready.contains(t));
        ordered.extend(ready);
    }
    Ok(ordered)
}

/// Writes `org`'s data to `out` (replaced if it exists); returns the
/// manifest written.
pub async fn export(state: &AppState, slug: &Slug, out: &Path) -> anyhow::Result<Manifest> {
    let org = state.orgs.get(slug).await?;
    let schema = org.schema();
    let work = tempfile::tempdir().context("a temporary folder for the export")?;
    std::fs::create_dir(work.path().join("tables"))?;

    let mut conn = state.db.acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let mut exported = Vec::new();
    for table in tables(&mut tx, &schema).await? {
        let path = work.path().join("tables").join(format!("{table}.csv"));
        let mut file = tokio::fs::File::create(&path).await?;
        let copy = format!(
            "COPY {} TO STDOUT WITH (FORMAT csv, HEADER true)",
            schema.qualify_checked(&table)?
        );
        let mut stream = tx.copy_out_raw(&copy).await?;
        let mut bytes = 0u64;
        let mut newlines = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            bytes += chunk.len() as u64;
            newlines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            file.write_all(&chunk).await?;
        }
        drop(stream);
        file.flush().await?;
        let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            schema.qualify_checked(&table)?
        )))
        .persistent(false)
        .fetch_one(&mut *tx)
        .await?;
        tracing::debug!(table, bytes, newlines, "table exported");
        exported.push(ExportedTable { name: table, rows: rows as u64 });
    }
    // The bytes of the files the exported rows name (the same snapshot).
    let mut files = Vec::new();
    let mut missing_files = Vec::new();
    if exported.iter().any(|t| t.name == "files") {
        std::fs::create_dir(work.path().join("files"))?;
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT id FROM {} ORDER BY id",
            schema.qualify("files")
        )))
        .persistent(false)
        .fetch_all(&mut *tx)
        .await?;
        for id in ids {
            let path = work.path().join("files").join(id.to_string());
            match copy_out(state, &org, id, &path).await {
                Ok((bytes, sha256)) => files.push(ExportedFile { id, bytes, sha256 }),
                Err(CopyOut::Missing) => {
                    tracing::warn!(org = %org.slug, file_id = %id, "a file's bytes are missing from storage; exporting its record only");
                    missing_files.push(id);
                }
                Err(CopyOut::Failed(err)) => return Err(err),
            }
        }
    }
    let members = state
        .accounts
        .list_members(&org)
        .await?
        .into_iter()
        .map(|m| ExportedMember { email: m.email, role: m.role })
        .collect();
    tx.commit().await?;
    let manifest = Manifest {
        format: FORMAT,
        exported_at: Utc::now(),
        org: ExportedOrg {
            id: org.id.as_uuid(),
            slug: org.slug.to_string(),
            name: org.name.clone(),
            status: org.status.as_str().to_owned(),
        },
        org_version: org.org_version,
        tables: exported,
        members,
        files,
        missing_files,
    };
    std::fs::write(work.path().join("manifest.json"), serde_json::to_vec_pretty(&manifest)?)?;

    let out = out.to_owned();
    let folder = work.path().to_owned();
    tokio::task::spawn_blocking(move || write_archive(&folder, &out)).await??;
    Ok(manifest)
}

enum CopyOut {
    Missing,
    Failed(anyhow::Error),
}

/// Streams file `id` of `org` from storage to `path`: (bytes, hex SHA-256).
async fn copy_out(
    state: &AppState,
    org: &Org,
    id: uuid::Uuid,
    path: &Path,
) -> Result<(u64, String), CopyOut> {
    use sha2::Digest;
    let storage = state.files.storage();
    let read = match storage.read(&storage.key(org.id, id), None).await {
        Ok(read) => read,
        Err(crate::storage::StorageError::NotFound) => return Err(CopyOut::Missing),
        Err(err) => return Err(CopyOut::Failed(err.into())),
    };
    let copy = async {
        let mut file = tokio::fs::File::create(path).await?;
        let mut hasher = sha2::Sha256::new();
        let mut bytes = 0u64;
        let mut stream = read.stream;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            bytes += chunk.len() as u64;
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        anyhow::Ok((bytes, hex(&hasher.finalize())))
    };
    copy.await.map_err(CopyOut::Failed)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Stores the archive's files for `org`, checking each one's SHA-256.
async fn store_files(
    state: &AppState,
    org: &Org,
    manifest: &Manifest,
    folder: &Path,
) -> anyhow::Result<usize> {
    use sha2::Digest;
    use tokio::io::AsyncReadExt;
    let storage = state.files.storage();
    for exported in &manifest.files {
        let path = folder.join("files").join(exported.id.to_string());
        let mut file = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("the archive lacks the bytes of file {}", exported.id))?;
        let mut writer = storage.writer(&storage.key(org.id, exported.id));
        let mut hasher = sha2::Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let copied: anyhow::Result<()> = async {
            loop {
                let n = file.read(&mut buffer).await?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
                writer.write(&buffer[..n]).await?;
            }
            Ok(())
        }
        .await;
        let digest = hex(&hasher.finalize());
        match copied {
            Ok(()) if digest == exported.sha256 => writer.finish().await?,
            Ok(()) => {
                writer.abort().await;
                bail!("file {} in the archive is damaged (its SHA-256 differs)", exported.id);
            }
            Err(err) => {
                writer.abort().await;
                return Err(err);
            }
        }
    }
    Ok(manifest.files.len())
}

/// `folder` (manifest first, then the tables) as a gzipped tar at `out`,
/// written beside it and renamed into place.
fn write_archive(folder: &Path, out: &Path) -> anyhow::Result<()> {
    let partial = out.with_extension("partial");
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let mut tar =
        tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
    tar.append_path_with_name(folder.join("manifest.json"), "manifest.json")?;
    tar.append_dir_all("tables", folder.join("tables"))?;
    if folder.join("files").is_dir() {
        tar.append_dir_all("files", folder.join("files"))?;
    }
    tar.into_inner()?.finish()?.sync_all()?;
    std::fs::rename(&partial, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// Unpacks `archive` into `into` (refusing paths outside it) and reads its
/// manifest.
fn read_archive(archive: &Path, into: &Path) -> anyhow::Result<Manifest> {
    let file = std::fs::File::open(archive)
        .with_context(|| format!("cannot open {}", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries().context("not an org export (a .tar.gz from `org export`)")? {
        let mut entry = entry.context("the archive is damaged")?;
        // `unpack_in` refuses `..` and absolute paths.
        if !entry.unpack_in(into).context("the archive is damaged")? {
            bail!("the archive holds a path outside its folder: {:?}", entry.path()?);
        }
    }
    let manifest = std::fs::read(into.join("manifest.json"))
        .context("the archive has no manifest.json: not an org export")?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest).context("the archive's manifest.json is not valid")?;
    if manifest.format != FORMAT {
        bail!("archive format {} is not {FORMAT}, the one this build reads", manifest.format);
    }
    Ok(manifest)
}

/// Loads the archive at `archive` into a new org `slug` (named `name`, or
/// as the exported org was).
pub async fn import(
    state: &AppState,
    actor: &Actor,
    archive: &Path,
    slug: &Slug,
    name: Option<&str>,
) -> anyhow::Result<ImportReport> {
    let work = tempfile::tempdir().context("a temporary folder for the import")?;
    let folder: PathBuf = work.path().to_owned();
    let source = archive.to_owned();
    let manifest = tokio::task::spawn_blocking(move || read_archive(&source, &folder)).await??;
    let latest = state.orgs.lineage().latest_version();
    if manifest.org_version != latest {
        bail!(
            "the archive's tables are at org lineage version {}, this build's at {latest}: \
             import it with a build of the same version",
            manifest.org_version
        );
    }
    for table in &manifest.tables {
        let file = work.path().join("tables").join(format!("{}.csv", table.name));
        if table.name.contains(['/', '\\']) || !file.is_file() {
            bail!("the archive lacks the data of table {:?}", table.name);
        }
    }
    for file in &manifest.files {
        if !work.path().join("files").join(file.id.to_string()).is_file() {
            bail!("the archive lacks the bytes of file {}", file.id);
        }
    }
    let org = state.orgs.create(name.unwrap_or(&manifest.org.name), slug).await?;
    let loaded = async {
        let rows = load(state, &org, &manifest, work.path()).await?;
        let files = store_files(state, &org, &manifest, work.path()).await?;
        anyhow::Ok((rows, files))
    };
    match loaded.await {
        Ok((rows, files)) => {
            state.accounts.record_org_created(actor, &org).await?;
            let (added, missing) = add_members(state, actor, &org, &manifest.members).await?;
            Ok(ImportReport { org, rows, members_added: added, files, members_missing: missing })
        }
        Err(err) => {
            // Leave nothing half-imported behind.
            let cleanup = async {
                state.orgs.soft_delete(&org.slug).await?;
                state.orgs.purge(&org.slug, false).await?;
                state.files.purge_org(org.id).await?;
                anyhow::Ok(())
            };
            if let Err(cleanup_err) = cleanup.await {
                tracing::error!(org = %org.slug, error = %cleanup_err, "could not remove a failed import");
            }
            Err(err)
        }
    }
}

/// Copies every table into `org`'s fresh schema in one transaction.
async fn load(
    state: &AppState,
    org: &Org,
    manifest: &Manifest,
    folder: &Path,
) -> anyhow::Result<u64> {
    let schema = org.schema();
    let mut conn = state.db.acquire().await?;
    let mut tx = conn.begin().await?;
    let here = tables(&mut tx, &schema).await?;
    let mut rows = 0;
    for table in &manifest.tables {
        if !here.contains(&table.name) {
            bail!("the archive has a table {:?} that this lineage does not", table.name);
        }
        let path = folder.join("tables").join(format!("{}.csv", table.name));
        let header = {
            let file = std::fs::File::open(&path)?;
            let mut first = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(file), &mut first)?;
            first
        };
        let columns = header
            .trim_end()
            .split(',')
            .map(|c| {
                let c = c.trim_matches('"');
                if c.is_empty()
                    || !c
                        .chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
                {
                    bail!(
                        "table {:?}: column {c:?} in the archive is not a column name",
                        table.name
                    );
                }
                Ok(format!("\"{c}\""))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let copy = format!(
            "COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)",
            schema.qualify_checked(&table.name)?,
            columns.join(", ")
        );
        let mut sink = tx.copy_in_raw(&copy).await?;
        let file = tokio::fs::File::open(&path).await?;
        sink.read_from(file).await?;
        let copied =
            sink.finish().await.with_context(|| format!("loading table {}", table.name))?;
        if copied != table.rows {
            bail!("table {}: {copied} rows loaded, the manifest says {}", table.name, table.rows);
        }
        rows += copied;
    }
    tx.commit().await?;
    Ok(rows)
}

/// Adds the exported members whose users exist here, with their roles.
async fn add_members(
    state: &AppState,
    actor: &Actor,
    org: &Org,
    members: &[ExportedMember],
) -> anyhow::Result<(usize, Vec<String>)> {
    let acting = Acting { actor: actor.clone(), role: Role::Owner, user_id: None };
    let mut added = 0;
    let mut missing = Vec::new();
    // Owners first: an org gets its owner before anyone else.
    let mut ordered: Vec<&ExportedMember> = members.iter().collect();
    ordered.sort_by_key(|m| m.role != Role::Owner);
    for member in ordered {
        let Ok(email) = Email::parse(&member.email) else {
            missing.push(member.email.clone());
            continue;
        };
        match state.accounts.user_by_email(&email).await? {
            None => missing.push(member.email.clone()),
            Some(user) if member.role == Role::Owner => {
                state.accounts.add_owner(actor, org, user.id).await?;
                added += 1;
            }
            Some(_) => {
                state.accounts.add_member(&acting, org, &email, member.role).await?;
                added += 1;
            }
        }
    }
    Ok((added, missing))
}
