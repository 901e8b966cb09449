//! The operator's API calls, asserted request by request against kube's mock transport:
//! method, path, query, content type and body.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hookmesh_api::{GatewayConfig, Source};
use hookmesh_operator::controller::{self, Ctx};
use hookmesh_operator::leader::{decide, Decision, LeaderElector, LeaseConfig};
use hookmesh_operator::metrics::Metrics;
use hookmesh_operator::publish::{self, SecretRef};
use hookmesh_operator::reconcile::{self, MissingSigningSecret};
use hookmesh_operator::signing;
use http::{Method, Request, Response};
use k8s_openapi::api::coordination::v1::LeaseSpec;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{json, Value};
use tokio::sync::watch;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Responder = tower_test::mock::SendResponse<Response<Body>>;

fn mock() -> (kube::Client, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, "default"), handle)
}

struct Seen {
    method: Method,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

impl Seen {
    fn has_query(&self, pair: &str) -> bool {
        self.query.split('&').any(|p| p == pair)
    }
}

async fn next(handle: &mut Handle) -> (Seen, Responder) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("a request in time")
        .expect("client alive");
    let (parts, body) = req.into_parts();
    let bytes = body.collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    let seen = Seen {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default(),
        body,
    };
    (seen, send)
}

async fn no_more_requests(handle: &mut Handle) {
    // Either nothing arrives, or every client is gone (the mock then yields None).
    let r = tokio::time::timeout(Duration::from_millis(100), handle.next_request()).await;
    if let Ok(Some((req, _))) = r {
        panic!(
            "expected no further request, got {} {}",
            req.method(),
            req.uri()
        );
    }
}

fn respond(send: Responder, code: u16, body: Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
}

fn status_body(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

// ---------------------------------------------------------------- config Secret

#[tokio::test]
async fn config_secret_is_server_side_applied_with_the_field_manager() {
    let (client, mut handle) = mock();
    let plan = reconcile::plan(&crate::common::valid());
    let at = SecretRef {
        namespace: "hookmesh".into(),
        name: "hookmesh-config".into(),
    };
    let config = plan.config().clone();
    let call = tokio::spawn({
        let at = at.clone();
        async move { publish::apply_config(client, &at, &config).await }
    });
    let (seen, send) = next(&mut handle).await;
    assert_eq!(seen.method, Method::PATCH);
    assert_eq!(
        seen.path,
        "/api/v1/namespaces/hookmesh/secrets/hookmesh-config"
    );
    assert!(
        seen.has_query("fieldManager=hookmesh-operator"),
        "{}",
        seen.query
    );
    assert!(seen.has_query("force=true"), "{}", seen.query);
    assert_eq!(seen.content_type, "application/apply-patch+yaml");
    assert_eq!(seen.body["apiVersion"], "v1");
    assert_eq!(seen.body["kind"], "Secret");
    assert_eq!(seen.body["metadata"]["name"], "hookmesh-config");
    assert_eq!(
        seen.body["metadata"]["annotations"]["hookmesh.io/config-hash"],
        plan.config().hash
    );
    let b64 = seen.body["data"]["config.json"].as_str().unwrap();
    let decoded: GatewayConfig = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(&decoded, plan.config());
    assert!(
        seen.body.get("status").is_none() && seen.body["metadata"].get("resourceVersion").is_none()
    );
    respond(send, 200, seen.body.clone());
    call.await.unwrap().unwrap();
}

#[tokio::test]
async fn config_secret_apply_errors_name_the_secret() {
    let (client, mut handle) = mock();
    let at = SecretRef {
        namespace: "hookmesh".into(),
        name: "cfg".into(),
    };
    let call =
        tokio::spawn(
            async move { publish::apply_config(client, &at, &GatewayConfig::default()).await },
        );
    let (_, send) = next(&mut handle).await;
    respond(send, 403, status_body(403, "Forbidden"));
    let err = call.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("hookmesh/cfg"), "{err}");
}

#[test]
fn config_secret_ref_parses_namespace_slash_name() {
    let r: SecretRef = "hookmesh/hookmesh-config".parse().unwrap();
    assert_eq!(
        (r.namespace.as_str(), r.name.as_str()),
        ("hookmesh", "hookmesh-config")
    );
    for bad in ["", "name", "/name", "ns/", "a/b/c"] {
        assert!(bad.parse::<SecretRef>().is_err(), "{bad}");
    }
}

