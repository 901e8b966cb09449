use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, SecretKeyRef, HEADER_NAME_PATTERN, JSON_POINTER_PATTERN};
use crate::duration;

/// An ingest point: `POST /e/{namespace}/{name}` on every data-plane pod.
// Several printcolumns repeat `type_ = "string"`; clippy reads that as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hookmesh.io",
    version = "v1alpha1",
    kind = "Source",
    namespaced,
    status = "SourceStatus",
    shortname = "hmsrc",
    category = "hookmesh",
    doc = "A webhook ingest point with signature verification",
    printcolumn(
        name = "Scheme",
        type_ = "string",
        json_path = ".spec.verification.scheme"
    ),
    printcolumn(name = "Path", type_ = "string", json_path = ".status.ingestPath"),
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
pub struct SourceSpec {
    /// How incoming requests are authenticated by signature.
    pub verification: Verification,
    /// Optional API key required on ingest (`Authorization: Bearer` or `X-API-Key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<SourceAuth>,
    /// Where the event type comes from; defaults per scheme (GitHub `X-GitHub-Event`, Stripe `/type`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<FieldRef>,
    /// Duplicate detection by a provider delivery id; defaults per scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<Idempotency>,
    /// Largest accepted body in bytes (default 1 MiB, at most 64 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 67_108_864))]
    pub max_body_bytes: Option<u64>,
    /// The workload whose sidecar serves this Source (its Pods' `hookmesh.io/workload`
    /// annotation, else their `app.kubernetes.io/name` or `app` label). Absent: the central
    /// gateway serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub workload: Option<String>,
}

/// Signature verification of incoming requests.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.scheme == 'none' || has(self.secretRef)").message("secretRef is required unless scheme is none"),
    validation = Rule::new("self.scheme == 'hmac' ? has(self.hmac) : !has(self.hmac)").message("hmac settings are required for scheme hmac and only allowed there")
)]
pub struct Verification {
    /// Signature scheme of the sending provider.
    pub scheme: Scheme,
    /// Secret key holding the signing secret (Standard Webhooks: the `whsec_...` string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Largest accepted difference between the signed timestamp and now (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86_400))]
    pub tolerance_seconds: Option<u32>,
    /// `enforce` rejects bad signatures with 401; `audit` stores them flagged `signature_valid=false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = verify_mode_schema)]
    pub mode: Option<VerifyMode>,
    /// Settings of the generic `hmac` scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac: Option<GenericHmac>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    StandardWebhooks,
    Stripe,
    Github,
    Shopify,
    Slack,
    Hmac,
    None,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyMode {
    #[default]
    Enforce,
    Audit,
}

/// The schema of `verification.mode`. schemars makes an `Option<Enum>` nullable with `null`
/// among the enum values; kube-apiserver then lists "null" as a supported value yet refuses
/// both `null` and `"null"` (an enum field is checked against the enum even when nullable).
/// With a default instead, the API server prunes an explicit `null` and fills in the default,
/// so absent, `null` and `enforce` all mean the same in a cluster, as they do standalone.
fn verify_mode_schema(schema: &mut schemars::Schema) {
    use serde_json::Value;
    if let Some(Value::Array(values)) = schema.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    // schemars says "may be null" as `type: [T, "null"]`; kube turns that into `nullable`.
    if let Some(Value::Array(types)) = schema.get("type") {
        let types: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        let collapsed = match types.as_slice() {
            [one] => one.clone(),
            _ => Value::Array(types),
        };
        schema.insert("type".into(), collapsed);
    }
    schema.remove("nullable");
    if let Ok(default) = serde_json::to_value(VerifyMode::default()) {
        schema.insert("default".into(), default);
    }
}

/// The generic HMAC scheme for providers without a named one.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.signedContent) || self.signedContent.contains('{body}')").message("signedContent must contain {body}"))]
#[x_kube(validation = Rule::new("!has(self.signedContent) || !self.signedContent.contains('{timestamp}') || has(self.timestampHeader)").message("signedContent uses {timestamp} but timestampHeader is not set"))]
pub struct GenericHmac {
    /// Header carrying the signature.
    #[schemars(length(min = 1, max = 256), regex(pattern = HEADER_NAME_PATTERN))]
    pub header: String,
    /// How the digest is written in the header.
    #[serde(default)]
    pub encoding: SignatureEncoding,
    /// Text before the digest in the header, e.g. `sha256=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub prefix: Option<String>,
    #[serde(default)]
    pub algorithm: HmacAlgorithm,
    /// Header carrying a unix timestamp (seconds); checked against `toleranceSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = HEADER_NAME_PATTERN))]
    pub timestamp_header: Option<String>,
    /// What is signed, with `{body}` and `{timestamp}` placeholders (default `{body}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub signed_content: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    #[default]
    Sha256,
    Sha512,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceAuth {
    /// Secret key holding the API key callers must present.
    pub api_key_secret_ref: SecretKeyRef,
}

/// A value taken from the request: a header, or a JSON pointer into the body. Exactly one.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.header) != has(self.jsonPointer)").message("set exactly one of header and jsonPointer"))]
pub struct FieldRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = HEADER_NAME_PATTERN))]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512), regex(pattern = JSON_POINTER_PATTERN))]
    pub json_pointer: Option<String>,
}

/// Duplicate detection. Without `header`/`jsonPointer` the scheme's default id is used.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.header) && has(self.jsonPointer))").message("set at most one of header and jsonPointer"))]
#[x_kube(validation = Rule::new("!(has(self.disabled) && self.disabled && (has(self.header) || has(self.jsonPointer)))").message("a disabled idempotency check takes no header or jsonPointer"))]
pub struct Idempotency {
    /// Turn duplicate detection off, even where the scheme has a default id.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = HEADER_NAME_PATTERN))]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512), regex(pattern = JSON_POINTER_PATTERN))]
    pub json_pointer: Option<String>,
    /// How long a key is remembered (default `24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = duration::PATTERN))]
    pub window: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Path on every data-plane pod where this source receives webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_path: Option<String>,
}
