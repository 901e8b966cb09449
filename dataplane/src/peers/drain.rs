//! Taking a pod out of the set without stranding its queue (scale-down).
//!
//! A drain, started by `POST /internal/v1/drain` or by SIGTERM with `--drain-on-shutdown`:
//!
//! 1. the pod refuses ingest (503 `DRAINING`) and `/readyz` answers 503, so the Service stops
//!    sending it webhooks (providers retry those refusals against the pods that remain);
//! 2. the delivery engine stops claiming and the attempts in flight finish (up to
//!    `--shutdown-grace`);
//! 3. every event that still has deliveries to make is handed to a peer that is up and not
//!    draining, in batches, with its payload, deliveries and attempts, under the same ids; once
//!    the peer has stored a batch durably, this pod deletes its copies;
//! 4. what no peer took (none up, or `--drain-timeout` ran out) stays here, is logged as an
//!    error and counted in `hookmesh_drain_kept_events`, and the engine resumes so this pod
//!    keeps delivering it for as long as it runs. It is on this pod's volume either way.
//!
//! Reads keep working throughout. Delivered history stays on the pod's volume: it comes back
//! if the pod does.
//!
//! A pod with no peers (a sidecar beside its service, or a lone gateway) has no one to hand to:
//! its drain keeps the engine running and waits until everything queued is delivered to its
//! own endpoints, or `--drain-timeout` passes; what is left is logged and counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Member, Peers};
use crate::deliver::Engine;
use crate::metrics::Metrics;
use crate::store::{EventId, ExportedEvent, Store};

/// Events per handoff call.
const BATCH: usize = 64;
/// Payload bytes after which a batch is sent without waiting for [`BATCH`] events.
const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Content type of a handoff body: a postcard-encoded [`Handoff`].
pub const HANDOFF_TYPE: &str = "application/x-hookmesh-handoff";

/// What travels in one handoff call.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handoff {
    /// The sending pod's node.
    pub from: u16,
    pub events: Vec<ExportedEvent>,
}

/// What a peer answers to a handoff.
#[derive(Debug, Serialize, Deserialize)]
pub struct HandoffAnswer {
    /// Stored now.
    pub stored: usize,
    /// Stored before (a repeated handoff).
    pub already: usize,
}

/// What a drain did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DrainReport {
    pub node: u16,
    /// Events handed to peers.
    pub handed_off: usize,
    /// Unfinished events still here (no peer took them).
    pub kept: usize,
    /// Peers that took events, as `node N (url)`.
    pub peers: Vec<String>,
    /// Why events were kept, if they were.
    pub errors: Vec<String>,
}

/// Whether this pod takes new work, and the engine a drain stops.
pub struct Lifecycle {
    draining: AtomicBool,
    engine: tokio::sync::Mutex<Option<Engine>>,
    last: Mutex<Option<DrainReport>>,
}

impl Lifecycle {
    pub fn new(engine: Option<Engine>) -> Self {
        Lifecycle {
            draining: AtomicBool::new(false),
            engine: tokio::sync::Mutex::new(engine),
            last: Mutex::new(None),
        }
    }

    /// Refusing ingest: draining or drained.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn last_report(&self) -> Option<DrainReport> {
        self.last.lock().map(|r| r.clone()).unwrap_or(None)
    }

    /// The engine, for the shutdown path.
    pub async fn take_engine(&self) -> Option<Engine> {
        self.engine.lock().await.take()
    }
}

/// Drain this pod (see the module docs). A second call while one runs waits for it and
/// returns the same report.
pub async fn drain(
    lifecycle: &Lifecycle,
    peers: &Peers,
    store: &Store,
    metrics: &Metrics,
    timeout: Duration,
) -> DrainReport {
    let mut engine = lifecycle.engine.lock().await;
    if let Some(done) = lifecycle.last_report() {
        return done;
    }
    lifecycle.draining.store(true, Ordering::Relaxed);
    metrics.draining.set(1);
    let deadline = Instant::now() + timeout;
    let report = if peers.configured() {
        tracing::info!(
            node = peers.node(),
            "draining: ingest refused, waiting for attempts in flight"
        );
        if let Some(e) = engine.as_mut() {
            e.pause().await;
        }
        let report = hand_off(peers, store, metrics, deadline).await;
        if report.kept > 0 {
            tracing::error!(node = report.node, kept = report.kept, errors = ?report.errors,
                "drain kept unfinished events no peer took; this pod keeps delivering them while it runs, and they stay on its volume");
            if let Some(e) = engine.as_mut() {
                e.resume();
            }
        } else {
            tracing::info!(node = report.node, handed_off = report.handed_off, peers = ?report.peers,
                "drained: every unfinished event is with a peer");
        }
        report
    } else {
        // No peers (a sidecar, a lone pod): what is queued goes to its own endpoints, on their
        // usual schedule, for as long as the drain may take.
        tracing::info!("draining: ingest refused, delivering what is queued before stopping");
        let report = deliver_here(peers.node(), store, deadline).await;
        if report.kept > 0 {
            tracing::error!(kept = report.kept,
                "drain ended with undelivered events; they stay in this pod's data directory (lost with an emptyDir)");
        } else {
            tracing::info!("drained: every queued event was delivered");
        }
        report
    };
    metrics.drain_kept.set(report.kept as i64);
    if let Ok(mut last) = lifecycle.last.lock() {
        *last = Some(report.clone());
    }
    report
}

