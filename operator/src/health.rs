//! Receiver health where cluster admins look: each Endpoint's `Healthy` condition, its
//! `status.delivery` record, and Kubernetes Events when a circuit opens or closes and when
//! deliveries are dead-lettered.
//!
//! The leader polls the data plane's `GET /internal/v1/endpoints` (peer token; any pod answers
//! for the whole set, like the REST API's listings) every `interval`, and for each Endpoint:
//! - decides the condition from the set's health ([`desired`]): `CircuitOpen`, `Failing` and
//!   `Paused` are `False`, `Delivering` is `True`; an endpoint no pod has attempted yet keeps
//!   what it had, so a data-plane restart changes nothing;
//! - patches status only when the condition changes, at most once per `min_interval` per
//!   Endpoint (a flapping receiver shows its latest state, not every flap), and refreshes the
//!   record alone at most once per `resync` ([`decide`]);
//! - records Events from what changed on each pod since the last poll ([`events`]): openings
//!   are counted by the pods, so one that opened and closed between two polls is still seen;
//!   dead-letters come as one Event per pod and poll with their count.
//!
//! The Events are the operator's, not the data plane's: the data plane faces the internet, and
//! recording Events on Endpoints would mean a grant in every namespace that has one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookmesh_api::resources::{DeliveryHealth, HEALTHY};
use hookmesh_api::Endpoint;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{Timestamp, Unit};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource as _;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::status;

/// The route every data-plane pod serves for this.
pub const PATH: &str = "/internal/v1/endpoints";
/// Largest report read (a few hundred bytes per endpoint and pod).
const MAX_REPORT: usize = 32 * 1024 * 1024;
/// Longest condition message kept (the last error is a line, not a body).
const MAX_MESSAGE: usize = 1024;

/// Where the data plane is and how often to ask it (the operator's `--dataplane-*` flags).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Base URL of the data-plane Service (`http://hookmesh-dataplane.hookmesh:8080`).
    pub url: String,
    /// The peer token the data plane's internal routes take.
    pub token: String,
    pub interval: Duration,
    /// Least time between two status patches of one Endpoint.
    pub min_interval: Duration,
    /// Least time between two refreshes of `status.delivery` while the condition holds.
    pub resync: Duration,
}

