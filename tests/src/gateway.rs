//! The one way the suites run a data plane: start the real `hookmesh-dataplane` binary in
//! standalone mode and talk HTTP to it.
//!
//! The binary is built once per test process (`cargo build -p hookmesh-dataplane`, a no-op when
//! it is fresh), so a suite never runs against a stale build. Each [`Gateway`] gets its own data
//! directory (unless given one) and port; its log goes to `gateway.log` in the data directory and
//! is printed when it fails to come up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ::http::Method;
use anyhow::{bail, Context as _};
use bytes::Bytes;
use tempfile::TempDir;

use crate::http::{self, Resp};

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Path of the freshly built data-plane binary (debug profile).
pub fn binary() -> anyhow::Result<PathBuf> {
    built("hookmesh-dataplane", false)
}

/// The same, release profile (what the benchmarks measure).
pub fn release_binary() -> anyhow::Result<PathBuf> {
    built("hookmesh-dataplane", true)
}

/// A workspace binary (`hookmesh-dataplane`, `hookmesh-operator`), built once per test process
/// and profile, so no suite runs against a stale build.
pub fn built(package: &str, release: bool) -> anyhow::Result<PathBuf> {
    type Builds = HashMap<(String, bool), Result<PathBuf, String>>;
    static BUILT: OnceLock<Mutex<Builds>> = OnceLock::new();
    let mut builds = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    builds
        .entry((package.to_string(), release))
        .or_insert_with(|| build(package, release).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build(package: &str, release: bool) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "-p", package, "--bin", package]);
    if release {
        cmd.arg("--release");
    }
    // Cargo runs tests with the test crate's CARGO_MANIFEST_DIR, CARGO_PKG_* and so on. Build
    // scripts that watch those (ring's does) would see a changed environment and rebuild half the
    // dependency tree, in this build and again in the next ordinary one.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_")
            || matches!(
                key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            )
        {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .output()
        .with_context(|| format!("running cargo build -p {package}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(40).collect();
        bail!(
            "cargo build -p {package} failed:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target
        .join(if release { "release" } else { "debug" })
        .join(package);
    if !bin.exists() {
        bail!("{} is missing after cargo build", bin.display());
    }
    Ok(bin)
}

/// A free loopback port (bound and released: another process could take it in between, which
/// on a test machine does not happen in practice).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a probe port")?;
    Ok(l.local_addr()?.port())
}

#[derive(Default)]
pub struct GatewayOptions {
    /// A directory of manifests, or
    pub manifests: PathBuf,
    /// the text of one manifests file, written to a temporary directory kept as long as the
    /// gateway runs (`manifests` is ignored then).
    pub manifests_yaml: Option<String>,
    /// Reuse this data directory; a fresh temporary one otherwise.
    pub data_dir: Option<PathBuf>,
    /// Extra environment for the process (e.g. `HOOKMESH_BREAKER_THRESHOLD`).
    pub env: Vec<(String, String)>,
    /// Extra command-line arguments (e.g. `--rate-limit`).
    pub args: Vec<String>,
    /// Run the release build (benchmarks) instead of the debug one.
    pub release: bool,
    /// Listen on this loopback port, kept across restarts (peers address each other by it); a
    /// free one otherwise, new at each start.
    pub port: Option<u16>,
    /// Keep the egress guard's default refusal of loopback. The suites' receivers listen on
    /// loopback, so by default the harness allows it (`--egress-allow=127.0.0.0/8,::1/128`).
    pub guard_loopback: bool,
}

pub struct Gateway {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub manifests: PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
    release: bool,
    port: Option<u16>,
    child: Option<Child>,
    _temp: Option<TempDir>,
    _manifests: Option<TempDir>,
}

impl Gateway {
    pub async fn start(manifests: &Path) -> anyhow::Result<Gateway> {
        Self::start_with(GatewayOptions {
            manifests: manifests.to_path_buf(),
            ..GatewayOptions::default()
        })
        .await
    }

    pub async fn start_with(opts: GatewayOptions) -> anyhow::Result<Gateway> {
        let (manifests, manifests_dir) = match &opts.manifests_yaml {
            Some(yaml) => {
                let dir = tempfile::tempdir().context("creating a manifests directory")?;
                std::fs::write(dir.path().join("gateway.yaml"), yaml)?;
                (dir.path().to_path_buf(), Some(dir))
            }
            None => (opts.manifests.clone(), None),
        };
        let (data_dir, temp) = match opts.data_dir {
            Some(d) => {
                // The log lives beside sled, so the directory must exist before the process does.
                std::fs::create_dir_all(&d).context("creating the data directory")?;
                (d, None)
            }
            None => {
                let t = tempfile::tempdir().context("creating a data directory")?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let mut gw = Gateway {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            manifests,
            env: opts.env,
            args: if opts.guard_loopback {
                opts.args
            } else {
                std::iter::once("--egress-allow=127.0.0.0/8,::1/128".to_string())
                    .chain(opts.args)
                    .collect()
            },
            release: opts.release,
            port: opts.port,
            child: None,
            _temp: temp,
            _manifests: manifests_dir,
        };
        gw.spawn().await?;
        Ok(gw)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = if self.release {
            release_binary()?
        } else {
            binary()?
        };
        let port = match self.port {
            Some(p) => p,
            None => free_port()?,
        };
        self.addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening the gateway log")?;
        let child = Command::new(bin)
            .arg("--manifests")
            .arg(&self.manifests)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.addr.to_string())
            .args(&self.args)
            .env("RUST_LOG", "info,hookmesh_dataplane=debug,sled=warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting hookmesh-dataplane")?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "hookmesh-dataplane exited at start ({status}):\n{}",
                    self.logs()
                );
            }
            if let Ok(r) = self.fetch("/readyz").await {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("hookmesh-dataplane not ready after 60 s:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("gateway.log")
    }

    /// Everything the process (and its predecessors on this data directory) logged.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no shutdown path runs at all.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().context("killing hookmesh-dataplane")?;
            c.wait().context("reaping hookmesh-dataplane")?;
        }
        Ok(())
    }

    /// SIGTERM, then wait for a clean exit (up to `timeout`).
    pub async fn stop(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .context("running kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait()? {
                if !status.success() {
                    bail!("hookmesh-dataplane exited with {status}:\n{}", self.logs());
                }
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("hookmesh-dataplane did not stop within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Start again on the same data directory and manifests (on a new port, unless the port
    /// was given).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9()?;
        self.spawn().await
    }

    /// Start again after [`Gateway::kill9`] or [`Gateway::stop`].
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.spawn().await
    }

    /// Any request to `path` on this gateway.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Resp> {
        http::request(method, &self.url(path), headers, body).await
    }

    /// `GET path` without credentials (probes, metrics, ingest refusals).
    pub async fn fetch(&self, path: &str) -> anyhow::Result<Resp> {
        http::get(&self.url(path)).await
    }

    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Resp> {
        http::post(&self.url(path), headers, body).await
    }

    /// Value of one Prometheus sample (exact series text), 0 when absent.
    pub async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let text = self.fetch("/metrics").await?.body;
        let text = String::from_utf8_lossy(&text);
        Ok(text
            .lines()
            .filter_map(|l| l.rsplit_once(' '))
            .find(|(name, _)| *name == series)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0.0))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Write one file of a manifests directory.
pub fn write_manifest(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("writing {name}: {e}"));
}
