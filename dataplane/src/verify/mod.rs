//! The ingest path's signature check, one function per provider scheme (Stripe, GitHub,
//! Shopify, Slack, Standard Webhooks, generic HMAC). The Standard Webhooks wire format itself
//! lives in `crate::standard_webhooks`, shared with outgoing signing.
//!
//! Pure: no I/O and no clock. The caller passes `now_unix`, so a decision can be replayed and
//! tested exactly. Every comparison of a computed MAC against a received one goes through
//! `Mac::verify_slice`, which is constant-time.
//!
//! Error messages name headers and describe what was wrong with their shape. They never contain
//! key material or the expected signature, and they do not echo received values either: those
//! are attacker-controlled and end up in logs and API responses.

use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use hookmesh_api::config::{
    GenericHmacConfig, HmacAlgorithm, SignatureEncoding, TemplatePart, Verifier,
};
use http::HeaderMap;
use sha2::{Sha256, Sha512};

use crate::standard_webhooks::{self as sw, BASE64};

/// Why a request's signature was not accepted. Each variant maps to one API error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// A header the scheme needs is absent; carries the header's name.
    #[error("missing header {0}")]
    Missing(String),
    /// Malformed, ambiguous or simply wrong.
    #[error("invalid signature: {0}")]
    Invalid(String),
    #[error("timestamp {timestamp} is outside the tolerance window (now {now})")]
    TimestampOutOfTolerance { timestamp: i64, now: i64 },
}

impl Failure {
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Missing(_) => "SIGNATURE_MISSING",
            Failure::Invalid(_) => "SIGNATURE_INVALID",
            Failure::TimestampOutOfTolerance { .. } => "TIMESTAMP_OUT_OF_TOLERANCE",
        }
    }
}

/// Check `body` and `headers` against the source's scheme.
///
/// For timestamped schemes the signature is checked before the timestamp's age, so
/// `TimestampOutOfTolerance` always means "authentic but stale or from the future" (a replay or
/// a skewed clock), which is what an operator reading audit-mode flags wants to tell apart from a
/// forgery.
pub fn verify(
    verifier: &Verifier,
    tolerance_seconds: u64,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), Failure> {
    let timestamp = match verifier {
        Verifier::None => return Ok(()),
        Verifier::StandardWebhooks { key } => standard_webhooks(key.expose(), headers, body)?,
        Verifier::Stripe { key } => stripe(key.expose(), headers, body)?,
        Verifier::Github { key } => {
            github(key.expose(), headers, body)?;
            return Ok(());
        }
        Verifier::Shopify { key } => {
            shopify(key.expose(), headers, body)?;
            return Ok(());
        }
        Verifier::Slack { key } => slack(key.expose(), headers, body)?,
        Verifier::Hmac(cfg) => match generic(cfg, headers, body)? {
            Some(ts) => ts,
            None => return Ok(()),
        },
    };
    check_tolerance(timestamp, tolerance_seconds, now_unix)
}

// --- schemes -------------------------------------------------------------------------------
// Each returns the request's timestamp when the scheme has one, for `verify` to check last.