// ---------------------------------------------------------------- signing Secrets

fn missing() -> MissingSigningSecret {
    MissingSigningSecret {
        namespace: "shop".into(),
        endpoint: "ci".into(),
        endpoint_uid: Some("uid-ep".into()),
        secret_name: "ci-signing".into(),
        ed25519: false,
    }
}

#[tokio::test]
async fn signing_secret_is_created_with_a_fresh_whsec_key() {
    let (client, mut handle) = mock();
    let call = tokio::spawn(async move { signing::create_if_absent(client, &missing()).await });
    let (seen, send) = next(&mut handle).await;
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.path, "/api/v1/namespaces/shop/secrets");
    assert!(
        seen.has_query("fieldManager=hookmesh-operator"),
        "{}",
        seen.query
    );
    assert_eq!(seen.body["metadata"]["name"], "ci-signing");
    let owner = &seen.body["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["uid"].as_str()),
        (Some("Endpoint"), Some("uid-ep"))
    );
    let raw = base64::engine::general_purpose::STANDARD
        .decode(seen.body["data"]["secret"].as_str().unwrap())
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let key = hookmesh_api::compile::decode_whsec(text.as_bytes()).expect("whsec_ + base64");
    assert_eq!(key.len(), 32);
    respond(send, 201, seen.body.clone());
    assert!(call.await.unwrap().unwrap().is_some());
    no_more_requests(&mut handle).await;
}

#[tokio::test]
async fn an_existing_signing_secret_is_never_overwritten() {
    let (client, mut handle) = mock();
    let call = tokio::spawn(async move { signing::create_if_absent(client, &missing()).await });
    let (seen, send) = next(&mut handle).await;
    assert_eq!(
        seen.method,
        Method::POST,
        "create only: it cannot replace anything"
    );
    respond(send, 409, status_body(409, "AlreadyExists"));
    assert!(call.await.unwrap().unwrap().is_none());
    no_more_requests(&mut handle).await;
}

#[test]
fn generated_keys_differ_and_an_ed25519_endpoint_gets_a_seed() {
    assert_ne!(
        signing::generate_secret_value(false),
        signing::generate_secret_value(false)
    );
    let seed = signing::generate_secret_value(true);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(seed.strip_prefix("whsk_").expect("whsk_"))
        .unwrap();
    assert_eq!(raw.len(), 32);
}

#[tokio::test]
async fn a_rotation_is_one_merge_patch_guarded_by_the_resource_version() {
    use hookmesh_operator::reconcile::Rotation;
    let (client, mut handle) = mock();
    let r = Rotation {
        namespace: "shop".into(),
        endpoint: "ci".into(),
        secret_name: "ci-signing".into(),
        token: "t1".into(),
        grace_ms: 3_600_000,
        current: b"whsec_b2xk".to_vec(),
        resource_version: Some("41".into()),
        ed25519: false,
    };
    let call = tokio::spawn(async move { signing::rotate(client, &r, 0).await });
    let (seen, send) = next(&mut handle).await;
    assert_eq!(seen.method, Method::PATCH);
    assert_eq!(seen.path, "/api/v1/namespaces/shop/secrets/ci-signing");
    assert_eq!(seen.content_type, "application/merge-patch+json");
    assert_eq!(seen.body["metadata"]["resourceVersion"], "41");
    let field = |k: &str| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(seen.body["data"][k].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(field("previous"), "whsec_b2xk");
    assert_eq!(field("previousExpiresAt"), "1970-01-01T01:00:00Z");
    assert!(field("secret").starts_with("whsec_"));
    // Someone changed the Secret meanwhile: a conflict, reported, nothing retried blindly.
    respond(send, 409, status_body(409, "Conflict"));
    assert!(call.await.unwrap().is_err());
    no_more_requests(&mut handle).await;
}

// ---------------------------------------------------------------- status via the controller

fn ctx(client: kube::Client, plan: Option<reconcile::Plan>) -> Arc<Ctx> {
    let (_tx, rx) = watch::channel(plan.map(Arc::new));
    Arc::new(Ctx {
        client: client.clone(),
        config_secret: SecretRef {
            namespace: "hookmesh".into(),
            name: "hookmesh-config".into(),
        },
        plan: rx,
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "hookmesh-operator".into(),
                instance: Some("test".into()),
            },
        ),
        metrics: Arc::new(Metrics::default()),
        sidecars: None,
    })
}

