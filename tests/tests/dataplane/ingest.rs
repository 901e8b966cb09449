//! The receive path end to end: the real binary, real HTTP, real sled on disk, and requests
//! signed the way each provider documents it.

// Test helpers fail the test loudly on anything unexpected; that is what unwrap is for here.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;

use hookmesh_dataplane::store::{EventId, Store};
use std::time::Duration;

use hookmesh_tests::gateway::write_manifest as write;
use hookmesh_tests::gateway::{Gateway, GatewayOptions};
use hookmesh_tests::http::{get, now_unix, post, request, Resp};
use hookmesh_tests::sign;
use hookmesh_tests::wait::wait_until;

const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const STRIPE_SECRET: &str = "whsec_stripe_test_secret";
const SHOPIFY_SECRET: &str = "shopify-app-secret";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const HMAC_SECRET: &str = "generic-secret";
const SOURCE_KEY: &str = "ingest-key-0123456789abcdef";
const WRITE_KEY: &str = "write-key-0123456789abcdef";
const READ_KEY: &str = "read-key-0123456789abcdefg";

fn manifests(dir: &Path) {
    let sw_signing = "whsec_c2lnbmluZy1rZXktZm9yLXRlc3RzLW9ubHktMzJieXRlcyE=";
    write(
        dir,
        "secrets.yaml",
        &format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: provider-secrets, namespace: shop}}
stringData:
  github: "{GITHUB_SECRET}"
  stripe: "{STRIPE_SECRET}"
  shopify: "{SHOPIFY_SECRET}"
  slack: "{SLACK_SECRET}"
  sw: "{SW_SECRET}"
  hmac: "{HMAC_SECRET}"
  ingest-key: "{SOURCE_KEY}"
---
apiVersion: v1
kind: Secret
metadata: {{name: sink-signing, namespace: shop}}
stringData: {{secret: "{sw_signing}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: writer, namespace: shop, labels: {{hookmesh.io/api-key: "true"}}}}
stringData: {{key: "{WRITE_KEY}", role: write}}
---
apiVersion: v1
kind: Secret
metadata: {{name: reader, namespace: shop, labels: {{hookmesh.io/api-key: "true"}}}}
stringData: {{key: "{READ_KEY}", role: read}}
"#
        ),
    );
    let source = |name: &str, scheme: &str, key: &str, extra: &str| {
        format!(
            "---\napiVersion: hookmesh.io/v1alpha1\nkind: Source\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  verification:\n    scheme: {scheme}\n    secretRef: {{name: provider-secrets, key: {key}}}\n{extra}"
        )
    };
    let mut text = String::new();
    text += &source("github", "github", "github", "");
    text += &source("stripe", "stripe", "stripe", "");
    text += &source("shopify", "shopify", "shopify", "");
    text += &source("slack", "slack", "slack", "");
    text += &source("sw", "standard-webhooks", "sw", "");
    text += &source(
        "generic",
        "hmac",
        "hmac",
        "    hmac: {header: X-Signature, encoding: base64, prefix: \"sha256=\", timestampHeader: X-Timestamp, signedContent: \"{timestamp}.{body}\"}\n",
    );
    text += &source("audited", "github", "github", "    mode: audit\n");
    text += &source("small", "github", "github", "  maxBodyBytes: 64\n");
    text += &source(
        "keyed",
        "github",
        "github",
        "  auth:\n    apiKeySecretRef: {name: provider-secrets, key: ingest-key}\n",
    );
    text += "---\napiVersion: hookmesh.io/v1alpha1\nkind: Source\nmetadata: {name: open, namespace: shop}\nspec:\n  verification: {scheme: none}\n  eventType: {jsonPointer: /kind}\n  idempotency: {jsonPointer: /id, window: 1h}\n";
    write(dir, "sources.yaml", &text);
    write(
        dir,
        "routes.yaml",
        r#"
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {name: sink, namespace: shop}
spec:
  url: http://127.0.0.1:9/never
  secretRef: {name: sink-signing, key: secret}
  disabled: true
---
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {name: pushes, namespace: shop}
spec:
  endpointRef: {name: sink}
  sources: [github]
  filter: {eventTypes: ["push"]}
"#,
    );
}

