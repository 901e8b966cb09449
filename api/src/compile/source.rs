//! Source: the ingest point and how its signatures are verified.

use crate::config::*;
use crate::resources::*;

use super::checks::*;
use super::defaults::*;
use super::problem::{bad, Outcome, Reason};
use super::secrets::{decode_whsec, SecretIndex};

pub(super) fn compile_source(src: &Source, secrets: &SecretIndex<'_>) -> Outcome<SourceConfig> {
    let ns = namespace_of(src);
    let spec = &src.spec;
    let v = &spec.verification;
    let secret = match (&v.secret_ref, v.scheme) {
        (_, Scheme::None) => None,
        (Some(r), _) => Some(secrets.get(&ns, r)?),
        (None, _) => {
            return bad(
                Reason::InvalidSpec,
                "verification.secretRef is required unless scheme is none",
            )
        }
    };
    let key = || SecretBytes(secret.clone().unwrap_or_default());
    if v.scheme != Scheme::Hmac && v.hmac.is_some() {
        return bad(
            Reason::InvalidSpec,
            "verification.hmac is only allowed with scheme hmac",
        );
    }
    let verification = match v.scheme {
        Scheme::None => Verifier::None,
        Scheme::StandardWebhooks => {
            let raw = secret.clone().unwrap_or_default();
            let Some(decoded) = decode_whsec(&raw) else {
                return bad(
                    Reason::InvalidSecret,
                    "the standard-webhooks secret must be whsec_ followed by base64",
                );
            };
            Verifier::StandardWebhooks {
                key: SecretBytes(decoded),
            }
        }
        Scheme::Stripe => Verifier::Stripe { key: key() },
        Scheme::Github => Verifier::Github { key: key() },
        Scheme::Shopify => Verifier::Shopify { key: key() },
        Scheme::Slack => Verifier::Slack { key: key() },
        Scheme::Hmac => {
            let Some(h) = &v.hmac else {
                return bad(
                    Reason::InvalidSpec,
                    "verification.hmac is required for scheme hmac",
                );
            };
            Verifier::Hmac(compile_generic_hmac(h, key())?)
        }
    };
    let tolerance_seconds = match v.tolerance_seconds {
        None => DEFAULT_TOLERANCE_SECONDS,
        Some(t @ 1..=86_400) => u64::from(t),
        Some(t) => {
            return bad(
                Reason::InvalidSpec,
                format!("verification.toleranceSeconds {t} is outside 1..=86400"),
            )
        }
    };
    let api_key = match &spec.auth {
        Some(a) => Some(SecretBytes(secrets.get(&ns, &a.api_key_secret_ref)?)),
        None => None,
    };
    let event_type = match &spec.event_type {
        Some(f) => Some(field_rule(
            f.header.as_deref(),
            f.json_pointer.as_deref(),
            "eventType",
        )?),
        None => default_event_type(v.scheme),
    };
    let idempotency = compile_idempotency(spec.idempotency.as_ref(), v.scheme)?;
    let max_body_bytes = match spec.max_body_bytes {
        None => DEFAULT_MAX_BODY_BYTES,
        Some(n @ 1..=MAX_BODY_BYTES_LIMIT) => n,
        Some(n) => {
            return bad(
                Reason::InvalidSpec,
                format!("maxBodyBytes {n} is outside 1..={MAX_BODY_BYTES_LIMIT}"),
            )
        }
    };
    Ok(SourceConfig {
        namespace: String::new(),
        name: String::new(),
        verification,
        mode: v.mode.unwrap_or_default(),
        tolerance_seconds,
        api_key,
        event_type,
        idempotency,
        max_body_bytes,
    })
}

fn compile_generic_hmac(h: &GenericHmac, key: SecretBytes) -> Outcome<GenericHmacConfig> {
    check_header_name(&h.header, "verification.hmac.header")?;
    if let Some(t) = &h.timestamp_header {
        check_header_name(t, "verification.hmac.timestampHeader")?;
    }
    let template = h.signed_content.as_deref().unwrap_or("{body}");
    let signed_content = parse_template(template, "verification.hmac.signedContent", false)?;
    if signed_content.contains(&TemplatePart::Timestamp) && h.timestamp_header.is_none() {
        return bad(
            Reason::InvalidSpec,
            "verification.hmac.signedContent uses {timestamp} but timestampHeader is not set",
        );
    }
    Ok(GenericHmacConfig {
        key,
        header: h.header.to_ascii_lowercase(),
        encoding: h.encoding,
        prefix: h.prefix.clone().unwrap_or_default(),
        algorithm: h.algorithm,
        timestamp_header: h.timestamp_header.as_ref().map(|t| t.to_ascii_lowercase()),
        signed_content,
    })
}

fn default_event_type(scheme: Scheme) -> Option<FieldRule> {
    match scheme {
        Scheme::Github => Some(FieldRule::Header("x-github-event".into())),
        Scheme::Shopify => Some(FieldRule::Header("x-shopify-topic".into())),
        Scheme::Stripe | Scheme::StandardWebhooks => Some(FieldRule::JsonPointer("/type".into())),
        Scheme::Slack => Some(FieldRule::JsonPointer("/event/type".into())),
        Scheme::Hmac | Scheme::None => None,
    }
}

fn default_idempotency_key(scheme: Scheme) -> Option<FieldRule> {
    match scheme {
        Scheme::Github => Some(FieldRule::Header("x-github-delivery".into())),
        Scheme::StandardWebhooks => Some(FieldRule::Header("webhook-id".into())),
        Scheme::Stripe => Some(FieldRule::JsonPointer("/id".into())),
        Scheme::Shopify => Some(FieldRule::Header("x-shopify-webhook-id".into())),
        Scheme::Slack => Some(FieldRule::JsonPointer("/event_id".into())),
        Scheme::Hmac | Scheme::None => None,
    }
}

fn compile_idempotency(
    spec: Option<&Idempotency>,
    scheme: Scheme,
) -> Outcome<Option<IdempotencyRule>> {
    let spec = spec.cloned().unwrap_or_default();
    if spec.disabled {
        if spec.header.is_some() || spec.json_pointer.is_some() {
            return bad(
                Reason::InvalidSpec,
                "idempotency: a disabled check takes no header or jsonPointer",
            );
        }
        return Ok(None);
    }
    let key = match (&spec.header, &spec.json_pointer) {
        (None, None) => default_idempotency_key(scheme),
        (h, p) => Some(field_rule(h.as_deref(), p.as_deref(), "idempotency")?),
    };
    let window_seconds = match &spec.window {
        None => DEFAULT_IDEMPOTENCY_WINDOW_SECONDS,
        Some(w) => parse_duration_ms(w, "idempotency.window")?
            .div_ceil(1000)
            .max(1),
    };
    Ok(key.map(|key| IdempotencyRule {
        key,
        window_seconds,
    }))
}

fn field_rule(header: Option<&str>, pointer: Option<&str>, what: &str) -> Outcome<FieldRule> {
    match (header, pointer) {
        (Some(h), None) => {
            check_header_name(h, &format!("{what}.header"))?;
            Ok(FieldRule::Header(h.to_ascii_lowercase()))
        }
        (None, Some(p)) => {
            check_json_pointer(p, &format!("{what}.jsonPointer"))?;
            Ok(FieldRule::JsonPointer(p.to_string()))
        }
        _ => bad(
            Reason::InvalidSpec,
            format!("{what}: set exactly one of header and jsonPointer"),
        ),
    }
}
