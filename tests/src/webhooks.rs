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

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks reference libraries.
    #[test]
    fn spec_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let ts = "1614265330";
        let body = br#"{"test": 2432232314}"#;
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(
            verify(secret, Some(id), Some(ts), Some(sig), body, 1614265330),
            Ok(())
        );
        assert_eq!(
            verify(secret, Some(id), Some(ts), Some(sig), b"{}", 1614265330),
            Err(Rejected::NoMatchingSignature)
        );
        assert_eq!(
            verify(
                secret,
                Some(id),
                Some(ts),
                Some(sig),
                body,
                1614265330 + 301
            ),
            Err(Rejected::TooOld)
        );
    }
}
