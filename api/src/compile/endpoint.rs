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
    let mut signing = signing(spec.signing.as_ref())?;
    let signing_key = key_bytes(ns, &secret_ref, &secrets.get(ns, &secret_ref)?, &signing)?;
    if let SigningConfig::StandardWebhooks {
        ed25519: Some(public),
        ..
    } = &mut signing
    {
        public.public_key = ed25519_public_key(&signing_key)?;
    }
    let previous_keys = match (&spec.previous_secret_ref, &spec.secret_ref) {
        (Some(p), _) => {
            let r = SecretKeyRef {
                name: p.name.clone(),
                key: p.key.clone(),
            };
            let key = key_bytes(ns, &r, &secrets.get(ns, &r)?, &signing)?;
            vec![PreviousKey {
                key: SecretBytes(key),
                expires_at_ms: rfc3339_ms(&p.expires_at, "previousSecretRef.expiresAt")?,
            }]
        }
        // A generated Secret the operator rotated carries the key it replaced.
        (None, None) => {
            let name = &secret_ref.name;
            match (
                secrets.get_optional(ns, name, PREVIOUS_SIGNING_SECRET_KEY),
                secrets.get_optional(ns, name, PREVIOUS_EXPIRES_AT_KEY),
            ) {
                (Some(old), Some(at)) => {
                    let r = SecretKeyRef {
                        name: name.clone(),
                        key: PREVIOUS_SIGNING_SECRET_KEY.into(),
                    };
                    let at = String::from_utf8_lossy(&at).trim().to_string();
                    vec![PreviousKey {
                        key: SecretBytes(key_bytes(ns, &r, &old, &signing)?),
                        expires_at_ms: rfc3339_ms(&at, PREVIOUS_EXPIRES_AT_KEY)?,
                    }]
                }
                _ => Vec::new(),
            }
        }
        (None, Some(_)) => Vec::new(),
    };
    let format = match spec.format {
        None | Some(DeliveryFormat::Raw) => DeliveryFormatConfig::Raw,
        Some(DeliveryFormat::CloudeventsBinary) => DeliveryFormatConfig::CloudEventsBinary,
        Some(DeliveryFormat::CloudeventsStructured) => DeliveryFormatConfig::CloudEventsStructured,
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
    let retry = retry(&spec.retry.clone().unwrap_or_default())?;
    let limits = spec.rate_limit.clone().unwrap_or_default();
    if limits.per_second == Some(0) || limits.max_in_flight == Some(0) {
        return bad(Reason::InvalidSpec, "rateLimit values must be at least 1");
    }
    Ok(EndpointConfig {
        namespace: ns.to_string(),
        name: name.to_string(),
        url: url.to_string(),
        signing_key: SecretBytes(signing_key),
        signing,
        previous_keys,
        format,
        headers,
        timeout_ms: timeout_seconds * 1000,
        retry,
        per_second: limits.per_second,
        max_in_flight: limits.max_in_flight,
        disabled: spec.disabled,
    })
}

/// The signing profile: Standard Webhooks (default) or one HMAC header.
fn signing(s: Option<&Signing>) -> Outcome<SigningConfig> {
    let Some(s) = s else {
        return Ok(SigningConfig::StandardWebhooks {
            svix_names: false,
            ed25519: None,
        });
    };
    match (s.profile, &s.hmac) {
        (SigningProfile::StandardWebhooks, None) => Ok(SigningConfig::StandardWebhooks {
            svix_names: s.header_names == Some(HeaderNames::Svix),
            // Filled in once the key is read.
            ed25519: (s.algorithm == Some(StandardWebhooksAlgorithm::Ed25519)).then(|| {
                Ed25519Public {
                    public_key: String::new(),
                }
            }),
        }),
        (SigningProfile::Hmac, Some(h)) if s.header_names.is_none() && s.algorithm.is_none() => {
            check_header_name(&h.header, "signing.hmac.header")?;
            if let Some(t) = &h.timestamp_header {
                check_header_name(t, "signing.hmac.timestampHeader")?;
            }
            let header = h.header.to_ascii_lowercase();
            if header.starts_with("webhook-")
                || header.starts_with("hookmesh-")
                || RESERVED_HEADERS.contains(&header.as_str())
            {
                return bad(
                    Reason::InvalidSpec,
                    format!(
                        "signing.hmac.header {:?} is a header hookmesh sets",
                        h.header
                    ),
                );
            }
            let template = h.signed_content.as_deref().unwrap_or("{body}");
            Ok(SigningConfig::Hmac(HmacSigningConfig {
                header,
                algorithm: h.algorithm,
                encoding: h.encoding,
                prefix: h.prefix.clone().unwrap_or_default(),
                signed_content: parse_template(template, "signing.hmac.signedContent", true)?,
                timestamp_header: h.timestamp_header.as_ref().map(|t| t.to_ascii_lowercase()),
            }))
        }
        (SigningProfile::Hmac, _) => bad(
            Reason::InvalidSpec,
            "signing: profile hmac takes hmac settings, and no headerNames or algorithm",
        ),
        (SigningProfile::StandardWebhooks, Some(_)) => bad(
            Reason::InvalidSpec,
            "signing: hmac settings are only for profile hmac",
        ),
    }
}

