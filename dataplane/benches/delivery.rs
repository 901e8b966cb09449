//! End-to-end delivery benchmark (not a test): webhooks POSTed to the data plane's ingest
//! path, stored, routed and delivered to a loopback receiver, all in this process.
//!
//! Prints deliveries per second and ingest-to-delivery latency (from the moment the ingest
//! request is sent to the moment the receiver has the delivery), next to a baseline measured
//! in the same run: the same client hitting the same receiver directly, which is the floor the
//! gateway's numbers should be read against on this machine.
//!
//! `cargo bench -p hookmesh-dataplane --bench delivery` (release profile). Sizes can be set
//! with `BENCH_EVENTS` and `BENCH_CONCURRENCY`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hookmesh_dataplane::server::{self, ConfigFrom, Options};
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;
type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn main() -> anyhow::Result<()> {
    let events: usize = env_or("BENCH_EVENTS", 20_000);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(events, concurrency))
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(events: usize, concurrency: usize) -> anyhow::Result<()> {
    let arrivals: Arrivals = Arc::new(Mutex::new(HashMap::with_capacity(events * 2)));
    let receiver = start_receiver(arrivals.clone()).await?;

    let dir = tempfile::tempdir()?;
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests)?;
    std::fs::write(
        manifests.join("bench.yaml"),
        manifests_yaml(receiver, false),
    )?;
    let listen: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let opts = Options {
        config: ConfigFrom::Manifests(manifests.clone()),
        data_dir: dir.path().join("data"),
        store_cache_mb: hookmesh_dataplane::store::DEFAULT_CACHE_MB,
        listen,
        api_rate_limit: 1_000_000,
        retention: Default::default(),
        delivery: Default::default(),
        peers: Default::default(),
        publish_max_body: 1024 * 1024,
        slice: Default::default(),
        registration: false,
    };
    tokio::spawn(async move {
        if let Err(e) = server::run(opts).await {
            eprintln!("gateway stopped: {e:#}");
        }
    });
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http();
    wait_ready(&client, listen).await?;

    println!("hookmesh delivery benchmark: {events} events, {concurrency} concurrent senders");
    println!("(one process: client, gateway with sled on disk, and receiver share the machine)\n");

    // Warm up connections and sled.
    load(
        &client,
        &arrivals,
        Target::Gateway(listen),
        500,
        concurrency,
    )
    .await?;

    let direct = load(
        &client,
        &arrivals,
        Target::Direct(receiver),
        events,
        concurrency,
    )
    .await?;
    let gateway = load(
        &client,
        &arrivals,
        Target::Gateway(listen),
        events,
        concurrency,
    )
    .await?;
    let direct_1 = load(&client, &arrivals, Target::Direct(receiver), 1000, 1).await?;
    let gateway_1 = load(&client, &arrivals, Target::Gateway(listen), 1000, 1).await?;

    println!(
        "{:<44} {:>12} {:>10} {:>10}",
        "run", "per second", "p50 ms", "p99 ms"
    );
    for (name, r) in [
        (
            format!("baseline: client -> receiver, c={concurrency}"),
            &direct,
        ),
        (
            format!("gateway: ingest -> delivered, c={concurrency}"),
            &gateway,
        ),
        ("baseline: client -> receiver, c=1".to_string(), &direct_1),
        ("gateway: ingest -> delivered, c=1".to_string(), &gateway_1),
    ] {
        println!(
            "{:<44} {:>12.0} {:>10.2} {:>10.2}",
            name,
            r.per_second,
            r.p50.as_secs_f64() * 1000.0,
            r.p99.as_secs_f64() * 1000.0
        );
    }
    println!(
        "\ngateway ingest alone (202s received) at c={concurrency}: {:.0}/s",
        gateway.accepted_per_second
    );

    // The engine alone, without ingest in the way: queue `events` behind a disabled endpoint,
    // enable it, and time the drain.
    set_disabled(&client, listen, &manifests, receiver, true).await?;
    let mut queued = Vec::with_capacity(events);
    for chunk in 0..events.div_ceil(1000) {
        let n = (events - chunk * 1000).min(1000);
        let ids = ingest_only(&client, listen, n, concurrency).await?;
        queued.extend(ids);
    }
    let started = Instant::now();
    set_disabled(&client, listen, &manifests, receiver, false).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = {
            let got = arrivals.lock().unwrap_or_else(|p| p.into_inner());
            queued.iter().all(|id| got.contains_key(id))
        };
        if done {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "drain incomplete after 300 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let drained = started.elapsed();
    let (first, last) = {
        let got = arrivals.lock().unwrap_or_else(|p| p.into_inner());
        let times: Vec<Instant> = queued
            .iter()
            .filter_map(|id| got.get(id).copied())
            .collect();
        (times.iter().min().copied(), times.iter().max().copied())
    };
    println!(
        "engine alone: {events} queued deliveries drained in {:.2} s after the enable: {:.0} deliveries/s",
        drained.as_secs_f64(),
        events as f64 / drained.as_secs_f64()
    );
    if let (Some(first), Some(last)) = (first, last) {
        let span = last.duration_since(first).max(Duration::from_micros(1));
        println!(
            "  (first to last delivery {:.2} s: {:.0} deliveries/s; the rest is pulling the parked deliveries forward)",
            span.as_secs_f64(),
            events as f64 / span.as_secs_f64()
        );
    }
    Ok(())
}

