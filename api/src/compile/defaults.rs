//! The documented defaults of every optional field, and the names the compiler assumes.

use kube::ResourceExt;

/// Default body limit: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
pub const MAX_BODY_BYTES_LIMIT: u64 = 64 * 1024 * 1024;
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;
pub const DEFAULT_IDEMPOTENCY_WINDOW_SECONDS: u64 = 24 * 3600;
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 30;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
pub const DEFAULT_INITIAL_BACKOFF_MS: u64 = 1_000;
pub const DEFAULT_MAX_BACKOFF_MS: u64 = 3_600_000;
pub const DEFAULT_MULTIPLIER: f64 = 2.0;
/// The default retry schedule, Svix's: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about 27.6 h
/// from the first attempt to the eighth), so a receiver that is down overnight still gets
/// everything.
pub const DEFAULT_SCHEDULE_MS: [u64; 7] = [
    5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000,
];
pub const DEFAULT_MAX_RETRY_AFTER_MS: u64 = 3_600_000;
/// Label that marks a Secret as a REST API key.
pub const API_KEY_LABEL: &str = "hookmesh.io/api-key";
/// Namespace given to manifests that name none (as `kubectl apply` does).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Key of the Secret an Endpoint without `secretRef` signs with.
pub fn default_signing_secret_name(endpoint: &str) -> String {
    format!("{endpoint}-signing")
}
pub const DEFAULT_SIGNING_SECRET_KEY: &str = "secret";
/// In a generated signing Secret after a rotation: the key it replaced, and until when
/// deliveries are still signed with it (RFC 3339).
pub const PREVIOUS_SIGNING_SECRET_KEY: &str = "previous";
pub const PREVIOUS_EXPIRES_AT_KEY: &str = "previousExpiresAt";

/// The object's namespace; the default one when the manifest names none (as `kubectl apply`).
pub(crate) fn namespace_of<K: ResourceExt>(obj: &K) -> String {
    obj.namespace()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
}
