//! The operator's counters, rendered as Prometheus text on `/metrics`. Plain atomics: the
//! operator has a handful of numbers and no need for a metrics library.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Metrics {
    pub is_leader: AtomicBool,
    /// Caches synced and the first plan made (leader only).
    pub synced: AtomicBool,
    pub compiles: AtomicU64,
    pub compile_seconds_micros: AtomicU64,
    pub publishes: AtomicU64,
    pub publish_errors: AtomicU64,
    pub status_patches: AtomicU64,
    pub status_patch_errors: AtomicU64,
    pub reconciles: AtomicU64,
    pub signing_secrets_created: AtomicU64,
    pub problems: AtomicU64,
    pub sources: AtomicU64,
    pub endpoints: AtomicU64,
    pub subscriptions: AtomicU64,
    /// Polls of the data plane's endpoint health, those that failed, and the status patches
    /// they led to.
    pub health_polls: AtomicU64,
    pub health_poll_failures: AtomicU64,
    pub health_patches: AtomicU64,
    /// Hash of the config last published (or found published).
    pub config_hash: Mutex<String>,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_hash(&self, hash: &str) {
        if let Ok(mut h) = self.config_hash.lock() {
            hash.clone_into(&mut h);
        }
    }

    pub fn hash(&self) -> String {
        self.config_hash
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let flag = |a: &AtomicBool| u64::from(a.load(Ordering::Relaxed));
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "hookmesh_operator_leader",
            "gauge",
            "1 when this replica holds the leader lease.",
            flag(&self.is_leader).to_string(),
        );
        metric(
            "hookmesh_operator_synced",
            "gauge",
            "1 when this replica leads and its caches are synced.",
            flag(&self.synced).to_string(),
        );
        metric(
            "hookmesh_operator_compiles_total",
            "counter",
            "Compiles of the gateway config.",
            load(&self.compiles).to_string(),
        );
        metric(
            "hookmesh_operator_compile_seconds_total",
            "counter",
            "Time spent compiling.",
            format!("{:.6}", load(&self.compile_seconds_micros) as f64 / 1e6),
        );
        metric(
            "hookmesh_operator_config_publishes_total",
            "counter",
            "Server-side applies of the config Secret.",
            load(&self.publishes).to_string(),
        );
        metric(
            "hookmesh_operator_config_publish_errors_total",
            "counter",
            "Failed applies of the config Secret.",
            load(&self.publish_errors).to_string(),
        );
        metric(
            "hookmesh_operator_reconciles_total",
            "counter",
            "Object reconciles (status checks).",
            load(&self.reconciles).to_string(),
        );
        metric(
            "hookmesh_operator_status_patches_total",
            "counter",
            "Status patches sent.",
            load(&self.status_patches).to_string(),
        );
        metric(
            "hookmesh_operator_status_patch_errors_total",
            "counter",
            "Status patches that failed.",
            load(&self.status_patch_errors).to_string(),
        );
        metric(
            "hookmesh_operator_signing_secrets_created_total",
            "counter",
            "Endpoint signing Secrets generated.",
            load(&self.signing_secrets_created).to_string(),
        );
        metric(
            "hookmesh_operator_health_polls_total",
            "counter",
            "Polls of the data plane's per-endpoint health.",
            load(&self.health_polls).to_string(),
        );
        metric(
            "hookmesh_operator_health_poll_errors_total",
            "counter",
            "Health polls that got no usable answer.",
            load(&self.health_poll_failures).to_string(),
        );
        metric(
            "hookmesh_operator_health_patches_total",
            "counter",
            "Endpoint status patches of the Healthy condition or the delivery record.",
            load(&self.health_patches).to_string(),
        );
        metric(
            "hookmesh_operator_problems",
            "gauge",
            "Objects left out of the config by the last compile.",
            load(&self.problems).to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP hookmesh_operator_objects Objects in the last compile.\n# TYPE hookmesh_operator_objects gauge\n\
             hookmesh_operator_objects{{kind=\"Source\"}} {}\nhookmesh_operator_objects{{kind=\"Endpoint\"}} {}\n\
             hookmesh_operator_objects{{kind=\"Subscription\"}} {}",
            load(&self.sources),
            load(&self.endpoints),
            load(&self.subscriptions)
        );
        let hash = self.hash();
        if !hash.is_empty() {
            let _ = writeln!(
                out,
                "# HELP hookmesh_operator_config_info The config hash last published.\n# TYPE hookmesh_operator_config_info gauge\n\
                 hookmesh_operator_config_info{{hash=\"{hash}\"}} 1"
            );
        }
        out
    }
}
