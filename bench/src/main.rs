//! `hookmesh-bench`: drives the real release binaries over loopback and prints every figure of
//! BENCHMARKS.md, each next to a baseline measured in the same run on the same machine.
//!
//! Run: `cargo run --release -p hookmesh-bench` (builds and uses target/release/hookmesh-dataplane).

mod load;
mod procs;
mod scaleout;

use std::time::{Duration, Instant};

use clap::Parser;
use hookmesh_tests::gateway::{Gateway, GatewayOptions};
use hookmesh_tests::receiver::{Receiver, Reply};

use load::{LoadSpec, Report};

#[derive(Parser, Debug)]
#[command(name = "hookmesh-bench", about)]
struct Cli {
    /// Seconds of load per scenario.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024)]
    body_bytes: usize,
    /// Serve the bare baseline handler on this address and do nothing else (used internally).
    #[arg(long, hide = true)]
    baseline_server: Option<std::net::SocketAddr>,
    /// Run only the scale-out scenario (one pod against three).
    #[arg(long)]
    scaleout_only: bool,
    /// Only drive the ingest load at this URL and print its figures (for profiling a running
    /// data plane, e.g. under `perf record`).
    #[arg(long)]
    load_only: Option<String>,
    /// With --load-only: requests per second, paced (open loop) instead of as fast as answered.
    #[arg(long)]
    rate: Option<f64>,
}

