//! The CRDs, their validation and the examples, against the real API server.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context as _};
use serde::Deserialize;
use serde_json::{json, Value};

use super::env::Env;
use super::kube_util::{self as ku, Cluster, ObjRef, MANAGER};
use super::procs::{self, block_on};

const CRD_NAMES: [&str; 3] = [
    "sources.hookmesh.io",
    "endpoints.hookmesh.io",
    "subscriptions.hookmesh.io",
];

/// Connect with the admin kubeconfig and make sure the CRDs are applied and Established (each
/// test can then run on its own, e.g. with a name filter).
pub async fn setup(env: &Env) -> anyhow::Result<Cluster> {
    let cluster = Cluster::connect(env.kubeconfig.clone())
        .await
        .context("connect to the e2e cluster")?;
    cluster
        .apply_crds(&hookmesh_tests::gateway::workspace_root().join("crds/hookmesh.io.yaml"))
        .await
        .context("apply crds/")?;
    Ok(cluster)
}

/// Run `f` in a fresh namespace, deleted afterwards whatever `f` returned.
pub async fn in_namespace<T, F, Fut>(cluster: &Cluster, tag: &str, f: F) -> anyhow::Result<T>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let ns = format!("hookmesh-e2e-{}-{tag}", procs::random_suffix());
    cluster.create_namespace(&ns).await?;
    let result = f(ns.clone()).await;
    if let Err(e) = cluster.delete_namespace(&ns).await {
        eprintln!("cleanup: could not delete namespace {ns}: {e:#}");
    }
    result.with_context(|| format!("in namespace {ns}"))
}

pub fn crds_with_kubectl(env: &Env) -> anyhow::Result<()> {
    let crds = hookmesh_tests::gateway::workspace_root().join("crds");
    let crds = crds.to_str().context("path")?;
    let out = env.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager",
        MANAGER,
        "-f",
        crds,
    ])?;
    for name in CRD_NAMES {
        ensure!(
            out.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{name} serverside-applied"
            )),
            "kubectl apply --server-side -f crds/ did not apply {name}:\n{out}"
        );
    }
    let crd_args: Vec<String> = CRD_NAMES.iter().map(|n| format!("crd/{n}")).collect();
    let mut wait = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    wait.extend(crd_args.iter().map(String::as_str));
    env.kubectl(&wait)?;
    for name in CRD_NAMES {
        let conditions = env.kubectl(&[
            "get",
            "crd",
            name,
            "-o",
            r#"jsonpath={range .status.conditions[*]}{.type}={.status}{"\n"}{end}"#,
        ])?;
        for c in ["Established=True", "NamesAccepted=True"] {
            ensure!(
                conditions.lines().any(|l| l == c),
                "{name}: no {c} in\n{conditions}"
            );
        }
        // A structural-schema or CEL problem the server found but tolerated shows up here.
        ensure!(
            !conditions.contains("NonStructuralSchema=True"),
            "{name}: {conditions}"
        );
    }
    println!("kubectl apply --server-side -f crds/: all three Established");

    block_on(async {
        let cluster = &Cluster::connect(env.kubeconfig.clone()).await?;
        in_namespace(cluster, "crds", |ns| async move {
            printer_columns_and_category(env, cluster, &ns).await
        })
        .await
    })
}

