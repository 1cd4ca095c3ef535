//! The OpenAPI 3.1 document (utoipa), served at `/api/openapi.json`, with an
//! interactive page at `/api/docs` whose assets are compiled in (it works
//! without internet access). `orgstack openapi` prints the same document,
//! and `docs/openapi.json` is a committed copy that a test keeps current.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{auth, files, flags, health, jobs, oidc, orgs, schedules, signup, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Orgstack API",
        description = "Multi-tenant SaaS backend: orgs, members, API keys, feature flags, audit, \
                       background jobs and schedules. \
                       Errors are application/problem+json (RFC 9457) with a stable `code`.",
        license(name = "Apache-2.0")
    ),
    paths(
        health::healthz,
        health::readyz,
        auth::login,
        auth::logout,
        auth::password_reset,
        auth::finish_password_reset,
        oidc::login,
        oidc::callback,
        oidc::exchange,
        auth::me,
        signup::signup,
        signup::accept,
        orgs::list,
        orgs::create,
        orgs::get,
        orgs::update,
        orgs::delete,
        orgs::list_members,
        orgs::add_member,
        orgs::set_role,
        orgs::remove_member,
        orgs::list_api_keys,
        orgs::create_api_key,
        orgs::revoke_api_key,
        orgs::list_audit,
        orgs::invite,
        orgs::list_invitations,
        flags::org_flags,
        flags::set_for_org,
        flags::clear_for_org,
        flags::all,
        flags::set,
        flags::clear,
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::update,
        webhooks::delete,
        webhooks::deliveries,
        webhooks::replay,
        files::upload,
        files::list,
        files::get,
        files::delete,
        files::content,
        files::process,
        jobs::enqueue,
        jobs::list,
        jobs::get,
        jobs::cancel,
        jobs::retry,
        jobs::discard,
        jobs::logs,
        jobs::logs_ws,
        jobs::events_ws,
        jobs::queues,
        jobs::workers,
        schedules::list,
        schedules::create,
        schedules::get,
        schedules::update,
        schedules::delete,
        schedules::run_now,
    ),
    components(schemas(crate::error::Problem)),
    modifiers(&BearerAuth, &CommonErrors),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "auth", description = "Sign-in, sessions, sign-up"),
        (name = "orgs", description = "Orgs and invitations"),
        (name = "members", description = "Org members and roles"),
        (name = "api_keys", description = "Org API keys"),
        (name = "audit", description = "The org audit log"),
        (name = "flags", description = "Feature flags"),
        (name = "webhooks", description = "Webhook endpoints, their deliveries and replays"),
        (name = "files", description = "Uploads, their processing and downloads"),
        (name = "jobs", description = "Background jobs, their logs and live events; queues and workers"),
        (name = "schedules", description = "Cron schedules that enqueue jobs"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A session token from POST /api/v1/auth/login, or an org API key",
                    ))
                    .build(),
            ),
        );
    }
}

/// Errors any operation of a kind can answer, added to each so the
/// document lists them all without repeating them in every annotation:
/// 503 `database_busy` everywhere but `/healthz`; 415 and 422 for a JSON
/// body (wrong media type, fields that do not parse); 400 for paginated
/// lists (`invalid_limit`, `invalid_cursor`).
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::content::ContentBuilder;
        use utoipa::openapi::{Ref, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    crate::error::PROBLEM_JSON,
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                item.get.as_mut(),
                item.put.as_mut(),
                item.post.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                if path != "/healthz" {
                    responses.entry("503".into()).or_insert_with(|| {
                        problem("PostgreSQL or Redis is unavailable or overloaded; retry shortly")
                            .into()
                    });
                }
                if operation.request_body.is_some() {
                    responses
                        .entry("415".into())
                        .or_insert_with(|| problem("The body is not application/json").into());
                    responses.entry("422".into()).or_insert_with(|| {
                        problem("The body does not match the schema, or a value is invalid").into()
                    });
                }
                let paginated = operation
                    .parameters
                    .as_ref()
                    .is_some_and(|params| params.iter().any(|p| p.name == "cursor"));
                if paginated {
                    responses
                        .entry("400".into())
                        .or_insert_with(|| problem("Invalid limit or cursor").into());
                }
            }
        }
    }
}

/// The document as pretty JSON (what `orgstack openapi` prints).
pub fn json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