struct Fixture {
    gw: Gateway,
    _dir: tempfile::TempDir,
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("manifests");
    std::fs::create_dir(&m).unwrap();
    manifests(&m);
    let gw = start_on(&m, &dir.path().join("data")).await;
    Fixture { gw, _dir: dir }
}

fn assert_accepted(r: &Resp) -> EventId {
    assert_eq!(r.status, 202, "body: {}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().unwrap().to_string();
    id.parse()
        .unwrap_or_else(|_| panic!("{id} is not an evt_ ULID"))
}

fn assert_refused(r: &Resp, status: u16, code: &str) {
    assert_eq!(
        r.status,
        status,
        "body: {}",
        String::from_utf8_lossy(&r.body)
    );
    let j = r.json();
    assert_eq!(j["code"], code, "body: {j}");
    assert!(
        j["error"].is_string() && j["message"].is_string(),
        "error shape: {j}"
    );
}

/// A gateway on `manifests`, keeping its store in `data`.
async fn start_on(manifests: &Path, data: &Path) -> Gateway {
    Gateway::start_with(GatewayOptions {
        manifests: manifests.to_path_buf(),
        data_dir: Some(data.to_path_buf()),
        ..GatewayOptions::default()
    })
    .await
    .unwrap()
}

/// Stop the gateway and read what it stored, straight from sled.
async fn open_store(f: &mut Fixture) -> Store {
    f.gw.stop(Duration::from_secs(20)).await.unwrap();
    Store::open(&f.gw.data_dir.join("sled")).unwrap()
}

#[tokio::test]
async fn github_documented_example_is_accepted_and_stored_byte_exact() {
    let mut f = start().await;
    // GitHub's documented test values: secret "It's a Secret to Everybody", payload "Hello, World!".
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(sign::github(GITHUB_SECRET, b"Hello, World!"), sig);
    let r = post(
        &f.gw.url("/e/shop/github"),
        &[
            ("x-hub-signature-256", sig),
            ("x-github-event", "push"),
            ("x-github-delivery", "d-1"),
            ("content-type", "text/plain"),
        ],
        "Hello, World!",
    )
    .await
    .unwrap();
    let id = assert_accepted(&r);
    assert_eq!(r.json()["status"], "pending", "push is routed to the sink");
    let store = open_store(&mut f).await;
    let event = store.event(id).unwrap().unwrap();
    assert_eq!(event.event_type.as_deref(), Some("push"));
    assert_eq!(event.signature_valid, Some(true));
    assert_eq!(event.idempotency_key.as_deref(), Some("d-1"));
    assert_eq!(event.delivery_ids.len(), 1);
    let payload = store.payload(id).unwrap().unwrap();
    assert_eq!(payload.body, b"Hello, World!");
    let header = |n: &str| {
        payload
            .headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("x-hub-signature-256").as_deref(),
        Some(sig.as_bytes())
    );
    assert_eq!(header("content-type").as_deref(), Some(&b"text/plain"[..]));
}

#[tokio::test]
async fn binary_bodies_are_kept_byte_exact() {
    let mut f = start().await;
    let body: Vec<u8> = (0..=255u8).rev().collect();
    let sig = sign::github(GITHUB_SECRET, &body);
    let r = post(
        &f.gw.url("/e/shop/github"),
        &[("x-hub-signature-256", &sig), ("x-github-event", "ping")],
        body.clone(),
    )
    .await
    .unwrap();
    let id = assert_accepted(&r);
    assert_eq!(
        r.json()["status"],
        "unrouted",
        "ping matches no subscription"
    );
    let store = open_store(&mut f).await;
    assert_eq!(store.payload(id).unwrap().unwrap().body, body);
}

#[tokio::test]
async fn every_provider_scheme_accepts_a_correct_signature_and_refuses_tampering() {
    let f = start().await;
    let now = now_unix();
    let body = br#"{"id":"evt_1","type":"invoice.paid","event":{"type":"message"}}"#;
    let tampered = br#"{"id":"evt_1","type":"invoice.paid","event":{"type":"messagE"}}"#;
    let ts = now.to_string();

    let stripe = sign::stripe(STRIPE_SECRET, now, body);
    let shopify = sign::shopify(SHOPIFY_SECRET, body);
    let slack = sign::slack(SLACK_SECRET, now, body);
    let sw = sign::standard_webhooks(SW_SECRET, "msg_1", now, body);
    let generic = {
        use base64::Engine as _;
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HMAC_SECRET.as_bytes()).unwrap();
        mac.update(format!("{now}.").as_bytes());
        mac.update(body);
        format!(
            "sha256={}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        )
    };
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("stripe", vec![("stripe-signature", &stripe)]),
        (
            "shopify",
            vec![
                ("x-shopify-hmac-sha256", &shopify),
                ("x-shopify-topic", "orders/create"),
            ],
        ),
        (
            "slack",
            vec![
                ("x-slack-signature", &slack),
                ("x-slack-request-timestamp", &ts),
            ],
        ),
        (
            "sw",
            vec![
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &ts),
                ("webhook-signature", &sw),
            ],
        ),
        (
            "generic",
            vec![("x-signature", &generic), ("x-timestamp", &ts)],
        ),
    ];
    for (source, headers) in &cases {
        let url = f.gw.url(&format!("/e/shop/{source}"));
        let bad = post(&url, headers, &tampered[..]).await.unwrap();
        assert_refused(&bad, 401, "SIGNATURE_INVALID");
        let ok = post(&url, headers, &body[..]).await.unwrap();
        assert_eq!(
            ok.status,
            202,
            "{source}: {}",
            String::from_utf8_lossy(&ok.body)
        );
    }
}

