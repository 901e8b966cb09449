//! What an API registration writes: the manifests of an Endpoint (with its signing Secret) or
//! a Subscription, as the CRDs declare them, labelled as managed by the API.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Value};

use super::{MANAGED_BY_API, MANAGED_BY_LABEL};

/// An Endpoint to register.
#[derive(Clone, Debug)]
pub struct NewEndpoint {
    pub namespace: String,
    pub name: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub timeout_seconds: Option<u32>,
    pub max_attempts: Option<u32>,
    pub disabled: bool,
}

/// A Subscription to register.
#[derive(Clone, Debug)]
pub struct NewSubscription {
    pub namespace: String,
    pub name: String,
    pub endpoint: String,
    pub sources: Vec<String>,
    pub event_types: Vec<String>,
}

/// The Secret holding an endpoint's signing secret.
pub fn signing_secret_name(endpoint: &str) -> String {
    format!("{endpoint}-signing")
}

/// A fresh Standard Webhooks secret: `whsec_` + base64 of 24 random bytes.
pub fn generate_signing_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn metadata(namespace: &str, name: &str) -> Value {
    json!({
        "name": name,
        "namespace": namespace,
        "labels": { MANAGED_BY_LABEL: MANAGED_BY_API },
    })
}

/// The Secret and the Endpoint, in that order (standalone: nothing else makes the Secret).
pub fn endpoint_manifests(e: &NewEndpoint, secret: &str) -> Vec<Value> {
    let secret_name = signing_secret_name(&e.name);
    let mut endpoint = endpoint_resource(e);
    endpoint["spec"]["secretRef"] = json!({ "name": secret_name, "key": "secret" });
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata(&e.namespace, &secret_name),
            "stringData": { "secret": secret },
        }),
        endpoint,
    ]
}

/// The Endpoint alone, signing with `<name>-signing` (in cluster the operator creates it).
pub fn endpoint_resource(e: &NewEndpoint) -> Value {
    let mut spec = json!({ "url": e.url });
    if !e.headers.is_empty() {
        spec["headers"] = json!(e.headers);
    }
    if let Some(t) = e.timeout_seconds {
        spec["timeoutSeconds"] = json!(t);
    }
    if let Some(n) = e.max_attempts {
        spec["retry"] = json!({ "maxAttempts": n });
    }
    if e.disabled {
        spec["disabled"] = json!(true);
    }
    json!({
        "apiVersion": "hookmesh.io/v1alpha1",
        "kind": "Endpoint",
        "metadata": metadata(&e.namespace, &e.name),
        "spec": spec,
    })
}

pub fn subscription_manifest(s: &NewSubscription) -> Value {
    let mut spec = json!({ "endpointRef": { "name": s.endpoint } });
    if !s.sources.is_empty() {
        spec["sources"] = json!(s.sources);
    }
    if !s.event_types.is_empty() {
        spec["filter"] = json!({ "eventTypes": s.event_types });
    }
    json!({
        "apiVersion": "hookmesh.io/v1alpha1",
        "kind": "Subscription",
        "metadata": metadata(&s.namespace, &s.name),
        "spec": spec,
    })
}

/// Multi-document YAML of `docs`.
pub fn to_yaml(docs: &[Value]) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(d)?);
    }
    Ok(out)
}

/// A Kubernetes object name as the CRDs take it: a DNS-1123 subdomain (lower-case letters,
/// digits, `-` and `.`, each dot-separated part starting and ending with a letter or digit),
/// at most `max` characters.
pub fn valid_name(name: &str, max: usize) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= max
        && name.split('.').all(|part| {
            part.starts_with(alnum)
                && part.ends_with(alnum)
                && part.chars().all(|c| alnum(c) || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_like_the_crds_do() {
        for ok in ["a", "orders", "orders-v2", "team.b", "a1-b2.c3"] {
            assert!(valid_name(ok, 253), "{ok}");
        }
        for bad in ["", "Orders", "-a", "a-", "a..b", "a_b", "a/b", ".a", "a b"] {
            assert!(!valid_name(bad, 253), "{bad:?}");
        }
        assert!(!valid_name(&"a".repeat(64), 63));
    }

    #[test]
    fn an_endpoint_is_its_signing_secret_and_itself_labelled_as_the_apis() {
        let e = NewEndpoint {
            namespace: "default".into(),
            name: "crm".into(),
            url: "https://crm.example/hooks".into(),
            headers: BTreeMap::from([("X-Team".into(), "sales".into())]),
            timeout_seconds: Some(5),
            max_attempts: Some(3),
            disabled: false,
        };
        let secret = generate_signing_secret();
        assert!(secret.starts_with("whsec_") && secret.len() == 6 + 32);
        let docs = endpoint_manifests(&e, &secret);
        assert_eq!(docs[0]["metadata"]["name"], "crm-signing");
        assert_eq!(docs[0]["stringData"]["secret"], secret.as_str());
        assert_eq!(docs[1]["spec"]["secretRef"]["name"], "crm-signing");
        assert_eq!(docs[1]["spec"]["retry"]["maxAttempts"], 3);
        for d in &docs {
            assert_eq!(d["metadata"]["labels"][MANAGED_BY_LABEL], "api");
        }
        let yaml = to_yaml(&docs).expect("yaml");
        assert_eq!(yaml.matches("---\n").count(), 2);
    }
}