async fn hand_off(
    peers: &Peers,
    store: &Store,
    metrics: &Metrics,
    deadline: Instant,
) -> DrainReport {
    let mut report = DrainReport {
        node: peers.node(),
        ..DrainReport::default()
    };
    let Some(bearer) = peers.bearer().and_then(|b| HeaderValue::from_str(&b).ok()) else {
        report
            .errors
            .push("no --peer-token: peers would refuse a handoff".into());
        report.kept = count_unfinished(store).await;
        return report;
    };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, bearer);
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(HANDOFF_TYPE),
    );
    let mut turn = 0usize;
    let mut refused: Vec<String> = Vec::new();
    loop {
        let batch = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || -> Result<Vec<ExportedEvent>, String> {
                let ids = store.unfinished_events(BATCH).map_err(|e| e.to_string())?;
                let mut out = Vec::with_capacity(ids.len());
                let mut bytes = 0usize;
                for id in ids {
                    if let Some(ex) = store.export_event(id).map_err(|e| e.to_string())? {
                        bytes += ex.payload.as_ref().map_or(0, |p| p.body.len());
                        out.push(ex);
                    }
                    if bytes >= BATCH_BYTES {
                        break;
                    }
                }
                Ok(out)
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
        };
        let batch = match batch {
            Ok(b) if b.is_empty() => break,
            Ok(b) => b,
            Err(e) => {
                report.errors.push(format!("reading the queue: {e}"));
                break;
            }
        };
        let targets: Vec<Member> = peers
            .members()
            .into_iter()
            .filter(|m| m.up && !m.draining && m.node.is_some() && !refused.contains(&m.url))
            .collect();
        if targets.is_empty() {
            report
                .errors
                .push("no peer is up and taking handoffs".into());
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            report.errors.push("--drain-timeout ran out".into());
            break;
        }
        let target = &targets[turn % targets.len()];
        turn += 1;
        let ids: Vec<EventId> = batch.iter().map(|e| e.event.id).collect();
        let body = match postcard::to_stdvec(&Handoff {
            from: peers.node(),
            events: batch,
        }) {
            Ok(b) => b,
            Err(e) => {
                report.errors.push(format!("encoding a handoff: {e}"));
                break;
            }
        };
        let sent = peers
            .client
            .send_within(
                Method::POST,
                &format!("{}/internal/v1/handoff", target.url),
                &headers,
                body.into(),
                left.max(Duration::from_millis(1)),
            )
            .await;
        match sent {
            Ok(r) if r.status == StatusCode::OK => {
                let store = store.clone();
                let deleted = tokio::task::spawn_blocking(move || {
                    ids.iter()
                        .try_for_each(|id| store.delete_event(*id).map(|_| ()))
                        .map(|_| ids.len())
                })
                .await;
                match deleted {
                    Ok(Ok(n)) => {
                        report.handed_off += n;
                        metrics.handoff_out.inc_by(n as u64);
                        if !report.peers.contains(&target.label()) {
                            report.peers.push(target.label());
                        }
                    }
                    // Both pods now hold these events: each delivers them (at least once).
                    Ok(Err(e)) => {
                        report
                            .errors
                            .push(format!("deleting handed-off events: {e}"));
                        break;
                    }
                    Err(e) => {
                        report
                            .errors
                            .push(format!("deleting handed-off events: {e}"));
                        break;
                    }
                }
            }
            Ok(r) => {
                report.errors.push(format!(
                    "{} refused the handoff ({}): {}",
                    target.label(),
                    r.status,
                    String::from_utf8_lossy(&r.body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ));
                refused.push(target.url.clone());
            }
            Err(e) => {
                report.errors.push(format!("{}: {e}", target.label()));
                refused.push(target.url.clone());
            }
        }
    }
    report.kept = count_unfinished(store).await;
    report
}

/// Wait, with the engine running, until nothing is left to deliver or the deadline passes.
async fn deliver_here(node: u16, store: &Store, deadline: Instant) -> DrainReport {
    let mut report = DrainReport {
        node,
        ..DrainReport::default()
    };
    loop {
        let left = count_unfinished(store).await;
        if left == 0 {
            return report;
        }
        if Instant::now() >= deadline {
            report.kept = left;
            report
                .errors
                .push("--drain-timeout ran out before everything was delivered".into());
            return report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count_unfinished(store: &Store) -> usize {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.unfinished_count())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0)
}

/// A handoff arriving from a draining peer: store each event (once), then answer. Only after
/// this answer does the sender delete its copies.
pub async fn receive(
    store: &Store,
    metrics: &Metrics,
    handoff: Handoff,
) -> Result<HandoffAnswer, String> {
    let mut answer = HandoffAnswer {
        stored: 0,
        already: 0,
    };
    let now = crate::store::now_ms();
    for ex in handoff.events {
        match store.import_event(ex, now).await {
            Ok(true) => answer.stored += 1,
            Ok(false) => answer.already += 1,
            Err(e) => return Err(e.to_string()),
        }
    }
    metrics.handoff_in.inc_by(answer.stored as u64);
    tracing::info!(
        from = handoff.from,
        stored = answer.stored,
        already = answer.already,
        "took over events from a draining peer"
    );
    Ok(answer)
}
