use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, SecretKeyRef, HEADER_NAME_PATTERN};
use super::source::{HmacAlgorithm, SignatureEncoding};
use crate::duration;

/// A destination that receives events as signed HTTP POSTs.
// Several printcolumns repeat `type_ = "string"`; clippy reads that as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hookmesh.io",
    version = "v1alpha1",
    kind = "Endpoint",
    namespaced,
    status = "EndpointStatus",
    shortname = "hmep",
    category = "hookmesh",
    doc = "A webhook destination",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(
        name = "Subscriptions",
        type_ = "integer",
        json_path = ".status.subscriptions"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Healthy",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Healthy\")].status"
    ),
    printcolumn(
        name = "Health",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Healthy\")].reason"
    ),
    printcolumn(
        name = "Success",
        type_ = "integer",
        json_path = ".status.delivery.successRatePercent",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSpec {
    /// Where deliveries are POSTed (http or https).
    #[schemars(
        length(min = 8, max = 2048),
        regex(pattern = r"^https?://[^\s/?#]+([/?#]\S*)?$")
    )]
    pub url: String,
    /// Secret key with the outgoing signing secret (Standard Webhooks `whsec_...`). When absent,
    /// the Secret `<endpoint>-signing` (key `secret`) is used; the operator creates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// A previous signing secret, still signed with (beside the current one) until
    /// `expiresAt`: rotate a receiver's key without a moment where its deliveries fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_ref: Option<PreviousSecretRef>,
    /// How deliveries are signed (default: Standard Webhooks, `webhook-*` headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<Signing>,
    /// The HTTP shape of a delivery: `raw` (default: the payload as received), or the
    /// CloudEvents 1.0 HTTP binding, `cloudevents-binary` or `cloudevents-structured`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DeliveryFormat>,
    /// Extra headers sent with every delivery.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[!#$%&\\'*+.^_`|~0-9A-Za-z-]+$') && !k.lowerAscii().startsWith('webhook-'))").message("header names must be HTTP tokens and must not start with webhook-"))]
    #[schemars(extend("maxProperties" = 32))]
    pub headers: BTreeMap<String, String>,
    /// Per-attempt timeout in seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 300))]
    pub timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// A disabled endpoint keeps its deliveries queued and sends nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// The workload whose sidecar delivers to this Endpoint (typically its own container, at
    /// `http://localhost:PORT/...`). Absent: the central gateway does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub workload: Option<String>,
}

/// A signing secret on its way out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviousSecretRef {
    /// Name of the Secret (same namespace).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Key inside the Secret's `data`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
    /// When deliveries stop carrying its signature (RFC 3339, e.g. `2026-12-31T00:00:00Z`).
    #[schemars(
        length(min = 20, max = 40),
        regex(
            pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
        )
    )]
    pub expires_at: String,
}