fn standard_webhooks(key: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<i64, Failure> {
    let id = header(headers, sw::ID)?;
    let ts_text = header(headers, sw::TIMESTAMP)?;
    let signatures = header(headers, sw::SIGNATURE)?;
    let timestamp = parse_timestamp(ts_text, sw::TIMESTAMP)?;
    let found = sw::v1_signatures(signatures);
    check_candidates::<Hmac<Sha256>>(
        key,
        &sw::signed_content(id, ts_text, body),
        &found.signatures,
        found.malformed,
        sw::SIGNATURE,
    )?;
    Ok(timestamp)
}

fn stripe(key: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<i64, Failure> {
    const NAME: &str = "Stripe-Signature";
    let value = header(headers, NAME)?;
    let mut ts_text = None;
    let mut candidates = Vec::new();
    let mut malformed = false;
    for item in value.split(',') {
        let Some((k, v)) = item.split_once('=') else {
            continue;
        };
        match k.trim() {
            // Two timestamps would leave it unclear which one was signed.
            "t" if ts_text.is_some() => {
                return Err(Failure::Invalid(format!("{NAME} has more than one t=")));
            }
            "t" => ts_text = Some(v.trim()),
            "v1" => match hex::decode(v.trim()) {
                Ok(bytes) => candidates.push(bytes),
                Err(_) => malformed = true,
            },
            // v0 is Stripe's legacy test-mode scheme, and new schemes may appear: not ours.
            _ => {}
        }
    }
    let Some(ts_text) = ts_text else {
        return Err(Failure::Invalid(format!("{NAME} has no t= timestamp")));
    };
    let timestamp = parse_timestamp(ts_text, "Stripe-Signature t=")?;
    let parts: [&[u8]; 3] = [ts_text.as_bytes(), b".", body];
    let what = "Stripe-Signature v1=";
    check_candidates::<Hmac<Sha256>>(key, &parts, &candidates, malformed, what)?;
    Ok(timestamp)
}

fn github(key: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), Failure> {
    const NAME: &str = "X-Hub-Signature-256";
    let value = header(headers, NAME)?;
    let hex_sig = value
        .strip_prefix("sha256=")
        .ok_or_else(|| Failure::Invalid(format!("{NAME} does not start with sha256=")))?;
    let sig = decode(SignatureEncoding::Hex, hex_sig, NAME)?;
    check_candidates::<Hmac<Sha256>>(key, &[body], &[sig], false, NAME)
}

fn shopify(key: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), Failure> {
    const NAME: &str = "X-Shopify-Hmac-Sha256";
    let sig = decode(SignatureEncoding::Base64, header(headers, NAME)?, NAME)?;
    check_candidates::<Hmac<Sha256>>(key, &[body], &[sig], false, NAME)
}

fn slack(key: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<i64, Failure> {
    const TS: &str = "X-Slack-Request-Timestamp";
    const SIG: &str = "X-Slack-Signature";
    let ts_text = header(headers, TS)?;
    let value = header(headers, SIG)?;
    let timestamp = parse_timestamp(ts_text, TS)?;
    let hex_sig = value
        .strip_prefix("v0=")
        .ok_or_else(|| Failure::Invalid(format!("{SIG} does not start with v0=")))?;
    let sig = decode(SignatureEncoding::Hex, hex_sig, SIG)?;
    let parts: [&[u8]; 4] = [b"v0:", ts_text.as_bytes(), b":", body];
    check_candidates::<Hmac<Sha256>>(key, &parts, &[sig], false, SIG)?;
    Ok(timestamp)
}

fn generic(
    cfg: &GenericHmacConfig,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<i64>, Failure> {
    let name = cfg.header.as_str();
    let value = header(headers, name)?;
    let encoded = value.strip_prefix(cfg.prefix.as_str()).ok_or_else(|| {
        Failure::Invalid(format!("{name} does not start with the configured prefix"))
    })?;
    let sig = decode(cfg.encoding, encoded.trim(), name)?;

    let (ts_text, timestamp) = match &cfg.timestamp_header {
        Some(ts_name) => {
            let text = header(headers, ts_name)?;
            (Some(text), Some(parse_timestamp(text, ts_name)?))
        }
        None => (None, None),
    };
    let mut parts: Vec<&[u8]> = Vec::with_capacity(cfg.signed_content.len());
    for part in &cfg.signed_content {
        parts.push(match part {
            TemplatePart::Literal(text) => text.as_bytes(),
            TemplatePart::Body => body,
            // The compiler refuses this combination; refusing here too keeps a hand-built config
            // from signing over a silently empty timestamp.
            TemplatePart::Timestamp => ts_text.map(str::as_bytes).ok_or_else(|| {
                Failure::Invalid(
                    "signed content uses {timestamp} but no timestamp header is configured".into(),
                )
            })?,
            // Only an Endpoint's outgoing template may name the event id; an incoming webhook
            // has none before it is stored.
            TemplatePart::Id => {
                return Err(Failure::Invalid(
                    "signed content uses {id}, which incoming webhooks do not have".into(),
                ))
            }
        });
    }
    let candidates = [sig];
    match cfg.algorithm {
        HmacAlgorithm::Sha256 => {
            check_candidates::<Hmac<Sha256>>(cfg.key.expose(), &parts, &candidates, false, name)?
        }
        HmacAlgorithm::Sha512 => {
            check_candidates::<Hmac<Sha512>>(cfg.key.expose(), &parts, &candidates, false, name)?
        }
    }
    Ok(timestamp)
}

// --- shared pieces ---------------------------------------------------------------------------

/// The one value of header `name`, trimmed. A repeated header is refused: with two values it is
/// unclear which one the sender meant, and accepting "any" would let a relay's additions count.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Failure> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Err(Failure::Missing(name.to_string()));
    };
    if values.next().is_some() {
        return Err(Failure::Invalid(format!("{name} appears more than once")));
    }
    let text = value
        .to_str()
        .map_err(|_| Failure::Invalid(format!("{name} is not printable ASCII")))?
        .trim();
    if text.is_empty() {
        return Err(Failure::Invalid(format!("{name} is empty")));
    }
    Ok(text)
}

/// Unix seconds as plain digits. `i64::from_str` alone would also take `+5` and `-5`, which no
/// provider sends.
fn parse_timestamp(text: &str, what: &str) -> Result<i64, Failure> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failure::Invalid(format!(
            "{what} is not a unix timestamp in seconds"
        )));
    }
    text.parse()
        .map_err(|_| Failure::Invalid(format!("{what} is out of range")))
}

