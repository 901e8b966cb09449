use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, SecretKeyRef};
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

/// Retries with exponential backoff and full jitter (jitter is always on).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Attempts including the first (default 8).
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
}