#[tokio::test]
async fn first_sight_patches_ready_unknown_to_the_status_subresource() {
    let (client, mut handle) = mock();
    let ctx = ctx(client, None);
    let call = tokio::spawn(controller::reconcile_object(
        Arc::new(crate::common::source()),
        ctx,
    ));
    let (seen, send) = next(&mut handle).await;
    assert_eq!(seen.method, Method::PATCH);
    assert_eq!(
        seen.path,
        "/apis/hookmesh.io/v1alpha1/namespaces/shop/sources/gh/status"
    );
    assert!(
        seen.has_query("fieldManager=hookmesh-operator"),
        "{}",
        seen.query
    );
    assert_eq!(seen.content_type, "application/merge-patch+json");
    assert_eq!(seen.body["status"]["observedGeneration"], 3);
    assert_eq!(seen.body["status"]["conditions"][0]["status"], "Unknown");
    assert!(seen.body.get("spec").is_none());
    respond(
        send,
        200,
        serde_json::to_value(crate::common::source()).unwrap(),
    );
    call.await.unwrap().unwrap();
    no_more_requests(&mut handle).await;
}

#[tokio::test]
async fn a_problem_patches_ready_false_and_records_a_warning_event() {
    let (client, mut handle) = mock();
    let mut snap = crate::common::valid();
    snap.secrets.clear();
    let plan = reconcile::plan(&snap);
    let call = tokio::spawn(controller::reconcile_object(
        Arc::new(crate::common::source()),
        ctx(client, Some(plan)),
    ));
    let (seen, send) = next(&mut handle).await;
    assert_eq!(
        seen.path,
        "/apis/hookmesh.io/v1alpha1/namespaces/shop/sources/gh/status"
    );
    let cond = &seen.body["status"]["conditions"][0];
    assert_eq!(
        (cond["status"].as_str(), cond["reason"].as_str()),
        (Some("False"), Some("SecretNotFound"))
    );
    assert!(cond["message"]
        .as_str()
        .unwrap()
        .contains("shop/gh-webhook"));
    assert_eq!(seen.body["status"]["ingestPath"], "/e/shop/gh");
    respond(
        send,
        200,
        serde_json::to_value(crate::common::source()).unwrap(),
    );
    let (event, send) = next(&mut handle).await;
    assert_eq!(event.method, Method::POST);
    assert_eq!(event.path, "/apis/events.k8s.io/v1/namespaces/shop/events");
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "SecretNotFound");
    assert_eq!(event.body["regarding"]["name"], "gh");
    respond(send, 201, event.body.clone());
    call.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_up_to_date_status_sends_nothing() {
    let (client, mut handle) = mock();
    let plan = reconcile::plan(&crate::common::valid());
    let mut src: Source = crate::common::source();
    src.status = Some(
        serde_json::from_value(json!({
            "observedGeneration": 3, "ingestPath": "/e/shop/gh",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                "message": "compiled into the gateway config", "observedGeneration": 3,
                "lastTransitionTime": "2024-01-01T00:00:00Z"}]
        }))
        .unwrap(),
    );
    let call = tokio::spawn(controller::reconcile_object(
        Arc::new(src),
        ctx(client, Some(plan)),
    ));
    no_more_requests(&mut handle).await;
    call.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_plan_for_an_older_generation_waits() {
    let (client, mut handle) = mock();
    let plan = reconcile::plan(&crate::common::valid());
    let mut src = crate::common::source();
    src.metadata.generation = Some(4);
    src.status = Some(
        serde_json::from_value(json!({
            "observedGeneration": 3,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "m",
                "lastTransitionTime": "2024-01-01T00:00:00Z"}]
        }))
        .unwrap(),
    );
    let call = tokio::spawn(controller::reconcile_object(
        Arc::new(src),
        ctx(client, Some(plan)),
    ));
    no_more_requests(&mut handle).await;
    call.await.unwrap().unwrap();
}

// ---------------------------------------------------------------- leader election

fn lease_cfg(me: &str) -> LeaseConfig {
    LeaseConfig::new("hookmesh".into(), "hookmesh-operator".into(), me.into())
}

fn lease(holder: &str, rv: &str, duration: i32, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "hookmesh-operator", "namespace": "hookmesh", "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration,
                 "renewTime": "2024-01-01T00:00:00.000000Z", "leaseTransitions": transitions}
    })
}

const LEASE_PATH: &str =
    "/apis/coordination.k8s.io/v1/namespaces/hookmesh/leases/hookmesh-operator";

