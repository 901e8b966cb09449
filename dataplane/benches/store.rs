//! Storage benchmark (not a test): what the store costs per event and per delivery on one
//! machine, next to sled's own floor measured in the same run.
//!
//! - baseline: one plain sled `insert` per event of the same encoded payload bytes, a flush per
//!   64 events: the least any design that keeps the payload in sled can pay.
//! - ingest: `Store::ingest` from 64 concurrent tasks (group commit, intent record, payload,
//!   event, source/status indexes, idempotency claim, one delivery with its index and due entry).
//! - ingest without an idempotency key: the same, without the claim (a source that sets no
//!   key), on a store of its own, last;
//! - delivery bookkeeping: `claim_attempt` then `finish` (success) for each of those deliveries,
//!   and the compactor's pass that indexes their events under their new status.
//!
//! CPU time is the whole process's (sled's IO threads included), per event.
//! `cargo bench -p hookmesh-dataplane --bench store`; `BENCH_EVENTS` sets the count.

use std::time::{Duration, Instant};

use hookmesh_dataplane::store::{
    now_ms, AttemptRecord, DeliveryRecord, EventId, EventRecord, EventStatus, Finish,
    IdempotencyClaim, NewEvent, Origin, Payload, Store,
};

const GROUP: usize = 64;

/// The data plane's allocator, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let events: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let body = vec![b'x'; 1024];
    let dir = tempfile::tempdir()?;

    let base = measure(events, || {
        let db = sled::Config::new().path(dir.path().join("raw")).open()?;
        let tree = db.open_tree("payloads")?;
        for chunk in (0..events).collect::<Vec<_>>().chunks(GROUP) {
            for _ in chunk {
                let p = payload(&body);
                tree.insert(EventId::generate().to_key(), postcard::to_stdvec(&p)?)?;
            }
            db.flush()?;
        }
        Ok(())
    })?;

    let store = Store::open(&dir.path().join("store"))?;
    let mut deliveries = Vec::new();
    let ingest = measure(events, || {
        deliveries = ingest_all(&rt, &store, events, &body, true)?;
        Ok(())
    })?;

    let bookkeeping = measure(events, || {
        for (i, (at, id)) in deliveries.iter().enumerate() {
            let claimed = store.claim_attempt(*at, *id, now_ms() + 60_000)?;
            anyhow::ensure!(claimed.is_some(), "delivery {i} was not due");
            let attempt = AttemptRecord {
                number: 1,
                started_at: now_ms(),
                duration_ms: 1,
                status_code: Some(200),
                response_body: b"ok".to_vec(),
                error: None,
            };
            store.finish(*id, attempt, Finish::Success)?;
        }
        // What the finishes left to the compactor (their events' status index) counts too.
        store.compact_now()?;
        Ok(())
    })?;

    drop(store);
    // What the idempotency claim costs: the same events without a key (a source that sets
    // none), on a store of their own.
    let unkeyed_store = Store::open(&dir.path().join("unkeyed"))?;
    let unkeyed = measure(events, || {
        ingest_all(&rt, &unkeyed_store, events, &body, false)?;
        Ok(())
    })?;

    println!("store: {events} events of 1 KiB, one delivery each, one thread driving\n");
    println!("| operation | per second | CPU per event | vs baseline |");
    println!("|---|---:|---:|---:|");
    for (name, m) in [
        ("baseline: sled insert of the payload bytes", &base),
        ("hookmesh ingest (group commit, flushed)", &ingest),
        ("hookmesh ingest, no idempotency key", &unkeyed),
        ("hookmesh claim + finish of a delivery", &bookkeeping),
    ] {
        println!(
            "| {name} | {:.0} | {:.1} us | {:.2}x |",
            events as f64 / m.wall.as_secs_f64(),
            m.cpu.as_secs_f64() * 1e6 / events as f64,
            m.cpu.as_secs_f64() / base.cpu.as_secs_f64(),
        );
    }
    Ok(())
}

/// Ingest `events` new events from [`GROUP`] concurrent tasks, each with an idempotency key
/// when `keyed`; the due entry of each one's delivery.
fn ingest_all(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    events: usize,
    body: &[u8],
    keyed: bool,
) -> anyhow::Result<Vec<(u64, hookmesh_dataplane::store::DeliveryId)>> {
    let mut deliveries = Vec::with_capacity(events);
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        let mut sent = 0;
        while sent < events || !set.is_empty() {
            while sent < events && set.len() < GROUP {
                let (mut new, delivery) = new_event(body, sent);
                if !keyed {
                    new.idempotency = None;
                    new.event.idempotency_key = None;
                }
                deliveries.push(delivery);
                let store = store.clone();
                set.spawn(async move { store.ingest(new).await });
                sent += 1;
            }
            if let Some(done) = set.join_next().await {
                done??;
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(deliveries)
}

struct Measured {
    wall: Duration,
    cpu: Duration,
}

fn measure(events: usize, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Measured> {
    anyhow::ensure!(events > 0, "BENCH_EVENTS must be at least 1");
    let (c0, t0) = (process_cpu(), Instant::now());
    f()?;
    Ok(Measured {
        wall: t0.elapsed(),
        cpu: process_cpu().saturating_sub(c0),
    })
}

/// User + system time of this process so far, from /proc (zero where there is none).
fn process_cpu() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are 14th and 15th.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn payload(body: &[u8]) -> Payload {
    Payload {
        headers: vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("x-github-event".into(), b"pull_request".to_vec()),
            ("x-hub-signature-256".into(), [b'a'; 71].to_vec()),
        ],
        body: body.to_vec(),
    }
}

fn new_event(body: &[u8], n: usize) -> (NewEvent, (u64, hookmesh_dataplane::store::DeliveryId)) {
    let id = EventId::generate();
    let now = now_ms();
    // Planned as ingest plans a new event's deliveries (`plan::Of::NewEvent`).
    let delivery = DeliveryRecord::initial(id, 0, "bench", "receiver", Some("all"), now);
    let due = (now, delivery.id);
    let key = format!("delivery-{n}");
    let event = EventRecord {
        id,
        namespace: "bench".into(),
        source: "github".into(),
        event_type: Some("pull_request".into()),
        origin: Origin::Webhook,
        received_at: now,
        signature_valid: Some(true),
        signature_error: None,
        idempotency_key: Some(key.clone()),
        content_type: Some("application/json".into()),
        body_len: body.len() as u64,
        correlation_id: id.to_string(),
        status: EventStatus::Pending,
        payload_expired: false,
        config_hash: "0".repeat(64),
        delivery_ids: vec![delivery.id],
    };
    let new = NewEvent {
        event,
        payload: payload(body),
        deliveries: vec![delivery],
        idempotency: Some(IdempotencyClaim {
            key,
            window_ms: 3_600_000,
        }),
    };
    (new, due)
}
