//! Request signing as each provider documents it, written independently of the gateway's
//! verifier so a shared misunderstanding cannot make both sides agree on a wrong answer.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn github(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac256(secret.as_bytes(), &[body]))
    )
}

/// Stripe: `Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`.
pub fn stripe(secret: &str, ts: i64, body: &[u8]) -> String {
    let sig = hmac256(secret.as_bytes(), &[ts.to_string().as_bytes(), b".", body]);
    format!("t={ts},v1={}", hex::encode(sig))
}

/// Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(secret, body)>`.
pub fn shopify(secret: &str, body: &[u8]) -> String {
    STANDARD.encode(hmac256(secret.as_bytes(), &[body]))
}

/// Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:<ts>:<body>")>`.
pub fn slack(secret: &str, ts: i64, body: &[u8]) -> String {
    let sig = hmac256(
        secret.as_bytes(),
        &[b"v0:", ts.to_string().as_bytes(), b":", body],
    );
    format!("v0={}", hex::encode(sig))
}

/// Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<ts>.<body>")>`
/// where the key is the base64 after `whsec_`.
pub fn standard_webhooks(whsec: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let key = STANDARD
        .decode(whsec.trim_start_matches("whsec_"))
        .unwrap_or_else(|e| panic!("test secret is not whsec_ base64: {e}"));
    let sig = hmac256(
        &key,
        &[id.as_bytes(), b".", ts.to_string().as_bytes(), b".", body],
    );
    format!("v1,{}", STANDARD.encode(sig))
}
