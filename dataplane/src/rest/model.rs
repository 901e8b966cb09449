//! What the REST API answers with. Records of the store are mapped here, so the wire shape is
//! declared once (and described by the OpenAPI document from these very types). No secret is in
//! any of them: API keys, signing and verification secrets stay out, and so do the header values
//! that usually carry credentials.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::params::rfc3339;
use crate::deliver::health::EndpointHealth;
use crate::store::{AttemptRecord, DeliveryRecord, EventRecord, Origin, Payload};

#[derive(Serialize, ToSchema)]
pub struct Pagination {
    pub limit: usize,
    pub has_more: bool,
    /// Pass as `cursor` (with the same filters) for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// An event's metadata.
#[derive(Serialize, ToSchema)]
pub struct EventView {
    /// `evt_` + a ULID.
    #[schema(example = "evt_01HZX5B1Y0M4S1T3C6E8R9K2QW")]
    pub id: String,
    pub namespace: String,
    pub source: String,
    pub event_type: Option<String>,
    /// `webhook` (from a provider) or `publish` (`POST /api/v1/events`).
    #[schema(value_type = String, example = "webhook")]
    pub origin: &'static str,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub received_at: String,
    /// `pending`, `delivered`, `partial`, `failed`, `dead_letter` or `unrouted`.
    #[schema(value_type = String, example = "pending")]
    pub status: &'static str,
    /// `null` when the source verifies nothing.
    pub signature_valid: Option<bool>,
    /// Why verification failed (audit mode), e.g. `SIGNATURE_INVALID`.
    pub signature_error: Option<String>,
    pub idempotency_key: Option<String>,
    pub content_type: Option<String>,
    pub body_size: u64,
    pub correlation_id: String,
    /// The payload was removed by retention; metadata remains.
    pub payload_expired: bool,
    /// Hash of the config that routed the event.
    pub config_hash: String,
    pub delivery_count: usize,
}

impl From<&EventRecord> for EventView {
    fn from(e: &EventRecord) -> Self {
        EventView {
            id: e.id.to_string(),
            namespace: e.namespace.clone(),
            source: e.source.clone(),
            event_type: e.event_type.clone(),
            origin: match e.origin {
                Origin::Webhook => "webhook",
                Origin::Publish => "publish",
            },
            received_at: rfc3339(e.received_at),
            status: e.status.as_str(),
            signature_valid: e.signature_valid,
            signature_error: e.signature_error.clone(),
            idempotency_key: e.idempotency_key.clone(),
            content_type: e.content_type.clone(),
            body_size: e.body_len,
            correlation_id: e.correlation_id.clone(),
            payload_expired: e.payload_expired,
            config_hash: e.config_hash.clone(),
            delivery_count: e.delivery_ids.len(),
        }
    }
}

/// The request as received: headers (credentials redacted) and the body.
#[derive(Serialize, ToSchema)]
pub struct PayloadView {
    /// Header name and value pairs in the order received; `authorization`, `x-api-key`,
    /// `cookie` and `proxy-authorization` values are replaced by `[redacted]`.
    pub headers: Vec<HeaderPair>,
    /// `utf8` (body is the text) or `base64` (body is the bytes, base64-encoded).
    #[schema(value_type = String, example = "utf8")]
    pub encoding: &'static str,
    pub body: String,
}

#[derive(Serialize, ToSchema)]
pub struct HeaderPair {
    pub name: String,
    pub value: String,
}

/// Header names whose values are credentials, never shown.
const REDACTED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "cookie",
];

impl From<&Payload> for PayloadView {
    fn from(p: &Payload) -> Self {
        use base64::Engine as _;
        let headers = p
            .headers
            .iter()
            .map(|(name, value)| HeaderPair {
                name: name.clone(),
                value: if REDACTED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    "[redacted]".to_string()
                } else {
                    String::from_utf8_lossy(value).into_owned()
                },
            })
            .collect();
        match std::str::from_utf8(&p.body) {
            Ok(text) => PayloadView {
                headers,
                encoding: "utf8",
                body: text.to_string(),
            },
            Err(_) => PayloadView {
                headers,
                encoding: "base64",
                body: base64::engine::general_purpose::STANDARD.encode(&p.body),
            },
        }
    }
}

/// `GET /events/{id}`: the event, plus what `include` asked for.
#[derive(Serialize, ToSchema)]
pub struct EventDetail {
    #[serde(flatten)]
    pub event: EventView,
    /// With `include=payload`, unless the payload expired (see `payload_expired`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<PayloadView>,
    /// With `include=deliveries`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<Vec<DeliveryView>>,
}

#[derive(Serialize, ToSchema)]
pub struct EventPage {
    pub data: Vec<EventView>,
    pub pagination: Pagination,
    #[serde(flatten)]
    pub coverage: Coverage,
}

