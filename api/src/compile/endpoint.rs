//! Endpoint: a destination, its signing key, retry and rate limits.

use crate::config::*;
use crate::resources::*;

use super::checks::*;
use super::defaults::*;
use super::problem::{bad, Outcome, Reason};
use super::secrets::{decode_whsec, SecretIndex};

/// Headers hookmesh sets itself on deliveries; an endpoint may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "user-agent",
];

pub(super) fn compile_endpoint(
    ns: &str,
    name: &str,
    ep: &Endpoint,
    secrets: &SecretIndex<'_>,
) -> Outcome<EndpointConfig> {
    let spec = &ep.spec;
    let url = match url::Url::parse(&spec.url) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            u
        }
        Ok(u) => {
            return bad(
                Reason::InvalidUrl,
                format!(
                    "url {}: scheme {:?} is not http or https, or it has no host",
                    shown_url(&spec.url),
                    u.scheme()
                ),
            )
        }
        Err(e) => {
            return bad(
                Reason::InvalidUrl,
                format!("url {}: {e}", shown_url(&spec.url)),
            )
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return bad(
            Reason::InvalidUrl,
            "url must not carry credentials; use headers from a Secret-backed Endpoint instead",
        );
    }
    let secret_ref = spec.secret_ref.clone().unwrap_or_else(|| SecretKeyRef {
        name: default_signing_secret_name(name),
        key: DEFAULT_SIGNING_SECRET_KEY.into(),
    });
    let raw = secrets.get(ns, &secret_ref)?;
    let Some(signing_key) = decode_whsec(&raw) else {
        return bad(
            Reason::InvalidSecret,
            format!(
                "signing secret {ns}/{} key {:?} must be whsec_ followed by base64",
                secret_ref.name, secret_ref.key
            ),
        );
    };
    let mut headers = Vec::with_capacity(spec.headers.len());
    for (k, v) in &spec.headers {
        check_header_name(k, "headers")?;
        let lower = k.to_ascii_lowercase();
        if lower.starts_with("webhook-")
            || lower.starts_with("hookmesh-")
            || RESERVED_HEADERS.contains(&lower.as_str())
        {
            return bad(
                Reason::InvalidSpec,
                format!("headers: {k:?} is set by hookmesh and cannot be overridden"),
            );
        }
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return bad(
                Reason::InvalidSpec,
                format!("headers: value of {k:?} contains a control character"),
            );
        }
        headers.push((lower, v.clone()));
    }
    headers.sort();
    let timeout_seconds = match spec.timeout_seconds {
        None => DEFAULT_TIMEOUT_SECONDS,
        Some(t @ 1..=300) => u64::from(t),
        Some(t) => {
            return bad(
                Reason::InvalidSpec,
                format!("timeoutSeconds {t} is outside 1..=300"),
            )
        }
    };
    let r = spec.retry.clone().unwrap_or_default();
    let retry = RetryConfig {
        max_attempts: match r.max_attempts {
            None => DEFAULT_MAX_ATTEMPTS,
            Some(n @ 1..=100) => n,
            Some(n) => {
                return bad(
                    Reason::InvalidSpec,
                    format!("retry.maxAttempts {n} is outside 1..=100"),
                )
            }
        },
        initial_backoff_ms: match &r.initial_backoff {
            None => DEFAULT_INITIAL_BACKOFF_MS,
            Some(s) => parse_duration_ms(s, "retry.initialBackoff")?,
        },
        max_backoff_ms: match &r.max_backoff {
            None => DEFAULT_MAX_BACKOFF_MS,
            Some(s) => parse_duration_ms(s, "retry.maxBackoff")?,
        },
        multiplier: match r.multiplier {
            None => DEFAULT_MULTIPLIER,
            Some(m) if (1.0..=10.0).contains(&m) => m,
            Some(m) => {
                return bad(
                    Reason::InvalidSpec,
                    format!("retry.multiplier {m} is outside 1..=10"),
                )
            }
        },
    };
    if retry.initial_backoff_ms > retry.max_backoff_ms {
        return bad(
            Reason::InvalidSpec,
            "retry.initialBackoff is longer than retry.maxBackoff",
        );
    }
    let limits = spec.rate_limit.clone().unwrap_or_default();
    if limits.per_second == Some(0) || limits.max_in_flight == Some(0) {
        return bad(Reason::InvalidSpec, "rateLimit values must be at least 1");
    }
    Ok(EndpointConfig {
        namespace: ns.to_string(),
        name: name.to_string(),
        url: url.to_string(),
        signing_key: SecretBytes(signing_key),
        headers,
        timeout_ms: timeout_seconds * 1000,
        retry,
        per_second: limits.per_second,
        max_in_flight: limits.max_in_flight,
        disabled: spec.disabled,
    })
}
