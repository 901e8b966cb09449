//! Scale-out: what answering as one gateway across pods costs. The same events in one pod and
//! spread over three (static peers on loopback); REST listing latency on each, and durable
//! ingest throughput of one pod against three sharing the same load. All pods share this
//! machine's cores, so three pods cannot be faster here: the figures are the overhead.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hookmesh_tests::gateway::{Gateway, GatewayOptions};
use hookmesh_tests::http;
use hookmesh_tests::peer_set::{PeerSet, SetOptions};

use crate::load::{self, LoadSpec, Report};
use crate::procs;

const KEY: &str = "bench-read-key-0123456789";

/// The bench source, and a read key for the listings.
fn manifests(github_secret: &str) -> String {
    format!(
        r#"{}---
apiVersion: v1
kind: Secret
metadata: {{name: key, namespace: bench, labels: {{hookmesh.io/api-key: "true"}}}}
stringData: {{key: {KEY}, role: read}}
"#,
        procs::manifests(github_secret)
    )
}

fn quiet() -> Vec<(String, String)> {
    vec![("RUST_LOG".into(), "warn".into())]
}

/// Latency of listing requests, one at a time: the first page, then the walk through every
/// page by cursor, over and over until `requests` were made.
async fn list_latency(gw: &Gateway, requests: usize) -> anyhow::Result<Report> {
    let auth = format!("Bearer {KEY}");
    let mut latencies = Vec::with_capacity(requests);
    let mut cursor: Option<String> = None;
    let started = Instant::now();
    let mut errors = 0;
    for _ in 0..requests {
        let path = match &cursor {
            Some(c) => format!("/api/v1/events?limit=50&cursor={c}"),
            None => "/api/v1/events?limit=50".to_string(),
        };
        let t = Instant::now();
        let r = http::request(
            ::http::Method::GET,
            &gw.url(&path),
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await?;
        latencies.push(t.elapsed());
        if r.status != 200 || r.json()["partial"] == true {
            errors += 1;
        }
        cursor = r.json()["pagination"]["next_cursor"]
            .as_str()
            .map(str::to_string);
    }
    latencies.sort_unstable();
    Ok(Report {
        sent: Vec::new(),
        ok: requests as u64 - errors,
        errors,
        elapsed: started.elapsed(),
        latencies,
    })
}

/// Durable ingest spread over `urls`, the connections split between them, all at once.
async fn ingest(spec: &LoadSpec, urls: &[String]) -> anyhow::Result<Report> {
    let share = LoadSpec {
        concurrency: (spec.concurrency / urls.len()).max(1),
        ..spec.clone()
    };
    let runs = futures::future::join_all(urls.iter().map(|u| load::run(&share, u))).await;
    let mut total = Report {
        sent: Vec::new(),
        ok: 0,
        errors: 0,
        elapsed: spec.duration,
        latencies: Vec::new(),
    };
    for r in runs {
        let r = r?;
        total.ok += r.ok;
        total.errors += r.errors;
        total.latencies.extend(r.latencies);
    }
    total.latencies.sort_unstable();
    Ok(total)
}

pub struct Figures {
    pub list_one: Report,
    pub list_three: Report,
    pub ingest_one: Report,
    pub ingest_three: Report,
    pub events: usize,
}

pub async fn run(spec: &LoadSpec, work: &std::path::Path) -> anyhow::Result<Figures> {
    let yaml = manifests(&spec.secret);
    // One pod: ingest for the spec's duration, then list what it holds.
    let mut one = Gateway::start_with(GatewayOptions {
        manifests_yaml: Some(yaml.clone()),
        data_dir: Some(work.join("scale-one")),
        env: quiet(),
        args: vec!["--api-rate-limit=0".into()],
        release: true,
        ..GatewayOptions::default()
    })
    .await?;
    let ingest_one = ingest(spec, &[one.url("/e/bench/github")]).await?;
    let events = ingest_one.ok as usize;
    let list_one = list_latency(&one, 400).await?;
    one.stop(Duration::from_secs(30)).await?;

    // Three pods, the same load spread over them: about the same number of events in total.
    let mut set = PeerSet::start(SetOptions {
        pods: 3,
        manifests_yaml: yaml,
        args: vec!["--api-rate-limit=0".into()],
        env: quiet(),
        release: true,
    })
    .await?;
    let urls: Vec<String> = set.pods.iter().map(|g| g.url("/e/bench/github")).collect();
    let ingest_three = ingest(spec, &urls).await?;
    let list_three = list_latency(set.pod(1), 400).await?;
    for n in 1..=3 {
        set.pod_mut(n).stop(Duration::from_secs(30)).await?;
    }
    Ok(Figures {
        list_one,
        list_three,
        ingest_one,
        ingest_three,
        events,
    })
}

pub fn print(f: &Figures) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!();
    println!(
        "| scale-out ({} events in one pod; as many spread over three) | per second | p50 | p99 | errors | vs 1 pod |",
        f.events
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let rows = [
        ("list 50 events, 1 pod", &f.list_one, &f.list_one),
        (
            "list 50 events, 3 pods (fan-out + merge)",
            &f.list_three,
            &f.list_one,
        ),
        ("durable ingest, 1 pod", &f.ingest_one, &f.ingest_one),
        (
            "durable ingest, 3 pods on the same cores",
            &f.ingest_three,
            &f.ingest_one,
        ),
    ];
    for (name, r, base) in rows {
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.2}x |",
            r.per_second(),
            ms(r.p(0.50)),
            ms(r.p(0.99)),
            r.errors,
            r.per_second() / base.per_second().max(1e-9),
        );
    }
}
