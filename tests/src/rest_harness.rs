//! The REST suites' fixture: [`MANIFESTS`] (two namespaces, three API keys) and the calls those
//! suites make on a [`Gateway`] with an API key.

use ::http::Method;
use bytes::Bytes;
use serde_json::Value;

pub use crate::gateway::Gateway;
use crate::gateway::GatewayOptions;
pub use crate::http::Resp;

/// The demo write key of [`MANIFESTS`] (no namespace scope).
pub const WRITE_KEY: &str = "test-write-key-0123456789";
/// A read-only key, all namespaces.
pub const READ_KEY: &str = "test-read-key-0123456789";
/// A write key scoped to namespace `team-b`.
pub const TEAM_B_KEY: &str = "test-team-b-key-0123456789";
/// The GitHub webhook secret of the `github` and `github-audit` sources.
pub const GITHUB_SECRET: &str = "github-test-secret";

/// Two namespaces. `default`: source `orders` (no verification, type from `/type`),
/// `github` (enforced GitHub signatures), `github-audit` (audit mode); endpoints `fulfilment`
/// (subscribed to `order.*` from `orders`) and `billing` (subscribed to `invoice.*`).
/// `team-b`: source `orders`, endpoint `fulfilment` subscribed to everything.
pub const MANIFESTS: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: github-webhook, namespace: default}
stringData: {secret: "github-test-secret"}
---
apiVersion: v1
kind: Secret
metadata: {name: signing, namespace: default}
stringData: {secret: "whsec_c2lnbmluZy1rZXktZm9yLXRlc3RzLTAwMDAwMDAw"}
---
apiVersion: v1
kind: Secret
metadata: {name: signing, namespace: team-b}
stringData: {secret: "whsec_c2lnbmluZy1rZXktZm9yLXRlc3RzLTAwMDAwMDAw"}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {name: orders, namespace: default}
spec:
  verification: {scheme: none}
  eventType: {jsonPointer: /type}
  idempotency: {header: Idempotency-Key}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {name: github, namespace: default}
spec:
  verification:
    scheme: github
    secretRef: {name: github-webhook, key: secret}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {name: github-audit, namespace: default}
spec:
  verification:
    scheme: github
    mode: audit
    secretRef: {name: github-webhook, key: secret}
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
# Disabled: these suites assert queued deliveries as the API shows them, so the delivery engine
# must leave them alone (tests/tests/dataplane/delivery.rs covers what it does with them).
metadata: {name: fulfilment, namespace: default}
spec:
  url: http://127.0.0.1:9/fulfilment
  secretRef: {name: signing, key: secret}
  disabled: true
  headers: {X-Internal-Token: do-not-show-this}
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {name: billing, namespace: default}
spec:
  url: http://127.0.0.1:9/billing
  secretRef: {name: signing, key: secret}
  disabled: true
---
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {name: orders-to-fulfilment, namespace: default}
spec:
  endpointRef: {name: fulfilment}
  sources: [orders]
  filter: {eventTypes: ["order.*"]}
---
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {name: invoices-to-billing, namespace: default}
spec:
  endpointRef: {name: billing}
  filter: {eventTypes: ["invoice.*"]}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {name: orders, namespace: team-b}
spec:
  verification: {scheme: none}
  eventType: {jsonPointer: /type}
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {name: fulfilment, namespace: team-b}
spec:
  url: http://127.0.0.1:9/team-b
  secretRef: {name: signing, key: secret}
  disabled: true
---
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {name: everything, namespace: team-b}
spec:
  endpointRef: {name: fulfilment}
---
apiVersion: v1
kind: Secret
metadata:
  name: write-key
  namespace: default
  labels: {hookmesh.io/api-key: "true"}
stringData: {key: test-write-key-0123456789, role: write}
---
apiVersion: v1
kind: Secret
metadata:
  name: read-key
  namespace: default
  labels: {hookmesh.io/api-key: "true"}
