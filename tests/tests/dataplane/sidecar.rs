//! The data plane as a standalone sidecar (`--workload NAMESPACE/NAME`): it serves exactly its
//! workload's slice of the manifests, verifies a Stripe-signed webhook and delivers it, signed,
//! to the app beside it on localhost. The objects of other workloads, and those of the central
//! gateway, are not there.

use std::time::Duration;

use bytes::Bytes;
use hookmesh_tests::gateway::{Gateway, GatewayOptions};
use hookmesh_tests::http::now_unix;
use hookmesh_tests::receiver::{Receiver, Reply};
use hookmesh_tests::sign;

const STRIPE_SECRET: &str = "whsec_stripe_sidecar_secret";

fn manifests(app_port: u16) -> String {
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: stripe, namespace: pay}}
stringData: {{secret: "{STRIPE_SECRET}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: signing, namespace: pay}}
stringData: {{secret: "whsec_c2lnbmluZy1rZXktZm9yLXRlc3RzLTAwMDAwMDAw"}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {{name: stripe, namespace: pay}}
spec:
  workload: checkout
  verification: {{scheme: stripe, secretRef: {{name: stripe, key: secret}}}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {{name: app, namespace: pay}}
spec:
  workload: checkout
  url: http://localhost:{app_port}/webhooks/stripe
  secretRef: {{name: signing, key: secret}}
  retry: {{maxAttempts: 20, initialBackoff: 100ms, maxBackoff: 200ms}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {{name: stripe-to-app, namespace: pay}}
spec:
  endpointRef: {{name: app}}
  sources: [stripe]
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {{name: ledger, namespace: pay}}
spec:
  workload: ledger
  verification: {{scheme: none}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {{name: central, namespace: pay}}
spec:
  verification: {{scheme: none}}
"#
    )
}

#[tokio::test]
async fn a_sidecar_verifies_stores_and_delivers_to_its_app_on_localhost() {
    let app = Receiver::start().await.expect("the app");
    let sidecar = Gateway::start_with(GatewayOptions {
        manifests_yaml: Some(manifests(app.addr.port())),
        args: vec!["--workload=pay/checkout".into()],
        ..Default::default()
    })
    .await
    .expect("sidecar");

    let body = br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{}}}"#;
    let sig = sign::stripe(STRIPE_SECRET, now_unix(), body);
    let r = sidecar
        .post(
            "/e/pay/stripe",
            &[
                ("content-type", "application/json"),
                ("stripe-signature", &sig),
            ],
            Bytes::from_static(body),
        )
        .await
        .expect("ingest");
    r.expect(202);
    let id = r.json()["id"].as_str().expect("id").to_string();
    let got = app
        .next(Duration::from_secs(30))
        .await
        .expect("delivered to the app");
    assert_eq!(got.path, "/webhooks/stripe");
    assert_eq!(got.header("webhook-id"), Some(id.as_str()));
    assert!(got
        .header("webhook-signature")
        .is_some_and(|s| s.starts_with("v1,")));
    assert_eq!(&got.body[..], body, "the payload as received");

    // A bad signature is refused, as at the gateway.
    let bad = sidecar
        .post(
            "/e/pay/stripe",
            &[(
                "stripe-signature",
                &sign::stripe("whsec_wrong", now_unix(), body),
            )],
            Bytes::from_static(body),
        )
        .await
        .expect("ingest");
    bad.expect_error(401, "SIGNATURE_INVALID");

    // Another workload's Source, and the central gateway's, are not this sidecar's.
    for other in ["/e/pay/ledger", "/e/pay/central"] {
        sidecar
            .post(other, &[], Bytes::from_static(b"{}"))
            .await
            .expect("ingest")
            .expect_error(404, "SOURCE_NOT_FOUND");
    }
}

#[tokio::test]
async fn a_gateway_does_not_serve_what_a_workloads_sidecar_does() {
    let app = Receiver::start().await.expect("the app");
    let gw = Gateway::start_with(GatewayOptions {
        manifests_yaml: Some(manifests(app.addr.port())),
        ..Default::default()
    })
    .await
    .expect("gateway");
    gw.post("/e/pay/central", &[], Bytes::from_static(b"{}"))
        .await
        .expect("ingest")
        .expect(202);
    gw.post("/e/pay/stripe", &[], Bytes::from_static(b"{}"))
        .await
        .expect("ingest")
        .expect_error(404, "SOURCE_NOT_FOUND");
}

#[tokio::test]
async fn on_sigterm_a_sidecar_delivers_what_it_holds_before_it_exits() {
    // The app is briefly unwell: the first attempts fail and are retried.
    let app = Receiver::start().await.expect("the app");
    app.script([Reply::Status(503), Reply::Status(503), Reply::Status(503)]);
    let mut sidecar = Gateway::start_with(GatewayOptions {
        manifests_yaml: Some(manifests(app.addr.port())),
        args: vec![
            "--workload=pay/checkout".into(),
            "--drain-on-shutdown=true".into(),
            "--drain-timeout=30s".into(),
            "--breaker-threshold=100".into(),
        ],
        ..Default::default()
    })
    .await
    .expect("sidecar");
    let mut ids = Vec::new();
    for i in 0..5 {
        let body = format!(r#"{{"id":"evt_{i}","type":"charge.succeeded"}}"#);
        let sig = sign::stripe(STRIPE_SECRET, now_unix(), body.as_bytes());
        let r = sidecar
            .post(
                "/e/pay/stripe",
                &[
                    ("content-type", "application/json"),
                    ("stripe-signature", &sig),
                ],
                Bytes::from(body),
            )
            .await
            .expect("ingest");
        r.expect(202);
        ids.push(r.json()["id"].as_str().expect("id").to_string());
    }
    // The pod is deleted: SIGTERM at once, with events still queued or retrying.
    sidecar
        .stop(Duration::from_secs(40))
        .await
        .expect("exits cleanly once drained");
    // The app answered 503 to the first three requests and 200 to every later one.
    let received = app.received();
    let answered_ok: Vec<&str> = received
        .iter()
        .skip(3)
        .filter_map(|r| r.header("webhook-id"))
        .collect();
    for id in &ids {
        assert!(
            answered_ok.contains(&id.as_str()),
            "{id} was not delivered before exit ({} requests)",
            received.len()
        );
    }
    assert!(
        sidecar
            .logs()
            .contains("drained: every queued event was delivered"),
        "{}",
        sidecar.logs()
    );
}

/// The README's sidecar example is the file the real-API-server suite installs, word for word.
#[test]
fn the_readmes_sidecar_example_is_the_tested_file() {
    let root = hookmesh_tests::gateway::workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let file =
        std::fs::read_to_string(root.join("examples/sidecar/checkout.yaml")).expect("example");
    let section = readme
        .split("\n## Sidecar mode\n")
        .nth(1)
        .expect("a Sidecar mode section");
    let block = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a yaml block in it");
    assert_eq!(
        block, file,
        "README's example and examples/sidecar/checkout.yaml differ"
    );
}
