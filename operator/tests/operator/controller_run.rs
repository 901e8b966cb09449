//! The whole leader-side loop (`controller::run`) against a scripted API server on kube's mock
//! transport: initial lists, parked watches, then the writes the operator makes.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use hookmesh_operator::controller;
use hookmesh_operator::metrics::Metrics;
use hookmesh_operator::publish::SecretRef;
use http::{Method, Request, Response};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{json, Value};

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": "50"}, "items": items})
}

fn reply(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

#[tokio::test]
async fn run_compiles_publishes_generates_and_reports_status() {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let metrics = Arc::new(Metrics::default());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "hookmesh-operator".into(),
            instance: None,
        },
    );
    let at = SecretRef {
        namespace: "hookmesh".into(),
        name: "hookmesh-config".into(),
    };
    let run = tokio::spawn(controller::run(
        client,
        at,
        metrics.clone(),
        recorder,
        None,
        None,
    ));

    // The Endpoint's signing Secret is absent: the operator must create it.
    let mut snap = crate::common::valid();
    snap.secrets
        .retain(|s| s.metadata.name.as_deref() != Some("ci-signing"));
    let mut parked = Vec::new();
    let mut applies: Vec<String> = Vec::new();
    let mut created: Vec<Value> = Vec::new();
    let mut statuses: Vec<(String, Value)> = Vec::new();
    let done = |applies: &Vec<String>, statuses: &Vec<(String, Value)>| {
        ["sources/gh", "endpoints/ci", "subscriptions/gh-to-ci"]
            .iter()
            .all(|p| {
                statuses.iter().any(|(path, body)| {
                    path.ends_with(&format!("{p}/status"))
                        && body["status"]["conditions"][0]["status"] == "True"
                })
            })
            && !applies.is_empty()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done(&applies, &statuses) {
        let (req, send) = tokio::time::timeout_at(deadline, handle.next_request())
            .await
            .expect("the operator finished its work in time")
            .unwrap();
        let (parts, body) = req.into_parts();
        let body: Value = {
            let b = body.collect_bytes().await.unwrap();
            if b.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&b).unwrap()
            }
        };
        let path = parts.uri.path().to_string();
        let query = parts.uri.query().unwrap_or_default().to_string();
        match (parts.method.clone(), path.as_str()) {
            (Method::GET, _) if query.contains("watch=true") => parked.push(send),
            (Method::GET, "/apis/hookmesh.io/v1alpha1/sources") => send.send_response(reply(
                200,
                &list(
                    "Source",
                    snap.sources
                        .iter()
                        .map(|o| serde_json::to_value(o).unwrap())
                        .collect(),
                ),
            )),
            (Method::GET, "/apis/hookmesh.io/v1alpha1/endpoints") => send.send_response(reply(
                200,
                &list(
                    "Endpoint",
                    snap.endpoints
                        .iter()
                        .map(|o| serde_json::to_value(o).unwrap())
                        .collect(),
                ),
            )),
            (Method::GET, "/apis/hookmesh.io/v1alpha1/subscriptions") => send.send_response(reply(
                200,
                &list(
                    "Subscription",
                    snap.subscriptions
                        .iter()
                        .map(|o| serde_json::to_value(o).unwrap())
                        .collect(),
                ),
            )),
            (Method::GET, "/api/v1/secrets") => send.send_response(reply(
                200,
                &list(
                    "Secret",
                    snap.secrets
                        .iter()
                        .map(|o| serde_json::to_value(o).unwrap())
                        .collect(),
                ),
            )),
            (Method::POST, "/api/v1/namespaces/shop/secrets") => {
                created.push(body.clone());
                let mut obj = body.clone();
                obj["metadata"]["resourceVersion"] = json!("60");
                send.send_response(reply(201, &obj));
            }
            (Method::PATCH, "/api/v1/namespaces/hookmesh/secrets/hookmesh-config") => {
                assert!(
                    query.contains("fieldManager=hookmesh-operator")
                        && query.contains("force=true")
                );
                applies.push(
                    body["metadata"]["annotations"]["hookmesh.io/config-hash"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
                send.send_response(reply(200, &body));
            }
            (Method::PATCH, p) if p.ends_with("/status") => {
                let kind = p.split('/').nth_back(2).unwrap();
                let obj = match kind {
                    "sources" => serde_json::to_value(crate::common::source()).unwrap(),
                    "endpoints" => serde_json::to_value(crate::common::endpoint()).unwrap(),
                    _ => serde_json::to_value(crate::common::subscription()).unwrap(),
                };
                statuses.push((p.to_string(), body));
                send.send_response(reply(200, &obj));
            }
            (Method::POST, p) if p.contains("/events") => send.send_response(reply(201, &body)),
            (m, p) => panic!("unexpected request {m} {p}?{query}"),
        }
    }
    run.abort();

    assert_eq!(created.len(), 1, "one signing Secret generated");
    assert_eq!(created[0]["metadata"]["name"], "ci-signing");
    assert!(
        applies.len() <= 2 && applies.iter().all(|h| *h == applies[0]),
        "one config: {applies:?}"
    );
    assert!(parked.len() >= 4, "every kind is watched after its list");
    // Nothing but /status on the custom resources: spec is never written.
    assert!(statuses
        .iter()
        .all(|(p, b)| p.ends_with("/status") && b.get("spec").is_none()));
    let ep = statuses
        .iter()
        .rev()
        .find(|(p, _)| p.contains("endpoints/ci"))
        .unwrap();
    assert_eq!(ep.1["status"]["subscriptions"], 1);
    assert_eq!(
        metrics
            .signing_secrets_created
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(metrics.hash().starts_with("sha256:"));
}