#[test]
fn lease_decisions() {
    let held = |h: &str| LeaseSpec {
        holder_identity: Some(h.into()),
        ..LeaseSpec::default()
    };
    assert_eq!(decide(None, "me", false), Decision::Create);
    assert_eq!(decide(Some(&held("me")), "me", false), Decision::Renew);
    assert_eq!(decide(Some(&held("")), "me", false), Decision::TakeOver);
    assert_eq!(
        decide(Some(&LeaseSpec::default()), "me", false),
        Decision::TakeOver
    );
    assert_eq!(decide(Some(&held("other")), "me", true), Decision::TakeOver);
    assert_eq!(
        decide(Some(&held("other")), "me", false),
        Decision::Standby {
            holder: "other".into()
        }
    );
}

#[tokio::test]
async fn lease_is_created_then_renewed_with_its_resource_version() {
    let (client, mut handle) = mock();
    let mut elector = LeaderElector::new(client, lease_cfg("pod-a"));
    let server = tokio::spawn(async move {
        let (get, send) = next(&mut handle).await;
        assert_eq!((get.method, get.path.as_str()), (Method::GET, LEASE_PATH));
        respond(send, 404, status_body(404, "NotFound"));
        let (create, send) = next(&mut handle).await;
        assert_eq!(create.method, Method::POST);
        assert_eq!(
            create.path,
            "/apis/coordination.k8s.io/v1/namespaces/hookmesh/leases"
        );
        assert_eq!(create.body["spec"]["holderIdentity"], "pod-a");
        assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);
        let mut created = create.body.clone();
        created["metadata"]["resourceVersion"] = json!("7");
        respond(send, 201, created);
        // Renew: an update carrying the resourceVersion read, no extra GET.
        let (renew, send) = next(&mut handle).await;
        assert_eq!(
            (renew.method, renew.path.as_str()),
            (Method::PUT, LEASE_PATH)
        );
        assert_eq!(renew.body["metadata"]["resourceVersion"], "7");
        assert_eq!(renew.body["spec"]["holderIdentity"], "pod-a");
        assert_eq!(renew.body["spec"]["leaseTransitions"], 0);
        let mut renewed = renew.body.clone();
        renewed["metadata"]["resourceVersion"] = json!("8");
        respond(send, 200, renewed);
        // Release on shutdown: holder cleared.
        let (release, send) = next(&mut handle).await;
        assert_eq!(release.method, Method::PUT);
        assert_eq!(release.body["metadata"]["resourceVersion"], "8");
        assert!(release.body["spec"]
            .get("holderIdentity")
            .is_none_or(Value::is_null));
        respond(send, 200, release.body.clone());
    });
    assert!(elector.try_acquire_or_renew().await.unwrap(), "acquired");
    assert!(elector.try_acquire_or_renew().await.unwrap(), "renewed");
    elector.release().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_live_foreign_lease_is_left_alone_and_an_expired_one_taken_over() {
    let (client, mut handle) = mock();
    let mut elector = LeaderElector::new(client, lease_cfg("pod-b"));
    let server = tokio::spawn(async move {
        let (get, send) = next(&mut handle).await;
        assert_eq!(get.method, Method::GET);
        respond(send, 200, lease("pod-a", "5", 1, 2));
        // Seen again unchanged after more than its 1 s duration: expired.
        let (get, send) = next(&mut handle).await;
        assert_eq!(get.method, Method::GET);
        respond(send, 200, lease("pod-a", "5", 1, 2));
        let (take, send) = next(&mut handle).await;
        assert_eq!((take.method, take.path.as_str()), (Method::PUT, LEASE_PATH));
        assert_eq!(
            take.body["metadata"]["resourceVersion"], "5",
            "optimistic concurrency"
        );
        assert_eq!(take.body["spec"]["holderIdentity"], "pod-b");
        assert_eq!(take.body["spec"]["leaseTransitions"], 3);
        respond(send, 200, take.body.clone());
    });
    assert!(
        !elector.try_acquire_or_renew().await.unwrap(),
        "pod-a's lease is live"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        elector.try_acquire_or_renew().await.unwrap(),
        "took over the expired lease"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn losing_a_write_race_means_standby() {
    let (client, mut handle) = mock();
    let mut elector = LeaderElector::new(client, lease_cfg("pod-b"));
    let server = tokio::spawn(async move {
        let (_, send) = next(&mut handle).await;
        respond(send, 200, lease("", "9", 15, 0));
        let (put, send) = next(&mut handle).await;
        assert_eq!(put.method, Method::PUT);
        respond(send, 409, status_body(409, "Conflict"));
        // Next round re-reads: pod-a won.
        let (get, send) = next(&mut handle).await;
        assert_eq!(get.method, Method::GET);
        respond(send, 200, lease("pod-a", "10", 15, 1));
        no_more_requests(&mut handle).await;
    });
    assert!(!elector.try_acquire_or_renew().await.unwrap());
    assert!(!elector.try_acquire_or_renew().await.unwrap());
    server.await.unwrap();
}

#[tokio::test]
async fn the_elector_publishes_leadership_and_releases_on_shutdown() {
    let (client, mut handle) = mock();
    let mut cfg = lease_cfg("pod-a");
    cfg.retry_period = Duration::from_millis(50);
    let (leader_tx, mut leader_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = tokio::spawn(LeaderElector::new(client, cfg).run(leader_tx, stop_rx));
    let (_, send) = next(&mut handle).await;
    respond(send, 404, status_body(404, "NotFound"));
    let (create, send) = next(&mut handle).await;
    let mut created = create.body.clone();
    created["metadata"]["resourceVersion"] = json!("1");
    respond(send, 201, created);
    leader_rx.wait_for(|l| *l).await.unwrap();
    stop_tx.send(true).unwrap();
    // Possibly one renew in flight, then the release.
    loop {
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method, Method::PUT);
        let released = req.body["spec"]
            .get("holderIdentity")
            .is_none_or(Value::is_null);
        respond(send, 200, req.body.clone());
        if released {
            break;
        }
    }
    run.await.unwrap();
    assert!(!*leader_rx.borrow());
}

// ---------------------------------------------------------------- /metrics

#[test]
fn metrics_render_prometheus_text() {
    let m = Metrics::default();
    Metrics::inc(&m.compiles);
    m.set_hash("sha256:abc");
    let text = m.render();
    assert!(text.contains(
        "# TYPE hookmesh_operator_compiles_total counter\nhookmesh_operator_compiles_total 1\n"
    ));
    assert!(text.contains("hookmesh_operator_leader 0\n"));
    assert!(text.contains("hookmesh_operator_config_info{hash=\"sha256:abc\"} 1\n"));
}

// ---------------------------------------------------------------- sidecar slices

fn naming() -> hookmesh_operator::sidecars::Naming {
    hookmesh_operator::sidecars::Naming {
        config_namespace: "hookmesh".into(),
        prefix: "hookmesh-sidecar-".into(),
        events_role: Some("hookmesh-sidecar".into()),
    }
}

#[tokio::test]
async fn a_slice_is_applied_as_secret_role_and_bindings_in_that_order() {
    use hookmesh_operator::sidecars::{self, Slice};
    let (client, mut handle) = mock();
    let slice = Slice {
        namespace: "shop".into(),
        workload: "checkout".into(),
        config: GatewayConfig {
            hash: "sha256:abc".into(),
            ..GatewayConfig::default()
        },
        service_accounts: ["checkout".to_string()].into(),
    };
    let call = tokio::spawn(async move { sidecars::apply(&client, &naming(), &slice).await });
    let expect = [
        "/api/v1/namespaces/hookmesh/secrets/hookmesh-sidecar-shop.checkout",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/hookmesh/roles/hookmesh-sidecar-shop.checkout",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/hookmesh/rolebindings/hookmesh-sidecar-shop.checkout",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/rolebindings/hookmesh-sidecar-checkout",
    ];
    for path in expect {
        let (seen, send) = next(&mut handle).await;
        assert_eq!(seen.method, Method::PATCH);
        assert_eq!(seen.path, path);
        assert!(
            seen.has_query("fieldManager=hookmesh-operator"),
            "{}",
            seen.query
        );
        assert!(seen.has_query("force=true"), "{}", seen.query);
        assert_eq!(seen.content_type, "application/apply-patch+yaml");
        if path.ends_with("/secrets/hookmesh-sidecar-shop.checkout") {
            let b64 = seen.body["data"]["config.json"].as_str().unwrap();
            let config: GatewayConfig = serde_json::from_slice(
                &base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(config.hash, "sha256:abc");
        }
        if path.contains("/rolebindings/") {
            assert_eq!(
                seen.body["subjects"],
                json!([{"kind": "ServiceAccount", "name": "checkout", "namespace": "shop"}])
            );
        }
        let mut body = seen.body.clone();
        body["metadata"]["resourceVersion"] = json!("1");
        respond(send, 200, body);
    }
    call.await.unwrap().unwrap();
    no_more_requests(&mut handle).await;
}

#[tokio::test]
async fn removing_a_slice_deletes_bindings_first_and_tolerates_what_is_gone() {
    use hookmesh_operator::sidecars;
    let (client, mut handle) = mock();
    let call =
        tokio::spawn(async move { sidecars::remove(&client, &naming(), "shop", "checkout").await });
    let expect = [
        ("/apis/rbac.authorization.k8s.io/v1/namespaces/shop/rolebindings/hookmesh-sidecar-checkout", 404),
        ("/apis/rbac.authorization.k8s.io/v1/namespaces/hookmesh/rolebindings/hookmesh-sidecar-shop.checkout", 200),
        ("/apis/rbac.authorization.k8s.io/v1/namespaces/hookmesh/roles/hookmesh-sidecar-shop.checkout", 200),
        ("/api/v1/namespaces/hookmesh/secrets/hookmesh-sidecar-shop.checkout", 200),
    ];
    for (path, code) in expect {
        let (seen, send) = next(&mut handle).await;
        assert_eq!(seen.method, Method::DELETE);
        assert_eq!(seen.path, path);
        if code == 404 {
            respond(send, 404, status_body(404, "NotFound"));
        } else {
            respond(
                send,
                200,
                json!({"apiVersion": "v1", "kind": "Status", "status": "Success"}),
            );
        }
    }
    call.await.unwrap().unwrap();
    no_more_requests(&mut handle).await;
}

#[tokio::test]
async fn a_refused_slice_write_names_the_object_and_stops() {
    use hookmesh_operator::sidecars::{self, Slice};
    let (client, mut handle) = mock();
    let slice = Slice {
        namespace: "shop".into(),
        workload: "checkout".into(),
        config: GatewayConfig::default(),
        service_accounts: Default::default(),
    };
    let call = tokio::spawn(async move { sidecars::apply(&client, &naming(), &slice).await });
    let (_, send) = next(&mut handle).await;
    respond(
        send,
        200,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}),
    );
    let (seen, send) = next(&mut handle).await;
    assert!(seen.path.ends_with("/roles/hookmesh-sidecar-shop.checkout"));
    respond(send, 403, status_body(403, "Forbidden"));
    let err = call.await.unwrap().unwrap_err().to_string();
    assert!(
        err.contains("Role hookmesh/hookmesh-sidecar-shop.checkout"),
        "{err}"
    );
    no_more_requests(&mut handle).await;
}

/// A data plane that answers the health poll with `reports`, one per call (the last one
/// repeating), and refuses a call without the peer token.
async fn fake_dataplane(reports: Vec<Value>) -> String {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse as _;
    let reports = Arc::new(std::sync::Mutex::new(reports));
    let app = axum::Router::new().route(
        "/internal/v1/endpoints",
        axum::routing::get(move |headers: HeaderMap| {
            let reports = reports.clone();
            async move {
                if headers.get("authorization").map(|v| v.as_bytes()) != Some(b"Bearer peer-t") {
                    return (StatusCode::UNAUTHORIZED, axum::Json(json!({}))).into_response();
                }
                let mut r = reports.lock().unwrap();
                let next = if r.len() > 1 {
                    r.remove(0)
                } else {
                    r[0].clone()
                };
                axum::Json(next).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn health_report(state: &str, opened: u64, dead: u64) -> Value {
    let health = json!({"state": state, "consecutive_failures": if state == "healthy" { 0 } else { 5 },
        "succeeded_in_window": 3, "failed_in_window": 1, "success_rate_percent": 75,
        "last_error": "HTTP 503", "last_error_at": 1_764_000_000_000u64,
        "last_success_at": 1_764_000_001_000u64, "circuit_opened": opened});
    json!({"config_hash": "h", "partial": false, "missing_peers": [], "data": [
        {"namespace": "shop", "name": "ci", "health": health,
         "counters": {"delivered": 3, "failed": dead, "retried": 1, "dead_lettered": dead},
         "pods": [{"node": 0, "circuit": "closed", "paused": null, "health": health,
                   "counters": {"delivered": 3, "failed": dead, "retried": 1, "dead_lettered": dead}}]},
        // Not a cached Endpoint (deleted meanwhile): left alone.
        {"namespace": "shop", "name": "gone", "health": health, "pods": []}]})
}

#[tokio::test]
async fn the_health_loop_patches_on_change_only_records_events_and_retries_a_conflict() {
    use hookmesh_operator::health;
    use kube::runtime::reflector;
    use kube::runtime::watcher;
    use std::ops::Not as _;

    let url = fake_dataplane(vec![
        health_report("healthy", 0, 0),
        health_report("healthy", 0, 0),
        health_report("circuit_open", 1, 2),
    ])
    .await;
    let (client, mut handle) = mock();
    let (store, mut writer) = reflector::store::<hookmesh_api::Endpoint>();
    let mut ep = crate::common::endpoint();
    writer.apply_watcher_event(&watcher::Event::Apply(ep.clone()));
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "hookmesh-operator".into(),
            instance: None,
        },
    );
    let settings = health::Settings {
        url,
        token: "peer-t".into(),
        interval: Duration::from_millis(50),
        min_interval: Duration::ZERO,
        resync: Duration::from_secs(3600),
    };
    let metrics = Arc::new(Metrics::default());
    let run = tokio::spawn(health::run(
        client,
        store,
        recorder,
        metrics.clone(),
        settings,
    ));

    // First sight of a healthy receiver: Healthy=True, with the resourceVersion read.
    let (patch, send) = next(&mut handle).await;
    assert_eq!(patch.method, Method::PATCH);
    assert_eq!(
        patch.path,
        "/apis/hookmesh.io/v1alpha1/namespaces/shop/endpoints/ci/status"
    );
    assert_eq!(patch.content_type, "application/merge-patch+json");
    assert_eq!(patch.body["metadata"]["resourceVersion"], "101");
    let healthy = &patch.body["status"]["conditions"][0];
    assert_eq!(
        (healthy["type"].as_str(), healthy["status"].as_str()),
        (Some("Healthy"), Some("True"))
    );
    assert_eq!(healthy["reason"], "Delivering");
    assert_eq!(patch.body["status"]["delivery"]["successRatePercent"], 75);
    // What the watch would bring back.
    ep.metadata.resource_version = Some("102".into());
    ep.status = Some(serde_json::from_value(patch.body["status"].clone()).unwrap());
    writer.apply_watcher_event(&watcher::Event::Apply(ep.clone()));
    send.send_response(
        Response::builder()
            .body(Body::from(serde_json::to_vec(&ep).unwrap()))
            .unwrap(),
    );

    // The circuit opens: first the Event, then the condition; a conflict is retried next poll.
    let (event, send) = next(&mut handle).await;
    assert_eq!(event.method, Method::POST);
    assert_eq!(event.path, "/apis/events.k8s.io/v1/namespaces/shop/events");
    assert_eq!(event.body["reason"], "CircuitOpened");
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["regarding"]["name"], "ci");
    assert_eq!(event.body["regarding"]["uid"], "uid-ep");
    respond(send, 201, event.body.clone());
    let (dead, send) = next(&mut handle).await;
    assert_eq!(dead.body["reason"], "DeadLettered");
    assert!(dead.body["note"]
        .as_str()
        .unwrap()
        .starts_with("2 deliveries dead-lettered"));
    respond(send, 201, dead.body.clone());
    let (patch, send) = next(&mut handle).await;
    assert_eq!(patch.body["metadata"]["resourceVersion"], "102");
    assert_eq!(
        patch.body["status"]["conditions"][0]["reason"],
        "CircuitOpen"
    );
    respond(
        send,
        409,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
            "message": "the object has been modified", "code": 409}),
    );
    let (again, send) = next(&mut handle).await;
    assert_eq!(again.method, Method::PATCH);
    assert_eq!(again.body["status"]["conditions"][0]["status"], "False");
    ep.status = Some(serde_json::from_value(again.body["status"].clone()).unwrap());
    writer.apply_watcher_event(&watcher::Event::Apply(ep.clone()));
    respond(send, 200, serde_json::to_value(&ep).unwrap());

    // Steady: no more writes of any kind.
    no_more_requests(&mut handle).await;
    assert!(run.is_finished().not());
    run.abort();
    let m = metrics.render();
    assert!(
        m.contains("hookmesh_operator_health_patches_total 2"),
        "{m}"
    );
}
