//! Cluster mode's config source: watch the one Secret the operator publishes
//! (`--config-secret NAMESPACE/NAME`, data key `config.json`) and hand every new, valid
//! [`GatewayConfig`] to the caller, which swaps it in atomically.
//!
//! The watch uses the field selector `metadata.name=<name>`, so a Role that grants
//! get/list/watch on that one Secret by `resourceNames` is enough. Watch restarts, including
//! 410 Gone after a long disconnect, are handled by kube's watcher (it re-lists and resumes),
//! with backoff on errors. A Secret that does not decode is logged and ignored: the last good
//! config keeps serving, and `apply` is never called with a bad one. A deleted Secret also
//! leaves the last good config in place.

use futures::StreamExt;
use hookmesh_api::config::CONFIG_SECRET_KEY;
use hookmesh_api::GatewayConfig;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

/// Why a config Secret could not become a config. Never carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the Secret has no data key {CONFIG_SECRET_KEY:?}")]
    MissingKey,
    #[error("data key {CONFIG_SECRET_KEY:?} is not a valid gateway config: {0}")]
    Json(#[from] serde_json::Error),
}

/// Decode `data["config.json"]` of the config Secret.
pub fn decode_config(secret: &Secret) -> Result<GatewayConfig, DecodeError> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(CONFIG_SECRET_KEY))
        .ok_or(DecodeError::MissingKey)?;
    // The JSON error names a line and column, never the content.
    Ok(serde_json::from_slice(&bytes.0)?)
}

/// Remembers the hash last applied so a re-list after a watch restart does not re-apply an
/// unchanged config.
#[derive(Debug, Default)]
struct Tracker {
    last_hash: Option<String>,
}

impl Tracker {
    /// The config to apply for this version of the Secret, if it is valid and new.
    fn on_secret(&mut self, secret: &Secret) -> Option<GatewayConfig> {
        let rv = secret.resource_version().unwrap_or_default();
        match decode_config(secret) {
            Ok(config) if self.last_hash.as_deref() == Some(config.hash.as_str()) => None,
            Ok(config) => {
                info!(hash = %config.hash, resource_version = %rv, "new gateway config from the config Secret");
                self.last_hash = Some(config.hash.clone());
                Some(config)
            }
            Err(e) => {
                warn!(
                    error = %e,
                    resource_version = %rv,
                    kept = self.last_hash.as_deref().unwrap_or("none"),
                    "ignoring an undecodable config Secret; keeping the last good config"
                );
                None
            }
        }
    }
}

