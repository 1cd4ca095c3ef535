//! The OpenAPI 3.1 document (utoipa), served at `/api/openapi.json`, with an
//! interactive page at `/api/docs` whose assets are compiled in (it works
//! without internet access). `orgstack openapi` prints the same document,
//! and `docs/openapi.json` is a committed copy that a test keeps current.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{auth, flags, health, orgs, signup};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Orgstack API",
        description = "Multi-tenant SaaS backend: orgs, members, API keys, feature flags, audit. \
                       Errors are application/problem+json (RFC 9457) with a stable `code`.",
        license(name = "Apache-2.0")
    ),
    paths(
        health::healthz,
        health::readyz,
        auth::login,
        auth::logout,
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
    ),
    components(schemas(crate::error::Problem)),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "auth", description = "Sign-in, sessions, sign-up"),
        (name = "orgs", description = "Orgs and invitations"),
        (name = "members", description = "Org members and roles"),
        (name = "api_keys", description = "Org API keys"),
        (name = "audit", description = "The org audit log"),
        (name = "flags", description = "Feature flags"),
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

/// The document as pretty JSON (what `orgstack openapi` prints).
pub fn json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