#[tokio::test]
async fn wrong_secret_missing_and_malformed_headers_are_refused_with_codes() {
    let f = start().await;
    let now = now_unix();
    let body = br#"{"type":"charge.succeeded","id":"evt_x"}"#;
    let url = f.gw.url("/e/shop/stripe");
    let wrong = sign::stripe("whsec_not_the_secret", now, body);
    assert_refused(
        &post(&url, &[("stripe-signature", &wrong)], &body[..])
            .await
            .unwrap(),
        401,
        "SIGNATURE_INVALID",
    );
    assert_refused(
        &post(&url, &[], &body[..]).await.unwrap(),
        401,
        "SIGNATURE_MISSING",
    );
    for malformed in [
        "garbage",
        "t=,v1=",
        "v1=abcd",
        "t=notanumber,v1=00",
        "t=1,v1=zz",
    ] {
        let r = post(&url, &[("stripe-signature", malformed)], &body[..])
            .await
            .unwrap();
        assert_eq!(
            r.status,
            401,
            "{malformed}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            [
                "SIGNATURE_INVALID",
                "SIGNATURE_MISSING",
                "TIMESTAMP_OUT_OF_TOLERANCE"
            ]
            .contains(&r.code().as_str()),
            "{malformed}: {}",
            r.code()
        );
    }
    let gh = f.gw.url("/e/shop/github");
    assert_refused(
        &post(&gh, &[("x-hub-signature-256", "sha256=not-hex")], "x")
            .await
            .unwrap(),
        401,
        "SIGNATURE_INVALID",
    );
    assert_refused(
        &post(&gh, &[("x-hub-signature-256", "md5=abc")], "x")
            .await
            .unwrap(),
        401,
        "SIGNATURE_INVALID",
    );
    let sw = f.gw.url("/e/shop/sw");
    let ts = now.to_string();
    assert_refused(
        &post(
            &sw,
            &[("webhook-id", "m"), ("webhook-timestamp", &ts)],
            "{}",
        )
        .await
        .unwrap(),
        401,
        "SIGNATURE_MISSING",
    );
    assert_refused(
        &post(
            &sw,
            &[
                ("webhook-id", "m"),
                ("webhook-timestamp", &ts),
                ("webhook-signature", "v1,!!!notbase64"),
            ],
            "{}",
        )
        .await
        .unwrap(),
        401,
        "SIGNATURE_INVALID",
    );
}

