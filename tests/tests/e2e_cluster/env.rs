//! What the suite runs against, from the environment, and the command-line tools it drives.
//!
//! - `HOOKMESH_E2E_KUBECONFIG`: admin kubeconfig of a throwaway cluster (required).
//! - `HOOKMESH_E2E_KUBECTL`: kubectl to use (default: `kubectl` on PATH). `tests/cluster/with-cluster`
//!   sets it to the kubectl built at the server's own version.
//! - `HOOKMESH_E2E_HELM`: helm to render the chart with (default: the pinned Helm of
//!   `.ci/chart-test`, fetched by `tests/cluster/helm-path`).
//! - `HOOKMESH_E2E_RESTART`: a shell command that restarts the API server on the same data and
//!   returns once it is ready (set by `with-cluster`); without it the restart test is ignored.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context as _};

pub struct Env {
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    pub restart: Option<String>,
    helm: OnceLock<Result<PathBuf, String>>,
}

impl Env {
    pub fn from_env() -> Option<Env> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let kubeconfig = PathBuf::from(var("HOOKMESH_E2E_KUBECONFIG")?);
        Some(Env {
            kubeconfig,
            kubectl: var("HOOKMESH_E2E_KUBECTL")
                .map(PathBuf::from)
                .unwrap_or_else(|| "kubectl".into()),
            restart: std::env::var("HOOKMESH_E2E_RESTART")
                .ok()
                .filter(|s| !s.is_empty()),
            helm: OnceLock::new(),
        })
    }

    /// `kubectl --kubeconfig <admin> ARGS`; its stdout, or an error with both streams.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.kubectl_as(&self.kubeconfig, args)
    }

    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> anyhow::Result<String> {
        let (mut cmd, _cache) = self.kubectl_command(kubeconfig)?;
        cmd.args(args);
        run(cmd)
    }

    /// A kubectl command with its own, empty discovery cache: kubectl caches the API's
    /// resource list on disk (in $HOME by default) for hours, so right after the CRDs are
    /// applied `kubectl get hookmesh` would not know the category yet. Keep the returned dir
    /// alive while the command runs.
    pub fn kubectl_command(
        &self,
        kubeconfig: &Path,
    ) -> anyhow::Result<(Command, tempfile::TempDir)> {
        let cache = tempfile::tempdir()?;
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(cache.path());
        Ok((cmd, cache))
    }

    pub fn helm(&self) -> anyhow::Result<PathBuf> {
        let found = self.helm.get_or_init(|| {
            if let Some(h) = std::env::var_os("HOOKMESH_E2E_HELM").filter(|v| !v.is_empty()) {
                return Ok(PathBuf::from(h));
            }
            let script = hookmesh_tests::gateway::workspace_root().join("tests/cluster/helm-path");
            run(Command::new(&script))
                .map(|out| PathBuf::from(out.trim()))
                .map_err(|e| format!("{e:#}"))
        });
        match found {
            Ok(p) => Ok(p.clone()),
            Err(e) => bail!("no helm: {e}"),
        }
    }

    /// `helm template RELEASE charts/hookmesh --namespace NS ARGS` (never talks to a cluster).
    pub fn helm_template(&self, release: &str, ns: &str, args: &[&str]) -> anyhow::Result<String> {
        let home = tempfile::tempdir()?;
        let mut cmd = Command::new(self.helm()?);
        cmd.args(["template", release])
            .arg(hookmesh_tests::gateway::workspace_root().join("charts/hookmesh"))
            .args(["--namespace", ns])
            .args(args)
            // Keep Helm away from the user's config and any kube context.
            .env("HELM_CACHE_HOME", home.path().join("cache"))
            .env("HELM_CONFIG_HOME", home.path().join("config"))
            .env("HELM_DATA_HOME", home.path().join("data"))
            .env("KUBECONFIG", home.path().join("none"));
        run(cmd)
    }
}

fn run(mut cmd: Command) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("run {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} exited {}:\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
