//! The Helm chart against the real API server: rendered with `helm template`, applied with
//! `kubectl apply --server-side --dry-run=server` and then for real. Pods never run here (no
//! kubelet): the point is that every object is accepted and valid, and that the chart's own
//! ServiceAccounts and RBAC are what the operator and data plane run with in the other tests.

use std::path::PathBuf;

use anyhow::{ensure, Context as _};
use serde_json::Value;

use super::checks::{in_namespace, setup};
use super::env::Env;
use super::kube_util::{self as ku, Cluster, MANAGER};
use super::procs::{self, block_on};

/// Kinds the chart renders that live outside any namespace.
const CLUSTER_SCOPED: &[&str] = &[
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
];

pub struct Rendered {
    pub release: String,
    pub namespace: String,
    pub docs: Vec<Value>,
    dir: tempfile::TempDir,
}

impl Rendered {
    pub fn render(env: &Env, release: &str, ns: &str, values: &[&str]) -> anyhow::Result<Self> {
        let text = env.helm_template(release, ns, &[&["--include-crds"], values].concat())?;
        let docs = ku::yaml_docs(&text)?;
        ensure!(!docs.is_empty(), "helm template rendered nothing");
        // `kubectl apply -f` puts an object without a namespace into the kubeconfig's default
        // namespace, not the release's: every namespaced object must name it.
        for d in &docs {
            let kind = d["kind"].as_str().unwrap_or_default();
            if !CLUSTER_SCOPED.contains(&kind) {
                ensure!(
                    d["metadata"]["namespace"].is_string(),
                    "{kind} {} has no metadata.namespace",
                    d["metadata"]["name"]
                );
            }
        }
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("all.yaml"), &text)?;
        // Everything but the CRDs, for cleanup: deleting a CRD deletes every object of its kind.
        let rest: Vec<String> = docs
            .iter()
            .filter(|d| d["kind"] != "CustomResourceDefinition")
            .map(serde_yaml::to_string)
            .collect::<Result<_, _>>()?;
        std::fs::write(dir.path().join("objects.yaml"), rest.join("---\n"))?;
        Ok(Rendered {
            release: release.into(),
            namespace: ns.into(),
            docs,
            dir,
        })
    }

    fn file(&self, name: &str) -> anyhow::Result<String> {
        Ok(self
            .dir
            .path()
            .join(name)
            .to_str()
            .context("temp path")?
            .to_string())
    }

    /// `kubectl apply --server-side` of every rendered object (`--dry-run=server` when asked);
    /// every object must be reported applied.
    pub fn apply(&self, env: &Env, dry_run: bool) -> anyhow::Result<()> {
        let file = self.file("all.yaml")?;
        let mut args = vec![
            "apply",
            "--server-side",
            "--field-manager",
            MANAGER,
            "-f",
            &file,
        ];
        if dry_run {
            args.push("--dry-run=server");
        }
        let out = env.kubectl(&args)?;
        let applied = out
            .lines()
            .filter(|l| l.contains("serverside-applied"))
            .count();
        ensure!(
            applied == self.docs.len(),
            "{applied} of {} rendered objects applied{}:\n{out}",
            self.docs.len(),
            if dry_run { " (dry run)" } else { "" }
        );
        Ok(())
    }

    /// Everything is there as rendered: `kubectl get -f` finds each object.
    pub fn all_exist(&self, env: &Env) -> anyhow::Result<()> {
        let out = env.kubectl(&["get", "-f", &self.file("all.yaml")?, "-o", "name"])?;
        ensure!(
            out.lines().count() == self.docs.len(),
            "kubectl get -f found {} of {} objects:\n{out}",
            out.lines().count(),
            self.docs.len()
        );
        Ok(())
    }

    /// Delete what was applied, except the CRDs (shared by every test).
    pub fn delete(&self, env: &Env) -> anyhow::Result<()> {
        env.kubectl(&[
            "delete",
            "--ignore-not-found",
            "--wait=false",
            "-f",
            &self.file("objects.yaml")?,
        ])?;
        Ok(())
    }

    /// The first rendered object of `kind` whose name ends with `suffix`.
    pub fn object(&self, kind: &str, suffix: &str) -> anyhow::Result<&Value> {
        self.docs
            .iter()
            .find(|d| {
                d["kind"] == kind
                    && d["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.ends_with(suffix))
            })
            .with_context(|| format!("no {kind} *{suffix} in the render of {}", self.release))
    }

    /// The args of the first container of a rendered Deployment or StatefulSet.
    pub fn container_args(&self, kind: &str, suffix: &str) -> anyhow::Result<Vec<String>> {
        let obj = self.object(kind, suffix)?;
        let args = obj["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .with_context(|| format!("{kind} *{suffix} has no args"))?;
        Ok(args
            .iter()
            .filter_map(|a| a.as_str().map(String::from))
            .collect())
    }

    /// The `env` of the first container of a rendered Deployment or StatefulSet (EnvVar
    /// objects: `value`, or `valueFrom` a Secret key or a field of the Pod).
    pub fn container_env(&self, kind: &str, suffix: &str) -> anyhow::Result<Vec<Value>> {
        let obj = self.object(kind, suffix)?;
        Ok(obj["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Name of the ServiceAccount a rendered workload runs as.
    pub fn service_account(&self, kind: &str, suffix: &str) -> anyhow::Result<String> {
        let obj = self.object(kind, suffix)?;
        Ok(obj["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .with_context(|| format!("{kind} *{suffix} names no ServiceAccount"))?
            .to_string())
    }
}

/// The value of `--flag=value` in `args`.
pub fn flag(args: &[String], name: &str) -> anyhow::Result<String> {
    let prefix = format!("--{name}=");
    args.iter()
        .find_map(|a| a.strip_prefix(&prefix).map(String::from))
        .with_context(|| format!("no --{name} in {args:?}"))
}

pub fn default_values(env: &Env) -> anyhow::Result<()> {
    block_on(async {
        let cluster = &setup(env).await?;
        in_namespace(cluster, "chart", |ns| async move {
            let release = format!("e2e{}", procs::random_suffix());
            let rendered = Rendered::render(env, &release, &ns, &[])?;
            apply_and_check(env, &rendered)
        })
        .await
    })
}

pub fn full_values(env: &Env) -> anyhow::Result<()> {
    let values =
        hookmesh_tests::gateway::workspace_root().join("charts/hookmesh/ci/full-values.yaml");
    let values = values.to_str().context("path")?.to_string();
    block_on(async {
        let cluster = &setup(env).await?;
        let values = &values;
        // The full values turn on ServiceMonitors (in namespace `monitoring`): the cluster needs
        // the Prometheus Operator's CRD, as a cluster that uses them has.
        ensure_servicemonitor_crd(env, cluster).await?;
        let created_monitoring = cluster.create_namespace("monitoring").await?;
        let result = in_namespace(cluster, "chartfull", |ns| async move {
            let rendered = Rendered::render(env, "e2e", &ns, &["-f", values])?;
            ensure!(
                rendered.docs.iter().any(|d| d["kind"] == "ServiceMonitor"),
                "full values render no ServiceMonitor"
            );
            apply_and_check(env, &rendered)
        })
        .await;
        if created_monitoring {
            let _ = cluster.delete_namespace("monitoring").await;
        }
        result
    })
}

fn apply_and_check(env: &Env, rendered: &Rendered) -> anyhow::Result<()> {
    rendered.apply(env, true).context("server-side dry run")?;
    let result = rendered
        .apply(env, false)
        .and_then(|()| rendered.all_exist(env));
    let cleanup = rendered.delete(env);
    result?;
    cleanup?;
    println!(
        "{} objects of release {} in {} accepted (dry run, then for real)",
        rendered.docs.len(),
        rendered.release,
        rendered.namespace
    );
    Ok(())
}

async fn ensure_servicemonitor_crd(env: &Env, cluster: &Cluster) -> anyhow::Result<()> {
    let name = "servicemonitors.monitoring.coreos.com";
    if env.kubectl(&["get", "crd", name, "-o", "name"]).is_ok() {
        return Ok(());
    }
    let file: PathBuf = hookmesh_tests::gateway::workspace_root()
        .join("tests/tests/e2e_cluster/servicemonitor-crd.yaml");
    cluster.apply_crds(&file).await
}