#[tokio::test]
async fn stale_and_future_timestamps_are_refused() {
    let f = start().await;
    let body = br#"{"type":"x","id":"1"}"#;
    let url = f.gw.url("/e/shop/stripe");
    for ts in [now_unix() - 301, now_unix() + 301] {
        let sig = sign::stripe(STRIPE_SECRET, ts, body);
        assert_refused(
            &post(&url, &[("stripe-signature", &sig)], &body[..])
                .await
                .unwrap(),
            401,
            "TIMESTAMP_OUT_OF_TOLERANCE",
        );
    }
    // The Standard Webhooks specification's own example is correctly signed but from 2021.
    let spec_body = br#"{"test": 2432232314}"#;
    let spec_sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    assert_eq!(
        sign::standard_webhooks(
            SW_SECRET,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            spec_body
        ),
        spec_sig
    );
    let r = post(
        &f.gw.url("/e/shop/sw"),
        &[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", spec_sig),
        ],
        &spec_body[..],
    )
    .await
    .unwrap();
    assert_refused(&r, 401, "TIMESTAMP_OUT_OF_TOLERANCE");
    let slack_sig = sign::slack(SLACK_SECRET, now_unix() - 3600, body);
    let stale = (now_unix() - 3600).to_string();
    assert_refused(
        &post(
            &f.gw.url("/e/shop/slack"),
            &[
                ("x-slack-signature", &slack_sig),
                ("x-slack-request-timestamp", &stale),
            ],
            &body[..],
        )
        .await
        .unwrap(),
        401,
        "TIMESTAMP_OUT_OF_TOLERANCE",
    );
}

#[tokio::test]
async fn audit_mode_stores_bad_signatures_flagged() {
    let mut f = start().await;
    let r = post(
        &f.gw.url("/e/shop/audited"),
        &[
            ("x-hub-signature-256", "sha256=00"),
            ("x-github-event", "push"),
        ],
        "{}",
    )
    .await
    .unwrap();
    let id = assert_accepted(&r);
    let store = open_store(&mut f).await;
    let e = store.event(id).unwrap().unwrap();
    assert_eq!(e.signature_valid, Some(false));
    assert_eq!(e.signature_error.as_deref(), Some("SIGNATURE_INVALID"));
}

#[tokio::test]
async fn size_limits_unknown_sources_and_routes() {
    let f = start().await;
    let small = f.gw.url("/e/shop/small");
    let at_limit = vec![b'a'; 64];
    let sig = sign::github(GITHUB_SECRET, &at_limit);
    assert_eq!(
        post(&small, &[("x-hub-signature-256", &sig)], at_limit)
            .await
            .unwrap()
            .status,
        202
    );
    let over = vec![b'a'; 65];
    let sig = sign::github(GITHUB_SECRET, &over);
    assert_refused(
        &post(&small, &[("x-hub-signature-256", &sig)], over)
            .await
            .unwrap(),
        413,
        "PAYLOAD_TOO_LARGE",
    );
    // Default limit is 1 MiB.
    let big = vec![b'a'; 1024 * 1024 + 1];
    assert_refused(
        &post(&f.gw.url("/e/shop/github"), &[], big).await.unwrap(),
        413,
        "PAYLOAD_TOO_LARGE",
    );
    assert_refused(
        &post(&f.gw.url("/e/shop/nope"), &[], "{}").await.unwrap(),
        404,
        "SOURCE_NOT_FOUND",
    );
    assert_refused(
        &post(&f.gw.url("/e/other/github"), &[], "{}").await.unwrap(),
        404,
        "SOURCE_NOT_FOUND",
    );
    assert_refused(
        &get(&f.gw.url("/e/shop/github")).await.unwrap(),
        405,
        "METHOD_NOT_ALLOWED",
    );
    assert_refused(
        &get(&f.gw.url("/nothing/here")).await.unwrap(),
        404,
        "ROUTE_NOT_FOUND",
    );
}

#[tokio::test]
async fn non_json_bodies_are_accepted_and_json_pointers_just_find_nothing() {
    let mut f = start().await;
    let r = post(
        &f.gw.url("/e/shop/open"),
        &[("content-type", "application/x-www-form-urlencoded")],
        "a=1&b=2",
    )
    .await
    .unwrap();
    let id = assert_accepted(&r);
    let broken = post(
        &f.gw.url("/e/shop/open"),
        &[("content-type", "application/json")],
        "{not json",
    )
    .await
    .unwrap();
    let broken_id = assert_accepted(&broken);
    let store = open_store(&mut f).await;
    for id in [id, broken_id] {
        let e = store.event(id).unwrap().unwrap();
        assert_eq!(e.event_type, None);
        assert_eq!(e.signature_valid, None, "scheme none verifies nothing");
    }
}

