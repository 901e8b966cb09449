//! Start the real `hookmesh-dataplane` binary on a temporary manifests directory and data
//! directory, and talk HTTP to it. Used by the REST API tests.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

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
# must leave them alone (tests/tests/delivery.rs covers what it does with them).
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

/// An HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Assert the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }

    /// Assert an error answer: status, `{"error","message","code"}` shape and code.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) {
        self.expect(status);
        let j = self.json();
        assert_eq!(j["code"], code, "body: {j}");
        assert!(j["error"].is_string(), "body: {j}");
        assert!(j["message"].is_string(), "body: {j}");
    }
}

/// A running data plane (the process is [`crate::gateway::Gateway`]'s; killed on drop) on its
/// own manifests and data directories.
pub struct Gateway {
    process: crate::gateway::Gateway,
    pub base: String,
    /// Kept for the process's lifetime: it watches this directory.
    _manifests: tempfile::TempDir,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Gateway {
    /// Start on [`MANIFESTS`] with extra command-line arguments.
    pub async fn start(args: &[&str]) -> anyhow::Result<Gateway> {
        Self::start_with(MANIFESTS, args).await
    }

    pub async fn start_with(manifests: &str, args: &[&str]) -> anyhow::Result<Gateway> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("gateway.yaml"), manifests)?;
        let process = crate::gateway::Gateway::start_with(crate::gateway::GatewayOptions {
            manifests: dir.path().to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        })
        .await?;
        Ok(Gateway {
            base: format!("http://{}", process.addr),
            process,
            _manifests: dir,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Everything the process logged (for failure messages).
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Resp> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into()))?;
        let resp = self.client.request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

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
