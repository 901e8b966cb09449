//! `/metrics` (Prometheus text), `/healthz` (the process answers) and `/readyz`. Readiness
//! does not depend on leadership: a standby replica is ready (it is a warm spare, and a
//! rolling update must be able to bring it up while the old leader still holds the Lease).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::metrics::Metrics;

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
}

async fn readyz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    let role = if m.is_leader.load(Ordering::Relaxed) {
        if m.synced.load(Ordering::Relaxed) {
            "leader"
        } else {
            "leader (syncing)"
        }
    } else {
        "standby"
    };
    let hash = m.hash();
    let body = serde_json::json!({ "status": "ready", "role": role, "config_hash": hash });
    (StatusCode::OK, axum::Json(body))
}

/// Serve on a bound listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    }
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(shutdown)
        .await
}
