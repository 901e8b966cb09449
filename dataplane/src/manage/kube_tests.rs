//! The cluster manager's calls, against a mock transport: the requests it makes, in order, and
//! what it makes of each answer. The real API server (the cluster suite) is the final word on
//! the CRDs, their CEL rules and RBAC.

use std::path::Path;
use std::time::Duration;

use hookmesh_api::compile::{compile, Audience};
use hookmesh_api::manifests::{load_str, Loaded};
use http::{Request, Response};
use kube::client::Body;
use serde_json::{json, Value};

use super::*;
use crate::manage::{NewEndpoint, NewSubscription};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Responder = tower_test::mock::SendResponse<Response<Body>>;

const SIGNING: &str = "whsec_c2lnbmluZy1rZXktZm9yLXRlc3RzLTAwMDAwMDAw";

/// The config the operator would publish for `yaml`.
fn config(yaml: &str) -> GatewayConfig {
    let mut loaded = Loaded::default();
    load_str(yaml, Path::new("test.yaml"), &mut loaded).expect("yaml");
    let compiled = compile(&loaded.inputs.for_audience(Audience::Gateway));
    assert!(compiled.problems.is_empty(), "{:?}", compiled.problems);
    compiled.config
}

fn with_crm() -> GatewayConfig {
    config(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: crm-signing, namespace: default}}\nstringData: {{secret: \"{SIGNING}\"}}\n---\napiVersion: hookmesh.io/v1alpha1\nkind: Endpoint\nmetadata: {{name: crm, namespace: default}}\nspec: {{url: \"https://crm.example/hooks\"}}\n"
    ))
}

fn crm() -> NewEndpoint {
    NewEndpoint {
        namespace: "default".into(),
        name: "crm".into(),
        url: "https://crm.example/hooks".into(),
        headers: Default::default(),
        timeout_seconds: None,
        max_attempts: Some(4),
        disabled: false,
    }
}

fn setup() -> (Kube, LiveConfig, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let live = LiveConfig::new(GatewayConfig::default());
    (
        Kube::new(kube::Client::new(svc, "default"), live.clone()),
        live,
        handle,
    )
}

async fn next(handle: &mut Handle) -> (http::Method, String, Value, Responder) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("a request in time")
        .expect("the client is alive");
    let method = req.method().clone();
    let uri = req.uri().to_string();
    let bytes = req
        .into_body()
        .collect_bytes()
        .await
        .expect("a request body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (method, uri, body, send)
}

fn answer(status: u16, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(&body).expect("json")))
        .expect("response")
}