const GITHUB_SECRET: &str = "bench-secret";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(addr) = cli.baseline_server {
        return procs::serve_baseline(addr).await;
    }
    let spec = LoadSpec {
        duration: Duration::from_secs(cli.seconds),
        concurrency: cli.concurrency,
        body: load::body(cli.body_bytes),
        secret: GITHUB_SECRET.to_string(),
        expect: 202,
        rate: cli.load_only.as_ref().and(cli.rate),
    };
    if let Some(url) = &cli.load_only {
        let r = load::run(&spec, url).await?;
        println!(
            "{url}: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            r.per_second(),
            r.p(0.50).as_secs_f64() * 1e3,
            r.p(0.99).as_secs_f64() * 1e3,
            r.errors
        );
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    if cli.scaleout_only {
        let figures = scaleout::run(&spec, work.path()).await?;
        scaleout::print(&figures);
        return Ok(());
    }
    let manifests = work.path().join("manifests");
    std::fs::create_dir(&manifests)?;
    procs::write_manifests(&manifests, GITHUB_SECRET)?;

    println!(
        "hookmesh-bench: {} s per scenario, {} connections, {} B bodies, {} cores",
        cli.seconds,
        cli.concurrency,
        cli.body_bytes,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // Baseline: a bare axum handler that returns 202 without verifying or storing anything.
    let mut baseline = procs::Child::spawn_baseline()?;
    let base = load::run(&spec, &baseline.url("/e/bench/github")).await?;
    baseline.stop();

    // hookmesh: verify the GitHub signature, route, group-commit to sled, fsync, then 202.
    let mut gw = dataplane(&manifests, &work.path().join("data")).await?;
    let pid = gw.pid().unwrap_or(0);
    let rss_idle = procs::rss_kib(pid);
    let sampler = procs::RssSampler::start(pid);
    let ingest = load::run(&spec, &gw.url("/e/bench/github")).await?;
    let rss_peak = sampler.stop();
    // The same path up to the store: a wrong secret is refused (401) after reading and
    // verifying the body, before anything is written. What ingest costs beyond this is storage.
    let wrong = LoadSpec {
        secret: "not-the-secret".to_string(),
        expect: 401,
        ..spec.clone()
    };
    let refused = load::run(&wrong, &gw.url("/e/bench/github")).await?;
    let reload = measure_reload(&gw, &manifests).await?;
    gw.stop(SHUTDOWN).await?;

    // End to end: the same load, now routed to a loopback receiver; latency is send -> arrival.
    let receiver = Receiver::start().await?;
    // 202, as the gateway answers: the load generator counts only 202s as accepted.
    receiver.set_default(Reply::Status(202));
    let direct = load::run(&spec, &receiver.url("/hook")).await?;
    receiver.clear();
    let routed = work.path().join("routed");
    std::fs::create_dir(&routed)?;
    procs::write_manifests(&routed, GITHUB_SECRET)?;
    procs::write_route(&routed, receiver.addr)?;
    let mut gw = dataplane(&routed, &work.path().join("data-routed")).await?;
    let sent = load::run(&spec, &gw.url("/e/bench/github")).await?;
    let delivered = delivered_report(&sent, &receiver).await;
    // The latency target is at half the delivered rate: paced, not as fast as answered.
    let half = LoadSpec {
        rate: Some(delivered.per_second() / 2.0),
        ..spec.clone()
    };
    let sent_half = load::run(&half, &gw.url("/e/bench/github")).await?;
    let delivered_half = delivered_report(&sent_half, &receiver).await;
    gw.stop(SHUTDOWN).await?;

    let scale = scaleout::run(&spec, work.path()).await?;

    print_table(&base, &ingest, &refused, rss_idle, rss_peak, reload);
    print_delivery(&direct, &sent, &delivered, &delivered_half);
    scaleout::print(&scale);
    Ok(())
}

/// How long a data plane gets to stop cleanly between scenarios.
const SHUTDOWN: Duration = Duration::from_secs(30);

/// The release data plane on `manifests`, quiet (its log would cost CPU under load), ready.
async fn dataplane(manifests: &std::path::Path, data: &std::path::Path) -> anyhow::Result<Gateway> {
    Gateway::start_with(GatewayOptions {
        manifests: manifests.to_path_buf(),
        data_dir: Some(data.to_path_buf()),
        env: vec![("RUST_LOG".into(), "warn".into())],
        release: true,
        ..GatewayOptions::default()
    })
    .await
}

/// Wait (up to 120 s) for every accepted event to arrive, then report deliveries/s (first send to
/// last arrival) and send -> arrival latency.
async fn delivered_report(sent: &Report, receiver: &Receiver) -> Report {
    let deadline = Instant::now() + Duration::from_secs(120);
    // Warm-up events arrive too, so count the measured ids themselves; looking costs a pass
    // over everything received, so only once enough requests have come in.
    while Instant::now() < deadline {
        if receiver.count() >= sent.sent.len() {
            let arrived = receiver.first_arrivals("webhook-id");
            if sent.sent.iter().all(|(id, _)| arrived.contains_key(id)) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrived = receiver.first_arrivals("webhook-id");
    let first = sent.sent.iter().map(|(_, t)| *t).min();
    let mut latencies = Vec::with_capacity(sent.sent.len());
    let mut last = first;
    for (id, at) in &sent.sent {
        if let Some(arrival) = arrived.get(id) {
            latencies.push(arrival.saturating_duration_since(*at));
            last = last.max(Some(*arrival));
        }
    }
    latencies.sort_unstable();
    let ok = latencies.len() as u64;
    Report {
        sent: Vec::new(),
        ok,
        errors: sent.sent.len() as u64 - ok,
        elapsed: match (first, last) {
            (Some(f), Some(l)) => l.saturating_duration_since(f),
            _ => Duration::ZERO,
        },
        latencies,
    }
}

fn print_delivery(direct: &Report, sent: &Report, delivered: &Report, half: &Report) {
    println!();
    println!("| end to end | per second | p50 | p99 | not delivered | vs baseline |");
    println!("|---|---:|---:|---:|---:|---:|");
    let rows = [
        ("baseline: client -> receiver directly", direct),
        (
            "hookmesh: accepted (202) while routing to the receiver",
            sent,
        ),
        (
            "hookmesh: ingest -> delivered to the receiver (signed)",
            delivered,
        ),
        (
            "hookmesh: ingest -> delivered, paced at half that rate",
            half,
        ),
    ];
    for (name, r) in rows {
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.2}x |",
            r.per_second(),
            r.p(0.50).as_secs_f64() * 1e3,
            r.p(0.99).as_secs_f64() * 1e3,
            r.errors,
            r.per_second() / direct.per_second().max(1.0),
        );
    }
}

/// Time from writing a changed manifest to the new config hash showing in `/readyz`.
async fn measure_reload(gw: &Gateway, manifests: &std::path::Path) -> anyhow::Result<Duration> {
    let config_hash = async || -> anyhow::Result<serde_json::Value> {
        Ok(gw.fetch("/readyz").await?.json()["config_hash"].clone())
    };
    let before = config_hash().await?;
    let start = Instant::now();
    std::fs::write(
        manifests.join("extra.yaml"),
        "apiVersion: hookmesh.io/v1alpha1\nkind: Source\nmetadata: {name: extra, namespace: bench}\nspec:\n  verification: {scheme: none}\n",
    )?;
    loop {
        if config_hash().await? != before {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(30),
            "config never reloaded"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn print_table(
    base: &Report,
    ingest: &Report,
    refused: &Report,
    rss_idle: u64,
    rss_peak: u64,
    reload: Duration,
) {
    println!();
    println!("| scenario | requests/s | p50 | p99 | errors | vs baseline |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, r) in [
        ("baseline: bare axum 202, no verify, no storage", base),
        ("hookmesh durable ingest (verify + sled fsync)", ingest),
        ("hookmesh without the store: verify, refuse (401)", refused),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.2}x |",
            r.per_second(),
            r.p(0.50).as_secs_f64() * 1e3,
            r.p(0.99).as_secs_f64() * 1e3,
            r.errors,
            r.per_second() / base.per_second().max(1.0),
        );
    }
    println!();
    println!("| resource | value |");
    println!("|---|---:|");
    println!(
        "| data-plane RSS idle | {:.1} MiB |",
        rss_idle as f64 / 1024.0
    );
    println!(
        "| data-plane RSS peak under ingest load | {:.1} MiB |",
        rss_peak as f64 / 1024.0
    );
    println!(
        "| config reload (file written -> new hash in /readyz) | {:.0} ms |",
        reload.as_secs_f64() * 1e3
    );
}
