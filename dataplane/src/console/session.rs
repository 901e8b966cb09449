//! Console sessions, without server-side state: the cookie names an API key by its id and is
//! sealed with an HMAC keyed by that key's own bytes. Every pod holding the same keys accepts
//! it, so a session works whichever pod a Service sends the browser to; deleting or rotating
//! the key ends every session made with it. The key itself never leaves the sign-in request.
//!
//! The CSRF token is derived from the same key and the session's nonce: a page of another
//! origin cannot read it, and the gate refuses a state-changing call that does not carry it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use hookmesh_api::config::ApiKeyConfig;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::store::Millis;

/// The cookie that carries the session.
pub const COOKIE: &str = "hookmesh_session";
/// The header that carries the CSRF token on state-changing calls.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts after sign-in.
pub const LIFETIME_MS: Millis = 8 * 3600 * 1000;

const VERSION: &str = "v1";
const SESSION_CONTEXT: &[u8] = b"hookmesh console session v1\0";
const CSRF_CONTEXT: &[u8] = b"hookmesh console csrf v1\0";

/// An open session: which key, until when, and the nonce its CSRF token derives from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub key_id: String,
    pub expires_at: Millis,
    nonce: [u8; 16],
}

impl Session {
    /// A new session for `key`, starting `now`.
    pub fn start(key: &ApiKeyConfig, now: Millis) -> Self {
        Session {
            key_id: key.id.clone(),
            expires_at: now.saturating_add(LIFETIME_MS),
            nonce: rand::random(),
        }
    }

    /// The cookie value: `v1.<key id>.<expiry>.<nonce>.<mac>`.
    pub fn seal(&self, key: &ApiKeyConfig) -> String {
        let id = URL_SAFE_NO_PAD.encode(self.key_id.as_bytes());
        let nonce = hex::encode(self.nonce);
        let mac = URL_SAFE_NO_PAD.encode(self.mac(key));
        format!("{VERSION}.{id}.{}.{nonce}.{mac}", self.expires_at)
    }

    /// The session a cookie value names, if it is well formed, sealed by a key of `keys` and
    /// not expired at `now`.
    pub fn open<'k>(
        keys: &'k [ApiKeyConfig],
        value: &str,
        now: Millis,
    ) -> Option<(&'k ApiKeyConfig, Session)> {
        let mut parts = value.split('.');
        let (Some(VERSION), Some(id), Some(expiry), Some(nonce), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let key_id = String::from_utf8(URL_SAFE_NO_PAD.decode(id).ok()?).ok()?;
        let expires_at: Millis = expiry.parse().ok()?;
        let nonce: [u8; 16] = hex::decode(nonce).ok()?.try_into().ok()?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        let key = keys.iter().find(|k| k.id == key_id)?;
        let session = Session {
            key_id,
            expires_at,
            nonce,
        };
        let sealed = bool::from(session.mac(key).as_slice().ct_eq(&mac));
        (sealed && now < expires_at).then_some((key, session))
    }

    /// The CSRF token of this session.
    pub fn csrf_token(&self, key: &ApiKeyConfig) -> String {
        let mut mac = keyed(key);
        mac.update(CSRF_CONTEXT);
        mac.update(&self.nonce);
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, key: &ApiKeyConfig, presented: &[u8]) -> bool {
        bool::from(self.csrf_token(key).as_bytes().ct_eq(presented))
    }

    fn mac(&self, key: &ApiKeyConfig) -> Vec<u8> {
        let mut mac = keyed(key);
        mac.update(SESSION_CONTEXT);
        mac.update(self.key_id.as_bytes());
        mac.update(b"\0");
        mac.update(self.expires_at.to_string().as_bytes());
        mac.update(b"\0");
        mac.update(&self.nonce);
        mac.finalize().into_bytes().to_vec()
    }
}

fn keyed(key: &ApiKeyConfig) -> Hmac<Sha256> {
    // HMAC is defined for keys of any length, so `new_from_slice` cannot fail here.
    <Hmac<Sha256> as KeyInit>::new_from_slice(key.key.expose())
        .expect("HMAC-SHA256 accepts keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookmesh_api::config::{Role, SecretBytes};

    fn key(id: &str, secret: &str) -> ApiKeyConfig {
        ApiKeyConfig {
            id: id.into(),
            key: SecretBytes(secret.as_bytes().to_vec()),
            role: Role::Write,
            namespace: None,
        }
    }

    #[test]
    fn a_sealed_session_opens_until_it_expires() {
        let keys = vec![
            key("default/a", "a-key-0123456789"),
            key("default/b", "b-key-0123456789"),
        ];
        let s = Session::start(&keys[1], 1_000);
        let cookie = s.seal(&keys[1]);
        let (k, opened) = Session::open(&keys, &cookie, 2_000).expect("opens");
        assert_eq!((k.id.as_str(), &opened), ("default/b", &s));
        assert!(Session::open(&keys, &cookie, 1_000 + LIFETIME_MS).is_none());
        assert!(!cookie.contains("b-key"), "the key is not in the cookie");
    }

    #[test]
    fn a_forged_or_altered_cookie_does_not_open() {
        let keys = vec![key("default/a", "a-key-0123456789")];
        let s = Session::start(&keys[0], 1_000);
        let cookie = s.seal(&keys[0]);
        // Sealed by another key of the same id (a rotated key ends old sessions).
        let rotated = vec![key("default/a", "new-key-0123456789")];
        assert!(Session::open(&rotated, &cookie, 2_000).is_none());
        // A later expiry, with the old MAC.
        let parts: Vec<&str> = cookie.split('.').collect();
        let longer = format!("v1.{}.{}.{}.{}", parts[1], u64::MAX, parts[3], parts[4]);
        assert!(Session::open(&keys, &longer, 2_000).is_none());
        for junk in [
            "",
            "v1",
            "v2.a.b.c.d",
            "v1.!!.1.00.00",
            "v1.a.b.c.d.e",
            &cookie[..cookie.len() - 2],
        ] {
            assert!(Session::open(&keys, junk, 2_000).is_none(), "{junk:?}");
        }
        // A key that is gone.
        assert!(Session::open(&[], &cookie, 2_000).is_none());
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session() {
        let k = key("default/a", "a-key-0123456789");
        let (s1, s2) = (Session::start(&k, 0), Session::start(&k, 0));
        let t1 = s1.csrf_token(&k);
        assert!(s1.csrf_matches(&k, t1.as_bytes()));
        assert!(!s2.csrf_matches(&k, t1.as_bytes()));
        assert!(!s1.csrf_matches(&k, b""));
    }
}
