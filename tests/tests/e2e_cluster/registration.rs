//! Registration through the REST API in cluster mode, against the real API server: the chart
//! rendered with `dataplane.registration.namespaces`, the operator and the data plane as its
//! ServiceAccounts. A registered Endpoint and Subscription are real resources labelled as the
//! API's, the operator makes the signing Secret, deliveries flow, deletion removes both; the
//! API server's own refusal is a 422; declared objects and other namespaces are refused.

use std::time::Duration;

use anyhow::{ensure, Context as _};
use serde_json::{json, Value};

use super::checks::setup;
use super::env::Env;
use super::gateway::{
    operator_role, verify_standard_webhooks, wait_live, with_install_values, Install,
};
use super::kube_util::{Cluster, ObjRef};
use super::procs::block_on;
use hookmesh_tests::receiver::Receiver;
use hookmesh_tests::wait;

const KEY: &str = "e2e-registration-write-key-0123456789";

pub fn registration(env: &Env) -> anyhow::Result<()> {
    block_on(async {
        let cluster = &setup(env).await?;
        let values = |ns: &str| {
            vec![
                "--set".into(),
                format!("dataplane.registration.namespaces={{{ns}}}"),
            ]
        };
        with_install_values(env, cluster, values, |install, ns| async move {
            scenario(cluster, &install, &ns).await
        })
        .await
    })
}

async fn call(
    dp: &str,
    method: ::http::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let auth = format!("Bearer {KEY}");
    let mut headers = vec![("authorization", auth.as_str())];
    let bytes = match &body {
        Some(b) => {
            headers.push(("content-type", "application/json"));
            bytes::Bytes::from(b.to_string())
        }
        None => bytes::Bytes::new(),
    };
    let r = hookmesh_tests::http::request(method, &format!("{dp}{path}"), &headers, bytes).await?;
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    Ok((r.status, v))
}

async fn scenario(cluster: &Cluster, install: &Install, ns: &str) -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    cluster
        .apply(
            ns,
            &json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "registrar", "labels": {"hookmesh.io/api-key": "true"}},
                    "stringData": {"key": KEY, "role": "write"}}),
        )
        .await?;
    for m in [
        json!({"apiVersion": "hookmesh.io/v1alpha1", "kind": "Source", "metadata": {"name": "orders"},
               "spec": {"verification": {"scheme": "none"}, "eventType": {"jsonPointer": "/type"}}}),
        json!({"apiVersion": "hookmesh.io/v1alpha1", "kind": "Endpoint", "metadata": {"name": "declared"},
               "spec": {"url": format!("http://{}/declared", receiver.addr)}}),
    ] {
        cluster.apply(ns, &m).await?;
    }
    let (_op, op_url) = install.spawn_operator("operator-a")?;
    let (dp_proc, dp) = install.spawn_dataplane("dataplane-0")?;
    wait::retry("the operator to lead", Duration::from_secs(60), || async {
        ensure!(operator_role(&op_url).await? == "leader", "not leading yet");
        Ok(())
    })
    .await?;
    wait_live(cluster, install, &dp, Duration::from_secs(60)).await?;

    // Register: the Endpoint is a real resource, labelled, signing with the operator's Secret.
    let (status, created) = call(
        &dp,
        ::http::Method::POST,
        "/api/v1/endpoints",
        Some(
            json!({"namespace": ns, "name": "crm", "url": format!("http://{}/crm", receiver.addr)}),
        ),
    )
    .await?;
    ensure!(
        status == 201,
        "register: {status} {created}\n{}",
        dp_proc.log_tail()
    );
    let secret = created["secret"].as_str().context("secret")?.to_string();
    let ep = cluster
        .get(ns, &ObjRef::hookmesh("Endpoint", "crm"))
        .await?;
    ensure!(
        ep["metadata"]["labels"]["hookmesh.io/managed-by"] == "api",
        "labels: {}",
        ep["metadata"]
    );
    let stored = cluster.secret_value(ns, "crm-signing", "secret").await?;
    ensure!(
        stored == secret,
        "the secret shown is the operator's signing Secret"
    );

    let (status, sub) = call(
        &dp,
        ::http::Method::POST,
        "/api/v1/subscriptions",
        Some(
            json!({"namespace": ns, "name": "crm-orders", "endpoint_id": "crm",
                    "filter": {"type": "order.*", "source": "orders"}}),
        ),
    )
    .await?;
    ensure!(status == 201, "subscribe: {status} {sub}");

    // Deliveries flow to it, signed with that secret.
    let r = hookmesh_tests::http::post(
        &format!("{dp}/e/{ns}/orders"),
        &[("content-type", "application/json")],
        bytes::Bytes::from_static(br#"{"type":"order.created","n":1}"#),
    )
    .await?;
    ensure!(r.status == 202, "ingest: {} {}", r.status, r.text());
    let got = receiver.next(Duration::from_secs(30)).await?;
    ensure!(got.path == "/crm", "delivered to {}", got.path);
    verify_standard_webhooks(&secret, &got)?;

    // The API server's refusal, before anything exists.
    let (status, bad) = call(
        &dp,
        ::http::Method::POST,
        "/api/v1/endpoints",
        Some(json!({"namespace": ns, "name": "bad", "url": "ftp://example.com/x"})),
    )
    .await?;
    ensure!(
        status == 422 && bad["code"] == "INVALID_OBJECT",
        "bad url: {status} {bad}"
    );
    ensure!(
        cluster
            .get(ns, &ObjRef::hookmesh("Endpoint", "bad"))
            .await
            .is_err(),
        "a refused Endpoint was left behind"
    );
    // Declared objects stay declared; other namespaces are not the data plane's to write.
    let (status, declared) = call(
        &dp,
        ::http::Method::DELETE,
        &format!("/api/v1/endpoints/{ns}/declared"),
        None,
    )
    .await?;
    ensure!(
        status == 409 && declared["code"] == "DECLARED_BY_MANIFESTS",
        "{status} {declared}"
    );
    let (status, elsewhere) = call(
        &dp,
        ::http::Method::POST,
        "/api/v1/endpoints",
        Some(json!({"namespace": install.ns, "name": "x", "url": format!("http://{}/x", receiver.addr)})),
    )
    .await?;
    ensure!(
        status == 409 && elsewhere["code"] == "MANAGEMENT_UNAVAILABLE",
        "outside the registration namespaces: {status} {elsewhere}"
    );

    // Delete: the Endpoint and its registered Subscription go, and so does the route.
    let (status, gone) = call(
        &dp,
        ::http::Method::DELETE,
        &format!("/api/v1/endpoints/{ns}/crm"),
        None,
    )
    .await?;
    ensure!(status == 204, "delete: {status} {gone}");
    ensure!(
        cluster
            .get(ns, &ObjRef::hookmesh("Endpoint", "crm"))
            .await
            .is_err(),
        "Endpoint still there"
    );
    ensure!(
        cluster
            .get(ns, &ObjRef::hookmesh("Subscription", "crm-orders"))
            .await
            .is_err(),
        "Subscription still there"
    );
    println!("registration through the REST API: created, live, delivered, refused, deleted");
    Ok(())
}