/// Flip the endpoint's `disabled` flag and wait until the new config is live.
async fn set_disabled(
    client: &HttpClient,
    listen: SocketAddr,
    manifests: &std::path::Path,
    receiver: SocketAddr,
    disabled: bool,
) -> anyhow::Result<()> {
    let before = config_hash(client, listen).await?;
    let tmp = manifests.join(".bench.yaml.tmp");
    std::fs::write(&tmp, manifests_yaml(receiver, disabled))?;
    std::fs::rename(&tmp, manifests.join("bench.yaml"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while config_hash(client, listen).await? == before {
        anyhow::ensure!(Instant::now() < deadline, "config not reloaded");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn config_hash(client: &HttpClient, listen: SocketAddr) -> anyhow::Result<String> {
    let req =
        http::Request::get(format!("http://{listen}/readyz")).body(Full::new(Bytes::new()))?;
    let body = client
        .request(req)
        .await?
        .into_body()
        .collect()
        .await?
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(v["config_hash"].as_str().unwrap_or_default().to_string())
}

/// Ingest `n` events without waiting for their delivery; their ids.
async fn ingest_only(
    client: &HttpClient,
    listen: SocketAddr,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, next) = (client.clone(), next.clone());
        tasks.spawn(async move {
            let mut ids = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                let body = format!(r#"{{"type":"bench.event","pad":"{}"}}"#, "x".repeat(200));
                ids.push(send(&client, Target::Gateway(listen), body).await?);
            }
            anyhow::Ok(ids)
        });
    }
    let mut ids = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        ids.extend(r??);
    }
    Ok(ids)
}

#[derive(Clone, Copy)]
enum Target {
    Direct(SocketAddr),
    Gateway(SocketAddr),
}

struct Measured {
    per_second: f64,
    accepted_per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// Send `n` requests from `concurrency` tasks; wait until the receiver has all of them.
async fn load(
    client: &HttpClient,
    arrivals: &Arrivals,
    target: Target,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Measured> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, next) = (client.clone(), next.clone());
        tasks.spawn(async move {
            let mut sent: Vec<(String, Instant)> = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let body = format!(
                    r#"{{"type":"bench.event","n":{i},"pad":"{}"}}"#,
                    "x".repeat(200)
                );
                let at = Instant::now();
                let id = send(&client, target, body).await?;
                sent.push((id, at));
            }
            anyhow::Ok(sent)
        });
    }
    let mut sent = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        sent.extend(r??);
    }
    let accepted = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut latencies = Vec::with_capacity(n);
    let mut last = started;
    loop {
        {
            let got = arrivals.lock().unwrap_or_else(|p| p.into_inner());
            if sent.iter().all(|(id, _)| got.contains_key(id)) {
                for (id, at) in &sent {
                    if let Some(arrived) = got.get(id) {
                        latencies.push(arrived.saturating_duration_since(*at));
                        last = last.max(*arrived);
                    }
                }
                break;
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "deliveries missing after 300 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    latencies.sort();
    let total = last.duration_since(started).max(Duration::from_micros(1));
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    Ok(Measured {
        per_second: n as f64 / total.as_secs_f64(),
        accepted_per_second: n as f64 / accepted.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    })
}

/// POST one event; returns the id the receiver will see in `webhook-id`.
async fn send(client: &HttpClient, target: Target, body: String) -> anyhow::Result<String> {
    let (uri, id) = match target {
        Target::Direct(addr) => {
            let id = format!("direct_{}", ulid::Ulid::new());
            (format!("http://{addr}/sink"), Some(id))
        }
        Target::Gateway(addr) => (format!("http://{addr}/e/default/bench"), None),
    };
    let mut req = http::Request::post(uri)
        .header("content-type", "application/json")
        .header("x-event-type", "bench.event");
    if let Some(id) = &id {
        req = req.header("webhook-id", id);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body)))?)
        .await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    match id {
        Some(id) => {
            anyhow::ensure!(status.is_success(), "receiver answered {status}");
            Ok(id)
        }
        None => {
            anyhow::ensure!(status.as_u16() == 202, "ingest answered {status}");
            let v: serde_json::Value = serde_json::from_slice(&bytes)?;
            Ok(v["id"].as_str().context("202 without id")?.to_string())
        }
    }
}

async fn start_receiver(arrivals: Arrivals) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let arrivals = arrivals.clone();
                    async move {
                        let id = req
                            .headers()
                            .get("webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        let _ = req.into_body().collect().await;
                        if let Some(id) = id {
                            let now = Instant::now();
                            arrivals
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(id, now);
                        }
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn wait_ready(client: &HttpClient, addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let req =
            http::Request::get(format!("http://{addr}/readyz")).body(Full::new(Bytes::new()))?;
        if let Ok(r) = client.request(req).await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "gateway not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn manifests_yaml(receiver: SocketAddr, disabled: bool) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: sink-signing, namespace: default}}
stringData: {{secret: "whsec_YmVuY2gtc2lnbmluZy1rZXktMDEyMzQ1Njc4OWFiY2RlZg=="}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {{name: bench, namespace: default}}
spec:
  verification: {{scheme: none}}
  eventType: {{header: x-event-type}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {{name: sink, namespace: default}}
spec:
  url: "http://{receiver}/sink"
  secretRef: {{name: sink-signing, key: secret}}
  timeoutSeconds: 10
  disabled: {disabled}
---
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {{name: to-sink, namespace: default}}
spec:
  endpointRef: {{name: sink}}
"#
    )
}
