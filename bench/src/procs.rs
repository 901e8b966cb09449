//! The bench's own processes and files: the baseline server (its own process, so both sides of
//! the comparison pay the same loopback and scheduling costs), the manifests, and RSS sampling.
//! The data plane itself runs through `hookmesh_tests::gateway`, like every suite.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use bytes::Bytes;

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
    std::fs::write(dir.join("bench.yaml"), manifests(github_secret))?;
    Ok(())
}

/// The bench source: `bench/github`, GitHub signatures with `github_secret`.
pub fn manifests(github_secret: &str) -> String {
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
    )
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

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
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

/// Resident set size of a process now, from /proc (KiB; 0 where /proc is absent).
pub fn rss_kib(pid: u32) -> u64 {
    rss_of(pid)
}

/// Samples a process's RSS every 100 ms until stopped; `stop` returns the peak.
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (p, d) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                p.fetch_max(rss_of(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssSampler { peak, done }
    }

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
