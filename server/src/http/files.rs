//! Org files over HTTP: `/api/v1/orgs/{org}/files[...]`. Members upload,
//! delete and ask for processing; viewers list and download.

use axum::Json;
use axum::body::Body;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::AppState;
use super::extract::{OrgAccess, Page};
use super::orgs::ListResponse;
use crate::accounts::Role;
use crate::error::ApiError;
use crate::files::{File, FilesError};
use crate::jobs::Job;

impl From<FilesError> for ApiError {
    fn from(err: FilesError) -> Self {
        let detail = err.to_string();
        match err {
            FilesError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "file_too_large", detail)
            }
            FilesError::UnsupportedType { .. } => {
                ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_file_type", detail)
            }
            FilesError::Empty => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "empty_file", detail)
            }
            FilesError::BadUpload(_) => ApiError::bad_request("invalid_upload", detail),
            FilesError::NotFound => ApiError::not_found("file_not_found", detail),
            FilesError::Busy => ApiError::new(StatusCode::CONFLICT, "file_busy", detail),
            FilesError::Jobs(e) => ApiError::from(e),
            FilesError::Database(e) => ApiError::from(e),
            FilesError::Redis(e) => {
                ApiError::unavailable("redis_unavailable", "Redis is unavailable; retry shortly.")
                    .with_cause(e.into())
            }
            FilesError::Storage(e) => ApiError::unavailable(
                "storage_unavailable",
                "File storage is unavailable; retry shortly.",
            )
            .with_cause(e.into()),
        }
    }
}

fn file_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found("file_not_found", "no such file"))
}

/// What an upload answers: the file and the job processing it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    pub file: File,
    /// The `file.process` job (absent if it could not be enqueued; ask
    /// again with `POST .../files/{id}/process`).
    pub job: Option<Job>,
}

/// `POST /api/v1/orgs/{org}/files` (members): multipart with one part
/// named `file`, streamed to storage.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/files", tag = "files", params(("org" = String, Path, description = "Org slug")), request_body(content_type = "multipart/form-data", description = "One part named `file` (its filename is kept for display)"), security(("bearer" = [])), responses((status = 201, description = "Stored; processing queued", body = Uploaded), (status = 400, description = "Not multipart, no `file` part, or the upload broke off", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Viewers cannot upload", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member", body = crate::error::Problem, content_type = "application/problem+json"), (status = 413, description = "Larger than MAX_UPLOAD_BYTES; nothing stored", body = crate::error::Problem, content_type = "application/problem+json"), (status = 415, description = "A type (sniffed from the bytes) not in UPLOAD_CONTENT_TYPES; nothing stored", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "An empty file", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn upload(
    State(state): State<AppState>,
    access: OrgAccess,
    mut multipart: Multipart,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    access.require(Role::Member)?;
    if !state.flags.enabled("file_uploads", access.org().id).await? {
        return Err(ApiError::forbidden("File uploads are off for this org (flag file_uploads)."));
    }
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request("invalid_upload", e.body_text()))?
            .ok_or_else(|| {
                ApiError::bad_request("invalid_upload", "expected a multipart part named `file`")
            })?;
        if field.name() != Some("file") {
            continue;
        }
        let name = field.file_name().unwrap_or("upload").to_owned();
        let declared = field.content_type().map(str::to_owned);
        let body = field.map(|chunk| chunk.map_err(|e| e.body_text()));
        let (file, job) = state
            .files
            .upload(
                access.org(),
                &access.caller.actor(),
                &name,
                declared.as_deref(),
                Box::pin(body),
            )
            .await?;
        return Ok((StatusCode::CREATED, Json(Uploaded { file, job: job.map(|j| j.job) })));
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct FileQuery {
    pub status: Option<String>,
}

/// `GET /api/v1/orgs/{org}/files` (viewers): newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/files", tag = "files", params(("org" = String, Path, description = "Org slug"), ("status" = Option<String>, Query, description = "uploaded, processing, ready or failed"), ("limit" = Option<u32>, Query, description = "Page size, 1 to 200 (default 50)"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")), security(("bearer" = [])), responses((status = 200, body = ListResponse<File>), (status = 400, description = "Invalid status, limit or cursor", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    access: OrgAccess,
    page: Page,
    Query(query): Query<FileQuery>,
) -> Result<ListResponse<File>, ApiError> {
    if let Some(status) = &query.status
        && !["uploaded", "processing", "ready", "failed"].contains(&status.as_str())
    {
        return Err(ApiError::bad_request(
            "invalid_status",
            "status must be uploaded, processing, ready or failed",
        ));
    }
    let after = page.after_id()?;
    let items =
        state.files.list(access.org(), query.status.as_deref(), after, page.limit + 1).await?;
    Ok(ListResponse::page(items, page.limit, |f| json!(f.id)))
}

/// `GET /api/v1/orgs/{org}/files/{file_id}` (viewers).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/files/{file_id}", tag = "files", params(("org" = String, Path, description = "Org slug"), ("file_id" = Uuid, Path, description = "File id")), security(("bearer" = [])), responses((status = 200, body = File), (status = 404, description = "No such org or file", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String)>,
) -> Result<Json<File>, ApiError> {
    Ok(Json(state.files.get(access.org(), file_id(&ids.1)?).await?))
}

