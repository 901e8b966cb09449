//! Routes pods call on each other, under `/internal/v1` (not part of the public API document):
//!
//! - `GET /identity`: node number, instance token, draining; open, since discovery probes it
//!   and it tells nothing secret;
//! - `POST /handoff`: events a draining peer hands over (postcard body);
//! - `POST /drain`: drain this pod (see [`super::drain`]); the scale-down procedure calls it;
//! - `GET /endpoints`: every endpoint's delivery health on every pod (the fan-out merges it like
//!   `GET /api/v1/endpoints`), which the operator reads to write each Endpoint's `Healthy`
//!   condition.
//!
//! Handoff, drain and endpoints need `Authorization: Bearer <--peer-token>`, compared in constant time;
//! without a configured token they are refused. API keys are not accepted here, and the peer
//! token is accepted nowhere else.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use subtle::ConstantTimeEq;

use super::discovery::Identity;
use super::drain::{self, DrainReport, Handoff, HandoffAnswer, HANDOFF_TYPE};
use crate::error::ApiError;
use crate::rest::live;
use crate::rest::model::EndpointList;
use crate::state::AppState;

/// Largest handoff body: a batch is cut at 8 MiB of payloads, plus one event of any size.
const MAX_HANDOFF: usize = 128 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/identity", get(identity))
        .route(
            "/internal/v1/handoff",
            post(handoff).layer(DefaultBodyLimit::max(MAX_HANDOFF)),
        )
        .route("/internal/v1/drain", post(drain_now))
}

/// Routes the fan-out puts in front of every pod, like the REST API's config listings.
pub fn fanned_out() -> Router<AppState> {
    Router::new().route(INTERNAL_ENDPOINTS, get(endpoints))
}

/// Every endpoint's health and counters, merged over the pods (the operator's view of them).
pub const INTERNAL_ENDPOINTS: &str = "/internal/v1/endpoints";

async fn endpoints(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<EndpointList>, ApiError> {
    require_peer(&state, &headers)?;
    Ok(Json(live::all_endpoints(&state)))
}

async fn identity(State(state): State<AppState>) -> Json<Identity> {
    Json(Identity {
        node: state.peers.node(),
        instance: state.peers.instance.clone(),
        draining: state.lifecycle.draining(),
    })
}

fn require_peer(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.peers.settings.token else {
        return Err(ApiError::forbidden(
            "this pod has no --peer-token, so it takes no internal calls",
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    if bool::from(presented.ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::unauthorized(
            "UNAUTHORIZED",
            "internal routes need the peer token",
        ))
    }
}

async fn handoff(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<HandoffAnswer>, ApiError> {
    require_peer(&state, &headers)?;
    if state.lifecycle.draining() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "DRAINING",
            "this pod is draining and takes no handoffs",
        ));
    }
    let is_handoff = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == HANDOFF_TYPE.as_bytes());
    if !is_handoff {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("a handoff is {HANDOFF_TYPE}"),
        ));
    }
    let batch: Handoff = postcard::from_bytes(&body)
        .map_err(|e| ApiError::bad_request("INVALID_BODY", format!("not a handoff: {e}")))?;
    drain::receive(&state.store, &state.metrics, batch)
        .await
        .map(Json)
        .map_err(|e| {
            tracing::error!(error = %e, "storing a handoff failed");
            ApiError::unavailable("storing the handoff failed; nothing was acknowledged")
        })
}

async fn drain_now(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<DrainReport>, ApiError> {
    require_peer(&state, &headers)?;
    let report = drain::drain(
        &state.lifecycle,
        &state.peers,
        &state.store,
        &state.metrics,
        state.peers.settings.drain_timeout,
    )
    .await;
    Ok(Json(report))
}
