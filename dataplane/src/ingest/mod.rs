//! The receive path: webhooks from providers (`webhook`) and events published by in-cluster
//! services (`publish`) meet in [`accept`], which plans the deliveries and commits everything
//! durably. The answer is sent only after the group committer has flushed the event, its
//! payload and its deliveries to disk; the store then wakes the delivery engine.

mod body;
mod handshake;
mod publish;
mod webhook;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Live;
use crate::error::ApiError;
use crate::plan::{self, Of, Targets};
use crate::route::{LazyJson, RouteInput};
use crate::state::AppState;
use crate::store::{
    EventId, EventRecord, EventStatus, IdempotencyClaim, IngestOutcome, NewEvent, Origin, Payload,
};

pub use publish::PublishRequest;

/// `POST /e/{namespace}/{source}` and `POST /api/v1/events`, documented where they are handled.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(webhook::webhook))
        .routes(routes!(publish::publish))
}

/// 202 (stored) or 200 (a duplicate) of both ingest routes.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    /// The event id (for a duplicate: the original event's id).
    pub id: String,
    /// `pending` or `unrouted`; `duplicate` for a duplicate.
    pub status: String,
    pub message: String,
    /// Present and `true` when the idempotency key was seen before (200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
}

/// A 200 of `POST /e/{namespace}/{source}`: a duplicate, or a provider handshake answered.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documents the two shapes for the OpenAPI document; handlers build each
pub enum WebhookOk {
    Duplicate(IngestResponse),
    Handshake(handshake::ChallengeAnswer),
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
    if state.lifecycle.draining() {
        // Providers retry a 503; the Service has stopped sending here (`/readyz` says so).
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "DRAINING",
            "this pod is draining and takes no new events; retry (other pods take them)",
        ));
    }
    // The id was taken when the request arrived; its time is the received time, so that a
    // `from`/`to` window (which the store answers from ids) always finds the event at its own
    // `received_at`, even when verifying the request crossed a millisecond boundary.
    let now = a.id.timestamp_ms();
    let input = RouteInput {
        namespace: a.namespace,
        source: a.source,
        event_type: a.event_type.as_deref(),
        headers: a.headers,
        body: a.json,
    };
    let deliveries = plan::plan(live, Of::NewEvent(a.id), Targets::Routed(&input), now)?;
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
            tracing::debug!(routed, "event stored");
            let message = if routed > 0 {
                format!("Event accepted and routed to {routed} endpoint(s)")
            } else {
                "Event accepted; no subscription matched".to_string()
            };
            let body = IngestResponse {
                id: id.to_string(),
                status: status.as_str().to_string(),
                message,
                duplicate: None,
            };
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        IngestOutcome::Duplicate(original) => {
            tracing::info!(original = %original, "duplicate delivery from the provider; nothing stored");
            let body = IngestResponse {
                id: original.to_string(),
                status: "duplicate".to_string(),
                message: "An event with this idempotency key was already accepted".to_string(),
                duplicate: Some(true),
            };
            Ok((StatusCode::OK, Json(body)).into_response())
        }
    }
}