/// The part of the data plane's answer read here.
#[derive(Clone, Debug, Deserialize)]
pub struct Report {
    pub data: Vec<EndpointReport>,
    #[serde(default)]
    pub partial: bool,
    #[serde(default)]
    pub missing_peers: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct EndpointReport {
    pub namespace: String,
    pub name: String,
    /// The set's health (worst state, longest run, windows added up).
    pub health: Health,
    #[serde(default)]
    pub pods: Vec<PodReport>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Health {
    pub state: String,
    pub consecutive_failures: u32,
    pub success_rate_percent: Option<u8>,
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
    pub last_success_at: Option<u64>,
    #[serde(default)]
    pub circuit_opened: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PodReport {
    pub node: u16,
    pub counters: PodCounters,
    pub health: Health,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PodCounters {
    #[serde(default)]
    pub dead_lettered: u64,
}

/// The `Healthy` condition's three parts the operator decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

fn with_last_error(text: &str, h: &Health) -> String {
    match &h.last_error {
        Some(e) => status::truncate(&format!("{text}; last error: {e}"), MAX_MESSAGE),
        None => text.to_string(),
    }
}

/// The condition the set's health calls for; `None` when no pod has attempted the endpoint.
/// Messages leave out counts that move with every attempt, so a steady state is one patch.
pub fn desired(namespace: &str, name: &str, h: &Health) -> Option<Verdict> {
    let v = match h.state.as_str() {
        "healthy" => Verdict {
            status: "True",
            reason: "Delivering",
            message: "the receiver takes deliveries".into(),
        },
        "failing" => Verdict {
            status: "False",
            reason: "Failing",
            message: with_last_error("attempts are failing in a row", h),
        },
        "circuit_open" => Verdict {
            status: "False",
            reason: "CircuitOpen",
            message: with_last_error(
                "the circuit is open: deliveries wait while the receiver is probed",
                h,
            ),
        },
        "paused" => Verdict {
            status: "False",
            reason: "Paused",
            message: format!(
                "the receiver answered 410 Gone: deliveries are held until POST /api/v1/endpoints/{namespace}/{name}/resume"
            ),
        },
        _ => return None,
    };
    Some(v)
}

fn rfc3339(ms: u64) -> Option<String> {
    let t = Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()?;
    Some(t.round(Unit::Second).ok()?.to_string())
}

/// `status.delivery` for the set's health.
pub fn record(h: &Health) -> DeliveryHealth {
    DeliveryHealth {
        success_rate_percent: h.success_rate_percent.map(i32::from),
        consecutive_failures: i32::try_from(h.consecutive_failures).unwrap_or(i32::MAX),
        last_error: h.last_error.clone(),
        last_error_time: h.last_error_at.and_then(rfc3339),
        last_success_time: h.last_success_at.and_then(rfc3339),
    }
}

/// What to write, if anything, for one Endpoint.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Nothing differs, or the last patch is too recent.
    Wait,
    /// The condition changes (with the record of that moment).
    Condition(Verdict),
    /// The condition holds; the record is refreshed.
    Record,
}

/// Patch when the condition differs and the last patch is at least `min_interval` old; refresh
/// the record alone when it differs and the last patch is at least `resync` old.
pub fn decide(
    current: Option<&Condition>,
    current_record: Option<&DeliveryHealth>,
    want: Option<Verdict>,
    want_record: &DeliveryHealth,
    since_last_patch: Option<Duration>,
    s: &Settings,
) -> Decision {
    let Some(want) = want else {
        return Decision::Wait;
    };
    let old_enough = |d: Duration| since_last_patch.is_none_or(|t| t >= d);
    let same = current.is_some_and(|c| {
        c.status == want.status && c.reason == want.reason && c.message == want.message
    });
    if !same {
        return match old_enough(s.min_interval) {
            true => Decision::Condition(want),
            false => Decision::Wait,
        };
    }
    if current_record != Some(want_record) && old_enough(s.resync) {
        return Decision::Record;
    }
    Decision::Wait
}

/// The merge patch of `/status` for `decision`: every other condition as it is. It is sent
/// [`status::guarded`], so that a concurrent write of the Ready condition is not undone (the
/// loser retries on its next round).
pub fn status_patch(
    ep: &Endpoint,
    decision: &Decision,
    want_record: &DeliveryHealth,
    now: &Time,
) -> Option<Value> {
    let current = ep.status.clone().unwrap_or_default();
    let conditions = current.common.conditions;
    let healthy = conditions.iter().find(|c| c.type_ == HEALTHY);
    let mut out: Vec<Condition> = conditions
        .iter()
        .filter(|c| c.type_ != HEALTHY)
        .cloned()
        .collect();
    match decision {
        Decision::Wait => return None,
        Decision::Record => out.extend(healthy.cloned()),
        Decision::Condition(v) => out.push(Condition {
            type_: HEALTHY.to_string(),
            status: v.status.to_string(),
            reason: v.reason.to_string(),
            message: v.message.clone(),
            observed_generation: ep.metadata.generation,
            last_transition_time: match healthy {
                Some(c) if c.status == v.status => c.last_transition_time.clone(),
                _ => now.clone(),
            },
        }),
    }
    Some(json!({
        "status": { "conditions": out, "delivery": want_record },
    }))
}

/// What the last poll saw of one endpoint on one pod.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodSeen {
    circuit_opened: u64,
    dead_lettered: u64,
    open: bool,
}

/// An Event to record on the Endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// The Events for one pod's view since `before` (none the first time a pod is seen: an
/// operator that starts does not replay history). A counter lower than before is a restarted
/// pod: what it counted since is news.
pub fn events(before: Option<PodSeen>, pod: &PodReport) -> (PodSeen, Vec<Notice>) {
    let h = &pod.health;
    let now = PodSeen {
        circuit_opened: h.circuit_opened,
        dead_lettered: pod.counters.dead_lettered,
        open: h.state == "circuit_open",
    };
    let Some(before) = before else {
        return (now, Vec::new());
    };
    let since = |was: u64, is: u64| if is >= was { is - was } else { is };
    let last_error = h
        .last_error
        .as_deref()
        .map(|e| format!("; last error: {e}"))
        .unwrap_or_default();
    let mut out = Vec::new();
    let opened = since(before.circuit_opened, now.circuit_opened);
    if opened > 0 {
        let times = if opened == 1 {
            String::new()
        } else {
            format!(" {opened} times")
        };
        out.push(Notice {
            warning: true,
            reason: "CircuitOpened",
            note: format!(
                "circuit opened{times} on data-plane node {}: deliveries wait while the receiver is probed{last_error}",
                pod.node
            ),
        });
    }
    if (before.open || opened > 0) && !now.open && h.state != "paused" {
        out.push(Notice {
            warning: false,
            reason: "CircuitClosed",
            note: format!(
                "circuit closed on data-plane node {}: the receiver answered a probe",
                pod.node
            ),
        });
    }
    let dead = since(before.dead_lettered, now.dead_lettered);
    if dead > 0 {
        out.push(Notice {
            warning: true,
            reason: "DeadLettered",
            note: format!(
                "{dead} deliveries dead-lettered on data-plane node {} since the last check{last_error}",
                pod.node
            ),
        });
    }
    (now, out)
}

/// Per Endpoint: when status was last patched, and each pod as last seen.
#[derive(Default)]
struct Memory {
    last_patch: Option<Instant>,
    pods: HashMap<u16, PodSeen>,
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("cannot reach the data plane at {0}: {1}")]
    Unreachable(String, String),
    #[error("the data plane answered {0}: {1}")]
    Status(u16, String),
    #[error("the data plane's report is unreadable: {0}")]
    Invalid(String),
}

/// Ask the data plane for every endpoint's health.
pub async fn poll(
    http: &HttpClient<HttpConnector, Full<Bytes>>,
    s: &Settings,
) -> Result<Report, PollError> {
    let url = format!("{}{PATH}", s.url.trim_end_matches('/'));
    let req = http::Request::get(&url)
        .header(http::header::AUTHORIZATION, format!("Bearer {}", s.token))
        .body(Full::new(Bytes::new()))
        .map_err(|e| PollError::Invalid(e.to_string()))?;
    let exchange = async {
        let resp = http
            .request(req)
            .await
            .map_err(|e| PollError::Unreachable(url.clone(), e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_REPORT)
            .collect()
            .await
            .map_err(|e| PollError::Invalid(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            let why = String::from_utf8_lossy(&body).chars().take(300).collect();
            return Err(PollError::Status(status.as_u16(), why));
        }
        serde_json::from_slice(&body).map_err(|e| PollError::Invalid(e.to_string()))
    };
    tokio::time::timeout(s.interval.max(Duration::from_secs(5)), exchange)
        .await
        .map_err(|_| PollError::Unreachable(url.clone(), "no answer in time".into()))?
}

/// Poll and write until dropped (the leader runs it beside the controllers).
pub async fn run(
    client: kube::Client,
    endpoints: Store<Endpoint>,
    recorder: Recorder,
    metrics: std::sync::Arc<Metrics>,
    s: Settings,
) {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let http = HttpClient::builder(TokioExecutor::new()).build(connector);
    let mut memory: HashMap<(String, String), Memory> = HashMap::new();
    let mut tick = tokio::time::interval(s.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(url = %s.url, interval_ms = s.interval.as_millis() as u64, "reading endpoint health from the data plane");
    let mut was_failing = false;
    loop {
        tick.tick().await;
        Metrics::inc(&metrics.health_polls);
        let report = match poll(&http, &s).await {
            Ok(r) => {
                if was_failing {
                    info!("the data plane answers the health poll again");
                }
                was_failing = false;
                r
            }
            Err(e) => {
                Metrics::inc(&metrics.health_poll_failures);
                // Status stays as it was: an unreachable data plane says nothing of receivers.
                if !was_failing {
                    warn!(error = %e, "cannot read endpoint health; Endpoint status is left as it is");
                }
                was_failing = true;
                continue;
            }
        };
        if report.partial {
            debug!(missing = ?report.missing_peers, "health report without some pods");
        }
        let mut seen = Vec::with_capacity(report.data.len());
        for ep_report in &report.data {
            let key = (ep_report.namespace.clone(), ep_report.name.clone());
            let Some(ep) = endpoints.get(&ObjectRef::new(&key.1).within(&key.0)) else {
                continue;
            };
            let mem = memory.entry(key.clone()).or_default();
            seen.push(key);
            if write_one(&client, &recorder, &ep, ep_report, mem, &s).await {
                Metrics::inc(&metrics.health_patches);
            }
        }
        memory.retain(|k, _| seen.contains(k));
    }
}

async fn write_one(
    client: &kube::Client,
    recorder: &Recorder,
    ep: &Endpoint,
    r: &EndpointReport,
    mem: &mut Memory,
    s: &Settings,
) -> bool {
    let reference = ep.object_ref(&());
    for pod in &r.pods {
        let (now, notices) = events(mem.pods.get(&pod.node).copied(), pod);
        mem.pods.insert(pod.node, now);
        for n in notices {
            let event = Event {
                type_: if n.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: n.reason.into(),
                note: Some(n.note),
                action: "Deliver".into(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&event, &reference).await {
                warn!(namespace = %r.namespace, endpoint = %r.name, error = %e, "cannot record an Event");
            }
        }
    }
    let status = ep.status.clone().unwrap_or_default();
    let want_record = record(&r.health);
    let decision = decide(
        status.common.conditions.iter().find(|c| c.type_ == HEALTHY),
        status.delivery.as_ref(),
        desired(&r.namespace, &r.name, &r.health),
        &want_record,
        mem.last_patch.map(|t| t.elapsed()),
        s,
    );
    let now = Time(Timestamp::now());
    let Some(patch) = status_patch(ep, &decision, &want_record, &now) else {
        return false;
    };
    match status::patch_status(client.clone(), ep, &patch).await {
        Ok(_) => {
            mem.last_patch = Some(Instant::now());
            if let Decision::Condition(v) = &decision {
                info!(namespace = %r.namespace, endpoint = %r.name, healthy = v.status, reason = v.reason, "Healthy condition changed");
            }
            true
        }
        // Someone wrote in between (the Ready condition): the next round sees their write.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            debug!(namespace = %r.namespace, endpoint = %r.name, "status changed under the health patch; next round");
            false
        }
        Err(e) => {
            warn!(namespace = %r.namespace, endpoint = %r.name, error = %e, "cannot patch the Endpoint's health");
            false
        }
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