/// `kubectl get hookmesh` lists all three kinds, with their printer columns filled from a
/// status written through the status subresource.
async fn printer_columns_and_category(
    env: &Env,
    cluster: &Cluster,
    ns: &str,
) -> anyhow::Result<()> {
    for manifest in [
        json!({"apiVersion": "hookmesh.io/v1alpha1", "kind": "Source", "metadata": {"name": "cols"},
               "spec": {"verification": {"scheme": "github", "secretRef": {"name": "s", "key": "k"}}}}),
        json!({"apiVersion": "hookmesh.io/v1alpha1", "kind": "Endpoint", "metadata": {"name": "cols"},
               "spec": {"url": "https://receiver.example/hook"}}),
        json!({"apiVersion": "hookmesh.io/v1alpha1", "kind": "Subscription", "metadata": {"name": "cols"},
               "spec": {"endpointRef": {"name": "cols"}}}),
    ] {
        cluster.apply(ns, &manifest).await?;
    }
    // A status in the main resource is ignored (status subresource); through /status it sticks.
    let ready = json!([{"type": "Ready", "status": "True", "reason": "Compiled", "message": "ok",
                        "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]);
    let src = ObjRef::hookmesh("Source", "cols");
    cluster
        .merge_patch(ns, &src, &json!({"status": {"conditions": ready}}))
        .await?;
    ensure!(
        cluster.get(ns, &src).await?["status"].is_null(),
        "a status written through the main resource was kept: no status subresource?"
    );
    for (kind, extra) in [
        (
            "Source",
            json!({"ingestPath": format!("/e/{ns}/cols"), "observedGeneration": 1}),
        ),
        (
            "Endpoint",
            json!({"subscriptions": 1, "observedGeneration": 1}),
        ),
        ("Subscription", json!({"observedGeneration": 1})),
    ] {
        let mut status = extra;
        status["conditions"] = ready.clone();
        cluster
            .patch_status(
                ns,
                &ObjRef::hookmesh(kind, "cols"),
                &json!({ "status": status }),
            )
            .await?;
    }

    let out = env.kubectl(&["get", "hookmesh", "-n", ns])?;
    println!("kubectl get hookmesh -n {ns}:\n{out}");
    for (kind, columns, row) in [
        (
            "source",
            vec!["NAME", "READY", "REASON", "SCHEME", "PATH", "AGE"],
            vec![
                "True",
                "Compiled",
                "github",
                &format!("/e/{ns}/cols") as &str,
            ],
        ),
        (
            "endpoint",
            vec!["NAME", "READY", "REASON", "URL", "SUBSCRIPTIONS", "AGE"],
            vec!["True", "Compiled", "https://receiver.example/hook", "1"],
        ),
        (
            "subscription",
            vec!["NAME", "READY", "REASON", "ENDPOINT", "AGE"],
            vec!["True", "Compiled", "cols"],
        ),
    ] {
        let prefix = format!("{kind}.hookmesh.io/cols");
        let line = out
            .lines()
            .find(|l| l.starts_with(&prefix))
            .with_context(|| format!("kubectl get hookmesh does not list {prefix}"))?;
        let cells: Vec<&str> = line.split_whitespace().collect();
        for v in row {
            ensure!(cells.contains(&v), "{prefix}: no {v:?} in {line:?}");
        }
        // The header of this kind's table is the last header line before its row.
        let header = out
            .lines()
            .take_while(|l| !l.starts_with(&prefix))
            .filter(|l| l.starts_with("NAME"))
            .last()
            .with_context(|| format!("no header above {prefix}"))?;
        let header: Vec<&str> = header.split_whitespace().collect();
        for c in columns {
            ensure!(header.contains(&c), "{kind}: no column {c} in {header:?}");
        }
    }
    // Short names, and the plural that collides with core v1 Endpoints.
    let short = env.kubectl(&["get", "hmsrc,hmep,hmsub", "-n", ns, "-o", "name"])?;
    for want in [
        "source.hookmesh.io/cols",
        "endpoint.hookmesh.io/cols",
        "subscription.hookmesh.io/cols",
    ] {
        ensure!(short.lines().any(|l| l == want), "short names: {short}");
    }
    let eps = env.kubectl(&["get", "endpoints.hookmesh.io", "-n", ns, "-o", "name"])?;
    ensure!(eps.trim() == "endpoint.hookmesh.io/cols", "{eps}");
    Ok(())
}

#[derive(Deserialize)]
struct Case {
    kind: String,
    spec: Value,
    refused: Option<String>,
}

#[derive(Deserialize)]
struct Cases {
    cel: BTreeMap<String, Vec<Case>>,
    schema: BTreeMap<String, Vec<Case>>,
}

fn cases() -> anyhow::Result<Cases> {
    let file =
        hookmesh_tests::gateway::workspace_root().join("api/tests/fixtures/validation-cases.yaml");
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
    Ok(serde_yaml::from_str(&text)?)
}

/// Dry-run every case; collect every disagreement rather than stop at the first.
async fn run_cases(
    cluster: &Cluster,
    ns: &str,
    groups: &BTreeMap<String, Vec<Case>>,
) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for (group, list) in groups {
        for (i, case) in list.iter().enumerate() {
            let manifest = json!({
                "apiVersion": "hookmesh.io/v1alpha1", "kind": case.kind,
                "metadata": {"name": format!("case-{i}")}, "spec": case.spec,
            });
            let what = format!("{group}[{i}] {} {}", case.kind, case.spec);
            match (cluster.apply_dry_run(ns, &manifest).await?, &case.refused) {
                (Ok(()), None) => accepted += 1,
                (Err(msg), Some(want)) if msg.contains(want.as_str()) => refused += 1,
                (Err(msg), Some(want)) => {
                    problems.push(format!("{what}: refused, but not with {want:?}: {msg}"))
                }
                (Err(msg), None) => problems.push(format!("{what}: refused: {msg}")),
                (Ok(()), Some(want)) => {
                    problems.push(format!("{what}: accepted; expected {want:?}"))
                }
            }
        }
    }
    println!("{accepted} accepted and {refused} refused as expected");
    if !problems.is_empty() {
        bail!(
            "{} cases disagree:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
    Ok(())
}

pub fn cel_rules(env: &Env) -> anyhow::Result<()> {
    block_on(async {
        let cluster = &setup(env).await?;
        let cases = cases()?;
        ensure!(!cases.cel.is_empty(), "no CEL cases");
        in_namespace(cluster, "cel", |ns| async move {
            run_cases(cluster, &ns, &cases.cel).await
        })
        .await
    })
}

pub fn schema_constraints(env: &Env) -> anyhow::Result<()> {
    block_on(async {
        let cluster = &setup(env).await?;
        let cases = cases()?;
        in_namespace(cluster, "schema", |ns| async move {
            run_cases(cluster, &ns, &cases.schema).await?;
            schema_defaults(cluster, &ns).await
        })
        .await
    })
}

/// Defaults in the schema are filled in on a server-side apply that leaves the field out, and a
/// second apply of the same manifest keeps them (they belong to no manager).
async fn schema_defaults(cluster: &Cluster, ns: &str) -> anyhow::Result<()> {
    let source = json!({
        "apiVersion": "hookmesh.io/v1alpha1", "kind": "Source", "metadata": {"name": "defaults"},
        "spec": {"verification": {"scheme": "hmac", "secretRef": {"name": "s", "key": "k"},
                                  "hmac": {"header": "X-Sig"}}}
    });
    let sub = json!({
        "apiVersion": "hookmesh.io/v1alpha1", "kind": "Subscription", "metadata": {"name": "defaults"},
        "spec": {"endpointRef": {"name": "e"}}
    });
    let null_mode = json!({
        "apiVersion": "hookmesh.io/v1alpha1", "kind": "Source", "metadata": {"name": "null-mode"},
        "spec": {"verification": {"scheme": "none", "mode": null}}
    });
    cluster.apply(ns, &null_mode).await?;
    let s = cluster
        .get(ns, &ObjRef::hookmesh("Source", "null-mode"))
        .await?;
    ensure!(
        s["spec"]["verification"]["mode"] == "enforce",
        "mode: null is not the default: {}",
        s["spec"]
    );
    for _ in 0..2 {
        cluster.apply(ns, &source).await?;
        cluster.apply(ns, &sub).await?;
        let s = cluster
            .get(ns, &ObjRef::hookmesh("Source", "defaults"))
            .await?;
        let hmac = &s["spec"]["verification"]["hmac"];
        ensure!(
            hmac["algorithm"] == "sha256" && hmac["encoding"] == "hex",
            "hmac defaults not applied: {hmac}"
        );
        ensure!(
            s["spec"]["verification"]["mode"] == "enforce",
            "mode default not applied: {}",
            s["spec"]
        );
        let s = cluster
            .get(ns, &ObjRef::hookmesh("Subscription", "defaults"))
            .await?;
        ensure!(
            s["spec"]["filter"] == json!({}),
            "filter default not applied: {}",
            s["spec"]
        );
    }
    Ok(())
}

/// Every file in examples/ exactly as a user applies it (`kubectl apply --server-side`, dry
/// run on the server: they name namespace `default`), then for real in a test namespace.
pub fn examples(env: &Env) -> anyhow::Result<()> {
    let dir = hookmesh_tests::gateway::workspace_root().join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    ensure!(!files.is_empty(), "no examples");
    block_on(async {
        let cluster = &setup(env).await?;
        for file in &files {
            let text = std::fs::read_to_string(file)?;
            let docs = ku::yaml_docs(&text)?;
            let out = env.kubectl(&[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager",
                MANAGER,
                "-f",
                file.to_str().context("path")?,
            ])?;
            let applied = out
                .lines()
                .filter(|l| l.contains("serverside-applied"))
                .count();
            ensure!(
                applied == docs.len(),
                "{}: {applied} of {} objects applied:\n{out}",
                file.display(),
                docs.len()
            );
        }
        let (dir, files) = (&dir, &files);
        in_namespace(cluster, "examples", |ns| async move {
            let objs = cluster.apply_dir(dir, &ns).await?;
            ensure!(
                objs.len() >= 6,
                "only {} hookmesh objects in examples/",
                objs.len()
            );
            println!(
                "{} example files, {} hookmesh objects accepted",
                files.len(),
                objs.len()
            );
            Ok(())
        })
        .await
    })
}
