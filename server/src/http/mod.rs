//! The HTTP API: router, middleware, and serving with graceful shutdown.
//!
//! Middleware, outermost first: a request id (`x-request-id`, generated or
//! propagated, echoed on the response), a tracing span carrying the method,
//! matched route and request id, request metrics, the body-size limit, and a
//! mapper that turns bare error responses into problem+json.

mod assets;
mod auth;
mod devmail;
pub mod extract;
mod files;
mod flags;
mod health;
mod jobs;
pub use jobs::JobPages;
mod middleware;
mod oidc;
mod openapi;
mod org;
mod orgs;
mod schedules;
mod signup;
mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::routing::get;
use sqlx::PgPool;
use tenancy::OrgRegistry;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

pub use openapi::json as openapi_json;
pub use org::OrgScope;

use crate::config::Config;

/// What handlers share. Cheap to clone; extract the parts with `State<..>`
/// or the `FromRef` impls.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: PgPool,
    pub redis: fred::clients::Client,
    pub orgs: OrgRegistry,
    pub accounts: crate::accounts::auth::Accounts,
    pub flags: crate::flags::Flags,
    pub jobs: crate::jobs::Jobs,
    /// Pages of job lists, kept while their org's jobs do not change.
    pub job_pages: JobPages,
    pub files: crate::files::Files,
    pub webhooks: crate::webhooks::Webhooks,
    pub mailer: crate::email::Mailer,
    /// Shared pub/sub subscriptions for WebSockets.
    pub hub: crate::jobs::events::Hub,
    /// Single sign-on, when `OIDC_ISSUER` is set.
    pub oidc: Option<crate::oidc::Oidc>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("config", &self.config).finish_non_exhaustive()
    }
}

impl FromRef<AppState> for Arc<Config> {
    fn from_ref(state: &AppState) -> Self {
        state.config.clone()
    }
}

impl FromRef<AppState> for OrgRegistry {
    fn from_ref(state: &AppState) -> Self {
        state.orgs.clone()
    }
}

/// The API router with every layer, ready to serve.
pub fn router(state: AppState) -> Router {
    use axum::routing::{patch, post};
    let org_routes = Router::new()
        .route("/", get(orgs::get).patch(orgs::update).delete(orgs::delete))
        .route("/members", get(orgs::list_members).post(orgs::add_member))
        .route("/members/{user_id}", patch(orgs::set_role).delete(orgs::remove_member))
        .route("/api_keys", get(orgs::list_api_keys).post(orgs::create_api_key))
        .route("/api_keys/{key_id}", axum::routing::delete(orgs::revoke_api_key))
        .route("/audit", get(orgs::list_audit))
        .route("/flags", get(flags::org_flags))
        .route("/flags/{name}", axum::routing::put(flags::set_for_org).delete(flags::clear_for_org))
        .route("/invitations", get(orgs::list_invitations).post(orgs::invite))
        .route(
            "/files",
            get(files::list).post(files::upload).layer(DefaultBodyLimit::max(
                usize::try_from(state.config.max_upload_bytes.saturating_add(1 << 20))
                    .unwrap_or(usize::MAX),
            )),
        )
        .route("/files/{file_id}", get(files::get).delete(files::delete))
        .route("/files/{file_id}/content", get(files::content))
        .route("/files/{file_id}/process", post(files::process))
        .route("/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/webhooks/{webhook_id}",
            get(webhooks::get).patch(webhooks::update).delete(webhooks::delete),
        )
        .route("/webhooks/{webhook_id}/deliveries", get(webhooks::deliveries))
        .route("/webhooks/{webhook_id}/deliveries/{delivery_id}/replay", post(webhooks::replay))
        .route("/jobs", get(jobs::list).post(jobs::enqueue))
        .route("/jobs/{job_id}", get(jobs::get).delete(jobs::discard))
        .route("/jobs/{job_id}/cancel", post(jobs::cancel))
        .route("/jobs/{job_id}/retry", post(jobs::retry))
        .route("/jobs/{job_id}/logs", get(jobs::logs))
        .route("/schedules", get(schedules::list).post(schedules::create))
        .route(
            "/schedules/{schedule_id}",
            get(schedules::get).patch(schedules::update).delete(schedules::delete),
        )
        .route("/schedules/{schedule_id}/run", post(schedules::run_now))
        .merge(
            Router::new()
                .route("/jobs/{job_id}/logs/ws", get(jobs::logs_ws))
                .route("/events/ws", get(jobs::events_ws))
                .layer(axum::middleware::from_fn(jobs::token_from_query)),
        );
    let api = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/password_reset", post(auth::password_reset))
        .route("/auth/password_reset/{token}", post(auth::finish_password_reset))
        .route("/auth/oidc/login", get(oidc::login))
        .route("/auth/oidc/callback", get(oidc::callback))
        .route("/auth/oidc/exchange", post(oidc::exchange))
        .route("/me", get(auth::me))
        .route("/signup", post(signup::signup))
        .route("/invitations/{token}/accept", post(signup::accept))
        .route("/orgs", get(orgs::list).post(orgs::create))
        .nest("/orgs/{org}", org_routes)
        .route("/admin/flags", get(flags::all))
        .route("/admin/flags/{name}", axum::routing::put(flags::set).delete(flags::clear))
        .route("/admin/queues", get(jobs::queues))
        .route("/admin/workers", get(jobs::workers));
    let docs: Router<AppState> = Router::new().merge(
        utoipa_swagger_ui::SwaggerUi::new("/api/docs")
            .url("/api/openapi.json", <openapi::ApiDoc as utoipa::OpenApi>::openapi()),
    );
    let mut routes = Router::new()
        .merge(docs)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .nest("/api/v1", api);
    if !state.config.is_production() {
        routes = routes
            .route("/dev/mail", get(devmail::page))
            .route("/dev/mail.json", get(devmail::json));
    }
    with_layers(routes, &state.config)
        .layer(axum::middleware::from_fn_with_state(
            state.jobs.clone(),
            middleware::report_failures,
        ))
        .with_state(state)
}