/// Both directions: a timestamp from the future is as suspect as a stale one. The boundary
/// itself is inside. i128 so that no pair of i64s can overflow the subtraction.
fn check_tolerance(timestamp: i64, tolerance_seconds: u64, now: i64) -> Result<(), Failure> {
    let skew = (i128::from(now) - i128::from(timestamp)).unsigned_abs();
    if skew > u128::from(tolerance_seconds) {
        return Err(Failure::TimestampOutOfTolerance { timestamp, now });
    }
    Ok(())
}

fn decode(encoding: SignatureEncoding, text: &str, name: &str) -> Result<Vec<u8>, Failure> {
    match encoding {
        // `hex` takes either case.
        SignatureEncoding::Hex => {
            hex::decode(text).map_err(|_| Failure::Invalid(format!("{name} is not hex")))
        }
        SignatureEncoding::Base64 => BASE64
            .decode(text)
            .map_err(|_| Failure::Invalid(format!("{name} is not base64"))),
    }
}

/// Ok if any candidate equals HMAC(key, concatenation of `parts`). `malformed` says some entry
/// of a signature list failed to decode, only to pick the clearer message when nothing matched.
fn check_candidates<M: Mac + KeyInit + Clone>(
    key: &[u8],
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
    malformed: bool,
    what: &str,
) -> Result<(), Failure> {
    if candidates.is_empty() {
        return Err(Failure::Invalid(if malformed {
            format!("{what} has no well-formed signature")
        } else {
            format!("{what} has no signature of a supported version")
        }));
    }
    let mut mac = <M as KeyInit>::new_from_slice(key)
        .map_err(|_| Failure::Invalid("the configured key cannot be used for HMAC".into()))?;
    for part in parts {
        mac.update(part);
    }
    // The body is hashed once; each candidate only costs a finalization. Stopping at the first
    // match reveals which entry matched, which the sender already knows.
    if candidates
        .iter()
        .any(|c| mac.clone().verify_slice(c).is_ok())
    {
        Ok(())
    } else {
        Err(Failure::Invalid(format!("{what} does not match")))
    }
}

#[cfg(test)]
mod tests;
