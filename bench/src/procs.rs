//! The processes under test: the baseline server and the real data plane, each its own process
//! so both sides of the comparison pay the same loopback and scheduling costs.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use axum::http::StatusCode;
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// `target/release/<name>`, built now so the figures are never from a stale binary.
pub fn release_binary(name: &str) -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "hookmesh-dataplane",
            "--bin",
            name,
        ])
        .current_dir(&root)
        .status()
        .context("running cargo build --release")?;
    anyhow::ensure!(status.success(), "cargo build --release failed");
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("no parent of the bench binary")?;
    Ok(dir.join(name))
}

/// Route the bench source to a loopback receiver (for the end-to-end delivery scenario).
pub fn write_route(dir: &Path, receiver: SocketAddr) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("route.yaml"),
        format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: receiver-signing, namespace: bench}}
stringData: {{secret: "whsec_YmVuY2gtcmVjZWl2ZXItc2lnbmluZy1rZXktMzJieXRlcw=="}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {{name: receiver, namespace: bench}}
spec:
  url: http://{receiver}/hook
  secretRef: {{name: receiver-signing, key: secret}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {{name: all-to-receiver, namespace: bench}}
spec:
  endpointRef: {{name: receiver}}
"#
        ),
    )?;
    Ok(())
}

pub fn write_manifests(dir: &Path, github_secret: &str) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("bench.yaml"),
        format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: gh, namespace: bench}}
stringData: {{secret: "{github_secret}"}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {{name: github, namespace: bench}}
spec:
  verification: {{scheme: github, secretRef: {{name: gh, key: secret}}}}
"#
        ),
    )?;
    Ok(())
}

pub async fn serve_baseline(addr: SocketAddr) -> anyhow::Result<()> {
    let app = axum::Router::new()
        .route(
            "/e/{ns}/{source}",
            post(|_body: Bytes| async {
                (
                    StatusCode::ACCEPTED,
                    r#"{"id":"evt_baseline","status":"pending"}"#,
                )
            }),
        )
        .route(
            "/readyz",
            axum::routing::get(|| async { r#"{"status":"ready","config_hash":"none"}"# }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

pub struct Child {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Child {
    pub fn spawn_baseline() -> anyhow::Result<Child> {
        let addr = free_addr()?;
        let child = Command::new(std::env::current_exe()?)
            .arg("--baseline-server")
            .arg(addr.to_string())
            .stdout(Stdio::null())
            .spawn()?;
        let c = Child { child, addr };
        std::thread::sleep(Duration::from_millis(300));
        Ok(c)
    }

    pub fn spawn_dataplane(bin: &Path, manifests: &Path, data: &Path) -> anyhow::Result<Child> {
        let addr = free_addr()?;
        let child = Command::new(bin)
            .arg("--manifests")
            .arg(manifests)
            .arg("--data-dir")
            .arg(data)
            .arg("--listen")
            .arg(addr.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Child { child, addr })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn config_hash(&self) -> anyhow::Result<String> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let resp = client.get(self.url("/readyz").parse()?).await?;
        let body = resp.into_body().collect().await?.to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        Ok(v["config_hash"].as_str().unwrap_or_default().to_string())
    }

    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.config_hash().await.is_err() {
            if Instant::now() > deadline {
                bail!("the data plane never became ready");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Resident set size now, from /proc (KiB; 0 where /proc is absent).
    pub fn rss_kib(&self) -> u64 {
        rss_of(self.child.id())
    }

    /// Sample RSS every 100 ms until stopped; `stop` returns the peak.
    pub fn rss_sampler(&self) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (p, d, pid) = (peak.clone(), done.clone(), self.child.id());
        std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                p.fetch_max(rss_of(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssSampler { peak, done }
    }

    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct RssSampler {
    peak: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl RssSampler {
    pub fn stop(self) -> u64 {
        self.done.store(true, Ordering::Relaxed);
        self.peak.load(Ordering::Relaxed)
    }
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}