/// How a delivery is signed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.profile == 'hmac' ? has(self.hmac) : !has(self.hmac)").message("hmac settings are required for profile hmac and only allowed there"))]
#[x_kube(validation = Rule::new("!has(self.headerNames) || self.profile == 'standard-webhooks'").message("headerNames is for profile standard-webhooks"))]
#[x_kube(validation = Rule::new("!has(self.algorithm) || self.profile == 'standard-webhooks'").message("algorithm is for profile standard-webhooks (hmac has hmac.algorithm)"))]
pub struct Signing {
    pub profile: SigningProfile,
    /// Standard Webhooks: `hmac-sha256` (`v1`, a shared `whsec_` secret; the default) or
    /// `ed25519` (`v1a`, an asymmetric `whsk_` secret key; receivers verify with the public
    /// key shown in the Endpoint's `status.publicKey`, and hold no secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<StandardWebhooksAlgorithm>,
    /// Standard Webhooks: `webhook` (`webhook-id`, `webhook-timestamp`, `webhook-signature`;
    /// the default) or `svix` (`svix-id`, ...), for receivers built on Svix's libraries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_names: Option<HeaderNames>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac: Option<HmacSigning>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SigningProfile {
    StandardWebhooks,
    Hmac,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StandardWebhooksAlgorithm {
    HmacSha256,
    Ed25519,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HeaderNames {
    Webhook,
    Svix,
}

/// One header carrying an HMAC of the delivery, as many receivers verify (GitHub-style
/// `X-Hub-Signature-256: sha256=<hex>`, or a Stripe-style `t=<ts>,v1=<hex>` through `prefix`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.signedContent) || self.signedContent.contains('{body}')").message("signedContent must contain {body}"))]
pub struct HmacSigning {
    /// The signature's header, e.g. `X-Signature`.
    #[schemars(length(min = 1, max = 256), regex(pattern = HEADER_NAME_PATTERN))]
    pub header: String,
    #[serde(default)]
    pub algorithm: HmacAlgorithm,
    #[serde(default)]
    pub encoding: SignatureEncoding,
    /// Text before the signature, e.g. `sha256=`; `{timestamp}` in it is replaced (Stripe-style
    /// `t={timestamp},v1=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub prefix: Option<String>,
    /// What is signed: `{body}` (default), `{timestamp}.{body}` or `{id}.{timestamp}.{body}`
    /// (`{id}` is the event id, `{timestamp}` unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub signed_content: Option<String>,
    /// Also send the timestamp in this header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = HEADER_NAME_PATTERN))]
    pub timestamp_header: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryFormat {
    Raw,
    CloudeventsBinary,
    CloudeventsStructured,
}

/// When failed deliveries are tried again. Two forms: an explicit `schedule` of delays, or the
/// exponential form (`initialBackoff`, `maxBackoff`, `multiplier`). With neither, the default
/// schedule `5s, 5m, 30m, 2h, 5h, 10h, 10h` (about 27.6 hours, 8 attempts). Every delay is
/// jittered to between 80% and 120% of itself.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.schedule) || (!has(self.initialBackoff) && !has(self.maxBackoff) && !has(self.multiplier))").message("retry.schedule replaces initialBackoff, maxBackoff and multiplier: give one form"))]
pub struct RetryPolicy {
    /// Attempts including the first (default: one more than the schedule's delays, 8 for the
    /// exponential form). With a schedule, its last delay repeats until this many attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: Option<u32>,
    /// Backoff before the second attempt (default `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = duration::PATTERN))]
    pub initial_backoff: Option<String>,
    /// Cap on any one backoff (default `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = duration::PATTERN))]
    pub max_backoff: Option<String>,
    /// Growth factor between backoffs (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 10.0))]
    pub multiplier: Option<f64>,
    /// The delay before each retry, in order (e.g. `[10s, 1m, 10m, 1h]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 50), inner(length(max = 32), regex(pattern = duration::PATTERN)))]
    pub schedule: Option<Vec<String>>,
    /// Dead-letter a delivery this long after it was created, even with attempts left (e.g.
    /// `3d`). Default: no limit but the attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = duration::PATTERN))]
    pub max_age: Option<String>,
    /// The longest `Retry-After` (on 429 and 503) that is honoured (default `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = duration::PATTERN))]
    pub max_retry_after: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Deliveries started per second at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000))]
    pub per_second: Option<u32>,
    /// Deliveries in flight at once at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10_000))]
    pub max_in_flight: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Number of ready Subscriptions routing to this endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<i32>,
    /// With `signing.algorithm: ed25519`: the public key receivers verify with (`whpk_...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// What the data plane's recent attempts say about the receiver, as of the last change of
    /// the `Healthy` condition (refreshed at most every few minutes otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryHealth>,
}

/// The receiver's recent record, added up over the data-plane pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryHealth {
    /// Share of the attempts of the last five minutes that got a 2xx; absent without attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub success_rate_percent: Option<i32>,
    /// Attempts in a row that failed, on the pod with the longest run.
    pub consecutive_failures: i32,
    /// How the latest failed attempt failed (`HTTP 503`, `timed out after 10000 ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<String>,
}
