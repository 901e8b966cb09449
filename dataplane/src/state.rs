//! What every HTTP handler shares: one handle per stage below the HTTP layer. Handlers read and
//! call through these; nothing here knows about routes.

use std::sync::Arc;

use crate::config::LiveConfig;
use crate::deliver::HealthBoard;
use crate::metrics::Metrics;
use crate::peers::drain::Lifecycle;
use crate::peers::Peers;
use crate::ratelimit::RateLimiter;
use crate::store::Store;

/// The handlers' shared state, behind one `Arc`: axum clones the state for every request (the
/// router, each middleware, the handler), and one reference count is cheaper than one per
/// handle, which every core touched on every request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    /// The config in use, swapped atomically on reload.
    pub live: LiveConfig,
    /// Durable events and the delivery queue; it wakes the delivery engine itself.
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// The REST API's per-key request budget.
    pub limiter: Arc<RateLimiter>,
    /// The delivery engine's circuit states: the engine publishes, handlers only read.
    pub health: Arc<HealthBoard>,
    /// The other pods of the set (none in a single-pod gateway).
    pub peers: Arc<Peers>,
    /// Whether this pod takes ingest (not while draining), and the engine a drain stops.
    pub lifecycle: Arc<Lifecycle>,
    /// Where endpoints and subscriptions registered through the API are written: files
    /// (standalone, the gateway's slice) or resources (cluster, when enabled); `None` where
    /// the API does not register objects.
    pub manage: Option<Arc<crate::manage::Manager>>,
    /// Largest body `POST /api/v1/events` reads.
    pub publish_max_body: u64,
}
