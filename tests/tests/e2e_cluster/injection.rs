//! Sidecar injection against the real API server: the operator serves the mutating webhook
//! over TLS with its own CA and keeps the configuration's `caBundle` current; the API server
//! calls it for labelled Pods (created directly, or by the Deployment controller) and stores
//! them with the sidecar; unlabelled Pods are never sent to it, so the operator being down
//! blocks none of them.
//!
//! The webhook is reached by URL on loopback (no Service routing without kubelets), and the
//! operator runs with the admin kubeconfig here: the chart's RBAC for the webhook comes with
//! the chart's webhook objects.

use std::time::Duration;

use anyhow::{ensure, Context as _};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use serde_json::json;

use super::checks::{in_namespace, setup};
use super::env::Env;
use super::procs::{self, block_on, Proc};
use hookmesh_tests::wait;

const SIDECAR: &str = "hookmesh-sidecar";

fn pod(name: &str, labelled: bool) -> anyhow::Result<Pod> {
    let mut labels = json!({"app": "shop"});
    if labelled {
        labels["hookmesh.io/inject"] = json!("true");
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "registry.example/shop:1",
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

pub fn sidecar_injection(env: &Env) -> anyhow::Result<()> {
    block_on(async {
        let cluster = &setup(env).await?;
        in_namespace(cluster, "inject", |ns| async move {
            let client = cluster.client();
            let bins = procs::build_binaries()?;
            let dir = tempfile::tempdir()?;
            let port = hookmesh_tests::gateway::free_port()?;
            let metrics = hookmesh_tests::gateway::free_port()?;
            let config = format!("{ns}-sidecar");
            let hooks: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
            // Only this namespace, only labelled Pods: nothing else in the cluster can be held
            // up by this webhook.
            let mwc: MutatingWebhookConfiguration = serde_json::from_value(json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": config},
                "webhooks": [{
                    "name": "sidecar.hookmesh.io",
                    "clientConfig": {"url": format!("https://127.0.0.1:{port}/mutate-pods")},
                    "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                        "resources": ["pods"], "scope": "Namespaced"}],
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                    "objectSelector": {"matchLabels": {"hookmesh.io/inject": "true"}},
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "reinvocationPolicy": "IfNeeded",
                    "timeoutSeconds": 5,
                }],
            }))?;
            hooks.create(&PostParams::default(), &mwc).await?;
            let result = async {
                let mut operator = Proc::spawn(
                    "operator",
                    &bins.operator,
                    &[
                        format!("--config-secret={ns}/hookmesh-config"),
                        format!("--metrics-listen=127.0.0.1:{metrics}"),
                        format!("--webhook-listen=127.0.0.1:{port}"),
                        format!("--webhook-secret={ns}/hookmesh-webhook-tls"),
                        "--webhook-hosts=127.0.0.1".into(),
                        format!("--webhook-config={config}"),
                        "--sidecar-image=hookmesh/hookmesh-dataplane:e2e".into(),
                    ],
                    &env.kubeconfig,
                    dir.path(),
                    &[("POD_NAMESPACE", &ns)],
                )?;
                wait::retry(
                    "the operator to set the caBundle",
                    Duration::from_secs(60),
                    || async {
                        let c = hooks.get(&config).await?;
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

                let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
                // The webhook may need a moment to answer; the first create is retried.
                wait::retry(
                    "a labelled Pod to be created",
                    Duration::from_secs(30),
                    || async {
                        pods.create(&PostParams::default(), &pod("labelled", true)?)
                            .await?;
                        Ok(())
                    },
                )
                .await
                .with_context(|| operator.log_tail())?;
                let stored = pods.get("labelled").await?;
                let side = sidecar_of(&stored).context("the stored Pod has no sidecar")?;
                ensure!(
                    side.restart_policy.as_deref() == Some("Always"),
                    "not a native sidecar: {side:?}"
                );
                let args = side.args.clone().unwrap_or_default();
                ensure!(
                    args.contains(&format!("--config-secret={ns}/hookmesh-sidecar-shop")),
                    "{args:?}"
                );
                ensure!(
                    stored.spec.as_ref().map(|s| s.containers.len()) == Some(1),
                    "the app's containers changed"
                );

                pods.create(&PostParams::default(), &pod("plain", false)?)
                    .await?;
                ensure!(
                    sidecar_of(&pods.get("plain").await?).is_none(),
                    "an unlabelled Pod got a sidecar"
                );

                // A Deployment's Pods, made by the controller, get it too.
                let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
                let template = serde_json::to_value(pod("x", true)?)?;
                let d: Deployment = serde_json::from_value(json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "shop"},
                    "spec": {"replicas": 1,
                        "selector": {"matchLabels": {"app": "shop", "hookmesh.io/inject": "true"}},
                        "template": {"metadata": {"labels": template["metadata"]["labels"]},
                            "spec": template["spec"]}},
                }))?;
                deployments.create(&PostParams::default(), &d).await?;
                wait::retry(
                    "the Deployment's Pod with its sidecar",
                    Duration::from_secs(60),
                    || async {
                        let list = pods.list(&ListParams::default().labels("app=shop")).await?;
                        let made = list.items.iter().filter(|p| {
                            p.metadata
                                .owner_references
                                .as_ref()
                                .is_some_and(|o| o.iter().any(|r| r.kind == "ReplicaSet"))
                        });
                        let mut any = false;
                        for p in made {
                            ensure!(sidecar_of(p).is_some(), "Deployment Pod without sidecar");
                            any = true;
                        }
                        ensure!(any, "no Pod from the Deployment yet");
                        Ok(())
                    },
                )
                .await?;

                // Operator down: unlabelled Pods are not held up; labelled ones are refused
                // rather than run without their sidecar.
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
                Ok(())
            }
            .await;
            let _ = hooks.delete(&config, &DeleteParams::default()).await;
            result
        })
        .await
    })
}
