//! Receiver health in Endpoint status, against the real API server: the chart's operator with
//! its health loop polling a real data plane (both as the chart's ServiceAccounts, the operator
//! with the peer token from the chart's Secret), and a receiver that starts failing, keeps
//! failing through a probe, and recovers. The Endpoint's status is written exactly twice
//! (`Healthy` False/CircuitOpen, then True/Delivering), whatever the circuit does in between,
//! and the operator records CircuitOpened and CircuitClosed Events.

use std::time::Duration;

use anyhow::{ensure, Context as _};
use serde_json::{json, Value};

use super::checks::setup;
use super::env::Env;
use super::gateway::{apply_github_chain, send_push, wait_live, with_install_values, Install};
use super::kube_util::{Cluster, ObjRef};
use super::procs::block_on;
use hookmesh_tests::receiver::{Receiver, Reply};
use hookmesh_tests::wait;

/// Fast enough for a test, through the chart's own values: a poll a second, a patch at most a
/// second apart, a circuit that opens on the first failure and probes after 2 s.
const VALUES: &[&str] = &[
    "--set",
    "operator.health.interval=1s",
    "--set",
    "operator.health.minInterval=1s",
    "--set",
    "dataplane.settings.breakerThreshold=1",
    "--set",
    "dataplane.settings.breakerCooldown=2s",
];

pub fn receiver_health(env: &Env) -> anyhow::Result<()> {
    block_on(async {
        let cluster = &setup(env).await?;
        let values = |_: &str| VALUES.iter().map(|v| v.to_string()).collect();
        with_install_values(env, cluster, values, |install, ns| async move {
            scenario(env, cluster, &install, &ns).await
        })
        .await
    })
}

/// The Endpoint's `Healthy` condition, if it has one.
fn healthy(obj: &Value) -> Option<&Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Healthy")
}

fn status_reason(obj: &Value) -> (String, String) {
    let c = healthy(obj);
    let field = |k: &str| {
        c.and_then(|c| c[k].as_str())
            .unwrap_or_default()
            .to_string()
    };
    (field("status"), field("reason"))
}

async fn wait_healthy(
    cluster: &Cluster,
    ns: &str,
    ep: &ObjRef,
    want: (&str, &str),
    logs: impl Fn() -> String,
) -> anyhow::Result<Value> {
    wait::retry(
        &format!("Healthy={}/{}", want.0, want.1),
        Duration::from_secs(30),
        || async {
            let obj = cluster.get(ns, ep).await?;
            let got = status_reason(&obj);
            ensure!(
                (got.0.as_str(), got.1.as_str()) == want,
                "Healthy is {got:?}; status {}",
                obj["status"]
            );
            Ok(obj)
        },
    )
    .await
    .with_context(logs)
}

/// The data plane's own view of one endpoint (the route the operator polls).
async fn dataplane_health(dp: &str, token: &str, name: &str) -> anyhow::Result<Value> {
    let auth = format!("Bearer {token}");
    let r = hookmesh_tests::http::request(
        ::http::Method::GET,
        &format!("{dp}/internal/v1/endpoints"),
        &[("authorization", auth.as_str())],
        bytes::Bytes::new(),
    )
    .await?;
    ensure!(
        r.status == 200,
        "internal endpoints {}: {}",
        r.status,
        r.text()
    );
    let v: Value = serde_json::from_slice(&r.body)?;
    v["data"]
        .as_array()
        .and_then(|eps| eps.iter().find(|e| e["name"] == name))
        .map(|e| e["health"].clone())
        .with_context(|| format!("{name} not in {v}"))
}

