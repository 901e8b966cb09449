//! The OpenAPI document's frame (info, security schemes, tags) and the refusals many routes
//! share. Each route documents itself where it is handled; this is only what they have in
//! common, stated once.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi};

use crate::error::{ErrorBody, RateLimitBody};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hookmesh",
        description = "Kubernetes-native webhook gateway: ingest, inspect, search, replay. \
            Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>`. Errors are \
            `{\"error\", \"message\", \"code\"}`.",
    ),
    components(schemas(ErrorBody, RateLimitBody)),
    modifiers(&Security),
    tags(
        (name = "ingest", description = "Receiving events"),
        (name = "events", description = "Inspect, search, replay and delete events"),
        (name = "deliveries", description = "The delivery log and manual retry"),
        (name = "config", description = "The live config, read-only"),
        (name = "operations", description = "Probes, metrics and this document"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// What every route behind the REST API's key check can answer besides its own results.
#[derive(IntoResponses)]
#[allow(dead_code)] // a documentation type: never built, only described
pub enum RestErrors {
    #[response(
        status = 400,
        description = "A malformed id, parameter or body (`INVALID_PARAMETER`, `INVALID_BODY`)"
    )]
    BadRequest(ErrorBody),
    #[response(status = 401, description = "No or an unknown API key")]
    Unauthorized(ErrorBody),
    #[response(status = 429, description = "Rate limited (`RATE_LIMIT_EXCEEDED`)",
        headers(("Retry-After" = u64, description = "Seconds to wait")))]
    RateLimited(RateLimitBody),
    #[response(status = 503, description = "Storage unavailable (`STORAGE_UNAVAILABLE`); nothing was changed, retry",
        headers(("Retry-After" = u64, description = "Seconds to wait")))]
    Unavailable(ErrorBody),
}

/// What a route that writes to the store answers when it cannot.
#[derive(IntoResponses)]
#[allow(dead_code)] // a documentation type: never built, only described
pub enum Unavailable {
    #[response(status = 503, description = "Storage unavailable (`STORAGE_UNAVAILABLE`); nothing stored, retry",
        headers(("Retry-After" = u64, description = "Seconds to wait")))]
    Unavailable(ErrorBody),
}
