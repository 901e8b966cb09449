//! The compiled, self-contained configuration a data-plane pod runs on.
//!
//! Everything is resolved: secret bytes, defaults, parsed durations, compiled filters. The data
//! plane never looks at a custom resource. Serialized as JSON into the config Secret; the `hash`
//! identifies the content so `/readyz` and the REST API can say which config is live.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::resources::{HmacAlgorithm, SignatureEncoding, VerifyMode};

/// Key of the config Secret's `data` that holds the JSON-encoded [`GatewayConfig`].
pub const CONFIG_SECRET_KEY: &str = "config.json";

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct GatewayConfig {
    /// `sha256:` + hex digest of the canonical JSON of everything below.
    pub hash: String,
    /// Sorted by (namespace, name), as are the other lists.
    pub sources: Vec<SourceConfig>,
    pub endpoints: Vec<EndpointConfig>,
    pub subscriptions: Vec<SubscriptionConfig>,
    /// REST API keys (Secrets labelled `hookmesh.io/api-key: "true"`).
    pub api_keys: Vec<ApiKeyConfig>,
}

impl GatewayConfig {
    pub fn source(&self, namespace: &str, name: &str) -> Option<&SourceConfig> {
        self.sources
            .binary_search_by(|s| (s.namespace.as_str(), s.name.as_str()).cmp(&(namespace, name)))
            .ok()
            .map(|i| &self.sources[i])
    }

    pub fn endpoint(&self, namespace: &str, name: &str) -> Option<&EndpointConfig> {
        self.endpoints
            .binary_search_by(|e| (e.namespace.as_str(), e.name.as_str()).cmp(&(namespace, name)))
            .ok()
            .map(|i| &self.endpoints[i])
    }
}

/// Secret material. Never printed: `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(pub Vec<u8>);

