use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// RFC 1123 subdomain: the shape of every Kubernetes object name.
pub const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// HTTP header field name (RFC 9110 token).
pub const HEADER_NAME_PATTERN: &str = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
/// RFC 6901 JSON pointer into a request body (the empty pointer is the whole document).
pub const JSON_POINTER_PATTERN: &str = r"^(/([^~/]|~[01])*)*$";

/// A key of a Secret in the object's own namespace. Secrets are referenced, never inline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret (same namespace as the referencing object).
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// Key inside the Secret's `data`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Status shared by every kind: what generation was observed and the standard conditions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard Kubernetes conditions; `Ready` says whether the object is live in the gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The condition type every hookmesh object carries.
pub const READY: &str = "Ready";
/// The Endpoint condition that says whether its receiver takes deliveries (written from the
/// data plane's per-endpoint health).
pub const HEALTHY: &str = "Healthy";
