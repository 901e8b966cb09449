//! The delivery engine: takes due deliveries off the sled queue and POSTs them to their
//! endpoints, at least once.
//!
//! One scheduler task owns every per-endpoint decision (circuit breaker, in-flight cap, rate
//! limit, `Retry-After` pause), so none of that state needs a lock. It wakes when the store says
//! a write made deliveries due now ([`Store::due_now`]), when the earliest queued delivery falls
//! due, when an attempt finishes, and once a second regardless. Each claimed delivery runs as its
//! own task ([`attempt`]) that records its outcome in the store before it reports back. After
//! each round that changed something it publishes the breakers' states and each endpoint's
//! attempt history to a [`HealthBoard`], which the REST API only reads: the engine knows nothing
//! of HTTP handlers.
//!
//! A claim holds a delivery in memory for a lease (timeout plus a grace period) and writes
//! nothing, so a crash mid-attempt leaves it due at its old time when the store next opens: a
//! delivery can be sent twice, never lost. Receivers deduplicate on `webhook-id`.

mod attempt;
pub mod backoff;
pub mod breaker;
pub mod client;
pub mod egress;
pub mod health;
pub mod limits;
pub mod sign;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hookmesh_api::config::EndpointConfig;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};

use crate::config::{Live, LiveConfig};
use crate::metrics::Metrics;
use crate::store::{earliest, now_ms, DeliveryId, Millis, Store};
use attempt::{Health, Outcome};
use breaker::{Admit, Breaker};
use client::HttpClient;
use limits::TokenBucket;

pub use health::HealthBoard;
use health::Tracker;

/// Added to an endpoint's timeout for the claim's lease: enough to record the outcome.
const LEASE_GRACE_MS: u64 = 10_000;
/// How far a delivery of a missing or disabled endpoint is pushed back. Short enough to notice
/// an endpoint coming back under another config source; a config change pulls them forward anyway.
const PARK_MS: u64 = 60_000;
/// Due entries read per store call, and at most per scheduling round.
const PAGE: usize = 256;
const SCAN_BUDGET: usize = 4096;
/// The scheduler looks at the queue at least this often.
const IDLE_TICK_MS: u64 = 1_000;

/// Engine knobs that are not part of an Endpoint's spec (set by the binary's flags).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Consecutive failures that open an endpoint's circuit (at least 1).
    pub breaker_threshold: u32,
    /// How long an open circuit stays open before one probe.
    pub breaker_cooldown: Duration,
    /// Attempts in flight at once across all endpoints (at least 1).
    pub max_in_flight: usize,
    /// How long shutdown waits for attempts in flight.
    pub shutdown_grace: Duration,
    /// Which addresses deliveries may connect to.
    pub egress: Arc<egress::EgressPolicy>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            max_in_flight: 512,
            shutdown_grace: Duration::from_secs(10),
            egress: Arc::new(egress::EgressPolicy::new(&[], &[])),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Client(#[from] client::ClientError),
}

