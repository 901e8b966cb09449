//! The Standard Webhooks wire format (standardwebhooks.com), in one place for both directions:
//! ingest verifies it (`verify`), delivery signs with it (`deliver::sign`).
//!
//! A message is signed as HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`, sent as
//! `v1,<base64>`; `webhook-signature` may carry several space-separated `version,signature`
//! entries (key rotation, other algorithms).

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const ID: &str = "webhook-id";
pub const TIMESTAMP: &str = "webhook-timestamp";
pub const SIGNATURE: &str = "webhook-signature";

/// Standard alphabet, padding optional: what matters is the decoded bytes, which the MAC check
/// covers, and some senders strip the `=`.
pub const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What is signed, in order: the parts are fed to the MAC one after another.
pub fn signed_content<'a>(id: &'a str, timestamp: &'a str, body: &'a [u8]) -> [&'a [u8]; 5] {
    [id.as_bytes(), b".", timestamp.as_bytes(), b".", body]
}

/// The `webhook-signature` value for `body`: `v1,<base64 HMAC-SHA256>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    // HMAC is defined for keys of any length (long keys are hashed, short ones padded), so the
    // only error `new_from_slice` can return is impossible here.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .expect("HMAC-SHA256 accepts keys of any length");
    for part in signed_content(id, &ts, body) {
        mac.update(part);
    }
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The asymmetric form: `v1a,<base64 Ed25519 signature>` over the same content, with the
/// 32-byte seed `seed`. `None` if `seed` is not one (the compiler only passes seeds).
pub fn sign_ed25519(seed: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed).ok()?;
    let ts = timestamp.to_string();
    let content = signed_content(id, &ts, body).concat();
    Some(format!(
        "v1a,{}",
        BASE64.encode(pair.sign(&content).as_ref())
    ))
}

/// The `v1` signatures of a `webhook-signature` value.
pub struct V1Signatures {
    pub signatures: Vec<Vec<u8>>,
    /// Some `v1` entry was not base64 (only to pick the clearer message when nothing matched).
    pub malformed: bool,
}

/// Versions other than v1 (e.g. the asymmetric v1a) are someone else's to check, so they are
/// skipped rather than refused.
pub fn v1_signatures(value: &str) -> V1Signatures {
    let mut found = V1Signatures {
        signatures: Vec::new(),
        malformed: false,
    };
    for entry in value.split_ascii_whitespace() {
        if let Some(("v1", sig)) = entry.split_once(',') {
            match BASE64.decode(sig) {
                Ok(bytes) => found.signatures.push(bytes),
                Err(_) => found.malformed = true,
            }
        }
    }
    found
}
