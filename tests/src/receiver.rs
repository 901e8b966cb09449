//! A scripted webhook receiver on 127.0.0.1: records every request it gets and answers from a
//! script (one reply per request, in order), then with a default reply.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;

/// How to answer one request.
#[derive(Clone, Debug)]
pub enum Reply {
    Status(u16),
    /// Status, headers and body.
    Full(u16, Vec<(String, String)>, String),
    /// 429 or 503 with `Retry-After: <date>` that many seconds ahead (computed when answering).
    RetryAfterDate(u16, u64),
    /// Wait this long, then answer with the status (a slow or hung receiver).
    Delay(Duration, u16),
}

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct Shared {
    script: VecDeque<Reply>,
    default: Reply,
    received: Vec<Received>,
    /// How many of `received` [`Receiver::next`] has handed out.
    taken: usize,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    arrived: Arc<Notify>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    /// Listen on a free loopback port, answering 200 unless scripted otherwise.
    pub async fn start() -> anyhow::Result<Receiver> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(addr: SocketAddr) -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .context("binding the receiver")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared {
            script: VecDeque::new(),
            default: Reply::Status(200),
            received: Vec::new(),
            taken: 0,
        }));
        let arrived = Arc::new(Notify::new());
        let (s, a) = (shared.clone(), arrived.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (s, a) = (s.clone(), a.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, s.clone(), a.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Receiver {
            addr,
            shared,
            arrived,
            task: Arc::new(task),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer the next requests with these, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// Answer with this once the script is used up.
    pub fn set_default(&self, reply: Reply) {
        self.lock().default = reply;
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// When a request carrying each value of header `name` first arrived, without copying the
    /// requests (the bench asks this of tens of thousands).
    pub fn first_arrivals(&self, name: &str) -> HashMap<String, Instant> {
        let mut out = HashMap::new();
        for r in &self.lock().received {
            if let Some(v) = r.header(name) {
                out.entry(v.to_string()).or_insert(r.at);
            }
        }
        out
    }

    /// Forget what arrived so far.
    pub fn clear(&self) {
        let mut s = self.lock();
        s.received.clear();
        s.taken = 0;
    }

    /// The next request not handed out by `next` before, waiting up to `timeout` for it.
    pub async fn next(&self, timeout: Duration) -> anyhow::Result<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.arrived.notified();
            {
                let mut s = self.lock();
                if let Some(r) = s.received.get(s.taken).cloned() {
                    s.taken += 1;
                    return Ok(r);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("no request arrived within {timeout:?}");
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    pub fn count(&self) -> usize {
        self.lock().received.len()
    }

    /// Wait until at least `n` requests arrived; fail after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> anyhow::Result<Vec<Received>> {
        self.wait_until(timeout, |r| r.len() >= n)
            .await
            .with_context(|| format!("waiting for {n} request(s)"))
    }

    /// Wait until `done` holds for the requests so far; fail after `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> anyhow::Result<Vec<Received>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.arrived.notified();
            {
                let got = self.received();
                if done(&got) {
                    return Ok(got);
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!("timed out after {timeout:?} with {} request(s)", got.len());
                }
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // The last clone stops the listener.
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    shared: Arc<Mutex<Shared>>,
    arrived: Arc<Notify>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = req.headers().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let reply = {
        let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
        s.received.push(Received {
            at,
            path,
            headers,
            body,
        });
        s.script.pop_front().unwrap_or_else(|| s.default.clone())
    };
    arrived.notify_waiters();
    let (status, headers, body) = match reply {
        Reply::Status(s) => (s, Vec::new(), String::new()),
        Reply::Full(s, h, b) => (s, h, b),
        Reply::RetryAfterDate(s, secs) => (
            s,
            vec![(
                "retry-after".to_string(),
                httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs)),
            )],
            String::new(),
        ),
        Reply::Delay(d, s) => {
            tokio::time::sleep(d).await;
            (s, Vec::new(), String::new())
        }
    };
    let mut resp = hyper::Response::builder().status(status);
    for (k, v) in headers {
        resp = resp.header(k, v);
    }
    Ok(resp
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new()))))
}
