//! `POST /api/v1/events`: an in-cluster service publishes an event (write key required). It
//! joins the webhook path after verification: same routing, same durable commit, same answer.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use tracing::Instrument as _;
use utoipa::ToSchema;

use super::body::read_limited;
use super::{accept, Accepted, IngestResponse};
use crate::auth;
use crate::error::{ApiError, ErrorBody};
use crate::openapi::Unavailable;
use crate::route::LazyJson;
use crate::state::AppState;
use crate::store::{EventId, IdempotencyClaim, Origin};

/// Body of `POST /api/v1/events`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The event type, 1 to 256 characters, e.g. `order.created`.
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 256)]
    pub event_type: String,
    /// Name of the Source the event is published under.
    pub source: String,
    /// Namespace of that Source; defaults to the API key's namespace, else `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Any JSON; stored as the event's body.
    pub payload: Value,
    /// Duplicates within the source's idempotency window are answered with the original id.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Publish an event from an in-cluster service (a `write` key). It goes through the same path
/// as a webhook after verification.
#[utoipa::path(post, path = "/api/v1/events", tag = "ingest",
    request_body = PublishRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 202, description = "Stored durably and routed", body = IngestResponse),
        (status = 200, description = "A duplicate (idempotency key seen before); nothing stored", body = IngestResponse),
        (status = 400, description = "Malformed body (`INVALID_BODY`)", body = ErrorBody),
        (status = 401, description = "No or an unknown API key", body = ErrorBody),
        (status = 403, description = "A read-only key, or a namespace the key may not use", body = ErrorBody),
        (status = 404, description = "No such source (`SOURCE_NOT_FOUND`)", body = ErrorBody),
        (status = 413, description = "Body over the publish limit (`--publish-max-body`, default 1 MiB)", body = ErrorBody),
        Unavailable,
    ))]
pub async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = EventId::generate();
    let live = state.live.load();
    let caller = auth::authenticate(&live.config.api_keys, &headers)?;
    caller.require_write()?;
    let raw = read_limited(
        &headers,
        body,
        state.publish_max_body,
        "the publish API's limit (--publish-max-body)",
    )
    .await?;
    let req: PublishRequest = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::bad_request(
            "INVALID_BODY",
            format!("expected {{type, source, payload, idempotency_key}}: {e}"),
        )
    })?;
    let namespace = req
        .namespace
        .clone()
        .or_else(|| caller.namespace.clone())
        .unwrap_or_else(|| hookmesh_api::compile::DEFAULT_NAMESPACE.to_string());
    caller.require_namespace(&namespace)?;
    if req.event_type.is_empty() || req.event_type.len() > 256 {
        return Err(ApiError::bad_request(
            "INVALID_BODY",
            "type must be 1 to 256 characters",
        ));
    }
    let src = live.source(&namespace, &req.source).ok_or_else(|| {
        ApiError::not_found(
            "SOURCE_NOT_FOUND",
            format!("Source {namespace}/{} not found", req.source),
        )
    })?;
    let span = tracing::info_span!("publish", event_id = %id, namespace = %namespace, source = %req.source, key = %caller.id);
    let window_ms = src
        .idempotency
        .as_ref()
        .map(|r| r.window_seconds)
        .unwrap_or(hookmesh_api::compile::DEFAULT_IDEMPOTENCY_WINDOW_SECONDS)
        .saturating_mul(1000);
    let idempotency = req
        .idempotency_key
        .clone()
        .filter(|k| !k.is_empty())
        .map(|key| IdempotencyClaim { key, window_ms });
    // Published events are stored as the JSON of their payload, like a webhook body.
    let body = serde_json::to_vec(&req.payload).unwrap_or_default();
    let event_type = Some(req.event_type);
    let json = LazyJson::parsed(req.payload);
    let mut stored_headers = HeaderMap::new();
    stored_headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let accepted = Accepted {
        id,
        origin: Origin::Publish,
        namespace: &namespace,
        source: &req.source,
        event_type,
        idempotency,
        signature_valid: None,
        signature_error: None,
        headers: &stored_headers,
        body: &body,
        json: &json,
    };
    accept(&state, &live, accepted).instrument(span).await
}