/// One delivery of an event to an endpoint.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    /// `dlv_` + a ULID.
    #[schema(example = "dlv_01HZX5B1Y0M4S1T3C6E8R9K2QX")]
    pub id: String,
    pub event_id: String,
    pub namespace: String,
    pub endpoint: String,
    /// The subscription that routed it; `null` for a replay aimed at an endpoint directly.
    pub subscription: Option<String>,
    /// `pending`, `in_flight`, `success`, `retrying`, `failed` or `dead_letter`.
    #[schema(value_type = String, example = "pending")]
    pub status: &'static str,
    pub attempt_count: u32,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// When the next attempt is due.
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
}

impl From<&DeliveryRecord> for DeliveryView {
    fn from(d: &DeliveryRecord) -> Self {
        DeliveryView {
            id: d.id.to_string(),
            event_id: d.event_id.to_string(),
            namespace: d.namespace.clone(),
            endpoint: d.endpoint.clone(),
            subscription: d.subscription.clone(),
            status: d.status.as_str(),
            attempt_count: d.attempts,
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
            next_attempt_at: d.next_attempt_at.map(rfc3339),
            last_status_code: d.last_status_code,
            last_error: d.last_error.clone(),
        }
    }
}

/// One HTTP attempt of a delivery.
#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    pub number: u32,
    #[schema(format = DateTime)]
    pub started_at: String,
    pub duration_ms: u64,
    pub status_code: Option<u16>,
    /// The first 4 KiB of the response body (invalid UTF-8 replaced).
    pub response_body: String,
    pub error: Option<String>,
}

impl From<&AttemptRecord> for AttemptView {
    fn from(a: &AttemptRecord) -> Self {
        AttemptView {
            number: a.number,
            started_at: rfc3339(a.started_at),
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            response_body: String::from_utf8_lossy(&a.response_body).into_owned(),
            error: a.error.clone(),
        }
    }
}

/// `GET /deliveries/{id}`: the delivery and every attempt.
#[derive(Serialize, ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: DeliveryView,
    pub attempts: Vec<AttemptView>,
    /// For a delivery to a subscription's dead-letter endpoint: the dead-lettered delivery it
    /// took on, and why that one gave up.
    pub dead_letter_of: Option<DeadLetterView>,
    /// For a dead-lettered delivery: the delivery that took its event to the dead-letter
    /// endpoint.
    pub forwarded_to: Option<String>,
}

/// The dead-lettered delivery behind a dead-letter delivery.
#[derive(Serialize, ToSchema)]
pub struct DeadLetterView {
    pub delivery_id: String,
    pub endpoint: String,
    /// Its last HTTP status, if it got one.
    pub status_code: Option<u16>,
    pub attempts: u32,
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    pub data: Vec<DeliveryView>,
    pub pagination: Pagination,
    #[serde(flatten)]
    pub coverage: Coverage,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub data: Vec<DeliveryView>,
}

