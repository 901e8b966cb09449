//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub namespace: String,
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub namespace: String,
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub namespace: String,
    pub endpoint: String,
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    ingested: Family<SourceLabels, Counter>,
    verification_failures: Family<ReasonLabels, Counter>,
    delivery_attempts: Family<OutcomeLabels, Counter>,
    delivery_latency: Histogram,
    endpoint_paused: Family<EndpointLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    pub queue_depth: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub config_reloads: Counter<u64, AtomicU64>,
    /// Other pods discovered, and how many of them answered the last probe.
    pub peers_known: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub peers_up: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// REST calls to peers that failed or timed out (the answer was partial or 503).
    pub peer_call_failures: Counter<u64, AtomicU64>,
    /// Events handed to a peer by a drain, and taken over from one.
    pub handoff_out: Counter<u64, AtomicU64>,
    pub handoff_in: Counter<u64, AtomicU64>,
    /// 0 once the store refuses writes (a failed flush), else 1.
    pub store_writable: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// 1 while this pod drains or has drained (refusing ingest).
    pub draining: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Unfinished events a drain could not hand to any peer (still here, delivered from here).
    pub drain_kept: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hookmesh");
        let ingested = Family::<SourceLabels, Counter>::default();
        let verification_failures = Family::<ReasonLabels, Counter>::default();
        let delivery_attempts = Family::<OutcomeLabels, Counter>::default();
        // 1 ms .. ~65 s
        let delivery_latency = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        let queue_depth = Gauge::default();
        let config_reloads = Counter::default();
        let endpoint_paused =
            Family::<EndpointLabels, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
        registry.register(
            "endpoint_paused",
            "1 while the endpoint is paused because its receiver answered 410 Gone",
            endpoint_paused.clone(),
        );
        registry.register(
            "events_ingested",
            "Events accepted and stored",
            ingested.clone(),
        );
        registry.register(
            "verification_failures",
            "Requests refused because their signature did not verify, by reason",
            verification_failures.clone(),
        );
        registry.register(
            "delivery_attempts",
            "Delivery attempts by endpoint and outcome (success, retry, failed, dead_letter)",
            delivery_attempts.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Time from ingest to successful delivery",
            delivery_latency.clone(),
        );
        registry.register(
            "queue_depth",
            "Deliveries waiting in the due queue",
            queue_depth.clone(),
        );
        registry.register(
            "config_reloads",
            "Configs that went live",
            config_reloads.clone(),
        );
        let peers_known = Gauge::default();
        let peers_up = Gauge::default();
        let peer_call_failures = Counter::default();
        let handoff_out = Counter::default();
        let handoff_in = Counter::default();
        let draining = Gauge::default();
        let store_writable = Gauge::default();
        registry.register(
            "store_writable",
            "0 once the store refuses writes after a failed flush (until restart), else 1",
            store_writable.clone(),
        );
        let drain_kept = Gauge::default();
        registry.register(
            "peers_known",
            "Other data-plane pods this pod knows of",
            peers_known.clone(),
        );
        registry.register(
            "peers_up",
            "Other data-plane pods that answered the last discovery probe",
            peers_up.clone(),
        );
        registry.register(
            "peer_call_failures",
            "REST calls to peers that failed or timed out",
            peer_call_failures.clone(),
        );
        registry.register(
            "handoff_out_events",
            "Unfinished events handed to a peer by a drain",
            handoff_out.clone(),
        );
        registry.register(
            "handoff_in_events",
            "Unfinished events taken over from a draining peer",
            handoff_in.clone(),
        );
        registry.register(
            "draining",
            "1 while this pod drains or has drained: it refuses ingest",
            draining.clone(),
        );
        registry.register(
            "drain_kept_events",
            "Unfinished events the last drain could not hand to any peer",
            drain_kept.clone(),
        );
        Metrics {
            registry,
            endpoint_paused,
            peers_known,
            peers_up,
            peer_call_failures,
            handoff_out,
            handoff_in,
            draining,
            drain_kept,
            store_writable,
            ingested,
            verification_failures,
            delivery_attempts,
            delivery_latency,
            queue_depth,
            config_reloads,
        }
    }

    pub fn ingested(&self, namespace: &str, source: &str) {
        self.ingested
            .get_or_create(&SourceLabels {
                namespace: namespace.to_string(),
                source: source.to_string(),
            })
            .inc();
    }

    pub fn verification_failed(&self, code: &str) {
        self.verification_failures
            .get_or_create(&ReasonLabels {
                reason: code.to_string(),
            })
            .inc();
    }

    pub fn attempt(&self, namespace: &str, endpoint: &str, outcome: &str) {
        self.delivery_attempts
            .get_or_create(&OutcomeLabels {
                namespace: namespace.to_string(),
                endpoint: endpoint.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Paused by a 410 Gone, or resumed.
    pub fn endpoint_paused(&self, namespace: &str, endpoint: &str, paused: bool) {
        self.endpoint_paused
            .get_or_create(&EndpointLabels {
                namespace: namespace.to_string(),
                endpoint: endpoint.to_string(),
            })
            .set(i64::from(paused));
    }

    pub fn delivered_after(&self, seconds: f64) {
        self.delivery_latency.observe(seconds);
    }

    /// Count of `outcome` attempts for an endpoint so far (for the REST API's live counters).
    pub fn attempts_of(&self, namespace: &str, endpoint: &str, outcome: &str) -> u64 {
        self.delivery_attempts
            .get_or_create(&OutcomeLabels {
                namespace: namespace.to_string(),
                endpoint: endpoint.to_string(),
                outcome: outcome.to_string(),
            })
            .get()
    }

    pub fn ingested_of(&self, namespace: &str, source: &str) -> u64 {
        self.ingested
            .get_or_create(&SourceLabels {
                namespace: namespace.to_string(),
                source: source.to_string(),
            })
            .get()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