/// Watch `namespace/name` and call `apply` with each new valid config. Runs until the watch
/// stream ends (it does not, in practice: errors are retried with backoff).
pub async fn watch_config_secret(
    client: kube::Client,
    namespace: String,
    name: String,
    apply: impl Fn(GatewayConfig) + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let wc = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, wc).default_backoff().boxed();
    let mut tracker = Tracker::default();
    let mut seen_in_init = false;
    info!(secret = %format!("{namespace}/{name}"), "watching the config Secret");
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(secret)) => {
                if let Some(config) = tracker.on_secret(&secret) {
                    apply(config);
                }
            }
            Ok(Event::Init) => seen_in_init = false,
            Ok(Event::InitApply(secret)) => {
                seen_in_init = true;
                if let Some(config) = tracker.on_secret(&secret) {
                    apply(config);
                }
            }
            Ok(Event::InitDone) => {
                if !seen_in_init {
                    warn!(secret = %format!("{namespace}/{name}"), "config Secret does not exist yet; waiting for the operator to publish it");
                }
            }
            Ok(Event::Delete(_)) => {
                warn!(secret = %format!("{namespace}/{name}"), "config Secret was deleted; keeping the last good config");
            }
            Err(e) => warn!(error = %e, "config Secret watch error; retrying"),
        }
    }
    anyhow::bail!("the config Secret watch ended")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use http::{Request, Response};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::ByteString;
    use kube::client::Body;

    use super::*;

    fn config(hash: &str) -> GatewayConfig {
        GatewayConfig {
            hash: hash.to_string(),
            ..GatewayConfig::default()
        }
    }

    fn secret(rv: &str, data: &[u8]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("hookmesh-config".into()),
                namespace: Some("hookmesh".into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                CONFIG_SECRET_KEY.to_string(),
                ByteString(data.to_vec()),
            )])),
            ..Secret::default()
        }
    }

    fn good(rv: &str, hash: &str) -> Secret {
        secret(rv, &serde_json::to_vec(&config(hash)).unwrap())
    }

    #[test]
    fn decodes_the_config_key() {
        assert_eq!(
            decode_config(&good("1", "sha256:a")).unwrap().hash,
            "sha256:a"
        );
        assert!(matches!(
            decode_config(&Secret::default()),
            Err(DecodeError::MissingKey)
        ));
        let err = decode_config(&secret("1", b"{\"hash\": \"whsec_secret\", oops")).unwrap_err();
        assert!(matches!(err, DecodeError::Json(_)));
        assert!(
            !err.to_string().contains("whsec_secret"),
            "errors never echo content"
        );
    }

    #[test]
    fn tracker_skips_bad_and_unchanged_configs() {
        let mut t = Tracker::default();
        assert!(t.on_secret(&secret("1", b"not json")).is_none());
        assert_eq!(
            t.on_secret(&good("2", "sha256:a")).unwrap().hash,
            "sha256:a"
        );
        assert!(
            t.on_secret(&good("3", "sha256:a")).is_none(),
            "same hash: no re-apply"
        );
        assert!(
            t.on_secret(&secret("4", b"{}")).is_none(),
            "bad config keeps the last good one"
        );
        assert_eq!(
            t.on_secret(&good("5", "sha256:b")).unwrap().hash,
            "sha256:b"
        );
    }

    fn list_body(items: &[Secret], rv: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "v1", "kind": "SecretList",
            "metadata": {"resourceVersion": rv},
            "items": items,
        }))
        .unwrap()
    }

    fn watch_line(kind: &str, object: serde_json::Value) -> Vec<u8> {
        let mut line =
            serde_json::to_vec(&serde_json::json!({"type": kind, "object": object})).unwrap();
        line.push(b'\n');
        line
    }

    fn ok(body: Vec<u8>) -> Response<Body> {
        Response::builder()
            .status(200)
            .body(Body::from(body))
            .unwrap()
    }

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
    type Responder = tower_test::mock::SendResponse<Response<Body>>;

    /// The next request: a GET of the config Secret's collection with the name field selector.
    async fn next(handle: &mut Handle) -> (String, Responder) {
        let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
            .await
            .expect("a request in time")
            .expect("the client is alive");
        assert_eq!(req.method(), http::Method::GET);
        assert_eq!(req.uri().path(), "/api/v1/namespaces/hookmesh/secrets");
        let query = req.uri().query().unwrap_or_default().to_string();
        assert!(
            query.contains("fieldSelector=metadata.name%3Dhookmesh-config"),
            "restricted RBAC needs the name field selector: {query}"
        );
        (query, send)
    }

    /// The watcher lists and watches with the name field selector, applies the listed config,
    /// ignores a bad update, applies a good one, and survives 410 Gone by re-listing.
    #[tokio::test]
    async fn watches_with_field_selector_and_survives_410_gone() {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(svc, "default");
        let applied: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = applied.clone();
        let task = tokio::spawn(watch_config_secret(
            client,
            "hookmesh".into(),
            "hookmesh-config".into(),
            move |c| sink.lock().unwrap().push(c.hash),
        ));

        // 1. Initial list: one good config.
        let (q, send) = next(&mut handle).await;
        assert!(!q.contains("watch=true"), "starts with a list: {q}");
        send.send_response(ok(list_body(&[good("10", "sha256:one")], "10")));

        // 2. Watch: a bad update (ignored), then a good one.
        let (q, send) = next(&mut handle).await;
        assert!(
            q.contains("watch=true") && q.contains("resourceVersion=10"),
            "{q}"
        );
        let mut body = watch_line(
            "MODIFIED",
            serde_json::to_value(secret("11", b"{broken")).unwrap(),
        );
        body.extend(watch_line(
            "MODIFIED",
            serde_json::to_value(good("12", "sha256:two")).unwrap(),
        ));
        send.send_response(ok(body));

        // 3. The watch ended; the next watch is told 410 Gone (history compacted).
        let (q, send) = next(&mut handle).await;
        assert!(
            q.contains("watch=true") && q.contains("resourceVersion=12"),
            "{q}"
        );
        send.send_response(ok(watch_line(
            "ERROR",
            serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                "reason": "Expired", "code": 410, "message": "too old resource version"}),
        )));

        // 4. The watcher re-lists: same config (no re-apply), then a new one on the next watch.
        let (q, send) = next(&mut handle).await;
        assert!(!q.contains("watch=true"), "re-lists after 410: {q}");
        send.send_response(ok(list_body(&[good("20", "sha256:two")], "20")));
        let (q, send) = next(&mut handle).await;
        assert!(
            q.contains("watch=true") && q.contains("resourceVersion=20"),
            "{q}"
        );
        send.send_response(ok(watch_line(
            "MODIFIED",
            serde_json::to_value(good("21", "sha256:three")).unwrap(),
        )));

        // Wait for the last apply, then stop the watch.
        for _ in 0..100 {
            if applied.lock().unwrap().len() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
        assert_eq!(
            *applied.lock().unwrap(),
            vec!["sha256:one", "sha256:two", "sha256:three"],
            "each good config once, never the broken one"
        );
    }
}
