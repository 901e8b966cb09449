//! Secrets by reference: `secretRef: {name, key}` resolved in the referring object's namespace.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::resources::SecretKeyRef;

use super::defaults::namespace_of;
use super::problem::{bad, problem, Kind, Outcome, Problem, Reason};

/// Secret data by (namespace, name), `stringData` merged over `data` as the API server does.
pub(super) struct SecretIndex<'a> {
    by_name: BTreeMap<(String, String), &'a Secret>,
}

impl<'a> SecretIndex<'a> {
    /// Like the other kinds, the first of several Secrets with one name is kept and the rest
    /// are reported (only standalone manifests can repeat a name; the API server cannot).
    pub fn new(secrets: &'a [Secret], problems: &mut Vec<Problem>) -> Self {
        let mut by_name = BTreeMap::new();
        for s in secrets {
            let (ns, name) = (namespace_of(s), s.name_any());
            if by_name.contains_key(&(ns.clone(), name.clone())) {
                problems.push(problem(
                    Kind::Secret,
                    &ns,
                    &name,
                    Reason::DuplicateObject,
                    format!("Secret {ns}/{name} is declared more than once"),
                ));
                continue;
            }
            by_name.insert((ns, name), s);
        }
        Self { by_name }
    }

    pub fn get(&self, ns: &str, r: &SecretKeyRef) -> Outcome<Vec<u8>> {
        let Some(secret) = self.by_name.get(&(ns.to_string(), r.name.clone())) else {
            return bad(
                Reason::SecretNotFound,
                format!("Secret {ns}/{} not found", r.name),
            );
        };
        match secret_value(secret, &r.key) {
            Some(v) if !v.is_empty() => Ok(v),
            Some(_) => bad(
                Reason::InvalidSecret,
                format!("key {:?} of Secret {ns}/{} is empty", r.key, r.name),
            ),
            None => bad(
                Reason::SecretKeyNotFound,
                format!("Secret {ns}/{} has no key {:?}", r.name, r.key),
            ),
        }
    }
}

impl SecretIndex<'_> {
    /// A key that may be absent: `None` when the Secret or the key is missing or empty.
    pub fn get_optional(&self, ns: &str, name: &str, key: &str) -> Option<Vec<u8>> {
        self.by_name
            .get(&(ns.to_string(), name.to_string()))
            .and_then(|s| secret_value(s, key))
            .filter(|v| !v.is_empty())
    }
}

pub(super) fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.as_bytes().to_vec());
    }
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
}

/// Decode a Standard Webhooks secret: `whsec_` + base64 of the key.
pub fn decode_whsec(raw: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    let b64 = text.strip_prefix("whsec_")?;
    let key = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (!key.is_empty()).then_some(key)
}
