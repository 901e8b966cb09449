//! The real-cluster suite: CRDs, manifests, the real operator and data-plane binaries as local
//! processes against a real API server, and a signed GitHub webhook delivered to a local
//! receiver.
//!
//! Runs only when `HOOKMESH_E2E_KUBECONFIG` names a kubeconfig (a throwaway cluster: kind, k3d,
//! minikube). It applies the CRDs cluster-wide (server-side apply, field manager
//! `hookmesh-e2e`), works in a fresh namespace `hookmesh-e2e-<random>` and deletes it at the
//! end. Without the variable it prints "skipped: HOOKMESH_E2E_KUBECONFIG not set" and passes.
//!
//! Run: `HOOKMESH_E2E_KUBECONFIG=$HOME/.kube/config cargo test -p hookmesh-tests --test e2e_cluster -- --nocapture`

#![allow(clippy::unwrap_used)]

mod e2e_cluster {
    pub mod kube_util;
    pub mod procs;
    pub mod receiver;
}

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use base64::Engine as _;
use e2e_cluster::kube_util::{self as ku, Cluster};
use e2e_cluster::procs::{self, Proc};
use e2e_cluster::receiver::Receiver;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const GITHUB_SECRET: &str = "e2e: It's a Secret to Everybody";
const CONFIG_SECRET: &str = "hookmesh-config";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_and_dataplane_against_a_real_cluster() {
    let Some(kubeconfig) = std::env::var_os("HOOKMESH_E2E_KUBECONFIG").filter(|v| !v.is_empty())
    else {
        eprintln!("skipped: HOOKMESH_E2E_KUBECONFIG not set");
        return;
    };
    let cluster = Cluster::connect(kubeconfig.into())
        .await
        .expect("connect to the e2e cluster");
    let ns = format!("hookmesh-e2e-{}", procs::random_suffix());
    let result = run(&cluster, &ns).await;
    if let Err(e) = cluster.delete_namespace(&ns).await {
        eprintln!("cleanup: could not delete namespace {ns}: {e:#}");
    }
    if let Err(e) = result {
        panic!("e2e failed in namespace {ns}: {e:#}");
    }
}

