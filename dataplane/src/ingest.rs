//! The receive path: `POST /e/{namespace}/{source}` and `POST /api/v1/events`.
//!
//! find source (404) -> size limit (413) -> auth (401) -> verify (401, or flag in audit mode)
//! -> event type -> idempotency -> route -> durable commit -> 202. The answer is sent only after
//! the group committer has flushed the event, its payload and its deliveries to disk.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hookmesh_api::config::{FieldRule, SourceConfig, VerifyMode};
use http_body_util::BodyExt as _;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tracing::Instrument as _;

use crate::app::AppState;
use crate::auth;
use crate::config::Live;
use crate::error::ApiError;
use crate::route::{self, json_text, LazyJson, RouteInput};
use crate::store::{
    DeliveryRecord, EventId, EventRecord, EventStatus, IdempotencyClaim, IngestOutcome, NewEvent,
    Origin, Payload,
};
use crate::verify;

/// `POST /e/{namespace}/{source}`: a webhook from a provider.
pub async fn webhook(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Path((namespace, source)) = path.map_err(|e| {
        ApiError::invalid_parameter(format!(
            "the ingest path must be /e/{{namespace}}/{{source}}: {e}"
        ))
    })?;
    let id = EventId::generate();
    let span =
        tracing::info_span!("ingest", event_id = %id, namespace = %namespace, source = %source);
    async move {
        let live = state.live.load();
        let src = live.source(&namespace, &source).ok_or_else(|| {
            ApiError::not_found(
                "SOURCE_NOT_FOUND",
                format!("Source {namespace}/{source} not found"),
            )
        })?;
        let body = read_limited(&headers, body, src.max_body_bytes).await?;
        check_source_key(src, &headers)?;
        let (signature_valid, signature_error) = match verify::verify(
            &src.verification,
            src.tolerance_seconds,
            &headers,
            &body,
            now_unix(),
        ) {
            Ok(()) => (signature_checked(src), None),
            Err(failure) if src.mode == VerifyMode::Audit => {
                tracing::info!(
                    code = failure.code(),
                    "signature failed; stored in audit mode"
                );
                (Some(false), Some(failure.code().to_string()))
            }
            Err(failure) => {
                state.metrics.verification_failed(failure.code());
                return Err(ApiError::unauthorized(failure.code(), failure.to_string()));
            }
        };
        let json = LazyJson::lazy(&body);
        let event_type = src
            .event_type
            .as_ref()
            .and_then(|r| extract(r, &headers, &json));
        let idempotency = src.idempotency.as_ref().and_then(|rule| {
            extract(&rule.key, &headers, &json).map(|key| IdempotencyClaim {
                key,
                window_ms: rule.window_seconds.saturating_mul(1000),
            })
        });
        let accepted = Accepted {
            id,
            origin: Origin::Webhook,
            namespace: &namespace,
            source: &source,
            event_type,
            idempotency,
            signature_valid,
            signature_error,
            headers: &headers,
            body: &body,
            json: &json,
        };
        accept(&state, &live, accepted).await
    }
    .instrument(span)
    .await
}

/// Body of `POST /api/v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The event type, e.g. `order.created`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Name of the Source the event is published under.
    pub source: String,
    /// Namespace of that Source; defaults to the API key's namespace, else `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    pub payload: Value,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// `POST /api/v1/events`: an in-cluster service publishes an event (write key required).
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
        hookmesh_api::compile::DEFAULT_MAX_BODY_BYTES,
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

/// An event that passed the checks, ready to be routed and stored.
struct Accepted<'a> {
    id: EventId,
    origin: Origin,
    namespace: &'a str,
    source: &'a str,
    event_type: Option<String>,
    idempotency: Option<IdempotencyClaim>,
    signature_valid: Option<bool>,
    signature_error: Option<String>,
    headers: &'a HeaderMap,
    body: &'a [u8],
    json: &'a LazyJson<'a>,
}

