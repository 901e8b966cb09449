//! The HTTP surface of a data-plane pod: one router for ingest, the REST API and probes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::Notify;

use crate::config::LiveConfig;
use crate::error;
use crate::metrics::Metrics;
use crate::store::Store;

/// Shared by every handler. Each field is a handle to one stage.
#[derive(Clone)]
pub struct AppState {
    pub live: LiveConfig,
    pub store: Store,
    /// Tells the delivery engine new deliveries are due now.
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    /// REST API state: per-key rate limits, the circuit-state hook.
    pub rest: crate::rest::RestState,
}

pub fn router(state: AppState) -> Router {
    // Ingest, publish, the REST API and /openapi.json, documented by the same declarations.
    Router::new()
        .merge(crate::rest::router())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready once a config is live (in cluster mode, once the operator's Secret has been read).
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let live = state.live.load();
    if live.hash().is_empty() {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "waiting for config", "config_hash": null})),
        );
    }
    (
        axum::http::StatusCode::OK,
        Json(json!({"status": "ready", "config_hash": live.hash()})),
    )
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state
        .metrics
        .queue_depth
        .set(state.store.queue_depth() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
