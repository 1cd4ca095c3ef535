//! The built frontend (`ASSETS_FOLDER`) at `/`: files as they are, with
//! caching that suits a bundler's output (names carrying a content hash
//! never change: cached for a year and `immutable`; everything else,
//! `index.html` first, is revalidated each time), compressed when the
//! client accepts it, and `index.html` for any other path so the app's own
//! router can take it (the SPA fallback). `/api`, `/healthz` and `/readyz`
//! are never shadowed: their routes come first, and an unknown `/api/...`
//! path stays a problem+json 404.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::compression::CompressionLayer;
use tower_http::services::{ServeDir, ServeFile};

/// Serves one request from `folder` (the router's fallback).
pub async fn serve(folder: PathBuf, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    if path == "/api" || path.starts_with("/api/") {
        return crate::error::ApiError::not_found("not_found", "No resource at this path.")
            .into_response();
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return crate::error::ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Only GET and HEAD read the app's files.",
        )
        .into_response();
    }
    // A path naming a file (`/assets/app.js`) is that file or a 404; any
    // other path is a route of the app: its index.html.
    let looks_like_file = Path::new(&path).extension().is_some();
    let index = folder.join("index.html");
    let files = ServeDir::new(&folder).append_index_html_on_directories(true);
    let service = tower::ServiceBuilder::new().layer(CompressionLayer::new());
    let response = if looks_like_file {
        service.service(files).oneshot(request).await
    } else {
        service.service(files.fallback(ServeFile::new(&index))).oneshot(request).await
    };
    let mut response = match response {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    };
    if response.status() == StatusCode::NOT_FOUND {
        return crate::error::ApiError::not_found("not_found", "No file at this path.")
            .into_response();
    }
    let cache = if response.status().is_success() && is_hashed(&path) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// Whether a file name carries a content hash, as bundlers write them
/// (`app.3f2a9c1b.js`, `index-BwX8r2Kq.css`): a part of at least 8
/// letters and digits, with a digit, between the stem and the extension.
fn is_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    let Some((stem, _ext)) = name.rsplit_once('.') else { return false };
    let hash = stem.rsplit(['.', '-']).next().unwrap_or_default();
    stem.len() > hash.len()
        && hash.len() >= 8
        && hash.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && hash.chars().any(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashed_names_are_told_from_plain_ones() {
        for hashed in
            ["/assets/app.3f2a9c1b.js", "/assets/index-BwX8r2Kq.css", "/x/logo.a1b2c3d4e5.svg"]
        {
            assert!(super::is_hashed(hashed), "{hashed}");
        }
        for plain in [
            "/index.html",
            "/favicon.ico",
            "/assets/vendor.js",
            "/robots.txt",
            "/3f2a9c1b.js",
            "/a.README.md",
        ] {
            assert!(!super::is_hashed(plain), "{plain}");
        }
    }
}