#[tokio::test]
async fn duplicates_return_the_original_id() {
    let mut f = start().await;
    let gh = f.gw.url("/e/shop/github");
    let sig = sign::github(GITHUB_SECRET, b"{}");
    let h = [
        ("x-hub-signature-256", sig.as_str()),
        ("x-github-event", "push"),
        ("x-github-delivery", "72d3162e-cc78"),
    ];
    let first = assert_accepted(&post(&gh, &h, "{}").await.unwrap());
    let again = post(&gh, &h, "{}").await.unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["duplicate"], true);
    assert_eq!(again.json()["id"], first.to_string());
    // Another delivery id is another event.
    let h2 = [
        ("x-hub-signature-256", sig.as_str()),
        ("x-github-event", "push"),
        ("x-github-delivery", "other"),
    ];
    assert_ne!(assert_accepted(&post(&gh, &h2, "{}").await.unwrap()), first);

    // Stripe's default key is the body's /id; concurrent duplicates still store exactly one.
    let body = br#"{"id":"evt_same","type":"invoice.paid"}"#;
    let sig = sign::stripe(STRIPE_SECRET, now_unix(), body);
    let url = f.gw.url("/e/shop/stripe");
    let headers = [("stripe-signature", sig.as_str())];
    let answers = futures::future::join_all((0..20).map(|_| post(&url, &headers, &body[..]))).await;
    let answers: Vec<_> = answers.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(answers.iter().filter(|r| r.status == 202).count(), 1);
    assert_eq!(answers.iter().filter(|r| r.status == 200).count(), 19);
    let ids: HashSet<String> = answers
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "every answer names the one stored event");
    let store = open_store(&mut f).await;
    assert_eq!(store.event_count(), 3);
}

#[tokio::test]
async fn source_api_key_is_required_when_configured() {
    let f = start().await;
    let url = f.gw.url("/e/shop/keyed");
    let sig = sign::github(GITHUB_SECRET, b"{}");
    assert_refused(
        &post(&url, &[("x-hub-signature-256", &sig)], "{}")
            .await
            .unwrap(),
        401,
        "UNAUTHORIZED",
    );
    assert_refused(
        &post(
            &url,
            &[("x-hub-signature-256", &sig), ("x-api-key", "wrong")],
            "{}",
        )
        .await
        .unwrap(),
        401,
        "UNAUTHORIZED",
    );
    let bearer = format!("Bearer {SOURCE_KEY}");
    assert_eq!(
        post(
            &url,
            &[("x-hub-signature-256", &sig), ("authorization", &bearer)],
            "{}"
        )
        .await
        .unwrap()
        .status,
        202
    );
    assert_eq!(
        post(
            &url,
            &[("x-hub-signature-256", &sig), ("x-api-key", SOURCE_KEY)],
            "{}"
        )
        .await
        .unwrap()
        .status,
        202
    );
}

