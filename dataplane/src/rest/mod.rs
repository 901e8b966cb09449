//! The REST API under `/api/v1`: inspect, search, replay and delete events, the delivery log,
//! and the live config.
//!
//! Every handler is declared with `#[utoipa::path]` and registered through utoipa-axum's
//! `routes!`, so the router and the OpenAPI document come from the same declarations and cannot
//! drift apart. The refusals every route shares are documented once, as
//! [`RestErrors`](crate::openapi::RestErrors).
//!
//! Auth: the [`Auth`] extractor authenticates the API key (401), then takes a token from the
//! key's rate-limit bucket (429). Roles: `read` keys may only read; replay, retry and delete need
//! `write` (403). Namespace scope: a scoped key's listings are silently narrowed to its
//! namespace; asking for another namespace by name is 403; an event or delivery of another
//! namespace addressed by id is 404, exactly as if it did not exist, so ids do not leak.

mod deliveries;
mod events;
pub(crate) mod live;
mod manage;
pub mod model;
pub mod params;
mod replay;

use std::collections::BTreeSet;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{self, Caller};
use crate::error::{ApiError, RateLimitBody};
use crate::state::AppState;
use crate::store::StoreError;

/// An authenticated, rate-limited REST caller.
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let live = state.live.load();
        let caller = auth::authenticate(&live.config.api_keys, &parts.headers)
            .map_err(IntoResponse::into_response)?;
        state.limiter.check(&caller.id).map_err(rate_limited)?;
        Ok(Auth(caller))
    }
}

/// 429 with `Retry-After` and `{"error":"rate_limit_exceeded","retry_after":N}`.
fn rate_limited(retry_after: u64) -> Response {
    let body = RateLimitBody {
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

/// Every REST route, declared once for both the router and the OpenAPI document.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(events::list_events))
        .routes(routes!(events::get_event, events::delete_event))
        .routes(routes!(events::get_payload))
        .routes(routes!(events::event_deliveries))
        .routes(routes!(events::timeline))
        .routes(routes!(replay::replay))
        .routes(routes!(replay::bulk_replay))
        .routes(routes!(deliveries::list_deliveries))
        .routes(routes!(deliveries::get_delivery))
        .routes(routes!(deliveries::retry_delivery))
        .routes(routes!(live::sources))
        .routes(routes!(live::endpoints, manage::create_endpoint))
        .routes(routes!(manage::delete_endpoint))
        .routes(routes!(live::resume_endpoint))
        .routes(routes!(live::subscriptions, manage::create_subscription))
        .routes(routes!(manage::delete_subscription))
}
