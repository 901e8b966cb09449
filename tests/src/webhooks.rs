//! An independent Standard Webhooks verifier (https://www.standardwebhooks.com), written from the
//! spec for the tests, so the gateway's outgoing signatures are checked by code that shares
//! nothing with the gateway's signer.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a message did not verify.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    BadSecret,
    MissingHeader(&'static str),
    BadTimestamp,
    TooOld,
    NoMatchingSignature,
}

/// Verify `webhook-id`, `webhook-timestamp`, `webhook-signature` over `body` with a `whsec_`
/// secret, with the spec's 5-minute tolerance around `now_unix`.
pub fn verify(
    secret: &str,
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), Rejected> {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|b| STANDARD.decode(b).ok())
        .ok_or(Rejected::BadSecret)?;
    let id = id.ok_or(Rejected::MissingHeader("webhook-id"))?;
    let ts = timestamp.ok_or(Rejected::MissingHeader("webhook-timestamp"))?;
    let signature = signature.ok_or(Rejected::MissingHeader("webhook-signature"))?;
    let ts_num: i64 = ts.parse().map_err(|_| Rejected::BadTimestamp)?;
    if (now_unix - ts_num).abs() > 300 {
        return Err(Rejected::TooOld);
    }
    let mut signed = Vec::with_capacity(id.len() + ts.len() + body.len() + 2);
    signed.extend_from_slice(id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(ts.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    for candidate in signature.split(' ') {
        let Some(("v1", b64)) = candidate.split_once(',') else {
            continue;
        };
        let Ok(given) = STANDARD.decode(b64) else {
            continue;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
            return Err(Rejected::BadSecret);
        };
        mac.update(&signed);
        if mac.verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err(Rejected::NoMatchingSignature)
}