#[tokio::test]
async fn publish_path_stores_through_the_same_pipeline() {
    let mut f = start().await;
    let url = f.gw.url("/api/v1/events");
    let body = r#"{"type":"order.created","source":"open","namespace":"shop","payload":{"order":42},"idempotency_key":"o-42"}"#;
    assert_refused(&post(&url, &[], body).await.unwrap(), 401, "UNAUTHORIZED");
    assert_refused(
        &post(&url, &[("x-api-key", READ_KEY)], body).await.unwrap(),
        403,
        "FORBIDDEN",
    );
    let auth = format!("Bearer {WRITE_KEY}");
    let id = assert_accepted(&post(&url, &[("authorization", &auth)], body).await.unwrap());
    let dup = post(&url, &[("authorization", &auth)], body).await.unwrap();
    assert_eq!(
        (dup.status, dup.json()["id"].as_str()),
        (200, Some(id.to_string().as_str()))
    );
    assert_refused(
        &post(&url, &[("authorization", &auth)], "{not json")
            .await
            .unwrap(),
        400,
        "INVALID_BODY",
    );
    assert_refused(
        &post(
            &url,
            &[("authorization", &auth)],
            r#"{"type":"x","source":"nope","namespace":"shop","payload":1}"#,
        )
        .await
        .unwrap(),
        404,
        "SOURCE_NOT_FOUND",
    );
    let store = open_store(&mut f).await;
    let e = store.event(id).unwrap().unwrap();
    assert_eq!(e.event_type.as_deref(), Some("order.created"));
    assert_eq!(store.payload(id).unwrap().unwrap().body, br#"{"order":42}"#);
}

#[tokio::test]
async fn kill_9_loses_no_accepted_event() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("manifests");
    std::fs::create_dir(&m).unwrap();
    manifests(&m);
    let data = dir.path().join("data");
    let mut gw = start_on(&m, &data).await;
    let url = gw.url("/e/shop/open");
    let sends = (0..200).map(|i| {
        let url = url.clone();
        async move {
            post(
                &url,
                &[("content-type", "application/json")],
                format!(r#"{{"kind":"k","n":{i}}}"#),
            )
            .await
        }
    });
    let answers = futures::future::join_all(sends).await;
    let accepted: Vec<EventId> = answers
        .into_iter()
        .filter_map(|r| r.ok())
        .filter(|r| r.status == 202)
        .map(|r| r.json()["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(accepted.len(), 200);
    gw.kill9().unwrap();
    let store = Store::open(&data.join("sled")).unwrap();
    for id in &accepted {
        assert!(
            store.event(*id).unwrap().is_some(),
            "{id} was acknowledged but is gone after kill -9"
        );
        assert!(store.payload(*id).unwrap().is_some());
    }
    drop(store);
    // And the process comes back up on the same data.
    gw.restart().await.unwrap();
    assert_eq!(get(&gw.url("/readyz")).await.unwrap().status, 200);
}

/// kill -9 while requests are being written, three times over: every acknowledged event
/// survives, and every event the store holds is whole (record, payload, both indexes, its
/// idempotency claim). Whether a kill lands mid-group is luck; `store::commit`'s unit tests cut a
/// group at every point deterministically, this checks the same promise through the real binary.
#[tokio::test]
async fn kill_9_under_load_leaves_every_event_whole_or_absent() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("manifests");
    std::fs::create_dir(&m).unwrap();
    manifests(&m);
    let data = dir.path().join("data");
    let mut accepted: Vec<EventId> = Vec::new();
    for round in 0..3 {
        let mut gw = start_on(&m, &data).await;
        let url = gw.url("/e/shop/open");
        let senders: Vec<_> = (0..32)
            .map(|w| {
                let url = url.clone();
                tokio::spawn(async move {
                    let mut ok = Vec::new();
                    for n in 0.. {
                        let body = format!(r#"{{"kind":"k","id":"{round}-{w}-{n}"}}"#);
                        match post(&url, &[("content-type", "application/json")], body).await {
                            Ok(r) if r.status == 202 => {
                                ok.push(r.json()["id"].as_str().unwrap().to_string())
                            }
                            Ok(r) => panic!("unexpected {}: {:?}", r.status, r.body),
                            Err(_) => break,
                        }
                    }
                    ok
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        gw.kill9().unwrap();
        let before = accepted.len();
        for s in senders {
            accepted.extend(
                s.await
                    .unwrap()
                    .iter()
                    .map(|id| id.parse::<EventId>().unwrap()),
            );
        }
        assert!(
            accepted.len() > before + 50,
            "round {round}: the load never got going"
        );
        check_whole(&data, &accepted);
    }
}

/// Open the store (which repairs what a crash cut short), then read sled directly.
fn check_whole(data: &Path, accepted: &[EventId]) {
    let store = Store::open(&data.join("sled")).unwrap();
    for id in accepted {
        let e = store.event(*id).unwrap();
        let e = e.unwrap_or_else(|| panic!("{id} acknowledged, then lost"));
        // `from`/`to` listings filter by id time; received_at must be that same instant.
        assert_eq!(e.received_at, id.timestamp_ms(), "{id}");
        assert!(
            store.payload(*id).unwrap().is_some(),
            "{id} without its payload"
        );
    }
    drop(store);
    let db = sled::open(data.join("sled")).unwrap();
    let ids = |tree: &str, skip: usize| -> HashSet<Vec<u8>> {
        db.open_tree(tree)
            .unwrap()
            .iter()
            .keys()
            .map(|k| k.unwrap()[skip..].to_vec())
            .collect()
    };
    // Index entries: a key per event (`prefix + id`), or one per commit group (`prefix + its
    // largest id + 'g'`, the ids in the value).
    let indexed = |tree: &str, skip: usize| -> HashSet<Vec<u8>> {
        let mut out = HashSet::new();
        for item in db.open_tree(tree).unwrap().iter() {
            let (k, v) = item.unwrap();
            match k.len() - skip {
                16 => {
                    out.insert(k[skip..].to_vec());
                }
                17 if k[k.len() - 1] == b'g' => out.extend(v.chunks(16).map(<[u8]>::to_vec)),
                _ => panic!("not an index key: {k:?}"),
            }
        }
        out
    };
    let events = ids("events", 0);
    assert!(events.len() >= accepted.len());
    // Each payload is stored with its record, and each such event is named by its group's
    // entry for the payload retention sweep.
    assert!(
        ids("payloads", 0).is_empty(),
        "a payload outside its record"
    );
    assert_eq!(
        indexed("idx_payload", 0),
        events,
        "payload index entries without events, or the reverse"
    );
    assert_eq!(indexed("idx_source", b"shop\0open\0".len()), events);
    assert_eq!(indexed("idx_status", 1), events);
    let claims: HashSet<Vec<u8>> = db
        .open_tree("idempotency")
        .unwrap()
        .iter()
        .values()
        .map(|v| v.unwrap()[..16].to_vec())
        .collect();
    assert_eq!(
        claims, events,
        "each event has its claim, each claim its event"
    );
}

#[tokio::test]
async fn hot_reload_applies_valid_changes_and_keeps_the_last_good_config() {
    let f = start().await;
    let hash = |r: Resp| r.json()["config_hash"].as_str().unwrap().to_string();
    let before = hash(get(&f.gw.url("/readyz")).await.unwrap());
    assert_eq!(
        post(&f.gw.url("/e/shop/late"), &[], "{}")
            .await
            .unwrap()
            .status,
        404
    );
    write(
        &f.gw.manifests,
        "late.yaml",
        "apiVersion: hookmesh.io/v1alpha1\nkind: Source\nmetadata: {name: late, namespace: shop}\nspec:\n  verification: {scheme: none}\n",
    );
    wait_until(
        "new config never went live",
        Duration::from_secs(10),
        async || hash(get(&f.gw.url("/readyz")).await.unwrap()) != before,
    )
    .await
    .unwrap();
    let after = hash(get(&f.gw.url("/readyz")).await.unwrap());
    assert_eq!(
        post(&f.gw.url("/e/shop/late"), &[], "{}")
            .await
            .unwrap()
            .status,
        202
    );
    // An invalid edit (dangling secret) must not take the late source, or anything, down.
    write(
        &f.gw.manifests,
        "late.yaml",
        "apiVersion: hookmesh.io/v1alpha1\nkind: Source\nmetadata: {name: late, namespace: shop}\nspec:\n  verification: {scheme: github, secretRef: {name: missing, key: x}}\n",
    );
    wait_until(
        "the problem is never logged",
        Duration::from_secs(10),
        async || f.gw.logs().contains("SecretNotFound"),
    )
    .await
    .unwrap();
    let log = f.gw.logs();
    let line = log.lines().find(|l| l.contains("SecretNotFound")).unwrap();
    assert!(
        line.contains("late") && line.contains("shop"),
        "logged with its object: {line}"
    );
    assert_eq!(hash(get(&f.gw.url("/readyz")).await.unwrap()), after);
    assert_eq!(
        post(&f.gw.url("/e/shop/late"), &[], "{}")
            .await
            .unwrap()
            .status,
        202
    );
    // Unparseable YAML: same, the last good config keeps serving.
    write(&f.gw.manifests, "broken.yaml", "this: [is not: valid yaml");
    wait_until(
        "the YAML error is never logged",
        Duration::from_secs(10),
        async || f.gw.logs().contains("not valid YAML"),
    )
    .await
    .unwrap();
    assert_eq!(hash(get(&f.gw.url("/readyz")).await.unwrap()), after);
    assert_eq!(
        post(&f.gw.url("/e/shop/late"), &[], "{}")
            .await
            .unwrap()
            .status,
        202
    );
}

#[tokio::test]
async fn weird_requests_never_get_a_500() {
    let f = start().await;
    let long_name = format!("/e/shop/{}", "a".repeat(5000));
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/e/shop/github".into(),
            vec![("x-hub-signature-256", "sha256=")],
        ),
        (
            "POST",
            "/e/shop/stripe".into(),
            vec![("stripe-signature", "t=99999999999999999999999,v1=00")],
        ),
        (
            "POST",
            "/e/shop/slack".into(),
            vec![
                ("x-slack-request-timestamp", "-1"),
                ("x-slack-signature", "v0="),
            ],
        ),
        (
            "POST",
            "/e/shop/sw".into(),
            vec![
                ("webhook-id", ""),
                ("webhook-timestamp", ""),
                ("webhook-signature", ",,, v1,"),
            ],
        ),
        ("POST", long_name, vec![]),
        ("POST", "/e/%00/%ff".into(), vec![]),
        ("PUT", "/api/v1/events".into(), vec![]),
        (
            "POST",
            "/api/v1/events".into(),
            vec![("authorization", "Bearer")],
        ),
        (
            "POST",
            "/api/v1/events".into(),
            vec![("authorization", "Basic Zm9vOmJhcg==")],
        ),
    ];
    for (method, path, headers) in cases {
        let r = request(method.parse().unwrap(), &f.gw.url(&path), &headers, "{}")
            .await
            .unwrap();
        assert!(
            r.status >= 400 && r.status < 500,
            "{method} {path}: {} {:?}",
            r.status,
            r.body
        );
        assert!(
            !r.code().is_empty(),
            "{method} {path}: no code in {:?}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

#[tokio::test]
async fn a_slack_url_verification_signed_by_slack_sdk_is_answered_and_not_stored() {
    let mut f = start().await;
    let url = f.gw.url("/e/shop/slack");
    let now = now_unix();
    let ts = now.to_string();
    // Slack's documented handshake, signed by Slack's own SDK.
    let challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P";
    let body = format!(
        r#"{{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"{challenge}","type":"url_verification"}}"#
    );
    let sig = hookmesh_tests::python::slack_signature(SLACK_SECRET, now, body.as_bytes()).unwrap();
    assert_eq!(sig, sign::slack(SLACK_SECRET, now, body.as_bytes()));
    let headers = [
        ("x-slack-signature", sig.as_str()),
        ("x-slack-request-timestamp", ts.as_str()),
        ("content-type", "application/json"),
    ];
    let r = post(&url, &headers, body.clone()).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({ "challenge": challenge }));

    // The same handshake with a wrong signature gets no answer.
    let forged = sign::slack("not-the-secret", now, body.as_bytes());
    let bad = post(
        &url,
        &[
            ("x-slack-signature", forged.as_str()),
            ("x-slack-request-timestamp", ts.as_str()),
        ],
        body.clone(),
    )
    .await
    .unwrap();
    assert_refused(&bad, 401, "SIGNATURE_INVALID");

    // An event from the same app is stored as usual.
    let event = br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}"#;
    let sig = hookmesh_tests::python::slack_signature(SLACK_SECRET, now, event).unwrap();
    let stored = post(
        &url,
        &[
            ("x-slack-signature", sig.as_str()),
            ("x-slack-request-timestamp", ts.as_str()),
        ],
        &event[..],
    )
    .await
    .unwrap();
    assert_eq!(stored.status, 202, "{}", stored.text());
    let id: EventId = stored.json()["id"].as_str().unwrap().parse().unwrap();

    let store = open_store(&mut f).await;
    let all = store
        .list_events(&Default::default(), None, 100, usize::MAX)
        .unwrap();
    assert_eq!(
        all.items.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![id],
        "only the event was stored, not the handshake"
    );
}