/// Adds the standard middleware stack to `routes` (also used by tests that
/// mount routes of their own).
pub fn with_layers<S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    config: &Config,
) -> Router<S> {
    let routes = match config.assets_folder.clone() {
        // The built frontend answers what no route does (never `/api/...`).
        Some(folder) => routes.fallback(move |request: axum::extract::Request| {
            assets::serve(folder.clone(), request)
        }),
        None => routes.fallback(|| async {
            crate::error::ApiError::not_found("not_found", "No resource at this path.")
        }),
    };
    routes.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(axum::middleware::from_fn(middleware::observe))
            .layer(axum::middleware::map_response(crate::error::problemize))
            .layer(DefaultBodyLimit::max(config.max_body_bytes)),
    )
}

/// The metrics router, served on `METRICS_ADDR`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(health::metrics)).with_state(state)
}

/// Serves the API on `listener` and metrics on `metrics_listener` until
/// `shutdown` resolves, then lets in-flight requests finish for up to
/// `SHUTDOWN_TIMEOUT_SECS` before returning.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let drain = state.config.shutdown_timeout;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics_task = metrics_listener.map(|l| {
        let mut stop = stop_rx.clone();
        let app = metrics_router(state.clone());
        tokio::spawn(async move {
            axum::serve(l, app)
                .with_graceful_shutdown(async move {
                    stop.wait_for(|s| *s).await.map(|_| ()).unwrap_or(())
                })
                .await
        })
    });
    let app = router(state);
    let mut stop = stop_rx.clone();
    let server =
        serve_api(
            listener,
            app,
            async move { stop.wait_for(|s| *s).await.map(|_| ()).unwrap_or(()) },
        );
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        () = shutdown => {
            tracing::info!(drain_secs = drain.as_secs(), "shutting down: no new connections, draining requests");
            let _ = stop_tx.send(true);
            tokio::select! {
                result = tokio::time::timeout(drain, &mut server) => match result {
                    Ok(result) => result?,
                    Err(_) => tracing::warn!("drain timeout reached; closing remaining connections"),
                },
                () = shutdown_signal() => tracing::warn!("second signal: closing remaining connections now"),
            }
        }
    }
    let _ = stop_tx.send(true);
    if let Some(task) = metrics_task {
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
    Ok(())
}

/// The most a connection reads ahead of its request's handler. hyper's own
/// limit is about 400 KiB, and a fast client fills it: 100 uploads at once
/// then held 40 MiB in read buffers and as much again in the multipart
/// parser's copies. Request heads must fit too (64 KiB is plenty).
const READ_BUFFER_BYTES: usize = 64 << 10;

/// The API's accept loop (HTTP/1.1 with upgrades for WebSockets, and
/// HTTP/2): each request gets its peer's address (`ConnectInfo`). When
/// `stop` resolves, no new connection is taken and the open ones finish
/// their requests; resolves when the last one closed.
async fn serve_api(
    listener: TcpListener,
    app: Router,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use tower::ServiceExt;

    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(READ_BUFFER_BYTES);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    while let Some((stream, peer)) = accept_until(&listener, stop.as_mut(), "HTTP").await {
        let app = app.clone();
        let service = hyper::service::service_fn(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                app.clone().oneshot(request)
            },
        );
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::trace!(error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The next connection on `listener`, with `TCP_NODELAY` set (answers and
/// frames go out as soon as they are written), or `None` once `stop`
/// resolves. A failed accept (out of file descriptors and the like) is
/// logged and waited out. Shared by the API and admin-tui's SSH server.
pub async fn accept_until(
    listener: &TcpListener,
    mut stop: std::pin::Pin<&mut impl Future<Output = ()>>,
    what: &str,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Err(err) = stream.set_nodelay(true) {
                        tracing::debug!(error = %err, "cannot set TCP_NODELAY on a {what} connection");
                    }
                    return Some((stream, peer));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot accept a {what} connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = stop.as_mut() => return None,
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
