//! Closed-loop load: N connections, each sending the next request when the last one answers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;

#[derive(Clone)]
pub struct LoadSpec {
    pub duration: Duration,
    pub concurrency: usize,
    pub body: Bytes,
    pub secret: String,
    /// The answer that counts as success (202 for ingest; 401 for the refused-signature run).
    pub expect: u16,
    /// Requests per second over all connections, each connection sending on a fixed schedule
    /// (open loop, latency counted from the scheduled send); `None`: as fast as answered.
    pub rate: Option<f64>,
}

pub struct Report {
    /// Event ids from the 202 bodies with the instant each request was sent (measured requests only).
    pub sent: Vec<(String, Instant)>,
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Sorted latencies of successful requests.
    pub latencies: Vec<Duration>,
}

impl Report {
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn p(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
        self.latencies[i.min(self.latencies.len() - 1)]
    }
}

/// A JSON body of `n` bytes.
pub fn body(n: usize) -> Bytes {
    let head = br#"{"action":"opened","pad":""#;
    let tail = br#""}"#;
    let pad = n.saturating_sub(head.len() + tail.len());
    let mut v = Vec::with_capacity(n);
    v.extend_from_slice(head);
    v.extend(std::iter::repeat_n(b'x', pad));
    v.extend_from_slice(tail);
    Bytes::from(v)
}

fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub async fn run(spec: &LoadSpec, url: &str) -> anyhow::Result<Report> {
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(spec.concurrency)
        .build_http::<Full<Bytes>>();
    let signature = github_signature(&spec.secret, &spec.body);
    // Delivery ids are idempotency keys: unique per run, so a rerun against the same data
    // directory measures ingest, not the duplicate path.
    let run: u64 = rand::random();
    // Warm up the connections so the first requests' handshakes don't count.
    let warm_until = Instant::now() + Duration::from_millis(500);
    let end = warm_until + spec.duration;
    let mut tasks = Vec::with_capacity(spec.concurrency);
    for worker in 0..spec.concurrency {
        let client = client.clone();
        let url = url.to_string();
        let body = spec.body.clone();
        let signature = signature.clone();
        let expect = spec.expect;
        // Paced: this connection sends every `interval`, the connections staggered evenly.
        let pace = spec.rate.filter(|r| *r > 0.0).map(|rate| {
            let interval = Duration::from_secs_f64(spec.concurrency as f64 / rate);
            let offset = interval.mul_f64(worker as f64 / spec.concurrency as f64);
            (Instant::now() + offset, interval)
        });
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let mut sent = Vec::with_capacity(1 << 16);
            let (mut ok, mut errors, mut n) = (0u64, 0u64, 0u64);
            loop {
                let started = match pace {
                    Some((first, interval)) => {
                        let at = first + interval.mul_f64(n as f64);
                        tokio::time::sleep_until(at.into()).await;
                        at
                    }
                    None => Instant::now(),
                };
                if started >= end {
                    break;
                }
                n += 1;
                let req = http::Request::post(&url)
                    .header("content-type", "application/json")
                    .header("x-github-event", "pull_request")
                    .header("x-github-delivery", format!("{run:x}-{worker}-{n}"))
                    .header("x-hub-signature-256", &signature)
                    .body(Full::new(body.clone()));
                let Ok(req) = req else { continue };
                let result = client.request(req).await;
                let (good, id) = match result {
                    Ok(resp) => {
                        let status = resp.status();
                        let body = resp
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let id = serde_json::from_slice::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v["id"].as_str().map(str::to_string));
                        (status.as_u16() == expect, id)
                    }
                    Err(_) => (false, None),
                };
                if started < warm_until {
                    continue;
                }
                if good {
                    ok += 1;
                    lat.push(started.elapsed());
                    if let Some(id) = id {
                        sent.push((id, started));
                    }
                } else {
                    errors += 1;
                }
            }
            (ok, errors, lat, sent)
        }));
    }
    let mut report = Report {
        sent: Vec::new(),
        ok: 0,
        errors: 0,
        elapsed: spec.duration,
        latencies: Vec::new(),
    };
    for t in tasks {
        let (ok, errors, lat, sent) = t.await?;
        report.sent.extend(sent);
        report.ok += ok;
        report.errors += errors;
        report.latencies.extend(lat);
    }
    report.latencies.sort_unstable();
    Ok(report)
}