/// `DELETE /api/v1/orgs/{org}/files/{file_id}` (members).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/files/{file_id}", tag = "files", params(("org" = String, Path, description = "Org slug"), ("file_id" = Uuid, Path, description = "File id")), security(("bearer" = [])), responses((status = 204, description = "Deleted, bytes and record"), (status = 403, description = "Viewers cannot delete", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org or file", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn delete(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    access.require(Role::Member)?;
    state.files.delete(access.org(), &access.caller.actor(), file_id(&ids.1)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/orgs/{org}/files/{file_id}/process` (members): process
/// again. 409 while it is being processed.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/files/{file_id}/process", tag = "files", params(("org" = String, Path, description = "Org slug"), ("file_id" = Uuid, Path, description = "File id")), security(("bearer" = [])), responses((status = 202, description = "Queued (or the processing job already waiting)", body = Job), (status = 404, description = "No such org or file", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Being processed now (`file_busy`)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn process(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String)>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    access.require(Role::Member)?;
    let enqueued =
        state.files.process(access.org(), &access.caller.actor(), file_id(&ids.1)?).await?;
    Ok((StatusCode::ACCEPTED, Json(enqueued.job)))
}

/// `GET /api/v1/orgs/{org}/files/{file_id}/content` (viewers): the bytes,
/// streamed, with one `Range: bytes=` range honoured (206).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/files/{file_id}/content", tag = "files", params(("org" = String, Path, description = "Org slug"), ("file_id" = Uuid, Path, description = "File id"), ("Range" = Option<String>, Header, description = "One range, e.g. bytes=0-1023")), security(("bearer" = [])), responses((status = 200, description = "The whole file (Content-Disposition: attachment)"), (status = 206, description = "The range asked for"), (status = 404, description = "No such org or file", body = crate::error::Problem, content_type = "application/problem+json"), (status = 416, description = "The range is outside the file", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn content(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = file_id(&ids.1)?;
    let file = state.files.get(access.org(), id).await?;
    let size = u64::try_from(file.size_bytes).unwrap_or(0);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(raw) => match parse_range(raw, size) {
            RangeAsked::One(range) => Some(range),
            // Several ranges, or one we do not read: the whole file (allowed).
            RangeAsked::Ignore => None,
            RangeAsked::Unsatisfiable => {
                let mut response = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    format!("the file has {size} bytes"),
                )
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(response);
            }
        },
    };
    let (_, read) = state.files.content(access.org(), id, range.clone()).await?;
    let length = read.range.end - read.range.start;
    let stream = read.stream.map(|chunk| chunk.map_err(std::io::Error::other));
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    let content_type = HeaderValue::from_str(&file.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", file.sha256)) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&content_disposition(&file.name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let value = format!("bytes {}-{}/{size}", read.range.start, read.range.end - 1);
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

/// `attachment` with an ASCII fallback name and the UTF-8 one (RFC 6266).
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
        .collect();
    let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[derive(Debug, PartialEq)]
enum RangeAsked {
    One(std::ops::Range<u64>),
    Ignore,
    Unsatisfiable,
}

/// One `bytes=` range of a file of `size` bytes, as a half-open range.
fn parse_range(raw: &str, size: u64) -> RangeAsked {
    let Some(spec) = raw.trim().strip_prefix("bytes=") else {
        return RangeAsked::Ignore;
    };
    if spec.contains(',') {
        return RangeAsked::Ignore;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeAsked::Ignore;
    };
    let (start, end) = (start.trim(), end.trim());
    let range = match (start.parse::<u64>(), end.parse::<u64>()) {
        // bytes=-N: the last N bytes.
        (Err(_), Ok(n)) if start.is_empty() => {
            if n == 0 || size == 0 {
                return RangeAsked::Unsatisfiable;
            }
            size.saturating_sub(n)..size
        }
        (Ok(a), Err(_)) if end.is_empty() => a..size,
        (Ok(a), Ok(b)) if a <= b => a..(b + 1).min(size),
        _ => return RangeAsked::Ignore,
    };
    if range.start >= size { RangeAsked::Unsatisfiable } else { RangeAsked::One(range) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_the_rfc_says() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeAsked::One(0..10));
        assert_eq!(parse_range("bytes=90-", 100), RangeAsked::One(90..100));
        assert_eq!(parse_range("bytes=-10", 100), RangeAsked::One(90..100));
        assert_eq!(parse_range("bytes=95-200", 100), RangeAsked::One(95..100));
        assert_eq!(parse_range("bytes=100-", 100), RangeAsked::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeAsked::Ignore);
        assert_eq!(parse_range("items=0-1", 100), RangeAsked::Ignore);
        assert_eq!(parse_range("bytes=9-3", 100), RangeAsked::Ignore);
    }

    #[test]
    fn download_names_are_quoted_safely() {
        assert_eq!(
            content_disposition("rapport é\"1\".pdf"),
            "attachment; filename=\"rapport _'1'.pdf\"; filename*=UTF-8''rapport%20%C3%A9%221%22.pdf"
                .replace("'1'", "_1_")
        );
    }
}
