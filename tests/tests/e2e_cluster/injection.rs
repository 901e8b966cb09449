//! Sidecar mode against the real API server, installed by the chart: the chart's webhook
//! objects and RBAC applied for real, the operator run as the chart's ServiceAccount with the
//! chart's args, and the README's example (`examples/sidecar/checkout.yaml`: a Deployment
//! receiving Stripe webhooks) applied as it is, but for the app's address. Its sidecar runs as
//! the workload's own ServiceAccount with the args the webhook injected.
//!
//! - The operator serves the mutating webhook over TLS with its own CA and keeps the chart's
//!   MutatingWebhookConfiguration's `caBundle` current; labelled Pods (created directly, or by
//!   the Deployment controller) are stored with the sidecar, unlabelled ones are never sent to
//!   the webhook, so the operator being down blocks none of them.
//! - The operator publishes the workload's config slice in the release namespace and grants
//!   the workload's ServiceAccount (learnt from its Pods) reading exactly that Secret: another
//!   workload's slice is forbidden to it.
//! - The sidecar, authenticated as that ServiceAccount, verifies a Stripe webhook and delivers
//!   it to its app on loopback; SIGTERMed with an app that keeps failing, it drains until its
//!   timeout and records an `UndrainedEvents` Event on its Pod.
//! - A workload that nothing names any more loses its slice, Role and RoleBinding.
//!
//! The API server reaches the webhook by URL on loopback (the chart's `sidecarInjector.url`;
//! no Service routing without kubelets).

use std::time::Duration;

use anyhow::{ensure, Context as _};
use base64::Engine as _;
use bytes::Bytes;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

use super::checks::{in_namespace, setup};
use super::env::Env;
use super::gateway::Install;
use super::kube_util::{yaml_docs, Cluster, ObjRef};
use super::procs::{block_on, Proc};
use hookmesh_tests::http::now_unix;
use hookmesh_tests::receiver::{Receiver, Reply};
use hookmesh_tests::{sign, wait};

const SIDECAR: &str = "hookmesh-sidecar";
const STRIPE_SECRET: &str = "whsec_e2e_stripe_secret";
/// The example's workload and the ServiceAccount its Pods (and so its sidecars) run as.
const WORKLOAD: &str = "checkout";
const APP_SA: &str = "checkout";

fn pod(name: &str, labelled: bool) -> anyhow::Result<Pod> {
    let mut labels = json!({"app": WORKLOAD});
    if labelled {
        labels["hookmesh.io/inject"] = json!("true");
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"serviceAccountName": APP_SA,
            "containers": [{"name": "app", "image": "registry.example/shop:1",
            "ports": [{"containerPort": 8080}]}]},
    }))?)
}

fn sidecar_of(p: &Pod) -> Option<&k8s_openapi::api::core::v1::Container> {
    p.spec
        .as_ref()?
        .init_containers
        .as_ref()?
        .iter()
        .find(|c| c.name == SIDECAR)
}

/// The README's example, with the app on `app_port` and a test secret, and a second workload
/// `ledger` whose slice the checkout's sidecar must not read.
fn objects(app_port: u16) -> anyhow::Result<Vec<Value>> {
    let file = hookmesh_tests::gateway::workspace_root().join("examples/sidecar/checkout.yaml");
    let mut docs = yaml_docs(&std::fs::read_to_string(&file)?)?;
    let mut kinds = Vec::new();
    for d in &mut docs {
        kinds.push(d["kind"].as_str().unwrap_or_default().to_string());
        match (d["kind"].as_str(), d["metadata"]["name"].as_str()) {
            (Some("Secret"), Some("stripe")) => d["stringData"]["secret"] = json!(STRIPE_SECRET),
            (Some("Endpoint"), _) => {
                d["spec"]["url"] = json!(format!("http://localhost:{app_port}/webhooks/stripe"));
                d["spec"]["retry"] =
                    json!({"maxAttempts": 50, "initialBackoff": "100ms", "maxBackoff": "200ms"});
            }
            _ => {}
        }
    }
    for want in [
        "Source",
        "Endpoint",
        "Subscription",
        "ServiceAccount",
        "Deployment",
        "Service",
    ] {
        ensure!(kinds.iter().any(|k| k == want), "the example has no {want}");
    }
    docs.push(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ledger-token"},
        "stringData": {"secret": "ledger-only"}}),
    );
    docs.push(json!({"apiVersion": "hookmesh.io/v1alpha1", "kind": "Source", "metadata": {"name": "ledger"},
        "spec": {"workload": "ledger",
            "verification": {"scheme": "github", "secretRef": {"name": "ledger-token", "key": "secret"}}}}));
    Ok(docs)
}

