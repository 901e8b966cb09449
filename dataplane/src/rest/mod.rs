//! The REST API under `/api/v1` (DESIGN section 6): inspect, search, replay and delete events,
//! the delivery log, the live config, and `GET /openapi.json`.
//!
//! Every handler is declared with `#[utoipa::path]` and registered through utoipa-axum's
//! `routes!`, so the router and the OpenAPI document come from the same declarations and cannot
//! drift apart. The ingest and publish routes are registered here too, for the same reason.
//!
//! Auth: the [`Auth`] extractor authenticates the API key (401), then takes a token from the
//! key's rate-limit bucket (429). Roles: `read` keys may only read; replay, retry and delete need
//! `write` (403). Namespace scope: a scoped key's listings are silently narrowed to its
//! namespace; asking for another namespace by name is 403; an event or delivery of another
//! namespace addressed by id is 404, exactly as if it did not exist, so ids do not leak.

mod deliveries;
mod docs;
mod events;
mod live;
pub mod model;
pub mod params;
pub mod ratelimit;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::store::StoreError;

pub use ratelimit::RateLimiter;

/// Default `--api-rate-limit`: requests per second per API key.
pub const DEFAULT_RATE_LIMIT: u32 = 100;

/// What the delivery engine can tell the API about an endpoint's circuit breaker.
///
/// Hook for the delivery engine: implement this and set [`RestState::circuits`]. Until then every
/// endpoint reports `unknown`.
pub trait CircuitView: Send + Sync {
    /// `closed`, `open` or `half_open`; `None` when the engine knows nothing of the endpoint.
    fn circuit_state(&self, namespace: &str, endpoint: &str) -> Option<&'static str>;
}

/// State of the REST API (lives in [`AppState::rest`]).
#[derive(Clone)]
pub struct RestState {
    pub limiter: Arc<RateLimiter>,
    /// The delivery engine's circuit states, once it exposes them.
    pub circuits: Option<Arc<dyn CircuitView>>,
}

impl RestState {
    /// `rate_limit` requests per second per key (bursts up to twice that); 0 turns it off.
    pub fn new(rate_limit: u32) -> Self {
        RestState {
            limiter: Arc::new(RateLimiter::new(rate_limit, rate_limit.saturating_mul(2))),
            circuits: None,
        }
    }

    fn circuit(&self, namespace: &str, endpoint: &str) -> String {
        self.circuits
            .as_ref()
            .and_then(|c| c.circuit_state(namespace, endpoint))
            .unwrap_or("unknown")
            .to_string()
    }
}

impl Default for RestState {
    fn default() -> Self {
        Self::new(DEFAULT_RATE_LIMIT)
    }
}

/// An authenticated, rate-limited REST caller.
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let live = state.live.load();
        let caller = auth::authenticate(&live.config.api_keys, &parts.headers)
            .map_err(IntoResponse::into_response)?;
        state.rest.limiter.check(&caller.id).map_err(rate_limited)?;
        Ok(Auth(caller))
    }
}

/// 429 with `Retry-After` and `{"error":"rate_limit_exceeded","retry_after":N}`.
fn rate_limited(retry_after: u64) -> Response {
    let body = model::RateLimitBody {
        error: "rate_limit_exceeded".into(),
        message: format!("too many requests for this API key; retry in {retry_after} s"),
        code: "RATE_LIMIT_EXCEEDED".into(),
        retry_after,
    };
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    resp
}

/// Namespaces a request may see: the one it names (403 if the key may not), else the key's
/// scope, else all (`None`).
fn visible(caller: &Caller, named: Option<&str>) -> Result<Option<BTreeSet<String>>, ApiError> {
    match named {
        Some(ns) => {
            caller.require_namespace(ns)?;
            Ok(Some(BTreeSet::from([ns.to_string()])))
        }
        None => Ok(caller.namespace.clone().map(|ns| BTreeSet::from([ns]))),
    }
}

/// Run store work off the async threads (listings can read many records).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "REST worker task failed");
        ApiError::from(StoreError::Closed)
    })?
}

/// Every documented route, declared once for both the router and the OpenAPI document.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .routes(routes!(docs::webhook))
        .routes(routes!(events::list_events, docs::publish))
        .routes(routes!(events::get_event, events::delete_event))
        .routes(routes!(events::get_payload))
        .routes(routes!(events::event_deliveries))
        .routes(routes!(events::timeline))
        .routes(routes!(events::replay))
        .routes(routes!(events::bulk_replay))
        .routes(routes!(deliveries::list_deliveries))
        .routes(routes!(deliveries::get_delivery))
        .routes(routes!(deliveries::retry_delivery))
        .routes(routes!(live::sources))
        .routes(routes!(live::endpoints))
        .routes(routes!(live::subscriptions))
}

/// The OpenAPI document of [`router`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The REST API, ingest and publish routes, and `GET /openapi.json`.
pub fn router() -> Router<AppState> {
    let (router, api) = routes().split_for_parts();
    let json: Arc<str> = match api.to_json() {
        Ok(j) => j.into(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the OpenAPI document");
            "{}".into()
        }
    };
    router.route(
        "/openapi.json",
        get(move || {
            let json = json.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    json.to_string(),
                )
            }
        }),
    )
}