impl SecretBytes {
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(SecretBytes)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SourceConfig {
    pub namespace: String,
    pub name: String,
    pub verification: Verifier,
    pub mode: VerifyMode,
    pub tolerance_seconds: u64,
    /// API key callers must present on ingest, if any.
    pub api_key: Option<SecretBytes>,
    pub event_type: Option<FieldRule>,
    pub idempotency: Option<IdempotencyRule>,
    pub max_body_bytes: u64,
}

/// A signature scheme with its key material, ready to check a request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "scheme", rename_all = "kebab-case")]
pub enum Verifier {
    None,
    /// The key is the base64-decoded part of the `whsec_` secret.
    StandardWebhooks {
        key: SecretBytes,
    },
    Stripe {
        key: SecretBytes,
    },
    Github {
        key: SecretBytes,
    },
    Shopify {
        key: SecretBytes,
    },
    Slack {
        key: SecretBytes,
    },
    Hmac(GenericHmacConfig),
}

impl Verifier {
    pub fn scheme_name(&self) -> &'static str {
        match self {
            Verifier::None => "none",
            Verifier::StandardWebhooks { .. } => "standard-webhooks",
            Verifier::Stripe { .. } => "stripe",
            Verifier::Github { .. } => "github",
            Verifier::Shopify { .. } => "shopify",
            Verifier::Slack { .. } => "slack",
            Verifier::Hmac(_) => "hmac",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct GenericHmacConfig {
    pub key: SecretBytes,
    /// Lower-cased header name.
    pub header: String,
    pub encoding: SignatureEncoding,
    pub prefix: String,
    pub algorithm: HmacAlgorithm,
    /// Lower-cased header name.
    pub timestamp_header: Option<String>,
    pub signed_content: Vec<TemplatePart>,
}

/// A piece of a signed-content template (the generic scheme's, or an Endpoint's `hmac`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TemplatePart {
    Literal(String),
    Body,
    Timestamp,
    /// The event id; outgoing signatures only.
    Id,
}

/// Where a value comes from in a request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FieldRule {
    /// Lower-cased header name.
    Header(String),
    JsonPointer(String),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRule {
    pub key: FieldRule,
    pub window_seconds: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EndpointConfig {
    pub namespace: String,
    pub name: String,
    pub url: String,
    /// Standard Webhooks signing key (decoded `whsec_` secret).
    pub signing_key: SecretBytes,
    /// Sorted by name.
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u64,
    /// How the outgoing signature is made and sent.
    pub signing: SigningConfig,
    /// Keys on their way out, signed with too until they expire.
    pub previous_keys: Vec<PreviousKey>,
    pub format: DeliveryFormatConfig,
    pub retry: RetryConfig,
    pub per_second: Option<u32>,
    pub max_in_flight: Option<u32>,
    pub disabled: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RetryConfig {
    /// Attempts including the first.
    pub max_attempts: u32,
    /// The delay before each retry, before jitter.
    pub delays: RetryDelays,
    /// Dead-letter a delivery this long after it was created, whatever attempts are left.
    pub max_age_ms: Option<u64>,
    /// The longest `Retry-After` honoured.
    pub max_retry_after_ms: u64,
}

/// A signing key still in use until `expires_at_ms` (unix ms).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PreviousKey {
    pub key: SecretBytes,
    pub expires_at_ms: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case", tag = "profile")]
pub enum SigningConfig {
    /// `v1,<base64 HMAC-SHA256 of id.timestamp.body>`, or with `ed25519`, `v1a,<base64
    /// Ed25519 signature>` (the keys are then 32-byte seeds); with `svix_names`, `svix-*`
    /// headers.
    StandardWebhooks {
        svix_names: bool,
        ed25519: Option<Ed25519Public>,
    },
    /// One header with an HMAC.
    Hmac(HmacSigningConfig),
}

/// The public half of an Endpoint's Ed25519 signing key, as receivers are given it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Ed25519Public {
    /// `whpk_<base64 of the 32-byte public key>`.
    pub public_key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct HmacSigningConfig {
    /// Lower-cased header name.
    pub header: String,
    pub algorithm: HmacAlgorithm,
    pub encoding: SignatureEncoding,
    /// May contain [`TIMESTAMP_PLACEHOLDER`].
    pub prefix: String,
    pub signed_content: Vec<TemplatePart>,
    /// Lower-cased header name.
    pub timestamp_header: Option<String>,
}

/// `{timestamp}`, in an hmac prefix.
pub const TIMESTAMP_PLACEHOLDER: &str = "{timestamp}";

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryFormatConfig {
    Raw,
    CloudEventsBinary,
    CloudEventsStructured,
}

/// How the delay before a retry grows.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RetryDelays {
    /// `initial * multiplier^(n-1)`, capped at `max`.
    Exponential {
        initial_ms: u64,
        max_ms: u64,
        multiplier: f64,
    },
    /// The n-th retry waits `delays_ms[n-1]`; the last one repeats. Never empty.
    Schedule { delays_ms: Vec<u64> },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SubscriptionConfig {
    pub namespace: String,
    pub name: String,
    /// Endpoint name in the same namespace.
    pub endpoint: String,
    /// Source names in the same namespace; empty means all.
    pub sources: Vec<String>,
    pub filter: FilterConfig,
    /// Endpoint (same namespace) that gets the event when a delivery is dead-lettered.
    pub dead_letter: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterConfig {
    /// Validated globs; empty means every type.
    pub event_types: Vec<String>,
    pub headers: Vec<Matcher>,
    pub body: Vec<Matcher>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Matcher {
    Leaf(Leaf),
    Any(Vec<Leaf>),
    All(Vec<Leaf>),
    Not(Leaf),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Lower-cased header name, or a JSON pointer, depending on the list it is in.
    pub field: String,
    pub test: Test,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Exists(bool),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Read,
    Write,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ApiKeyConfig {
    /// `namespace/name` of the Secret it came from: safe to log, unlike the key.
    pub id: String,
    pub key: SecretBytes,
    pub role: Role,
    /// Namespace the key may see; `None` for all.
    pub namespace: Option<String>,
}