pub fn sidecar_injection(env: &Env) -> anyhow::Result<()> {
    block_on(async {
        let cluster = &setup(env).await?;
        in_namespace(cluster, "system", |rns| async move {
            in_namespace(cluster, "apps", |ns| async move {
                let port = hookmesh_tests::gateway::free_port()?;
                let dir = tempfile::tempdir()?;
                // Loopback URL, a certificate for it, and only this test's namespace.
                let values = dir.path().join("values.yaml");
                std::fs::write(
                    &values,
                    serde_yaml::to_string(&json!({"sidecarInjector": {
                        "url": format!("https://127.0.0.1:{port}/mutate-pods"),
                        "extraHosts": ["127.0.0.1"],
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                    }}))?,
                )?;
                let values = values.display().to_string();
                let install =
                    Install::with_values(env, cluster, &rns, &["-f", &values], Some(port)).await?;
                let result = sidecar_mode(env, cluster, &install, &ns).await;
                if let Err(e) = install.rendered.delete(env) {
                    eprintln!("cleanup: {e:#}");
                }
                result
            })
            .await
        })
        .await
    })
}

async fn sidecar_mode(
    env: &Env,
    cluster: &Cluster,
    install: &Install,
    ns: &str,
) -> anyhow::Result<()> {
    let client = cluster.client();
    let rns = install.ns.as_str();
    let mwc = install
        .rendered
        .object("MutatingWebhookConfiguration", "-sidecar-injector")?["metadata"]["name"]
        .as_str()
        .context("the chart's webhook configuration has no name")?
        .to_string();
    let (mut operator, _) = install.spawn_operator("operator-0")?;
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    wait::retry(
        "the operator to set the chart's caBundle",
        Duration::from_secs(60),
        || async {
            let c = hooks.get(&mwc).await?;
            let set = c
                .webhooks
                .unwrap_or_default()
                .iter()
                .all(|h| h.client_config.ca_bundle.is_some());
            ensure!(set, "caBundle not set yet");
            Ok(())
        },
    )
    .await
    .with_context(|| operator.log_tail())?;

    let app = Receiver::start().await?;
    for o in objects(app.addr.port())? {
        cluster.apply(ns, &o).await?;
    }
    let slice = |w: &str| format!("hookmesh-sidecar-{ns}.{w}");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), rns);
    wait::retry(
        "both workloads' slices to be published",
        Duration::from_secs(60),
        || async {
            secrets.get(&slice(WORKLOAD)).await?;
            secrets.get(&slice("ledger")).await?;
            Ok(())
        },
    )
    .await
    .with_context(|| operator.log_tail())?;

    // The example's Deployment: the controller's Pods are stored with the sidecar (the
    // ReplicaSet controller retries while the webhook comes up).
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let from_deployment = |p: &Pod| {
        p.metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|r| r.kind == "ReplicaSet"))
    };
    let by_app = ListParams::default().labels(&format!("app={WORKLOAD}"));
    let stored = wait::retry(
        "the Deployment's Pods with their sidecar",
        Duration::from_secs(60),
        || async {
            let list = pods.list(&by_app).await?;
            let made: Vec<&Pod> = list.items.iter().filter(|p| from_deployment(p)).collect();
            ensure!(made.len() == 2, "{} of 2 Pods so far", made.len());
            for p in &made {
                ensure!(sidecar_of(p).is_some(), "a Deployment Pod without sidecar");
            }
            Ok(made[0].clone())
        },
    )
    .await
    .with_context(|| operator.log_tail())?;
    let side = sidecar_of(&stored).context("the stored Pod has no sidecar")?;
    ensure!(
        side.restart_policy.as_deref() == Some("Always"),
        "not a native sidecar: {side:?}"
    );
    let injected = side.args.clone().unwrap_or_default();
    ensure!(
        injected.contains(&format!("--config-secret={rns}/{}", slice(WORKLOAD))),
        "{injected:?}"
    );
    ensure!(
        injected.iter().any(|a| a == "--drain-on-shutdown=true")
            && injected.iter().any(|a| a == "--drain-timeout=55s"),
        "an emptyDir sidecar must drain within the example's 60 s grace period: {injected:?}"
    );
    ensure!(
        stored.spec.as_ref().map(|s| s.containers.len()) == Some(1),
        "the app's containers changed"
    );
    let pod_name = stored.metadata.name.clone().unwrap_or_default();

    // A labelled Pod created directly gets it too.
    pods.create(&PostParams::default(), &pod("labelled", true)?)
        .await?;
    ensure!(
        sidecar_of(&pods.get("labelled").await?).is_some(),
        "a labelled Pod created directly has no sidecar"
    );

    // The operator learns the Pod's ServiceAccount and grants it its slice, and only that.
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), rns);
    wait::retry(
        "the slice RoleBinding to name the app's ServiceAccount",
        Duration::from_secs(30),
        || async {
            let b = bindings.get(&slice(WORKLOAD)).await?;
            let named = b
                .subjects
                .unwrap_or_default()
                .iter()
                .any(|s| s.name == APP_SA && s.namespace.as_deref() == Some(ns));
            ensure!(named, "not bound yet");
            Ok(())
        },
    )
    .await
    .with_context(|| operator.log_tail())?;
    let app_kubeconfig = cluster
        .service_account_kubeconfig(ns, APP_SA, &install.dir.path().join("app.kubeconfig"))
        .await?;
    let as_app = Cluster::connect(app_kubeconfig.clone()).await?;
    let their_secrets: Api<Secret> = Api::namespaced(as_app.client(), rns);
    wait::retry(
        "the app's ServiceAccount to read its own slice",
        Duration::from_secs(30),
        || async {
            their_secrets.get(&slice(WORKLOAD)).await?;
            Ok(())
        },
    )
    .await?;
    let forbidden =
        |r: Result<Secret, kube::Error>| matches!(r, Err(kube::Error::Api(ref e)) if e.code == 403);
    ensure!(
        forbidden(their_secrets.get(&slice("ledger")).await),
        "the checkout's ServiceAccount can read the ledger's slice"
    );
    ensure!(
        forbidden(their_secrets.get(&install.config_secret).await),
        "the checkout's ServiceAccount can read the gateway's config"
    );
    let checkout_slice: hookmesh_api::GatewayConfig = serde_json::from_slice(
        &secrets
            .get(&slice(WORKLOAD))
            .await?
            .data
            .unwrap_or_default()
            .get("config.json")
            .context("slice without config.json")?
            .0,
    )?;
    let sources: Vec<&str> = checkout_slice
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    ensure!(
        sources == ["stripe"],
        "the checkout's slice serves {sources:?}"
    );
    let ledger_secret = base64::engine::general_purpose::STANDARD.encode("ledger-only");
    ensure!(
        !serde_json::to_string(&checkout_slice)?.contains(&ledger_secret),
        "the checkout's slice holds the ledger's secret"
    );

    // The sidecar as the app's ServiceAccount, with exactly the injected args (a local
    // address, a local data dir and a short drain instead of the Pod's).
    let listen = hookmesh_tests::gateway::free_port()?;
    let data = install.dir.path().join("sidecar-data");
    let mut args: Vec<String> = injected
        .iter()
        .filter(|a| {
            !["--listen=", "--data-dir=", "--drain-timeout="]
                .iter()
                .any(|p| a.starts_with(p))
        })
        .cloned()
        .collect();
    args.push(format!("--listen=127.0.0.1:{listen}"));
    args.push(format!("--data-dir={}", data.display()));
    args.push("--drain-timeout=2s".into());
    let uid = stored.metadata.uid.clone().unwrap_or_default();
    let mut sidecar = Proc::spawn(
        "sidecar",
        &install.bins.dataplane,
        &args,
        &app_kubeconfig,
        install.dir.path(),
        &[
            ("POD_NAME", &pod_name),
            ("POD_NAMESPACE", ns),
            ("POD_UID", &uid),
        ],
    )?;
    let url = format!("http://127.0.0.1:{listen}");
    wait::retry(
        "the sidecar to load its slice",
        Duration::from_secs(60),
        || async {
            // An error, not a panic: 503 "waiting for config" is a state to wait out.
            let r = hookmesh_tests::http::get(&format!("{url}/readyz")).await?;
            anyhow::ensure!(r.status == 200, "readyz {}: {}", r.status, r.text());
            Ok(())
        },
    )
    .await
    .with_context(|| sidecar.log_tail())?;
    let stripe = |body: &'static [u8]| {
        let sig = sign::stripe(STRIPE_SECRET, now_unix(), body);
        let url = format!("{url}/e/{ns}/stripe");
        async move {
            hookmesh_tests::http::post(
                &url,
                &[
                    ("content-type", "application/json"),
                    ("stripe-signature", &sig),
                ],
                Bytes::from_static(body),
            )
            .await
        }
    };
    let r = stripe(br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#).await?;
    r.expect(202);
    let got = app
        .next(Duration::from_secs(30))
        .await
        .with_context(|| sidecar.log_tail())?;
    ensure!(got.path == "/webhooks/stripe", "delivered to {}", got.path);
    hookmesh_tests::http::post(
        &format!("{url}/e/{ns}/ledger"),
        &[],
        Bytes::from_static(b"{}"),
    )
    .await?
    .expect_error(404, "SOURCE_NOT_FOUND");

    // The Pod is deleted while its app keeps failing: the drain gives up at its timeout and
    // says so on the Pod.
    app.set_default(Reply::Status(503));
    stripe(br#"{"id":"evt_2","type":"charge.failed"}"#)
        .await?
        .expect(202);
    sidecar.terminate(Duration::from_secs(30))?;
    wait::retry(
        "an UndrainedEvents Event on the Pod",
        Duration::from_secs(15),
        || async {
            let events = cluster.events_about(ns, &pod_name).await?;
            let found = events.iter().any(|e| {
                e.reason.as_deref() == Some("UndrainedEvents")
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.starts_with("1 unfinished"))
            });
            ensure!(found, "no UndrainedEvents Event yet: {events:?}");
            Ok(())
        },
    )
    .await
    .with_context(|| sidecar.log_tail())?;

    pods.create(&PostParams::default(), &pod("plain", false)?)
        .await?;
    ensure!(
        sidecar_of(&pods.get("plain").await?).is_none(),
        "an unlabelled Pod got a sidecar"
    );

    // The ledger workload loses its last object: its slice and grants go.
    cluster
        .delete(ns, &ObjRef::hookmesh("Source", "ledger"))
        .await?;
    let roles: Api<Role> = Api::namespaced(client.clone(), rns);
    wait::retry(
        "the ledger's slice, Role and RoleBinding to be removed",
        Duration::from_secs(30),
        || async {
            let gone = |r: Result<_, kube::Error>| {
                matches!(r, Err(kube::Error::Api(ref e)) if e.code == 404)
            };
            ensure!(gone(secrets.get(&slice("ledger")).await.map(drop)), "slice still there");
            ensure!(gone(roles.get(&slice("ledger")).await.map(drop)), "Role still there");
            ensure!(gone(bindings.get(&slice("ledger")).await.map(drop)), "RoleBinding still there");
            Ok(())
        },
    )
    .await
    .with_context(|| operator.log_tail())?;
    secrets
        .get(&slice(WORKLOAD))
        .await
        .context("the checkout's slice went with the ledger's")?;

    // Operator down: unlabelled Pods are not held up; labelled ones are refused rather than
    // run without their sidecar.
    operator.kill()?;
    pods.create(&PostParams::default(), &pod("plain-2", false)?)
        .await
        .context("an unlabelled Pod with the operator down")?;
    let refused = pods
        .create(&PostParams::default(), &pod("labelled-2", true)?)
        .await;
    ensure!(
        refused.is_err(),
        "a labelled Pod was created without the webhook"
    );
    let _ = env;
    println!(
        "sidecar: README example injected (2 Deployment Pods + 1 direct), slice readable only by its account, Stripe webhook delivered, UndrainedEvents on SIGTERM, stale slice removed"
    );
    Ok(())
}