/// The engine. Dropping it without [`Engine::shutdown`] stops it too, abruptly.
pub struct Engine {
    store: Store,
    live: LiveConfig,
    metrics: Arc<Metrics>,
    client: HttpClient,
    settings: Settings,
    health: Arc<HealthBoard>,
    /// The scheduler while it runs: its stop signal and task.
    running: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl Engine {
    /// Start the scheduler over `store`'s queue, sending to the endpoints of the live config.
    pub fn start(
        store: Store,
        live: LiveConfig,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Result<Engine, EngineError> {
        let mut engine = Engine {
            store,
            live,
            metrics,
            client: HttpClient::new(settings.egress.clone())?,
            health: Arc::new(HealthBoard::new(settings.breaker_threshold)),
            settings,
            running: None,
        };
        engine.resume();
        Ok(engine)
    }

    /// Start claiming again after [`Engine::pause`] (a no-op while running). The breakers start
    /// afresh; the queue is where it was.
    pub fn resume(&mut self) {
        if self.running.is_some() {
            return;
        }
        let (stop, stop_rx) = watch::channel(false);
        let scheduler = Scheduler {
            store: self.store.clone(),
            live: self.live.clone(),
            metrics: self.metrics.clone(),
            client: self.client.clone(),
            settings: self.settings.clone(),
            endpoints: HashMap::new(),
            tasks: JoinSet::new(),
            running: HashMap::new(),
            busy: HashSet::new(),
            parked: HashSet::new(),
            last_hash: String::new(),
            health: self.health.clone(),
            changed: true,
        };
        self.running = Some((stop, tokio::spawn(scheduler.run(stop_rx))));
    }

    /// The breakers' states and attempt histories, refreshed after every scheduling round that
    /// changed them, for the REST API to read.
    pub fn health(&self) -> Arc<HealthBoard> {
        self.health.clone()
    }

    /// Stop claiming, give attempts in flight the grace period, then return. Attempts still
    /// running after it are dropped; their deliveries are due again at the next start.
    pub async fn pause(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(true);
            if let Err(e) = task.await {
                tracing::error!(error = %e, "delivery scheduler ended abnormally");
            }
        }
    }

    /// [`Engine::pause`], for good.
    pub async fn shutdown(mut self) {
        self.pause().await;
    }
}

type EndpointKey = (String, String);

/// What the scheduler knows about one endpoint.
struct EndpointState {
    in_flight: u32,
    bucket: Option<TokenBucket>,
    breaker: Breaker,
    /// No new attempts before this (the endpoint sent `Retry-After`).
    paused_until: Millis,
    /// The URL the breaker's history is about; a new URL starts afresh.
    url: String,
    tracker: Tracker,
}

struct Running {
    key: EndpointKey,
    id: DeliveryId,
    probe: bool,
}

struct Scheduler {
    store: Store,
    live: LiveConfig,
    metrics: Arc<Metrics>,
    client: HttpClient,
    settings: Settings,
    endpoints: HashMap<EndpointKey, EndpointState>,
    tasks: JoinSet<Outcome>,
    running: HashMap<tokio::task::Id, Running>,
    /// Deliveries with an attempt running here, so an expired lease is never claimed twice.
    busy: HashSet<DeliveryId>,
    /// Endpoints whose deliveries were pushed back for being missing or disabled.
    parked: HashSet<EndpointKey>,
    last_hash: String,
    health: Arc<HealthBoard>,
    /// Something the health board shows changed since it was last published.
    changed: bool,
}

/// What one round decided about one due delivery.
enum Step {
    Sent,
    /// Left in the queue; look again at this time (or when an attempt finishes).
    Skip(Option<Millis>),
    /// Nothing more can start this round.
    Full,
}

impl Scheduler {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        tracing::info!(
            breaker_threshold = self.settings.breaker_threshold,
            breaker_cooldown_ms = self.settings.breaker_cooldown.as_millis() as u64,
            max_in_flight = self.settings.max_in_flight,
            "delivery engine started"
        );
        let mut next: Option<Millis> = Some(0);
        loop {
            let now = now_ms();
            let sleep_ms = next
                .map(|at| at.saturating_sub(now))
                .unwrap_or(IDLE_TICK_MS)
                .min(IDLE_TICK_MS);
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.finished(done);
                }
                _ = self.store.due_now() => {}
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
            }
            while let Some(done) = self.tasks.try_join_next_with_id() {
                self.finished(done);
            }
            next = self.round();
            if std::mem::take(&mut self.changed) {
                self.health.publish(
                    self.endpoints
                        .iter()
                        .map(|(k, st)| (k, st.breaker.state(), &st.tracker)),
                );
            }
        }
        self.drain().await;
    }

    /// One pass over the due queue. Returns when the scheduler should look again, at the latest.
    fn round(&mut self) -> Option<Millis> {
        let now = now_ms();
        let live = self.live.load();
        if live.hash() != self.last_hash {
            self.config_changed(&live, now);
            self.last_hash = live.hash().to_string();
        }
        let mut wake_at: Option<Millis> = None;
        let mut cursor = None;
        let mut scanned = 0;
        'scan: while scanned < SCAN_BUDGET && self.running.len() < self.settings.max_in_flight {
            let page = match self.store.due_after(now, cursor, PAGE) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the delivery queue");
                    return Some(now.saturating_add(IDLE_TICK_MS));
                }
            };
            if page.is_empty() {
                break;
            }
            for (at, id) in page {
                cursor = Some((at, id));
                scanned += 1;
                match self.consider(&live, now, at, id) {
                    Step::Sent => {}
                    Step::Skip(t) => wake_at = earliest(wake_at, t),
                    Step::Full => break 'scan,
                }
            }
        }
        match self.store.next_due_after(now) {
            Ok(t) => earliest(wake_at, t),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the delivery queue");
                Some(now.saturating_add(IDLE_TICK_MS))
            }
        }
    }

    fn consider(&mut self, live: &Live, now: Millis, at: Millis, id: DeliveryId) -> Step {
        if self.busy.contains(&id) {
            return Step::Skip(None);
        }
        let d = match self.store.delivery(id) {
            Ok(Some(d)) if !d.status.is_final() && d.next_attempt_at == Some(at) => d,
            Ok(_) => {
                // A stale entry (the delivery finished, was deleted, or is due at another time
                // now): claiming finds that out under the event's lock and removes it.
                let _ = self.store.claim_attempt(at, id, now);
                return Step::Skip(None);
            }
            Err(e) => {
                tracing::error!(delivery_id = %id, error = %e, "cannot read a queued delivery");
                return Step::Skip(Some(now.saturating_add(IDLE_TICK_MS)));
            }
        };
        let key = (d.namespace.clone(), d.endpoint.clone());
        let ep = match live.endpoint(&d.namespace, &d.endpoint) {
            Some(ep) if !ep.disabled => ep,
            other => {
                let why = if other.is_some() {
                    "endpoint is disabled"
                } else {
                    "endpoint is not in the config"
                };
                if self.parked.insert(key.clone()) {
                    tracing::warn!(namespace = %key.0, endpoint = %key.1,
                        "{why}; its deliveries stay queued and are retried when it is back");
                }
                if let Err(e) = self.store.requeue(id, now.saturating_add(PARK_MS)) {
                    tracing::error!(delivery_id = %id, error = %e, "cannot requeue a delivery");
                }
                return Step::Skip(None);
            }
        };
        match self.store.endpoint_pause(&d.namespace, &d.endpoint) {
            Ok(None) => {}
            Ok(Some(_)) => {
                // Paused by a 410: held until resumed (which makes them due at once).
                if let Err(e) = self.store.requeue(id, now.saturating_add(PARK_MS)) {
                    tracing::error!(delivery_id = %id, error = %e, "cannot requeue a delivery");
                }
                return Step::Skip(None);
            }
            Err(e) => {
                tracing::error!(delivery_id = %id, error = %e, "cannot read the endpoint's pause");
                return Step::Skip(Some(now.saturating_add(IDLE_TICK_MS)));
            }
        }
        if self.running.len() >= self.settings.max_in_flight {
            return Step::Full;
        }
        let settings = &self.settings;
        let st = self
            .endpoints
            .entry(key.clone())
            .or_insert_with(|| EndpointState {
                in_flight: 0,
                bucket: None,
                breaker: Breaker::new(
                    settings.breaker_threshold,
                    settings.breaker_cooldown.as_millis() as u64,
                ),
                paused_until: 0,
                url: ep.url.clone(),
                tracker: Tracker::default(),
            });
        if st.paused_until > now {
            return Step::Skip(Some(st.paused_until));
        }
        if ep.max_in_flight.is_some_and(|max| st.in_flight >= max) {
            return Step::Skip(None);
        }
        let probe = match st.breaker.admit(now) {
            Admit::Yes => false,
            Admit::Probe => {
                self.changed = true;
                true
            }
            Admit::Wait => return Step::Skip(None),
            Admit::RequeueAt(until) => {
                // Pushed back without an attempt: an open circuit must not use up attempts.
                if let Err(e) = self.store.requeue(id, until) {
                    tracing::error!(delivery_id = %id, error = %e, "cannot requeue a delivery");
                }
                return Step::Skip(None);
            }
        };
        if let Some(rate) = ep.per_second {
            let bucket = st.bucket.get_or_insert_with(|| TokenBucket::new(now, rate));
            if let Err(next) = bucket.try_take(now, rate) {
                if probe {
                    st.breaker.on_probe_abandoned();
                }
                return Step::Skip(Some(next));
            }
        }
        let lease = now
            .saturating_add(ep.timeout_ms)
            .saturating_add(LEASE_GRACE_MS);
        let claimed = match self.store.claim_attempt(at, id, lease) {
            Ok(Some(c)) => c,
            Ok(None) => {
                if probe {
                    st.breaker.on_probe_abandoned();
                }
                return Step::Skip(None);
            }
            Err(e) => {
                if probe {
                    st.breaker.on_probe_abandoned();
                }
                tracing::error!(delivery_id = %id, error = %e, "cannot claim a delivery");
                return Step::Skip(Some(now.saturating_add(IDLE_TICK_MS)));
            }
        };
        st.in_flight += 1;
        if probe {
            tracing::info!(namespace = %key.0, endpoint = %key.1, delivery_id = %id,
                "circuit half-open: sending one probe");
        }
        let dead_letter_to = d.subscription.as_deref().and_then(|name| {
            let subs = &live.config.subscriptions;
            subs.binary_search_by(|s| {
                (s.namespace.as_str(), s.name.as_str()).cmp(&(d.namespace.as_str(), name))
            })
            .ok()
            .and_then(|i| subs[i].dead_letter.clone())
        });
        let job = attempt::Job {
            claimed,
            endpoint: ep.clone(),
            dead_letter_to,
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            client: self.client.clone(),
        };
        let handle = self.tasks.spawn(attempt::run(job));
        self.running.insert(handle.id(), Running { key, id, probe });
        self.busy.insert(id);
        Step::Sent
    }

    fn finished(&mut self, done: Result<(tokio::task::Id, Outcome), JoinError>) {
        let (task, Outcome { health, error }) = match done {
            Ok((task, outcome)) => (task, outcome),
            Err(e) => {
                // The delivery stays claimed; its lease makes it due again.
                if e.is_panic() {
                    tracing::error!("a delivery attempt panicked");
                }
                (e.id(), Outcome::NOT_SENT)
            }
        };
        let Some(r) = self.running.remove(&task) else {
            return;
        };
        self.busy.remove(&r.id);
        let Some(st) = self.endpoints.get_mut(&r.key) else {
            return;
        };
        st.in_flight = st.in_flight.saturating_sub(1);
        let now = now_ms();
        self.changed = true;
        match (&health, &error) {
            (Health::Unknown, _) => {}
            (_, None) => st.tracker.succeeded(now),
            (_, Some(why)) => st.tracker.failed(now, why),
        }
        match health {
            Health::Up => {
                if st.breaker.on_success() {
                    tracing::info!(namespace = %r.key.0, endpoint = %r.key.1, "circuit closed");
                }
            }
            Health::Down { retry_after } => {
                if st.breaker.on_failure(now, r.probe) {
                    st.tracker.circuit_opened();
                    tracing::warn!(namespace = %r.key.0, endpoint = %r.key.1,
                        cooldown_ms = self.settings.breaker_cooldown.as_millis() as u64,
                        "circuit open: deliveries to this endpoint are paused");
                }
                // Already capped at the endpoint's retry.maxRetryAfter.
                if let Some(ra) = retry_after {
                    let until = now.saturating_add(ra.as_millis() as u64);
                    st.paused_until = st.paused_until.max(until);
                }
            }
            Health::Unknown => {
                if r.probe {
                    st.breaker.on_probe_abandoned();
                }
            }
            Health::Gone => {
                if r.probe {
                    st.breaker.on_probe_abandoned();
                }
                match self
                    .store
                    .pause_endpoint(&r.key.0, &r.key.1, "HTTP 410 Gone", r.id)
                {
                    Ok(true) => {
                        self.metrics.endpoint_paused(&r.key.0, &r.key.1, true);
                        tracing::warn!(namespace = %r.key.0, endpoint = %r.key.1, delivery_id = %r.id,
                            "the receiver answered 410 Gone: endpoint paused until resumed (POST /api/v1/endpoints/{{ns}}/{{name}}/resume)");
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(namespace = %r.key.0, endpoint = %r.key.1, error = %e,
                        "cannot record the endpoint's pause")
                    }
                }
            }
        }
    }

    /// A new config went live: endpoints that came back get their parked deliveries now, and an
    /// endpoint whose URL changed starts with a closed circuit.
    fn config_changed(&mut self, live: &Live, now: Millis) {
        self.changed = true;
        let mut back: Vec<EndpointKey> = self
            .parked
            .iter()
            .filter(|(ns, name)| live.endpoint(ns, name).is_some_and(|ep| !ep.disabled))
            .cloned()
            .collect();
        self.endpoints.retain(|(ns, name), st| {
            let current: Option<&EndpointConfig> = live.endpoint(ns, name);
            match current {
                None => st.in_flight > 0,
                Some(ep) if ep.url != st.url => {
                    if st.breaker.is_open() {
                        back.push((ns.clone(), name.clone()));
                    }
                    st.breaker = Breaker::new(
                        self.settings.breaker_threshold,
                        self.settings.breaker_cooldown.as_millis() as u64,
                    );
                    st.paused_until = 0;
                    st.url = ep.url.clone();
                    st.tracker = Tracker::default();
                    true
                }
                Some(_) => true,
            }
        });
        for key in back {
            self.parked.remove(&key);
            match self.store.pull_forward(&key.0, &key.1, now) {
                Ok(n) => tracing::info!(namespace = %key.0, endpoint = %key.1, deliveries = n,
                    "endpoint is back; its queued deliveries are due now"),
                Err(e) => tracing::error!(namespace = %key.0, endpoint = %key.1, error = %e,
                    "cannot requeue the endpoint's deliveries; they go at their scheduled time"),
            }
        }
    }

    async fn drain(mut self) {
        let deadline = tokio::time::Instant::now() + self.settings.shutdown_grace;
        if !self.tasks.is_empty() {
            tracing::info!(
                in_flight = self.tasks.len(),
                "delivery engine stopping; waiting for attempts in flight"
            );
        }
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(Some(done)) => self.finished(done),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        in_flight = self.tasks.len(),
                        "attempts still running at the shutdown deadline; they are due again at the next start"
                    );
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        tracing::info!("delivery engine stopped");
    }
}
