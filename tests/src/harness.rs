//! Start the real `hookmesh-dataplane` binary on a temp data dir and talk HTTP to it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The data-plane binary, built once per test process (see [`crate::gateway::binary`]).
pub fn dataplane_binary() -> PathBuf {
    crate::gateway::binary().unwrap_or_else(|e| panic!("cannot build hookmesh-dataplane: {e:#}"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A running data plane in standalone mode.
pub struct Gateway {
    pub addr: SocketAddr,
    pub manifests: PathBuf,
    pub data_dir: PathBuf,
    pub extra_args: Vec<String>,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Gateway {
    /// Start on `manifests` with its sled under `data_dir`; returns once `/readyz` answers.
    pub async fn start(manifests: &Path, data_dir: &Path) -> anyhow::Result<Gateway> {
        Self::start_with(manifests, data_dir, &[]).await
    }

    pub async fn start_with(
        manifests: &Path,
        data_dir: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Gateway> {
        let mut gw = Gateway {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            manifests: manifests.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            log: data_dir.with_extension("log"),
        };
        gw.spawn().await?;
        Ok(gw)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .context("opening the gateway log")?;
        let child = Command::new(dataplane_binary())
            .arg("--manifests")
            .arg(&self.manifests)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.addr.to_string())
            .args(&self.extra_args)
            .env("RUST_LOG", "info,sled=warn")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting hookmesh-dataplane")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = get(&self.url("/readyz")).await {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    bail!(
                        "hookmesh-dataplane exited with {status}; log:\n{}",
                        self.log_text()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "hookmesh-dataplane did not become ready; log:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown hook runs, nothing is flushed on the way out.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            let pid = c.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status()?;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = c.try_wait()? {
                    if !status.success() {
                        bail!("hookmesh-dataplane exited with {status}");
                    }
                    return Ok(());
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    bail!("hookmesh-dataplane did not stop on SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Start again on the same manifests, data dir and port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.spawn().await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `code` of an error body.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_string()
    }
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> anyhow::Result<Resp> {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into()))?;
    let resp = client().request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

pub async fn get(url: &str) -> anyhow::Result<Resp> {
    request("GET", url, &[], Bytes::new()).await
}

pub async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> anyhow::Result<Resp> {
    request("POST", url, headers, body).await
}

/// Write a manifests dir file.
pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("writing {name}: {e}"));
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