/// One step in an event's life.
#[derive(Serialize, ToSchema)]
pub struct TimelineEntry {
    #[schema(format = DateTime)]
    pub at: String,
    /// `received`, `verified`, `verification_failed`, `stored`, `routed`, `unrouted`,
    /// `attempt`, `payload_expired`.
    pub kind: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Timeline {
    pub event_id: String,
    pub data: Vec<TimelineEntry>,
}

/// `POST /events/{id}/replay` body (optional).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Endpoint names in the event's namespace; absent: every endpoint the current routing
    /// sends this event to.
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct ReplayResult {
    pub event_id: String,
    /// The new deliveries, due now.
    pub deliveries: Vec<DeliveryView>,
}

/// `POST /events/bulk/replay` body: `ids`, or `filter` (the `GET /events` filters).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct BulkReplayRequest {
    /// 1 to 100 event ids.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 100)]
    pub ids: Option<Vec<String>>,
    #[serde(default)]
    pub filter: Option<BulkFilter>,
    /// Restrict the replay to these endpoints (as in the single replay).
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
    /// With `filter`: events per call, 1 to 100 (default 100).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// With `filter`: `next_cursor` of the previous call, to continue.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// The filters of `GET /events`, as JSON.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct BulkFilter {
    pub namespace: Option<String>,
    pub source: Option<String>,
    pub status: Option<String>,
    pub event_type: Option<String>,
    pub endpoint: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub search: Option<String>,
    pub signature_valid: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct BulkReplayResult {
    /// Events replayed.
    pub replayed: usize,
    pub results: Vec<ReplayResult>,
    /// Events that could not be replayed and why.
    pub errors: Vec<BulkReplayError>,
    /// With `filter`: more events match; call again with `cursor`.
    pub has_more: bool,
    pub next_cursor: Option<String>,
    #[serde(flatten)]
    pub coverage: Coverage,
}

#[derive(Serialize, ToSchema)]
pub struct BulkReplayError {
    pub event_id: String,
    pub code: String,
    pub message: String,
}

/// Live counters, since this pod started.
#[derive(Serialize, ToSchema)]
pub struct SourceCounters {
    pub received: u64,
}

#[derive(Serialize, ToSchema)]
pub struct SourceView {
    pub namespace: String,
    pub name: String,
    /// Where providers POST: `/e/{namespace}/{name}`.
    pub ingest_path: String,
    /// `standard-webhooks`, `stripe`, `github`, `shopify`, `slack`, `hmac` or `none`.
    pub verification: String,
    /// `enforce` or `audit`.
    pub mode: String,
    pub tolerance_seconds: u64,
    /// Ingest requires the source's own API key.
    pub requires_api_key: bool,
    pub max_body_bytes: u64,
    pub counters: SourceCounters,
}

#[derive(Serialize, ToSchema, Clone)]
pub struct EndpointCounters {
    /// Successful attempts.
    pub delivered: u64,
    /// Attempts that ended a delivery as failed (permanent refusal) or dead-lettered.
    pub failed: u64,
    /// Attempts that will be retried.
    pub retried: u64,
    /// Attempts that ended their delivery in the dead letters (also counted in `failed`).
    pub dead_lettered: u64,
}

#[derive(Serialize, ToSchema)]
pub struct RetryView {
    pub max_attempts: u32,
    /// `schedule` (the delays below, the last one repeating) or `exponential`.
    pub form: String,
    /// The schedule's delays before each retry; empty for the exponential form.
    pub schedule_ms: Vec<u64>,
    /// The exponential form's parameters; absent for a schedule.
    pub initial_backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
    pub multiplier: Option<f64>,
    /// Deliveries older than this are dead-lettered; absent: no limit but the attempts.
    pub max_age_ms: Option<u64>,
    /// The longest `Retry-After` honoured.
    pub max_retry_after_ms: u64,
}

#[derive(Serialize, ToSchema)]
pub struct EndpointView {
    pub namespace: String,
    pub name: String,
    /// The URL, with any password in it replaced by `redacted`.
    pub url: String,
    /// Names of the custom headers (values are not shown: they often hold credentials).
    pub header_names: Vec<String>,
    pub timeout_ms: u64,
    pub retry: RetryView,
    pub rate_limit_per_second: Option<u32>,
    pub max_in_flight: Option<u32>,
    pub disabled: bool,
    pub subscription_count: usize,
    /// `closed`, `open`, `half_open`, `paused` (the receiver answered 410 Gone; resume it with
    /// `POST .../resume`), or `unknown` when the delivery engine does not say; with several
    /// pods, the worst of theirs (`pods` has each one's).
    pub circuit: String,
    /// Added up over every pod.
    pub counters: EndpointCounters,
    /// What the recent attempts say about the receiver; with several pods, the worst state,
    /// the longest run of failures, the window added up and the latest error of the set.
    pub health: EndpointHealth,
    /// Each pod's own circuit state and counters, by node.
    pub pods: Vec<PodEndpointState>,
}

/// One pod's view of an endpoint.
#[derive(Serialize, ToSchema)]
pub struct PodEndpointState {
    pub node: u16,
    pub circuit: String,
    pub counters: EndpointCounters,
    pub health: EndpointHealth,
    /// When this pod paused the endpoint (a 410 Gone), and which delivery got that answer.
    pub paused: Option<PauseView>,
}

/// Why an endpoint is paused on a pod.
#[derive(Serialize, ToSchema, Clone)]
pub struct PauseView {
    /// Unix milliseconds.
    pub since: u64,
    pub reason: String,
    pub delivery_id: String,
}

/// With several pods: whether some did not answer, and which.
#[derive(Serialize, ToSchema, Default)]
pub struct Coverage {
    /// `true` when some pods did not answer in time: the answer holds what the others returned.
    pub partial: bool,
    /// The pods that did not answer, and why.
    pub missing_peers: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionView {
    pub namespace: String,
    pub name: String,
    pub endpoint: String,
    /// Source names; empty means every source of the namespace.
    pub sources: Vec<String>,
    /// Event type globs; empty means every type.
    pub event_types: Vec<String>,
    pub header_matchers: usize,
    pub body_matchers: usize,
    /// The header and body matchers in words, one per line: `header x-env = "prod"`,
    /// `body /type starts with "order."`, `any of: ...`, `not: ...`.
    pub filters: Vec<String>,
    /// The circuit state of the target endpoint.
    pub endpoint_circuit: String,
    /// Counters of the target endpoint (shared by every subscription to it).
    pub endpoint_counters: EndpointCounters,
}

#[derive(Serialize, ToSchema)]
pub struct SourceList {
    pub config_hash: String,
    pub data: Vec<SourceView>,
    #[serde(flatten)]
    pub coverage: Coverage,
}

#[derive(Serialize, ToSchema)]
pub struct EndpointList {
    pub config_hash: String,
    pub data: Vec<EndpointView>,
    /// With `limit`: where this page ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
    #[serde(flatten)]
    pub coverage: Coverage,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionList {
    pub config_hash: String,
    pub data: Vec<SubscriptionView>,
    /// With `limit`: where this page ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
    #[serde(flatten)]
    pub coverage: Coverage,
}
