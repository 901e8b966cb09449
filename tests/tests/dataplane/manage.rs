//! Endpoints and subscriptions registered through the REST API, standalone: the files appear
//! under `managed/`, the normal compile path makes them live, deliveries flow to the new
//! endpoint signed with the secret shown once, deleting removes the route; what manifests
//! declare cannot be changed from the API; every refusal has a code.

use std::time::Duration;

use ::http::Method;
use hookmesh_tests::python::standard_webhooks_verify;
use hookmesh_tests::receiver::Receiver;
use hookmesh_tests::rest_harness::{self, Gateway, Resp};
use serde_json::{json, Value};

const WRITE: &str = "manage-write-key-0123456789";
const READ: &str = "manage-read-key-0123456789";
const TEAM_B: &str = "manage-team-b-key-0123456789";

fn manifests(receiver: &Receiver) -> String {
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: signing, namespace: default}}
stringData: {{secret: "whsec_c2lnbmluZy1rZXktZm9yLXRlc3RzLTAwMDAwMDAw"}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {{name: orders, namespace: default}}
spec:
  verification: {{scheme: none}}
  eventType: {{jsonPointer: /type}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {{name: orders, namespace: team-b}}
spec:
  verification: {{scheme: none}}
  eventType: {{jsonPointer: /type}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {{name: declared, namespace: default}}
spec:
  url: {declared}
  secretRef: {{name: signing, key: secret}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {{name: declared-invoices, namespace: default}}
spec:
  endpointRef: {{name: declared}}
  filter: {{eventTypes: ["invoice.*"]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: write, namespace: default, labels: {{hookmesh.io/api-key: "true"}}}}
stringData: {{key: {WRITE}, role: write}}
---
apiVersion: v1
kind: Secret
metadata: {{name: read, namespace: default, labels: {{hookmesh.io/api-key: "true"}}}}
stringData: {{key: {READ}, role: read}}
---
apiVersion: v1
kind: Secret
metadata: {{name: team-b, namespace: team-b, labels: {{hookmesh.io/api-key: "true"}}}}
stringData: {{key: {TEAM_B}, role: write, namespace: team-b}}
"#,
        declared = receiver.url("/declared"),
    )
}

async fn start(receiver: &Receiver) -> Gateway {
    rest_harness::start_with(&manifests(receiver), &[])
        .await
        .expect("gateway")
}

async fn post(gw: &Gateway, path: &str, key: &str, body: Value) -> Resp {
    gw.call(Method::POST, path, key, Some(body)).await
}

async fn deliveries_to(gw: &Gateway, event: &str) -> Vec<String> {
    let r = gw
        .get(&format!("/api/v1/events/{event}/deliveries"), WRITE)
        .await;
    r.expect(200);
    r.json()["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|d| d["endpoint"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_registered_endpoint_and_subscription_go_live_receive_signed_deliveries_and_go_away() {
    let receiver = Receiver::start().await.expect("receiver");
    let gw = start(&receiver).await;

    let created = post(
        &gw,
        "/api/v1/endpoints",
        WRITE,
        json!({"name": "crm", "url": receiver.url("/crm"), "max_attempts": 3}),
    )
    .await;
    created.expect(201);
    let body = created.json();
    let secret = body["secret"].as_str().expect("a secret").to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(body["endpoint"]["namespace"], "default");
    assert_eq!(body["endpoint"]["retry"]["max_attempts"], 3);
    // The file is there, labelled as the API's, and the listing never shows the secret again.
    let file = gw
        .manifests
        .join("managed/default/endpoint/crm/manifest.yaml");
    let text = std::fs::read_to_string(&file).expect("the managed file");
    assert!(text.contains("hookmesh.io/managed-by: api"), "{text}");
    let listed = gw.get("/api/v1/endpoints", WRITE).await;
    assert!(listed.text().contains("\"crm\"") && !listed.text().contains(&secret));

    let sub = post(
        &gw,
        "/api/v1/subscriptions",
        WRITE,
        json!({"endpoint_id": "default/crm", "name": "crm-orders", "filter": {"type": "order.*", "source": "orders"}}),
    )
    .await;
    sub.expect(201);
    assert_eq!(sub.json()["event_types"], json!(["order.*"]));
    assert_eq!(sub.json()["sources"], json!(["orders"]));
    assert!(gw
        .manifests
        .join("managed/default/subscription/crm-orders/manifest.yaml")
        .exists());

    // Deliveries flow to it, signed with the secret shown at creation.
    let id = gw
        .ingest(
            "default",
            "orders",
            &json!({"type": "order.created", "n": 1}),
        )
        .await;
    assert_eq!(deliveries_to(&gw, &id).await, vec!["crm"]);
    let got = receiver
        .next(Duration::from_secs(10))
        .await
        .expect("a delivery");
    assert_eq!(got.path, "/crm");
    let headers: Vec<(&str, &str)> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .iter()
        .map(|h| (*h, got.header(h).expect("a signature header")))
        .collect();
    assert_eq!(
        standard_webhooks_verify(&secret, &headers, &got.body).expect("python"),
        Ok(())
    );

    // Deleting the endpoint takes its registered subscriptions with it; the route is gone.
    gw.call(Method::DELETE, "/api/v1/endpoints/default/crm", WRITE, None)
        .await
        .expect(204);
    assert!(!file.exists());
    assert!(!gw
        .manifests
        .join("managed/default/subscription/crm-orders/manifest.yaml")
        .exists());
    let after = gw
        .ingest(
            "default",
            "orders",
            &json!({"type": "order.created", "n": 2}),
        )
        .await;
    assert!(deliveries_to(&gw, &after).await.is_empty());
    let subs = gw.get("/api/v1/subscriptions", WRITE).await;
    assert!(!subs.text().contains("crm-orders"));
}

#[tokio::test]
async fn registrations_are_refused_with_a_code_and_declared_objects_are_left_alone() {
    let receiver = Receiver::start().await.expect("receiver");
    let gw = start(&receiver).await;
    let url = receiver.url("/x");
    let cases = [
        (READ, json!({"name": "a", "url": url}), 403, "FORBIDDEN"),
        (
            TEAM_B,
            json!({"namespace": "default", "name": "a", "url": url}),
            403,
            "FORBIDDEN",
        ),
        (
            WRITE,
            json!({"name": "Bad_Name", "url": url}),
            422,
            "INVALID_OBJECT",
        ),
        (
            WRITE,
            json!({"name": "a", "url": "ftp://example.com/x"}),
            422,
            "INVALID_OBJECT",
        ),
        (WRITE, json!({"name": "a"}), 422, "INVALID_OBJECT"),
        (
            WRITE,
            json!({"name": "declared", "url": url}),
            409,
            "ALREADY_EXISTS",
        ),
        (
            WRITE,
            json!({"name": "a", "url": url, "colour": "red"}),
            400,
            "INVALID_BODY",
        ),
    ];
    for (key, body, status, code) in cases {
        post(&gw, "/api/v1/endpoints", key, body.clone())
            .await
            .expect_error(status, code);
    }
    let bad_url = post(
        &gw,
        "/api/v1/endpoints",
        WRITE,
        json!({"name": "a", "url": "ftp://example.com/x"}),
    )
    .await;
    assert!(
        bad_url.text().contains("InvalidUrl"),
        "the compiler's reason: {}",
        bad_url.text()
    );
    assert!(
        !gw.manifests.join("managed/default/endpoint/a").exists(),
        "nothing written"
    );

    for (body, status, code) in [
        (json!({"endpoint_id": "nowhere"}), 422, "INVALID_OBJECT"),
        (
            json!({"endpoint_id": "team-b/declared"}),
            422,
            "INVALID_OBJECT",
        ),
        (
            json!({"endpoint_id": "declared", "filter": {"type": "order.[" }}),
            422,
            "INVALID_OBJECT",
        ),
        (
            json!({"endpoint_id": "declared", "name": "declared-invoices"}),
            409,
            "ALREADY_EXISTS",
        ),
    ] {
        post(&gw, "/api/v1/subscriptions", WRITE, body.clone())
            .await
            .expect_error(status, code);
    }

    // What manifests declare stays theirs.
    gw.call(
        Method::DELETE,
        "/api/v1/endpoints/default/declared",
        WRITE,
        None,
    )
    .await
    .expect_error(409, "DECLARED_BY_MANIFESTS");
    gw.call(
        Method::DELETE,
        "/api/v1/subscriptions/default/declared-invoices",
        WRITE,
        None,
    )
    .await
    .expect_error(409, "DECLARED_BY_MANIFESTS");
    gw.call(
        Method::DELETE,
        "/api/v1/endpoints/default/nowhere",
        WRITE,
        None,
    )
    .await
    .expect_error(404, "RESOURCE_NOT_FOUND");
    gw.call(
        Method::DELETE,
        "/api/v1/endpoints/default/declared",
        READ,
        None,
    )
    .await
    .expect_error(403, "FORBIDDEN");
    // A registered subscription on a declared endpoint can go; the endpoint cannot.
    post(
        &gw,
        "/api/v1/subscriptions",
        WRITE,
        json!({"endpoint_id": "declared", "name": "extra"}),
    )
    .await
    .expect(201);
    gw.call(
        Method::DELETE,
        "/api/v1/subscriptions/default/extra",
        WRITE,
        None,
    )
    .await
    .expect(204);

    // The longest name a Kubernetes object may have still fits on disk.
    let long = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(long.len(), 253);
    post(
        &gw,
        "/api/v1/endpoints",
        WRITE,
        json!({"name": long, "url": url}),
    )
    .await
    .expect(201);
    gw.call(
        Method::DELETE,
        &format!("/api/v1/endpoints/default/{long}"),
        WRITE,
        None,
    )
    .await
    .expect(204);
    assert!(!gw
        .manifests
        .join("managed/default/endpoint")
        .join(&long)
        .exists());

    // A scoped key registers in its own namespace without naming it.
    let team = post(
        &gw,
        "/api/v1/endpoints",
        TEAM_B,
        json!({"name": "hook", "url": url}),
    )
    .await;
    team.expect(201);
    assert_eq!(team.json()["endpoint"]["namespace"], "team-b");
}

#[tokio::test]
async fn endpoints_and_subscriptions_page_with_a_cursor() {
    let receiver = Receiver::start().await.expect("receiver");
    let gw = start(&receiver).await;
    for name in ["e1", "e2"] {
        post(
            &gw,
            "/api/v1/endpoints",
            WRITE,
            json!({"name": name, "url": receiver.url("/p")}),
        )
        .await
        .expect(201);
    }
    // declared, e1, e2 in default; hook-less team-b has none.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/endpoints?namespace=default&limit=2&cursor={c}"),
            None => "/api/v1/endpoints?namespace=default&limit=2".to_string(),
        };
        let page = gw.get(&path, WRITE).await;
        page.expect(200);
        let j = page.json();
        seen.extend(
            j["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|e| e["name"].as_str().unwrap_or_default().to_string()),
        );
        match j["pagination"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, vec!["declared", "e1", "e2"]);
    gw.get("/api/v1/endpoints?limit=2&cursor=%21%21", WRITE)
        .await
        .expect_error(400, "INVALID_PARAMETER");
    gw.get("/api/v1/subscriptions?limit=0", WRITE)
        .await
        .expect_error(400, "INVALID_PARAMETER");
    let all = gw.get("/api/v1/subscriptions", WRITE).await;
    assert!(
        all.json().get("pagination").is_none(),
        "without limit, one answer"
    );
}
