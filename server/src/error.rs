//! The HTTP error type: every error response is `application/problem+json`
//! (RFC 9457) with `type`, `title`, `status`, `detail` and a stable `code`.
//!
//! Internal failures answer a generic 500; their cause travels in the
//! response extensions and is logged once, by the request middleware, never
//! sent to the client.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answered over HTTP.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    internal: Option<anyhow::Error>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

/// The cause of a 500, attached to the response for the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalError(pub Arc<anyhow::Error>);

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: &'a str,
    pub status: u16,
    pub detail: &'a str,
    pub code: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status, code, detail: detail.into(), internal: None, headers: Vec::new() }
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unavailable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
    }

    /// A 500 whose cause is logged but not shown.
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal_error",
            detail:
                "An unexpected error occurred. Quote the x-request-id header when reporting it."
                    .into(),
            internal: Some(err.into()),
            headers: Vec::new(),
        }
    }

    /// 401: no usable credentials.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    /// 403: known caller, not allowed.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Keeps `cause` for the log without showing it to the client.
    pub fn with_cause(mut self, cause: anyhow::Error) -> Self {
        self.internal = Some(cause);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        ApiError::internal(err)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut => ApiError::unavailable(
                "database_busy",
                "The database is busy or unreachable; retry shortly.",
            )
            .with_cause(anyhow::Error::new(err)),
            other => ApiError::internal(other),
        }
    }
}

impl From<tenancy::TenancyError> for ApiError {
    fn from(err: tenancy::TenancyError) -> Self {
        use tenancy::TenancyError as E;
        match err {
            E::InvalidSlug(why) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_slug",
                format!("slug {why}"),
            ),
            E::InvalidName => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_name", err.to_string())
            }
            E::SlugTaken(_) => ApiError::new(StatusCode::CONFLICT, "slug_taken", err.to_string()),
            E::NotFound(_) => ApiError::not_found("org_not_found", err.to_string()),
            E::WrongStatus { .. } => {
                ApiError::new(StatusCode::CONFLICT, "wrong_org_status", err.to_string())
            }
            E::Database(db) => ApiError::from(db),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::accounts::AccountsError> for ApiError {
    fn from(err: crate::accounts::AccountsError) -> Self {
        use crate::accounts::AccountsError as E;
        let unprocessable =
            |code| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, err.to_string());
        match &err {
            E::InvalidEmail => unprocessable("invalid_email"),
            E::WeakPassword(_) => unprocessable("weak_password"),
            E::InvalidName => unprocessable("invalid_name"),
            E::EmailTaken => ApiError::new(StatusCode::CONFLICT, "email_taken", err.to_string()),
            E::AlreadyMember => {
                ApiError::new(StatusCode::CONFLICT, "already_member", err.to_string())
            }
            E::LastOwner => ApiError::new(StatusCode::CONFLICT, "last_owner", err.to_string()),
            E::UserNotFound => ApiError::not_found("user_not_found", err.to_string()),
            E::NotMember => ApiError::not_found("member_not_found", err.to_string()),
            E::KeyNotFound => ApiError::not_found("api_key_not_found", err.to_string()),
            E::InvitationNotFound => ApiError::not_found("invitation_not_found", err.to_string()),
            E::InvitationUsed => {
                ApiError::new(StatusCode::GONE, "invitation_used", err.to_string())
            }
            E::InvitationExpired => {
                ApiError::new(StatusCode::GONE, "invitation_expired", err.to_string())
            }
            E::InvalidResetToken => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_reset_token", err.to_string())
            }
            E::SignInToAccept => {
                ApiError::new(StatusCode::CONFLICT, "sign_in_to_accept", err.to_string())
            }
            E::InvalidCredentials => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", err.to_string())
            }
            E::Throttled { retry_after_secs, .. } => {
                let retry = HeaderValue::from(*retry_after_secs);
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", err.to_string())
                    .with_header(header::RETRY_AFTER, retry)
            }
            E::Forbidden(why) => ApiError::forbidden(*why),
            E::Tenancy(_) | E::Database(_) | E::Redis(_) | E::Hashing(_) => match err {
                E::Tenancy(t) => ApiError::from(t),
                E::Database(db) => ApiError::from(db),
                other => ApiError::internal(other),
            },
        }
    }
}

impl From<crate::flags::FlagError> for ApiError {
    fn from(err: crate::flags::FlagError) -> Self {
        match err {
            crate::flags::FlagError::Unknown(_) => {
                ApiError::not_found("flag_not_found", err.to_string())
            }
            crate::flags::FlagError::Database(db) => ApiError::from(db),
        }
    }
}

impl From<crate::jobs::JobsError> for ApiError {
    fn from(err: crate::jobs::JobsError) -> Self {
        use crate::jobs::JobsError as E;
        let detail = err.to_string();
        let (status, code) = match err {
            E::Tenancy(t) => return ApiError::from(t),
            E::Database(db) => return ApiError::from(db),
            E::Redis(redis) => {
                return ApiError::unavailable(
                    "redis_unavailable",
                    "Redis is unavailable; retry shortly.",
                )
                .with_cause(redis.into());
            }
            E::Interrupted => (StatusCode::SERVICE_UNAVAILABLE, "enqueue_interrupted"),
            E::UnknownKind(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_kind"),
            E::InvalidPayload(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_payload"),
            E::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_job"),
            E::NotFound => (StatusCode::NOT_FOUND, "job_not_found"),
            E::ScheduleNotFound => (StatusCode::NOT_FOUND, "schedule_not_found"),
            E::WrongStatus { .. } => (StatusCode::CONFLICT, "wrong_job_status"),
            E::UniqueKeyTaken(_) => (StatusCode::CONFLICT, "unique_key_taken"),
            E::ScheduleNameTaken(_) => (StatusCode::CONFLICT, "schedule_name_taken"),
        };
        ApiError::new(status, code, detail)
    }
}

/// A problem+json response for `status` with a stable `code`.
pub fn problem_response(status: StatusCode, code: &str, detail: &str) -> Response {
    let problem = Problem {
        type_: format!("urn:orgstack:problem:{code}"),
        title: status.canonical_reason().unwrap_or("Error"),
        status: status.as_u16(),
        detail,
        code,
    };
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = problem_response(self.status, self.code, &self.detail);
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        if let Some(err) = self.internal {
            response.extensions_mut().insert(InternalError(Arc::new(err)));
        }
        response
    }
}

/// Turns the bare error responses that axum and tower produce (unknown
/// route, wrong method, body too large, ...) into problem documents, so every
/// error a client sees has the same shape.
pub async fn problemize(response: Response) -> Response {
    let status = response.status();
    let has_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let is_problem = has_type.is_some_and(|t| t.starts_with(PROBLEM_JSON));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => ("not_found", "No resource at this path."),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "This path does not accept that method.")
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("payload_too_large", "The request body exceeds MAX_BODY_BYTES.")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "Send the body as application/json.")
        }
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "The request took too long."),
        s if s.is_server_error() => ("internal_error", "An unexpected error occurred."),
        _ => ("bad_request", "The request could not be understood."),
    };
    let (parts, _) = response.into_parts();
    let mut fresh = problem_response(status, code, detail);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fresh.headers_mut().insert(name.clone(), value.clone());
        }
    }
    *fresh.extensions_mut() = parts.extensions;
    fresh
}