async fn run(cluster: &Cluster, ns: &str) -> anyhow::Result<()> {
    let root = procs::workspace_root();
    let bins = procs::build_binaries().context("build hookmesh-operator and hookmesh-dataplane")?;
    let logs = tempfile::tempdir()?;

    // 1. CRDs (cluster-scoped, server-side apply) and a fresh namespace.
    cluster
        .apply_crds(&root.join("crds/hookmesh.io.yaml"))
        .await?;
    cluster.create_namespace(ns).await?;
    println!("namespace {ns}");

    // 2. The examples, moved into the test namespace, plus this test's own chain:
    //    Secret -> Source (github) -> Subscription -> Endpoint (local receiver, no secretRef so
    //    the operator generates its signing Secret).
    let receiver = Receiver::start().await?;
    let examples = cluster.apply_dir(&root.join("examples"), ns).await?;
    println!("applied {} example objects", examples.len());
    cluster
        .apply(
            ns,
            &json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "gh-webhook"},
                "stringData": {"secret": GITHUB_SECRET}
            }),
        )
        .await?;
    cluster
        .apply(ns, &json!({
            "apiVersion": "hookmesh.io/v1alpha1", "kind": "Source",
            "metadata": {"name": "gh"},
            "spec": {"verification": {"scheme": "github", "secretRef": {"name": "gh-webhook", "key": "secret"}}}
        }))
        .await?;
    cluster
        .apply(
            ns,
            &json!({
                "apiVersion": "hookmesh.io/v1alpha1", "kind": "Endpoint",
                "metadata": {"name": "receiver"},
                "spec": {"url": format!("http://{}/hook", receiver.addr), "timeoutSeconds": 5,
                         "retry": {"maxAttempts": 5, "initialBackoff": "200ms", "maxBackoff": "2s"}}
            }),
        )
        .await?;
    cluster
        .apply(ns, &json!({
            "apiVersion": "hookmesh.io/v1alpha1", "kind": "Subscription",
            "metadata": {"name": "gh-to-receiver"},
            "spec": {"endpointRef": {"name": "receiver"}, "sources": ["gh"], "filter": {"eventTypes": ["push"]}}
        }))
        .await?;

    // 3. The operator, as a local process with leader election in the test namespace.
    let metrics_port = procs::free_port()?;
    let mut operator = Proc::spawn(
        "operator",
        &bins.operator,
        &[
            format!("--config-secret={ns}/{CONFIG_SECRET}"),
            format!("--metrics-listen=127.0.0.1:{metrics_port}"),
            "--leader-election".into(),
            "--lease-name=hookmesh-e2e".into(),
            format!("--lease-namespace={ns}"),
        ],
        cluster.kubeconfig(),
        logs.path(),
    )?;
    let op_url = format!("http://127.0.0.1:{metrics_port}");

    // 4. Everything becomes Ready=True for its current generation.
    let mut objects = examples.clone();
    objects.extend([
        ku::ObjRef::hookmesh("Source", "gh"),
        ku::ObjRef::hookmesh("Endpoint", "receiver"),
        ku::ObjRef::hookmesh("Subscription", "gh-to-receiver"),
    ]);
    for o in &objects {
        cluster
            .wait_ready(ns, o, "True", None, Duration::from_secs(90))
            .await
            .with_context(|| {
                format!(
                    "{} {} never became Ready=True\n{}",
                    o.kind,
                    o.name,
                    operator.log_tail()
                )
            })?;
    }
    println!("all {} hookmesh objects Ready=True", objects.len());
    let src = cluster
        .get(ns, &ku::ObjRef::hookmesh("Source", "gh"))
        .await?;
    ensure!(
        src["status"]["ingestPath"] == format!("/e/{ns}/gh"),
        "ingestPath: {}",
        src["status"]
    );
    let ep = cluster
        .get(ns, &ku::ObjRef::hookmesh("Endpoint", "receiver"))
        .await?;
    ensure!(
        ep["status"]["subscriptions"] == 1,
        "subscription count: {}",
        ep["status"]
    );
    let signing = cluster
        .secret_value(ns, "receiver-signing", "secret")
        .await?;
    ensure!(
        signing.starts_with("whsec_"),
        "generated signing Secret is a whsec_ key"
    );

    // The operator's HTTP surface while leading.
    let (code, _) = procs::http("GET", &format!("{op_url}/healthz"), &[], b"").await?;
    ensure!(code == 200, "/healthz {code}");
    let (code, body) = procs::http("GET", &format!("{op_url}/readyz"), &[], b"").await?;
    ensure!(
        code == 200 && body.contains("leader"),
        "/readyz {code} {body}"
    );
    let (_, metrics) = procs::http("GET", &format!("{op_url}/metrics"), &[], b"").await?;
    ensure!(
        metrics.contains("hookmesh_operator_leader 1"),
        "metrics:\n{metrics}"
    );
    let lease = cluster
        .get(
            ns,
            &ku::ObjRef::new("coordination.k8s.io/v1", "Lease", "hookmesh-e2e"),
        )
        .await?;
    ensure!(
        lease["spec"]["holderIdentity"].is_string(),
        "lease held: {lease}"
    );

    // 5. No status churn: with nothing changing, the Source's resourceVersion stays put.
    let rv = src["metadata"]["resourceVersion"].clone();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = cluster
        .get(ns, &ku::ObjRef::hookmesh("Source", "gh"))
        .await?;
    ensure!(
        again["metadata"]["resourceVersion"] == rv,
        "status rewritten without a change"
    );

    // 6. Break the Source's Secret -> Ready=False with the reason; fix it -> Ready=True.
    cluster
        .merge_patch(
            ns,
            &ku::ObjRef::core("Secret", "gh-webhook"),
            &json!({"data": {"secret": null, "other": "eA=="}}),
        )
        .await?;
    cluster
        .wait_ready(
            ns,
            &ku::ObjRef::hookmesh("Source", "gh"),
            "False",
            Some("SecretKeyNotFound"),
            Duration::from_secs(30),
        )
        .await
        .with_context(|| operator.log_tail())?;
    println!("broken Secret -> Source Ready=False SecretKeyNotFound");
    ensure!(
        cluster.has_event(ns, "gh", "SecretKeyNotFound").await?,
        "a Warning Event names the problem"
    );
    // The Subscription routes from the broken Source by name and stays ready.
    let b64 = base64::engine::general_purpose::STANDARD.encode(GITHUB_SECRET);
    cluster
        .merge_patch(
            ns,
            &ku::ObjRef::core("Secret", "gh-webhook"),
            &json!({"data": {"secret": b64}}),
        )
        .await?;
    cluster
        .wait_ready(
            ns,
            &ku::ObjRef::hookmesh("Source", "gh"),
            "True",
            Some("Ready"),
            Duration::from_secs(30),
        )
        .await
        .with_context(|| operator.log_tail())?;
    println!("fixed Secret -> Source Ready=True");

    // 7. The data plane in cluster mode, fed by the config Secret.
    let published = cluster.config_hash(ns, CONFIG_SECRET).await?;
    let dp_port = procs::free_port()?;
    let data_dir = tempfile::tempdir()?;
    let mut dataplane = Proc::spawn(
        "dataplane",
        &bins.dataplane,
        &[
            format!("--config-secret={ns}/{CONFIG_SECRET}"),
            format!("--data-dir={}", data_dir.path().display()),
            format!("--listen=127.0.0.1:{dp_port}"),
        ],
        cluster.kubeconfig(),
        logs.path(),
    )?;
    let dp_url = format!("http://127.0.0.1:{dp_port}");
    procs::wait_for(Duration::from_secs(30), || async {
        let (code, body) = procs::http("GET", &format!("{dp_url}/readyz"), &[], b"").await?;
        ensure!(code == 200, "readyz {code} {body}");
        ensure!(
            body.contains(&published),
            "readyz does not show config {published}: {body}"
        );
        Ok(())
    })
    .await
    .with_context(|| {
        format!(
            "data plane never ready on config {published}\n{}",
            dataplane.log_tail()
        )
    })?;
    println!("data plane ready on {published}");

    // 8. A signed GitHub push goes in and comes out at the receiver, signed by hookmesh.
    let body =
        br#"{"ref":"refs/heads/main","after":"e2e","repository":{"full_name":"hookmesh/e2e"}}"#;
    let delivery = format!("e2e-{}", procs::random_suffix());
    let sig = github_signature(GITHUB_SECRET, body);
    let headers = [
        ("content-type", "application/json"),
        ("x-github-event", "push"),
        ("x-github-delivery", delivery.as_str()),
        ("x-hub-signature-256", sig.as_str()),
    ];
    let (code, resp) = procs::http("POST", &format!("{dp_url}/e/{ns}/gh"), &headers, body).await?;
    ensure!(code == 202, "ingest answered {code}: {resp}");
    let id = serde_json::from_str::<Value>(&resp)?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(id.starts_with("evt_"), "event id {id}");
    // A bad signature is refused.
    let bad = [
        ("content-type", "application/json"),
        ("x-github-event", "push"),
        ("x-hub-signature-256", "sha256=00"),
    ];
    let (code, _) = procs::http("POST", &format!("{dp_url}/e/{ns}/gh"), &bad, body).await?;
    ensure!(code == 401, "bad signature answered {code}");

    let got = receiver
        .wait(Duration::from_secs(30))
        .await
        .with_context(|| format!("nothing delivered\n{}", dataplane.log_tail()))?;
    ensure!(got.body == body, "delivered body differs");
    ensure!(
        got.header("webhook-id") == Some(id.as_str()),
        "webhook-id {:?} != {id}",
        got.header("webhook-id")
    );
    verify_standard_webhooks(&signing, &got)?;
    println!("delivered {id} to the receiver with a valid Standard Webhooks signature");

    // 9. Apply to live: a spec change reaches the data plane's /readyz quickly.
    let started = Instant::now();
    cluster
        .apply(ns, &json!({
            "apiVersion": "hookmesh.io/v1alpha1", "kind": "Subscription",
            "metadata": {"name": "gh-to-receiver"},
            "spec": {"endpointRef": {"name": "receiver"}, "sources": ["gh"], "filter": {"eventTypes": ["push", "ping"]}}
        }))
        .await?;
    let mut live = String::new();
    procs::wait_for(Duration::from_secs(20), || async {
        let now = cluster.config_hash(ns, CONFIG_SECRET).await?;
        ensure!(now != published, "not recompiled yet");
        let (_, body) = procs::http("GET", &format!("{dp_url}/readyz"), &[], b"").await?;
        ensure!(body.contains(&now), "data plane not on {now} yet");
        Ok(())
    })
    .await?;
    live.push_str(&format!("{:?}", started.elapsed()));
    println!("apply -> live in {live} (target: under 2 s)");

    // 10. Deleting a resource removes its routes from the next config.
    cluster
        .delete(ns, &ku::ObjRef::hookmesh("Subscription", "gh-to-receiver"))
        .await?;
    procs::wait_for(Duration::from_secs(20), || async {
        let config = cluster.config(ns, CONFIG_SECRET).await?;
        let routes = config["subscriptions"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0);
        let ours = config["subscriptions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["name"] == "gh-to-receiver");
        ensure!(!ours, "still routed ({routes} subscriptions)");
        Ok(())
    })
    .await?;
    let ep = cluster
        .get(ns, &ku::ObjRef::hookmesh("Endpoint", "receiver"))
        .await?;
    procs::wait_for(Duration::from_secs(20), || async {
        let ep = cluster
            .get(ns, &ku::ObjRef::hookmesh("Endpoint", "receiver"))
            .await?;
        ensure!(
            ep["status"]["subscriptions"] == 0,
            "subscriptions {}",
            ep["status"]["subscriptions"]
        );
        Ok(())
    })
    .await
    .with_context(|| format!("endpoint status {}", ep["status"]))?;

    // 11. Graceful shutdown: SIGTERM, exit 0, Lease released.
    let status = operator.terminate(Duration::from_secs(15))?;
    ensure!(
        status.success(),
        "operator exit status {status}\n{}",
        operator.log_tail()
    );
    let lease = cluster
        .get(
            ns,
            &ku::ObjRef::new("coordination.k8s.io/v1", "Lease", "hookmesh-e2e"),
        )
        .await?;
    ensure!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "lease not released: {}",
        lease["spec"]
    );
    dataplane.terminate(Duration::from_secs(15))?;
    Ok(())
}

fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
fn verify_standard_webhooks(
    whsec: &str,
    got: &e2e_cluster::receiver::Received,
) -> anyhow::Result<()> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(whsec.trim_start_matches("whsec_"))
        .context("signing key is base64")?;
    let (Some(id), Some(ts), Some(sigs)) = (
        got.header("webhook-id"),
        got.header("webhook-timestamp"),
        got.header("webhook-signature"),
    ) else {
        bail!("Standard Webhooks headers missing: {:?}", got.headers);
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&got.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    ensure!(
        sigs.split(' ').any(|s| s == expected),
        "signature {sigs} does not verify"
    );
    Ok(())
}