async fn scenario(env: &Env, cluster: &Cluster, install: &Install, ns: &str) -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let objects = apply_github_chain(cluster, ns, &receiver).await?;
    // Retries enough to outlast the outage, so the recovery is seen by a probe, not by the
    // next event.
    cluster
        .apply(
            ns,
            &json!({"apiVersion": "hookmesh.io/v1alpha1", "kind": "Endpoint", "metadata": {"name": "receiver"},
                    "spec": {"url": format!("http://{}/hook", receiver.addr), "timeoutSeconds": 5,
                             "retry": {"maxAttempts": 50, "initialBackoff": "200ms", "maxBackoff": "1s"}}}),
        )
        .await?;
    let ep = ObjRef::hookmesh("Endpoint", "receiver");
    let token = install
        .dataplane_env("HOOKMESH_PEER_TOKEN")
        .context("the chart gives the data plane no peer token")?;
    let (dp, dp_url) = install.spawn_dataplane("dataplane-0")?;
    let (op, _) = install.spawn_operator_polling("operator-a", &dp_url)?;
    let logs = || format!("{}\n{}", op.log_tail(), dp.log_tail());
    for o in &objects {
        cluster
            .wait_ready(ns, o, "True", None, Duration::from_secs(90))
            .await
            .with_context(|| format!("{} {} never Ready=True\n{}", o.kind, o.name, logs()))?;
    }
    wait_live(cluster, install, &dp_url, Duration::from_secs(60)).await?;
    ensure!(
        healthy(&cluster.get(ns, &ep).await?).is_none(),
        "Healthy written before any attempt"
    );

    // A first delivery: the receiver takes it, and the endpoint becomes Healthy=True.
    send_push(&dp_url, ns, br#"{"ref":"refs/heads/main","n":1}"#).await?;
    receiver.wait_for(1, Duration::from_secs(30)).await?;
    wait_healthy(cluster, ns, &ep, ("True", "Delivering"), logs).await?;

    // From here on every write to the Endpoint is recorded.
    let (versions, stop) = cluster.versions(ns, &ep, Duration::from_secs(180)).await?;

    // The receiver fails: the first 503 opens the circuit.
    receiver.set_default(Reply::Status(503));
    send_push(&dp_url, ns, br#"{"ref":"refs/heads/main","n":2}"#).await?;
    let open = wait_healthy(cluster, ns, &ep, ("False", "CircuitOpen"), logs).await?;
    let open_table = env.kubectl(&["get", "hmep", "-n", ns])?;
    // It stays down through a probe: the circuit opens again, and the condition, already
    // CircuitOpen, is not written again.
    wait::retry(
        "a failed probe to open the circuit again",
        Duration::from_secs(30),
        || async {
            let h = dataplane_health(&dp_url, &token, "receiver").await?;
            ensure!(h["circuit_opened"].as_u64() >= Some(2), "health {h}");
            Ok(())
        },
    )
    .await?;
    // Two polls and a rate-limit window later, still one write.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // It recovers: the next probe is delivered and the circuit closes.
    let failed = receiver.count();
    receiver.set_default(Reply::Status(200));
    let recovered = wait_healthy(cluster, ns, &ep, ("True", "Delivering"), logs).await?;
    // The event that met the failing receiver is delivered, by the probe.
    let probe = receiver
        .wait_for(failed + 1, Duration::from_secs(30))
        .await?;
    ensure!(
        String::from_utf8_lossy(&probe[failed].body).contains(r#""n":2"#),
        "the probe after the recovery carried {:?}",
        String::from_utf8_lossy(&probe[failed].body)
    );
    // Quiet: steady health is not rewritten.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let _ = stop.send(());
    let seen = versions.await?;

    let changes: Vec<(String, String)> = seen.iter().map(status_reason).collect();
    ensure!(
        changes
            == [
                ("False".to_string(), "CircuitOpen".to_string()),
                ("True".to_string(), "Delivering".to_string()),
            ],
        "the Endpoint was written {} times, Healthy along the way: {changes:?}",
        seen.len()
    );
    let delivery = &open["status"]["delivery"];
    ensure!(
        delivery["consecutiveFailures"].as_i64() >= Some(1)
            && delivery["lastError"]
                .as_str()
                .is_some_and(|e| e.contains("503"))
            && delivery["lastErrorTime"].is_string(),
        "status.delivery while the circuit is open: {delivery}"
    );
    let delivery = &recovered["status"]["delivery"];
    ensure!(
        delivery["consecutiveFailures"] == 0 && delivery["lastSuccessTime"].is_string(),
        "status.delivery after the recovery: {delivery}"
    );
    ensure!(
        seen.iter()
            .all(|o| o["metadata"]["generation"] == open["metadata"]["generation"]),
        "the spec moved"
    );

    // The Events, recorded by the operator about the Endpoint.
    let reasons = wait::retry(
        "CircuitOpened and CircuitClosed Events",
        Duration::from_secs(30),
        || async {
            let events = cluster.events_about(ns, "receiver").await?;
            let reasons: Vec<String> = events.iter().filter_map(|e| e.reason.clone()).collect();
            ensure!(
                reasons.iter().any(|r| r == "CircuitOpened")
                    && reasons.iter().any(|r| r == "CircuitClosed"),
                "Events about the Endpoint: {reasons:?}"
            );
            Ok(reasons)
        },
    )
    .await?;

    let table = env.kubectl(&["get", "hmep", "-n", ns, "-o", "wide"])?;
    println!(
        "Healthy written twice ({changes:?}) across {} circuit openings; Events {reasons:?}\n\
         while the circuit was open:\n{open_table}after the recovery (-o wide):\n{table}",
        dataplane_health(&dp_url, &token, "receiver").await?["circuit_opened"]
    );
    Ok(())
}