/// The key bytes of a signing Secret: a `whsec_` secret decoded for Standard Webhooks; for
/// `hmac`, the value as it is (receivers of such schemes share a plain string).
fn key_bytes(ns: &str, r: &SecretKeyRef, raw: &[u8], signing: &SigningConfig) -> Outcome<Vec<u8>> {
    match signing {
        SigningConfig::StandardWebhooks {
            ed25519: Some(_), ..
        } => match decode_whsk(raw) {
            Some(seed) => Ok(seed),
            None => bad(
                Reason::InvalidSecret,
                format!(
                    "signing secret {ns}/{} key {:?} must be whsk_ followed by the base64 of a 32-byte Ed25519 seed (or a 64-byte seed and public key)",
                    r.name, r.key
                ),
            ),
        },
        SigningConfig::StandardWebhooks { .. } => match decode_whsec(raw) {
            Some(k) => Ok(k),
            None => bad(
                Reason::InvalidSecret,
                format!(
                    "signing secret {ns}/{} key {:?} must be whsec_ followed by base64",
                    r.name, r.key
                ),
            ),
        },
        SigningConfig::Hmac(_) => {
            let trimmed = raw.trim_ascii();
            if trimmed.is_empty() {
                return bad(
                    Reason::InvalidSecret,
                    format!("signing secret {ns}/{} key {:?} is empty", r.name, r.key),
                );
            }
            Ok(trimmed.to_vec())
        }
    }
}

/// An RFC 3339 time as unix milliseconds.
fn rfc3339_ms(text: &str, what: &str) -> Outcome<u64> {
    match text.parse::<k8s_openapi::jiff::Timestamp>() {
        Ok(t) => Ok(u64::try_from(t.as_millisecond()).unwrap_or(0)),
        Err(e) => bad(Reason::InvalidSpec, format!("{what} {text:?}: {e}")),
    }
}

/// An Ed25519 secret key: `whsk_` + base64 of the 32-byte seed, or of the 64-byte
/// seed-then-public-key form libsodium writes (whose public half must match the seed).
fn decode_whsk(raw: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text = std::str::from_utf8(raw).ok()?.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.strip_prefix("whsk_")?)
        .ok()?;
    match bytes.len() {
        32 => Some(bytes),
        64 => {
            // Refused when the public half is not the seed's.
            ring::signature::Ed25519KeyPair::from_seed_and_public_key(&bytes[..32], &bytes[32..])
                .ok()?;
            Some(bytes[..32].to_vec())
        }
        _ => None,
    }
}

/// `whpk_` + base64 of the public key of an Ed25519 seed.
fn ed25519_public_key(seed: &[u8]) -> Outcome<String> {
    use base64::Engine as _;
    use ring::signature::KeyPair as _;
    match ring::signature::Ed25519KeyPair::from_seed_unchecked(seed) {
        Ok(pair) => Ok(format!(
            "whpk_{}",
            base64::engine::general_purpose::STANDARD.encode(pair.public_key().as_ref())
        )),
        Err(_) => bad(Reason::InvalidSecret, "not an Ed25519 seed"),
    }
}

/// The retry policy: the explicit schedule, the exponential form, or the default schedule.
fn retry(r: &RetryPolicy) -> Outcome<RetryConfig> {
    let exponential =
        r.initial_backoff.is_some() || r.max_backoff.is_some() || r.multiplier.is_some();
    let delays =
        match (&r.schedule, exponential) {
            (Some(_), true) => return bad(
                Reason::InvalidSpec,
                "retry.schedule replaces initialBackoff, maxBackoff and multiplier: give one form",
            ),
            (Some(list), false) => {
                if list.is_empty() || list.len() > 50 {
                    return bad(
                        Reason::InvalidSpec,
                        format!("retry.schedule has {} delays; give 1 to 50", list.len()),
                    );
                }
                let mut delays_ms = Vec::with_capacity(list.len());
                for (i, d) in list.iter().enumerate() {
                    delays_ms.push(parse_duration_ms(d, &format!("retry.schedule[{i}]"))?);
                }
                RetryDelays::Schedule { delays_ms }
            }
            (None, true) => {
                let initial_ms = match &r.initial_backoff {
                    None => DEFAULT_INITIAL_BACKOFF_MS,
                    Some(s) => parse_duration_ms(s, "retry.initialBackoff")?,
                };
                let max_ms = match &r.max_backoff {
                    None => DEFAULT_MAX_BACKOFF_MS,
                    Some(s) => parse_duration_ms(s, "retry.maxBackoff")?,
                };
                let multiplier = match r.multiplier {
                    None => DEFAULT_MULTIPLIER,
                    Some(m) if (1.0..=10.0).contains(&m) => m,
                    Some(m) => {
                        return bad(
                            Reason::InvalidSpec,
                            format!("retry.multiplier {m} is outside 1..=10"),
                        )
                    }
                };
                if initial_ms > max_ms {
                    return bad(
                        Reason::InvalidSpec,
                        "retry.initialBackoff is longer than retry.maxBackoff",
                    );
                }
                RetryDelays::Exponential {
                    initial_ms,
                    max_ms,
                    multiplier,
                }
            }
            (None, false) => RetryDelays::Schedule {
                delays_ms: DEFAULT_SCHEDULE_MS.to_vec(),
            },
        };
    let max_attempts = match (r.max_attempts, &delays) {
        (Some(n @ 1..=100), _) => n,
        (Some(n), _) => {
            return bad(
                Reason::InvalidSpec,
                format!("retry.maxAttempts {n} is outside 1..=100"),
            )
        }
        (None, RetryDelays::Schedule { delays_ms }) => delays_ms.len() as u32 + 1,
        (None, RetryDelays::Exponential { .. }) => DEFAULT_MAX_ATTEMPTS,
    };
    let max_age_ms = match &r.max_age {
        None => None,
        Some(s) => Some(parse_duration_ms(s, "retry.maxAge")?),
    };
    let max_retry_after_ms = match &r.max_retry_after {
        None => DEFAULT_MAX_RETRY_AFTER_MS,
        Some(s) => parse_duration_ms(s, "retry.maxRetryAfter")?,
    };
    Ok(RetryConfig {
        max_attempts,
        delays,
        max_age_ms,
        max_retry_after_ms,
    })
}