async fn accept(state: &AppState, live: &Live, a: Accepted<'_>) -> Result<Response, ApiError> {
    // The id was taken when the request arrived; its time is the received time, so that a
    // `from`/`to` window (which the store answers from ids) always finds the event at its own
    // `received_at`, even when verifying the request crossed a millisecond boundary.
    let now = a.id.timestamp_ms();
    let routes = route::route(
        live,
        &RouteInput {
            namespace: a.namespace,
            source: a.source,
            event_type: a.event_type.as_deref(),
            headers: a.headers,
            body: a.json,
        },
    );
    let deliveries: Vec<DeliveryRecord> = routes
        .iter()
        .map(|r| DeliveryRecord::new(a.id, a.namespace, &r.endpoint, Some(&r.subscription), now))
        .collect();
    let status = if deliveries.is_empty() {
        EventStatus::Unrouted
    } else {
        EventStatus::Pending
    };
    let correlation_id = ["x-correlation-id", "x-request-id"]
        .iter()
        .find_map(|h| a.headers.get(*h).and_then(|v| v.to_str().ok()))
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_string)
        .unwrap_or_else(|| a.id.to_string());
    let event = EventRecord {
        id: a.id,
        namespace: a.namespace.to_string(),
        source: a.source.to_string(),
        event_type: a.event_type,
        origin: a.origin,
        received_at: now,
        signature_valid: a.signature_valid,
        signature_error: a.signature_error,
        idempotency_key: a.idempotency.as_ref().map(|c| c.key.clone()),
        content_type: a
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body_len: a.body.len() as u64,
        correlation_id,
        status,
        payload_expired: false,
        config_hash: live.hash().to_string(),
        delivery_ids: deliveries.iter().map(|d| d.id).collect(),
    };
    let payload = Payload {
        headers: a
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
        body: a.body.to_vec(),
    };
    let routed = deliveries.len();
    let outcome = state
        .store
        .ingest(NewEvent {
            event,
            payload,
            deliveries,
            idempotency: a.idempotency,
        })
        .await?;
    match outcome {
        IngestOutcome::Stored(id) => {
            state.metrics.ingested(a.namespace, a.source);
            if routed > 0 {
                state.wake.notify_one();
            }
            tracing::debug!(routed, "event stored");
            let body = json!({
                "id": id.to_string(),
                "status": status.as_str(),
                "message": if routed > 0 { format!("Event accepted and routed to {routed} endpoint(s)") } else { "Event accepted; no subscription matched".to_string() },
            });
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        IngestOutcome::Duplicate(original) => {
            tracing::info!(original = %original, "duplicate delivery from the provider; nothing stored");
            let body = json!({
                "id": original.to_string(),
                "status": "duplicate",
                "duplicate": true,
                "message": "An event with this idempotency key was already accepted",
            });
            Ok((StatusCode::OK, Json(body)).into_response())
        }
    }
}

fn signature_checked(src: &SourceConfig) -> Option<bool> {
    match src.verification {
        hookmesh_api::config::Verifier::None => None,
        _ => Some(true),
    }
}

/// The source's own ingest API key, if it has one.
fn check_source_key(src: &SourceConfig, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &src.api_key else {
        return Ok(());
    };
    match auth::presented_key(headers) {
        Some(k) if bool::from(expected.expose().ct_eq(k)) => Ok(()),
        Some(_) => Err(ApiError::unauthorized(
            "UNAUTHORIZED",
            "invalid API key for this source",
        )),
        None => Err(ApiError::unauthorized(
            "UNAUTHORIZED",
            "this source requires an API key (Authorization: Bearer or X-API-Key)",
        )),
    }
}

/// Read the body, refusing more than `limit` bytes with 413 (early when Content-Length says so).
async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("the body is larger than this source's limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(ApiError::bad_request(
            "BODY_UNREADABLE",
            format!("could not read the request body: {e}"),
        )),
    }
}

fn extract(rule: &FieldRule, headers: &HeaderMap, json: &LazyJson<'_>) -> Option<String> {
    let v = match rule {
        FieldRule::Header(h) => headers
            .get(h.as_str())
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_string()),
        FieldRule::JsonPointer(p) => json
            .get()
            .and_then(|j| j.pointer(p))
            .filter(|v| !v.is_null())
            .map(json_text),
    }?;
    (!v.is_empty() && v.len() <= 512).then_some(v)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
