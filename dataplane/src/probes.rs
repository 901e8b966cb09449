//! `/healthz`, `/readyz` and `/metrics`: what the kubelet and Prometheus ask.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// Liveness: fails once the store refuses writes, which only a restart cures (the next open
/// repairs the store; with the volume still full it fails until space comes back).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, description = "`{\"status\": \"ok\"}`", body = serde_json::Value),
        (status = 503, description = "`{\"status\": \"storage failed\", \"reason\"}`: restart the pod", body = serde_json::Value),
    ))]
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.refusing() {
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "storage failed", "reason": reason})),
        ),
        None => (StatusCode::OK, Json(json!({"status": "ok"}))),
    }
}

/// Readiness, with the hash of the config in use: ready once a config is live (in cluster mode,
/// once the operator's Secret has been read), and not while the pod drains.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "`{\"status\": \"ready\", \"config_hash\"}`", body = serde_json::Value),
        (status = 503, description = "`{\"status\": \"waiting for config\", \"config_hash\": null}`, or `{\"status\": \"draining\"}`, or `{\"status\": \"storage failed\", \"reason\"}`", body = serde_json::Value),
    ))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let live = state.live.load();
    if let Some(reason) = state.store.refusing() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "storage failed", "config_hash": live.hash(), "reason": reason})),
        );
    }
    if state.lifecycle.draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining", "config_hash": live.hash(),
                "drain": state.lifecycle.last_report()})),
        );
    }
    if live.hash().is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "waiting for config", "config_hash": null})),
        );
    }
    (
        StatusCode::OK,
        Json(json!({"status": "ready", "config_hash": live.hash()})),
    )
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state
        .metrics
        .queue_depth
        .set(state.store.queue_depth() as i64);
    state
        .metrics
        .store_writable
        .set(i64::from(state.store.refusing().is_none()));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
