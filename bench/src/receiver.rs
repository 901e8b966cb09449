//! A loopback webhook receiver that notes when each event's delivery arrived (by `webhook-id`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

pub type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// Serve on a free port; every POST answers 202 and records its `webhook-id` (first arrival).
pub async fn start() -> anyhow::Result<(SocketAddr, Arrivals)> {
    let arrivals: Arrivals = Arc::default();
    let app = axum::Router::new()
        .route("/{*path}", post(receive))
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, arrivals))
}

async fn receive(State(arrivals): State<Arrivals>, headers: HeaderMap) -> StatusCode {
    if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
        if let Ok(mut a) = arrivals.lock() {
            a.entry(id.to_string()).or_insert_with(Instant::now);
        }
    }
    StatusCode::ACCEPTED
}