stringData: {key: test-read-key-0123456789, role: read}
---
apiVersion: v1
kind: Secret
metadata:
  name: team-b-key
  namespace: team-b
  labels: {hookmesh.io/api-key: "true"}
stringData: {key: test-team-b-key-0123456789, role: write, namespace: team-b}
"#;

/// A gateway on [`MANIFESTS`] with extra command-line arguments.
pub async fn start(args: &[&str]) -> anyhow::Result<Gateway> {
    start_with(MANIFESTS, args).await
}

/// A gateway on the manifests `yaml` with extra command-line arguments.
pub async fn start_with(yaml: &str, args: &[&str]) -> anyhow::Result<Gateway> {
    Gateway::start_with(GatewayOptions {
        manifests_yaml: Some(yaml.to_string()),
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    })
    .await
}

impl Gateway {
    /// `GET path` with an API key.
    pub async fn get(&self, path: &str, key: &str) -> Resp {
        let auth = format!("Bearer {key}");
        self.request(Method::GET, path, &[("authorization", &auth)], Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e:#}"))
    }

    /// A method with an API key and an optional JSON body.
    pub async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Resp {
        let auth = format!("Bearer {key}");
        let (headers, bytes): (Vec<(&str, &str)>, Bytes) = match &body {
            Some(b) => (
                vec![
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                Bytes::from(b.to_string()),
            ),
            None => (vec![("authorization", &auth)], Bytes::new()),
        };
        self.request(method.clone(), path, &headers, bytes)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
    }

    /// POST a JSON webhook to `/e/{namespace}/{source}`; returns the event id.
    pub async fn ingest(&self, namespace: &str, source: &str, body: &Value) -> String {
        let r = self
            .request(
                Method::POST,
                &format!("/e/{namespace}/{source}"),
                &[("content-type", "application/json")],
                Bytes::from(body.to_string()),
            )
            .await
            .unwrap_or_else(|e| panic!("ingest: {e:#}"));
        r.expect(202);
        r.json()["id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no id in {}", r.text()))
    }

    /// POST a GitHub-signed webhook (`signature_ok: false` signs with the wrong key).
    pub async fn ingest_github(
        &self,
        source: &str,
        event: &str,
        body: &str,
        signature_ok: bool,
    ) -> Resp {
        use hmac::Mac as _;
        let key: &[u8] = if signature_ok {
            GITHUB_SECRET.as_bytes()
        } else {
            b"wrong"
        };
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
        mac.update(body.as_bytes());
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let delivery = format!("d-{}", rand_suffix());
        self.request(
            Method::POST,
            &format!("/e/default/{source}"),
            &[
                ("content-type", "application/json"),
                ("x-github-event", event),
                ("x-github-delivery", &delivery),
                ("x-hub-signature-256", &sig),
            ],
            Bytes::from(body.to_string()),
        )
        .await
        .unwrap_or_else(|e| panic!("ingest: {e:#}"))
    }

    /// Follow `next_cursor` through every page of `path` (which has its query string, if
    /// any); returns every item's id in order.
    pub async fn all_pages(&self, path: &str, key: &str, limit: usize) -> Vec<String> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let url = match &cursor {
                Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
                None => format!("{path}{sep}limit={limit}"),
            };
            let r = self.get(&url, key).await;
            r.expect(200);
            let j = r.json();
            let data = j["data"].as_array().cloned().unwrap_or_default();
            assert!(data.len() <= limit, "page larger than limit");
            out.extend(
                data.iter()
                    .filter_map(|e| e["id"].as_str().map(String::from)),
            );
            let p = &j["pagination"];
            assert_eq!(p["limit"], limit);
            if p["has_more"] != true {
                assert!(p["next_cursor"].is_null());
                return out;
            }
            cursor = p["next_cursor"].as_str().map(String::from);
            assert!(cursor.is_some(), "has_more without next_cursor");
        }
        panic!("more than 10000 pages");
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos}-{}", N.fetch_add(1, Ordering::Relaxed))
}