fn failure(code: u16, reason: &str, message: &str) -> Response<Body> {
    answer(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

const ENDPOINTS: &str = "/apis/hookmesh.io/v1alpha1/namespaces/default/endpoints";

#[tokio::test]
async fn an_endpoint_is_dry_run_then_created_without_a_secret_and_answered_once_live() {
    let (kube, live, mut handle) = setup();
    let task = tokio::spawn(async move { kube.create_endpoint(&crm()).await });

    let (m, uri, body, send) = next(&mut handle).await;
    assert_eq!(m, http::Method::POST);
    assert!(
        uri.starts_with(ENDPOINTS) && uri.contains("dryRun=All"),
        "{uri}"
    );
    assert!(uri.contains("fieldManager=hookmesh-dataplane"), "{uri}");
    assert_eq!(body["metadata"]["labels"]["hookmesh.io/managed-by"], "api");
    assert_eq!(body["spec"]["retry"]["maxAttempts"], 4);
    assert!(
        body["spec"].get("secretRef").is_none(),
        "the operator makes the signing Secret: {body}"
    );
    send.send_response(answer(201, body.clone()));
    let (m, uri, _, send) = next(&mut handle).await;
    assert_eq!(m, http::Method::POST);
    assert!(!uri.contains("dryRun"), "{uri}");
    send.send_response(answer(201, body));

    // Not done until the published config carries it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!task.is_finished());
    live.store(with_crm());
    let done = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("in time")
        .expect("task");
    assert!(done.is_ok(), "{done:?}");
}

#[tokio::test]
async fn the_api_servers_refusal_is_the_answer_and_nothing_is_created() {
    let (kube, _live, mut handle) = setup();
    let task = tokio::spawn(async move { kube.create_endpoint(&crm()).await });
    let (_, uri, _, send) = next(&mut handle).await;
    assert!(uri.contains("dryRun=All"));
    send.send_response(failure(
        422,
        "Invalid",
        "Endpoint.hookmesh.io \"crm\" is invalid: spec.url: Invalid value",
    ));
    match task.await.expect("task") {
        Err(ManageError::Rejected { reason, message }) => {
            assert_eq!(reason, "Invalid");
            assert!(message.contains("spec.url"), "{message}");
        }
        other => panic!("expected a refusal: {other:?}"),
    }
}

#[tokio::test]
async fn without_the_rbac_registration_is_unavailable_with_the_reason() {
    let (kube, _live, mut handle) = setup();
    let task = tokio::spawn(async move { kube.create_endpoint(&crm()).await });
    let (_, _, _, send) = next(&mut handle).await;
    send.send_response(failure(
        403,
        "Forbidden",
        "endpoints.hookmesh.io is forbidden",
    ));
    let err = task.await.expect("task").expect_err("refused");
    assert!(matches!(err, ManageError::NotPermitted(_)), "{err:?}");
    assert_eq!(
        crate::error::ApiError::from(err).code,
        "MANAGEMENT_UNAVAILABLE"
    );
}

#[tokio::test]
async fn the_operators_ready_false_reason_refuses_and_the_object_is_deleted() {
    let (kube, _live, mut handle) = setup();
    let task = tokio::spawn(async move { kube.create_endpoint(&crm()).await });
    for _ in 0..2 {
        let (_, _, body, send) = next(&mut handle).await;
        send.send_response(answer(201, body));
    }
    // The status poll: first still on its way (the signing Secret), then refused.
    let mut reasons = vec![
        ("SecretNotFound", "the operator is creating it"),
        ("InvalidUrl", "url: bad host"),
    ];
    loop {
        let (m, uri, _, send) = next(&mut handle).await;
        if m == http::Method::DELETE {
            assert!(uri.starts_with(&format!("{ENDPOINTS}/crm")), "{uri}");
            send.send_response(answer(200, json!({"kind": "Status", "status": "Success"})));
            break;
        }
        assert_eq!(
            (m, uri.as_str()),
            (http::Method::GET, &*format!("{ENDPOINTS}/crm"))
        );
        let (reason, message) = if reasons.len() > 1 {
            reasons.remove(0)
        } else {
            reasons[0]
        };
        send.send_response(answer(
            200,
            json!({
                "apiVersion": "hookmesh.io/v1alpha1", "kind": "Endpoint",
                "metadata": {"name": "crm", "namespace": "default", "generation": 1,
                             "labels": {"hookmesh.io/managed-by": "api"}},
                "spec": {"url": "https://crm.example/hooks"},
                "status": {"observedGeneration": 1, "conditions": [{
                    "type": "Ready", "status": "False", "reason": reason, "message": message,
                    "lastTransitionTime": "2026-12-02T00:00:00Z"}]},
            }),
        ));
    }
    match task.await.expect("task") {
        Err(ManageError::Rejected { reason, .. }) => assert_eq!(reason, "InvalidUrl"),
        other => panic!("expected the operator's reason: {other:?}"),
    }
}

#[tokio::test]
async fn only_what_the_api_registered_can_be_deleted() {
    let (kube, _live, mut handle) = setup();
    let task = tokio::spawn(async move { kube.delete_endpoint("default", "crm").await });
    let (m, uri, _, send) = next(&mut handle).await;
    assert_eq!(
        (m, uri.as_str()),
        (http::Method::GET, &*format!("{ENDPOINTS}/crm"))
    );
    send.send_response(answer(
        200,
        json!({"apiVersion": "hookmesh.io/v1alpha1", "kind": "Endpoint",
               "metadata": {"name": "crm", "namespace": "default"},
               "spec": {"url": "https://crm.example/hooks"}}),
    ));
    let err = task.await.expect("task").expect_err("refused");
    assert!(
        matches!(err, ManageError::DeclaredByManifests { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn deleting_a_registered_endpoint_takes_its_registered_subscriptions_and_waits() {
    let (kube, live, mut handle) = setup();
    live.store(with_crm());
    let task = tokio::spawn(async move { kube.delete_endpoint("default", "crm").await });
    let (_, _, _, send) = next(&mut handle).await;
    send.send_response(answer(
        200,
        json!({"apiVersion": "hookmesh.io/v1alpha1", "kind": "Endpoint",
               "metadata": {"name": "crm", "namespace": "default",
                            "labels": {"hookmesh.io/managed-by": "api"}},
               "spec": {"url": "https://crm.example/hooks"}}),
    ));
    let (m, uri, _, send) = next(&mut handle).await;
    assert_eq!(m, http::Method::GET);
    assert!(
        uri.starts_with("/apis/hookmesh.io/v1alpha1/namespaces/default/subscriptions"),
        "{uri}"
    );
    let sub = |name: &str, managed: bool| {
        let mut s = json!({"apiVersion": "hookmesh.io/v1alpha1", "kind": "Subscription",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"endpointRef": {"name": "crm"}}});
        if managed {
            s["metadata"]["labels"] = json!({"hookmesh.io/managed-by": "api"});
        }
        s
    };
    send.send_response(answer(
        200,
        json!({"apiVersion": "hookmesh.io/v1alpha1", "kind": "SubscriptionList",
               "metadata": {}, "items": [sub("crm-orders", true)]}),
    ));
    let (m, uri, _, send) = next(&mut handle).await;
    assert_eq!(m, http::Method::DELETE);
    assert!(uri.contains("/subscriptions/crm-orders"), "{uri}");
    send.send_response(answer(200, json!({"kind": "Status", "status": "Success"})));
    let (m, uri, _, send) = next(&mut handle).await;
    assert_eq!(m, http::Method::DELETE);
    assert!(uri.starts_with(&format!("{ENDPOINTS}/crm")), "{uri}");
    send.send_response(answer(200, json!({"kind": "Status", "status": "Success"})));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !task.is_finished(),
        "waits until the config no longer has it"
    );
    live.store(GatewayConfig::default());
    let done = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("in time")
        .expect("task");
    assert!(done.is_ok(), "{done:?}");
}

#[tokio::test]
async fn a_subscription_is_created_as_the_crd_declares_it() {
    let (kube, live, mut handle) = setup();
    let new = NewSubscription {
        namespace: "default".into(),
        name: "crm-orders".into(),
        endpoint: "crm".into(),
        sources: vec!["orders".into()],
        event_types: vec!["order.*".into()],
    };
    let task = tokio::spawn(async move { kube.create_subscription(&new).await });
    for dry_run in [true, false] {
        let (m, uri, body, send) = next(&mut handle).await;
        assert_eq!(m, http::Method::POST);
        assert!(uri.starts_with("/apis/hookmesh.io/v1alpha1/namespaces/default/subscriptions"));
        assert_eq!(uri.contains("dryRun=All"), dry_run, "{uri}");
        assert_eq!(body["spec"]["endpointRef"]["name"], "crm");
        assert_eq!(body["spec"]["sources"], json!(["orders"]));
        assert_eq!(body["spec"]["filter"]["eventTypes"], json!(["order.*"]));
        send.send_response(answer(201, body));
    }
    live.store(config(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: crm-signing, namespace: default}}\nstringData: {{secret: \"{SIGNING}\"}}\n---\napiVersion: hookmesh.io/v1alpha1\nkind: Endpoint\nmetadata: {{name: crm, namespace: default}}\nspec: {{url: \"https://crm.example/hooks\"}}\n---\napiVersion: hookmesh.io/v1alpha1\nkind: Source\nmetadata: {{name: orders, namespace: default}}\nspec: {{verification: {{scheme: none}}}}\n---\napiVersion: hookmesh.io/v1alpha1\nkind: Subscription\nmetadata: {{name: crm-orders, namespace: default}}\nspec: {{endpointRef: {{name: crm}}, sources: [orders]}}\n"
    )));
    let done = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("in time")
        .expect("task");
    assert!(done.is_ok(), "{done:?}");
}
