//! Delivery end to end: the real `hookmesh-dataplane` binary in standalone mode, real HTTP
//! receivers on loopback, and the sled store read back after the process stopped.
//!
//! Every wait polls with a generous deadline; the only timing assertions are lower bounds the
//! engine guarantees (a `Retry-After` or a circuit cool-down), which load cannot break.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use hookmesh_dataplane::store::{
    AttemptRecord, DeliveryRecord, DeliveryStatus, EventId, EventRecord, EventStatus, Store,
};
use hookmesh_tests::gateway::{Gateway, GatewayOptions};
use hookmesh_tests::receiver::{Received, Receiver, Reply};
use hookmesh_tests::wait::wait_until;
use hookmesh_tests::webhooks;
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(30);
const STOP: Duration = Duration::from_secs(30);

// --- manifests -----------------------------------------------------------------------------

fn secret_for(name: &str) -> String {
    use base64::Engine as _;
    let key = format!("signing-key-of-{name}-0123456789abcdef");
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// A Source `shop` (no verification; event type from `x-event-type`), in its own file.
fn source(dir: &Path) -> anyhow::Result<()> {
    write(
        dir,
        "source-shop.yaml",
        r#"apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {name: shop, namespace: default}
spec:
  verification: {scheme: none}
  eventType: {header: x-event-type}
"#,
    )
}

/// An Endpoint with its signing Secret; `extra` is more spec YAML, indented by two spaces.
fn endpoint(dir: &Path, name: &str, url: &str, extra: &str) -> anyhow::Result<()> {
    let secret = secret_for(name);
    write(
        dir,
        &format!("endpoint-{name}.yaml"),
        &format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: {name}-signing, namespace: default}}
stringData: {{secret: "{secret}"}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {{name: {name}, namespace: default}}
spec:
  url: "{url}"
  secretRef: {{name: {name}-signing, key: secret}}
{extra}
"#
        ),
    )
}

fn subscription(dir: &Path, endpoint: &str, event_types: &[&str]) -> anyhow::Result<()> {
    let types = event_types
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    write(
        dir,
        &format!("subscription-{endpoint}.yaml"),
        &format!(
            r#"apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {{name: to-{endpoint}, namespace: default}}
spec:
  endpointRef: {{name: {endpoint}}}
  sources: [shop]
  filter: {{eventTypes: [{types}]}}
"#
        ),
    )
}

fn write(dir: &Path, file: &str, text: &str) -> anyhow::Result<()> {
    // Write then rename, so the hot-reload watcher never reads half a file.
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join(file))?;
    Ok(())
}

/// Short backoffs keep the suite fast.
const FAST_RETRY: &str = "  retry: {maxAttempts: 5, initialBackoff: 50ms, maxBackoff: 200ms}";

/// One source, one endpoint `hook` at `receiver/hook`, one subscription to every type.
async fn single(
    receiver: &Receiver,
    extra: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<(TempDir, Gateway)> {
    let dir = tempfile::tempdir()?;
    source(dir.path())?;
    endpoint(dir.path(), "hook", &receiver.url("/hook"), extra)?;
    subscription(dir.path(), "hook", &["*"])?;
    api_key(dir.path())?;
    let gw = Gateway::start_with(GatewayOptions {
        manifests: dir.path().to_path_buf(),
        data_dir: None,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..GatewayOptions::default()
    })
    .await?;
    Ok((dir, gw))
}

// --- helpers -------------------------------------------------------------------------------

/// Send one webhook into `shop`; returns the event id from the 202.
async fn ingest(gw: &Gateway, event_type: &str, body: &str) -> anyhow::Result<String> {
    let r = gw
        .post(
            "/e/default/shop",
            &[
                ("content-type", "application/json"),
                ("x-event-type", event_type),
            ],
            body.to_string(),
        )
        .await?;
    ensure!(
        r.status == 202,
        "ingest answered {}: {:?}",
        r.status,
        r.body
    );
    let id = r.json()["id"]
        .as_str()
        .context("202 without an id")?
        .to_string();
    Ok(id)
}

/// The store of a stopped gateway: its event, deliveries and their attempts.
struct Outcome {
    event: EventRecord,
    deliveries: Vec<(DeliveryRecord, Vec<AttemptRecord>)>,
}

fn read_back(store: &Store, event_id: &str) -> anyhow::Result<Outcome> {
    let id: EventId = event_id
        .parse()
        .map_err(|_| anyhow::anyhow!("bad id {event_id}"))?;
    let event = store.event(id)?.context("event not stored")?;
    let mut deliveries = Vec::new();
    for d in store.deliveries_of(id)? {
        let attempts = store.attempts(d.id)?;
        deliveries.push((d, attempts));
    }
    Ok(Outcome { event, deliveries })
}

fn open_store(gw: &Gateway) -> anyhow::Result<Store> {
    Ok(Store::open(&gw.data_dir.join("sled"))?)
}

fn verify_signature(r: &Received, endpoint: &str) -> anyhow::Result<()> {
    webhooks::verify(
        &secret_for(endpoint),
        r.header("webhook-id"),
        r.header("webhook-timestamp"),
        r.header("webhook-signature"),
        &r.body,
        hookmesh_tests::http::now_unix(),
    )
    .map_err(|e| anyhow::anyhow!("signature of a delivery to {endpoint} rejected: {e:?}"))
}

async fn wait_metric(gw: &Gateway, series: &str, at_least: f64) -> anyhow::Result<()> {
    let what = format!("{series} to reach {at_least}");
    wait_until(&what, WAIT, async || {
        gw.metric(series).await.is_ok_and(|v| v >= at_least)
    })
    .await
}

fn attempts_series(endpoint: &str, outcome: &str) -> String {
    format!(
        "hookmesh_delivery_attempts_total{{namespace=\"default\",endpoint=\"{endpoint}\",outcome=\"{outcome}\"}}"
    )
}

// --- tests ---------------------------------------------------------------------------------

#[tokio::test]
async fn success_carries_signed_standard_webhooks_headers() -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    let extra = format!("{FAST_RETRY}\n  headers: {{X-Team: payments}}");
    let (_dir, mut gw) = single(&rx, &extra, &[]).await?;
    let body = r#"{"order": 42, "note": "ünïcode"}"#;
    let r = gw
        .post(
            "/e/default/shop",
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("x-event-type", "order.created"),
                ("x-correlation-id", "corr-123"),
            ],
            body.to_string(),
        )
        .await?;
    ensure!(r.status == 202, "ingest: {}", r.status);
    let id = r.json()["id"].as_str().context("id")?.to_string();

    let got = rx.wait_for(1, WAIT).await?;
    let req = &got[0];
    assert_eq!(req.path, "/hook");
    assert_eq!(&req.body[..], body.as_bytes());
    assert_eq!(req.header("webhook-id"), Some(id.as_str()));
    verify_signature(req, "hook")?;
    assert_eq!(
        req.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(req.header("hookmesh-event-type"), Some("order.created"));
    assert_eq!(req.header("hookmesh-source"), Some("shop"));
    assert_eq!(req.header("x-correlation-id"), Some("corr-123"));
    assert_eq!(req.header("x-team"), Some("payments"));
    assert_eq!(req.header("hookmesh-attempt"), Some("1"));
    assert!(req
        .header("user-agent")
        .is_some_and(|ua| ua.starts_with("hookmesh/")));
    let delivery_id = req.header("hookmesh-delivery-id").context("delivery id")?;
    assert!(delivery_id.starts_with("dlv_"));

    wait_metric(&gw, &attempts_series("hook", "success"), 1.0).await?;
    gw.stop(STOP).await?;
    let out = read_back(&open_store(&gw)?, &id)?;
    assert_eq!(out.event.status, EventStatus::Delivered);
    assert_eq!(out.deliveries.len(), 1);
    let (d, attempts) = &out.deliveries[0];
    assert_eq!(d.id.to_string(), delivery_id);
    assert_eq!(d.status, DeliveryStatus::Success);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status_code, Some(200));
    assert_eq!(attempts[0].error, None);
    Ok(())
}

#[tokio::test]
async fn retries_server_errors_then_succeeds_with_a_stable_webhook_id() -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    rx.script([
        Reply::Full(500, vec![], "boom".into()),
        Reply::Status(503),
        Reply::Status(408),
    ]);
    let (_dir, mut gw) = single(&rx, FAST_RETRY, &[]).await?;
    let id = ingest(&gw, "order.created", r#"{"n":1}"#).await?;

    let got = rx.wait_for(4, WAIT).await?;
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.header("webhook-id"), Some(id.as_str()), "attempt {i}");
        assert_eq!(
            r.header("hookmesh-delivery-id"),
            got[0].header("hookmesh-delivery-id")
        );
        assert_eq!(
            r.header("hookmesh-attempt"),
            Some((i + 1).to_string().as_str())
        );
        verify_signature(r, "hook")?;
    }
    wait_metric(&gw, &attempts_series("hook", "success"), 1.0).await?;
    gw.stop(STOP).await?;
    assert_eq!(rx.count(), 4, "no attempt after the success");
    let out = read_back(&open_store(&gw)?, &id)?;
    assert_eq!(out.event.status, EventStatus::Delivered);
    let (d, attempts) = &out.deliveries[0];
    assert_eq!(d.status, DeliveryStatus::Success);
    assert_eq!(d.attempts, 4);
    let codes: Vec<Option<u16>> = attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, vec![Some(500), Some(503), Some(408), Some(200)]);
    assert_eq!(attempts[0].response_body, b"boom");
    assert_eq!(attempts[0].error.as_deref(), Some("HTTP 500"));
    let numbers: Vec<u32> = attempts.iter().map(|a| a.number).collect();
    assert_eq!(numbers, vec![1, 2, 3, 4]);
    Ok(())
}

#[tokio::test]
async fn client_errors_fail_without_retry() -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    rx.script([Reply::Full(422, vec![], "x".repeat(10_000))]);
    let (_dir, mut gw) = single(&rx, FAST_RETRY, &[]).await?;
    let id = ingest(&gw, "order.created", "{}").await?;
    rx.wait_for(1, WAIT).await?;
    wait_metric(&gw, &attempts_series("hook", "failed"), 1.0).await?;
    // Retries here would come within 200 ms; give them far longer to (not) show up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gw.stop(STOP).await?;
    assert_eq!(rx.count(), 1);
    let out = read_back(&open_store(&gw)?, &id)?;
    assert_eq!(out.event.status, EventStatus::Failed);
    let (d, attempts) = &out.deliveries[0];
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert_eq!(d.last_status_code, Some(422));
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].response_body.len(), 4096, "first 4 KiB kept");
    Ok(())
}

#[tokio::test]
async fn retry_after_is_honoured_in_seconds_and_as_a_date() -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    rx.script([
        Reply::Full(429, vec![("retry-after".into(), "2".into())], String::new()),
        Reply::RetryAfterDate(503, 3),
    ]);
    let (_dir, mut gw) = single(&rx, FAST_RETRY, &[]).await?;
    let id = ingest(&gw, "order.created", "{}").await?;
    let got = rx.wait_for(3, WAIT).await?;
    let gap1 = got[1].at.duration_since(got[0].at);
    let gap2 = got[2].at.duration_since(got[1].at);
    // Without Retry-After these gaps are at most 200 ms.
    assert!(
        gap1 >= Duration::from_millis(1990),
        "429 Retry-After: 2 gave {gap1:?}"
    );
    // An HTTP-date has whole seconds: 3 s ahead is at least 2 s once truncated.
    assert!(
        gap2 >= Duration::from_millis(1990),
        "503 Retry-After date gave {gap2:?}"
    );
    wait_metric(&gw, &attempts_series("hook", "success"), 1.0).await?;
    gw.stop(STOP).await?;
    let out = read_back(&open_store(&gw)?, &id)?;
    assert_eq!(out.deliveries[0].0.status, DeliveryStatus::Success);
    assert_eq!(out.deliveries[0].1.len(), 3);
    Ok(())
}

#[tokio::test]
async fn a_timeout_is_retried() -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    rx.script([Reply::Delay(Duration::from_secs(4), 200)]);
    let extra = format!("{FAST_RETRY}\n  timeoutSeconds: 1");
    let (_dir, mut gw) = single(&rx, &extra, &[]).await?;
    let id = ingest(&gw, "order.created", "{}").await?;
    rx.wait_for(2, WAIT).await?;
    wait_metric(&gw, &attempts_series("hook", "success"), 1.0).await?;
    gw.stop(STOP).await?;
    let out = read_back(&open_store(&gw)?, &id)?;
    let (d, attempts) = &out.deliveries[0];
    assert_eq!(d.status, DeliveryStatus::Success);
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status_code, None);
    assert!(
        attempts[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("timed out")),
        "{:?}",
        attempts[0].error
    );
    assert!(attempts[0].duration_ms >= 1000);
    assert_eq!(attempts[1].status_code, Some(200));
    Ok(())
}

#[tokio::test]
async fn dead_letter_after_max_attempts() -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    rx.set_default(Reply::Status(500));
    let extra = "  retry: {maxAttempts: 3, initialBackoff: 50ms, maxBackoff: 100ms}";
    let (_dir, mut gw) = single(&rx, extra, &[]).await?;
    let id = ingest(&gw, "order.created", "{}").await?;
    rx.wait_for(3, WAIT).await?;
    wait_metric(&gw, &attempts_series("hook", "dead_letter"), 1.0).await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    gw.stop(STOP).await?;
    assert_eq!(rx.count(), 3);
    let out = read_back(&open_store(&gw)?, &id)?;
    assert_eq!(out.event.status, EventStatus::DeadLetter);
    let (d, attempts) = &out.deliveries[0];
    assert_eq!(d.status, DeliveryStatus::DeadLetter);
    assert_eq!(d.next_attempt_at, None);
    assert_eq!(attempts.len(), 3);
    Ok(())
}

#[tokio::test]
async fn connection_errors_are_retried_then_dead_lettered() -> anyhow::Result<()> {
    // A port with nobody listening.
    let port = hookmesh_tests::gateway::free_port()?;
    let dir = tempfile::tempdir()?;
    source(dir.path())?;
    endpoint(
        dir.path(),
        "gone",
        &format!("http://127.0.0.1:{port}/x"),
        "  retry: {maxAttempts: 2, initialBackoff: 50ms, maxBackoff: 100ms}",
    )?;
    subscription(dir.path(), "gone", &["*"])?;
    let mut gw = Gateway::start(dir.path()).await?;
    let id = ingest(&gw, "order.created", "{}").await?;
    wait_metric(&gw, &attempts_series("gone", "dead_letter"), 1.0).await?;
    gw.stop(STOP).await?;
    let out = read_back(&open_store(&gw)?, &id)?;
    let (d, attempts) = &out.deliveries[0];
    assert_eq!(d.status, DeliveryStatus::DeadLetter);
    assert_eq!(attempts.len(), 2);
    for a in attempts {
        assert_eq!(a.status_code, None);
        assert!(
            a.error
                .as_deref()
                .is_some_and(|e| e.contains("connection failed")),
            "{:?}",
            a.error
        );
    }
    Ok(())
}

#[tokio::test]
async fn circuit_opens_pauses_the_endpoint_and_closes_after_a_probe() -> anyhow::Result<()> {
    let cooldown = Duration::from_secs(2);
    let rx = Receiver::start().await?;
    rx.script([Reply::Status(503), Reply::Status(503)]);
    let extra = "  retry: {maxAttempts: 10, initialBackoff: 50ms, maxBackoff: 100ms}";
    let (_dir, mut gw) = single(
        &rx,
        extra,
        &[
            ("HOOKMESH_BREAKER_THRESHOLD", "2"),
            ("HOOKMESH_BREAKER_COOLDOWN", "2s"),
            ("HOOKMESH_PEER_TOKEN", PEER_TOKEN),
        ],
    )
    .await?;
    let first = ingest(&gw, "order.created", r#"{"n":1}"#).await?;
    rx.wait_for(2, WAIT).await?;
    // The second failure is recorded (and the circuit open) before more events go in.
    wait_metric(&gw, &attempts_series("hook", "retry"), 2.0).await?;
    // What the operator turns into the Endpoint's Healthy condition.
    let open = wait_for_endpoint(&gw, |e| e["health"]["state"] == "circuit_open").await?;
    let h = &open["health"];
    assert_eq!(h["consecutive_failures"], 2, "{h}");
    assert_eq!(h["last_error"], "HTTP 503", "{h}");
    assert_eq!(
        (
            h["failed_in_window"].as_u64(),
            h["success_rate_percent"].as_u64()
        ),
        (Some(2), Some(0)),
        "{h}"
    );
    assert_eq!(h["circuit_opened"], 1, "{h}");
    assert_eq!(open["pods"][0]["health"], *h);
    let internal = gw.get("/internal/v1/endpoints", WRITE_KEY).await;
    assert_eq!(internal.status, 401, "an API key on the internal route");
    let internal = gw.get("/internal/v1/endpoints", PEER_TOKEN).await.json();
    assert_eq!(
        internal["data"][0]["health"]["state"], "circuit_open",
        "{internal}"
    );
    let more = [
        ingest(&gw, "order.created", r#"{"n":2}"#).await?,
        ingest(&gw, "order.created", r#"{"n":3}"#).await?,
    ];
    let got = rx.wait_for(5, WAIT).await?;
    let opened = got[1].at;
    for r in &got[2..] {
        let after = r.at.duration_since(opened);
        assert!(
            after >= cooldown - Duration::from_millis(10),
            "an attempt {after:?} after the circuit opened (cool-down {cooldown:?})"
        );
    }
    let ids: BTreeSet<&str> = got[2..]
        .iter()
        .filter_map(|r| r.header("webhook-id"))
        .collect();
    assert_eq!(ids.len(), 3, "each event delivered once after the probe");
    wait_metric(&gw, &attempts_series("hook", "success"), 3.0).await?;
    let closed = wait_for_endpoint(&gw, |e| e["health"]["state"] == "healthy").await?;
    let h = &closed["health"];
    assert_eq!(h["consecutive_failures"], 0, "{h}");
    assert_eq!(
        (
            h["succeeded_in_window"].as_u64(),
            h["failed_in_window"].as_u64()
        ),
        (Some(3), Some(2)),
        "{h}"
    );
    assert_eq!(h["success_rate_percent"], 60, "{h}");
    // The last error and the opening stay on record after the recovery.
    assert_eq!(
        (h["last_error"].as_str(), h["circuit_opened"].as_u64()),
        (Some("HTTP 503"), Some(1)),
        "{h}"
    );
    gw.stop(STOP).await?;
    let logs = gw.logs();
    assert!(
        logs.contains("circuit open"),
        "no 'circuit open' in the log"
    );
    assert!(
        logs.contains("circuit closed"),
        "no 'circuit closed' in the log"
    );
    let store = open_store(&gw)?;
    // Deliveries pushed back while the circuit was open did not use up attempts.
    let out = read_back(&store, &first)?;
    assert_eq!(out.deliveries[0].1.len(), 3);
    for id in &more {
        let out = read_back(&store, id)?;
        assert_eq!(out.deliveries[0].0.status, DeliveryStatus::Success);
        assert_eq!(out.deliveries[0].1.len(), 1, "one attempt for {id}");
    }
    Ok(())
}

#[tokio::test]
async fn fans_out_to_every_matching_endpoint_each_signed_with_its_own_key() -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    source(dir.path())?;
    for (name, types) in [
        ("orders", &["order.*"][..]),
        ("all", &["*"][..]),
        ("invoices", &["invoice.*", "refund.created"][..]),
    ] {
        endpoint(dir.path(), name, &rx.url(&format!("/{name}")), FAST_RETRY)?;
        subscription(dir.path(), name, types)?;
    }
    let mut gw = Gateway::start(dir.path()).await?;
    let order = ingest(&gw, "order.created", r#"{"kind":"order"}"#).await?;
    let invoice = ingest(&gw, "invoice.paid", r#"{"kind":"invoice"}"#).await?;
    let other = ingest(&gw, "user.deleted", r#"{"kind":"user"}"#).await?;
    let got = rx.wait_for(5, WAIT).await?;
    wait_metric(&gw, &attempts_series("all", "success"), 3.0).await?;
    let mut by_event: HashMap<String, BTreeSet<String>> = HashMap::new();
    for r in &rx.received() {
        let endpoint = r.path.trim_start_matches('/').to_string();
        verify_signature(r, &endpoint)?;
        // Signed with another endpoint's key, it must not verify.
        let other_key = if endpoint == "all" { "orders" } else { "all" };
        assert!(verify_signature(r, other_key).is_err());
        let id = r.header("webhook-id").context("webhook-id")?.to_string();
        assert!(by_event.entry(id).or_default().insert(endpoint));
    }
    let set = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(by_event[&order], set(&["orders", "all"]));
    assert_eq!(by_event[&invoice], set(&["all", "invoices"]));
    assert_eq!(by_event[&other], set(&["all"]));
    assert_eq!(got.len().max(rx.count()), 5);
    gw.stop(STOP).await?;
    let store = open_store(&gw)?;
    let out = read_back(&store, &order)?;
    assert_eq!(out.event.status, EventStatus::Delivered);
    assert_eq!(out.deliveries.len(), 2);
    Ok(())
}

#[tokio::test]
async fn kill_9_mid_delivery_loses_nothing() -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    // Slow answers keep attempts in flight when the process dies.
    rx.set_default(Reply::Delay(Duration::from_millis(400), 200));
    let extra = format!("{FAST_RETRY}\n  rateLimit: {{maxInFlight: 4}}");
    let (_dir, mut gw) = single(&rx, &extra, &[]).await?;
    let mut accepted = BTreeSet::new();
    for i in 0..30 {
        accepted.insert(ingest(&gw, "order.created", &format!(r#"{{"n":{i}}}"#)).await?);
    }
    rx.wait_for(3, WAIT).await?;
    gw.kill9()?;
    let before = rx.count();
    assert!(
        before < 30,
        "all delivered before the kill; the test proves nothing"
    );
    gw.restart().await?;
    rx.wait_until(Duration::from_secs(60), |got| {
        let seen: BTreeSet<&str> = got.iter().filter_map(|r| r.header("webhook-id")).collect();
        accepted.iter().all(|id| seen.contains(id.as_str()))
    })
    .await?;
    // Deliveries whose success was not yet on disk at the kill go again: wait for the queue to
    // drain so every event has settled before looking at the store.
    let deadline = tokio::time::Instant::now() + WAIT;
    while gw.metric("hookmesh_queue_depth").await? > 0.0 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "queue never drained"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop(STOP).await?;
    let logs = gw.logs();
    assert!(logs.contains("due again"), "recovery not logged");
    let store = open_store(&gw)?;
    for id in &accepted {
        let out = read_back(&store, id)?;
        assert_eq!(out.event.status, EventStatus::Delivered, "{id}");
    }
    Ok(())
}

#[tokio::test]
async fn per_endpoint_concurrency_and_rate_limits_hold() -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    let slow = Duration::from_millis(300);
    let dir = tempfile::tempdir()?;
    source(dir.path())?;
    endpoint(
        dir.path(),
        "serial",
        &rx.url("/serial"),
        &format!("{FAST_RETRY}\n  rateLimit: {{maxInFlight: 1}}"),
    )?;
    subscription(dir.path(), "serial", &["serial.*"])?;
    endpoint(
        dir.path(),
        "paced",
        &rx.url("/paced"),
        &format!("{FAST_RETRY}\n  rateLimit: {{perSecond: 2}}"),
    )?;
    subscription(dir.path(), "paced", &["paced.*"])?;
    rx.set_default(Reply::Status(200));
    let mut gw = Gateway::start(dir.path()).await?;
    // Only the serial endpoint is slow: its answers take `slow` each.
    rx.script((0..5).map(|_| Reply::Delay(slow, 200)));
    for _ in 0..5 {
        ingest(&gw, "serial.x", "{}").await?;
    }
    let serial = rx.wait_for(5, WAIT).await?;
    for _ in 0..6 {
        ingest(&gw, "paced.x", "{}").await?;
    }
    let got = rx.wait_for(11, WAIT).await?;
    gw.stop(STOP).await?;
    // One at a time: each request arrives after the previous one's slow answer.
    for pair in serial.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= slow - Duration::from_millis(5),
            "overlapping attempts: {gap:?}"
        );
    }
    // A bucket of 2 refilled at 2/s: the 6th goes 2 s after the 1st; the margin absorbs how
    // late the first request may land on a loaded machine. Unlimited, they would take ms.
    let paced: Vec<&Received> = got.iter().filter(|r| r.path == "/paced").collect();
    assert_eq!(paced.len(), 6);
    let span = paced[5].at.duration_since(paced[0].at);
    assert!(
        span >= Duration::from_millis(1990),
        "6 requests at 2/s took {span:?}"
    );
    Ok(())
}

#[tokio::test]
async fn graceful_shutdown_lets_attempts_in_flight_finish() -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    rx.set_default(Reply::Delay(Duration::from_millis(1500), 200));
    let (_dir, mut gw) = single(&rx, FAST_RETRY, &[]).await?;
    let id = ingest(&gw, "order.created", "{}").await?;
    rx.wait_for(1, WAIT).await?;
    gw.stop(STOP).await?;
    assert_eq!(rx.count(), 1);
    let out = read_back(&open_store(&gw)?, &id)?;
    let (d, attempts) = &out.deliveries[0];
    assert_eq!(d.status, DeliveryStatus::Success);
    assert_eq!(attempts.len(), 1);
    assert_eq!(out.event.status, EventStatus::Delivered);
    Ok(())
}

#[tokio::test]
async fn a_disabled_endpoint_keeps_its_deliveries_until_enabled() -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    source(dir.path())?;
    let url = rx.url("/hook");
    endpoint(
        dir.path(),
        "hook",
        &url,
        &format!("{FAST_RETRY}\n  disabled: true"),
    )?;
    subscription(dir.path(), "hook", &["*"])?;
    let mut gw = Gateway::start(dir.path()).await?;
    let id = ingest(&gw, "order.created", "{}").await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.count(), 0, "a disabled endpoint got a request");
    // Parked deliveries wait a minute; the config change brings them forward at once.
    endpoint(dir.path(), "hook", &url, FAST_RETRY)?;
    let got = rx.wait_for(1, WAIT).await?;
    assert_eq!(got[0].header("webhook-id"), Some(id.as_str()));
    wait_metric(&gw, &attempts_series("hook", "success"), 1.0).await?;
    gw.stop(STOP).await?;
    let out = read_back(&open_store(&gw)?, &id)?;
    assert_eq!(out.deliveries[0].1.len(), 1, "parking is not an attempt");
    Ok(())
}

#[tokio::test]
async fn a_removed_endpoint_keeps_its_deliveries_queued() -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    rx.script([Reply::Full(
        503,
        vec![("retry-after".into(), "3".into())],
        String::new(),
    )]);
    let dir = tempfile::tempdir()?;
    source(dir.path())?;
    let url = rx.url("/hook");
    endpoint(dir.path(), "hook", &url, FAST_RETRY)?;
    subscription(dir.path(), "hook", &["*"])?;
    let mut gw = Gateway::start(dir.path()).await?;
    let hash = gw.fetch("/readyz").await?.json()["config_hash"].clone();
    let id = ingest(&gw, "order.created", "{}").await?;
    rx.wait_for(1, WAIT).await?;
    // Remove the endpoint (and its subscription) before the retry falls due.
    std::fs::remove_file(dir.path().join("subscription-hook.yaml"))?;
    std::fs::remove_file(dir.path().join("endpoint-hook.yaml"))?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while gw.fetch("/readyz").await?.json()["config_hash"] == hash {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "config never reloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past the Retry-After: the retry found no endpoint and was parked, not dropped.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !gw.logs().contains("endpoint is not in the config") {
        ensure!(tokio::time::Instant::now() < deadline, "no parking logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rx.count(), 1);
    endpoint(dir.path(), "hook", &url, FAST_RETRY)?;
    subscription(dir.path(), "hook", &["*"])?;
    let got = rx.wait_for(2, WAIT).await?;
    assert_eq!(got[1].header("webhook-id"), Some(id.as_str()));
    wait_metric(&gw, &attempts_series("hook", "success"), 1.0).await?;
    gw.stop(STOP).await?;
    assert_eq!(
        gw.logs().matches("endpoint is not in the config").count(),
        1,
        "logged once"
    );
    let out = read_back(&open_store(&gw)?, &id)?;
    assert_eq!(out.deliveries[0].0.status, DeliveryStatus::Success);
    assert_eq!(out.deliveries[0].1.len(), 2);
    Ok(())
}

// --- retry schedules, Retry-After cap, 410 Gone, egress guard -------------------------------

#[tokio::test]
async fn an_explicit_schedule_is_followed_never_earlier_than_80_percent() -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    rx.script([Reply::Status(503), Reply::Status(503)]);
    let extra = "  retry: {schedule: [300ms, 700ms]}";
    let (_dir, mut gw) = single(&rx, extra, &[]).await?;
    let id = ingest(&gw, "order.created", "{}").await?;
    let got = rx.wait_for(3, WAIT).await?;
    let gap1 = got[1].at.duration_since(got[0].at);
    let gap2 = got[2].at.duration_since(got[1].at);
    assert!(
        gap1 >= Duration::from_millis(240),
        "first retry after {gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(560),
        "second retry after {gap2:?}"
    );
    wait_metric(&gw, &attempts_series("hook", "success"), 1.0).await?;
    gw.stop(STOP).await?;
    let out = read_back(&open_store(&gw)?, &id)?;
    assert_eq!(out.deliveries[0].0.status, DeliveryStatus::Success);
    assert_eq!(out.deliveries[0].1.len(), 3);
    Ok(())
}

#[tokio::test]
async fn max_age_dead_letters_with_attempts_left() -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    rx.set_default(Reply::Status(503));
    let extra = "  retry: {schedule: [400ms], maxAttempts: 50, maxAge: 1s}";
    let (_dir, mut gw) = single(&rx, extra, &[("HOOKMESH_BREAKER_THRESHOLD", "100")]).await?;
    let id = ingest(&gw, "order.created", "{}").await?;
    wait_metric(&gw, &attempts_series("hook", "dead_letter"), 1.0).await?;
    gw.stop(STOP).await?;
    let out = read_back(&open_store(&gw)?, &id)?;
    let (d, attempts) = &out.deliveries[0];
    assert_eq!(d.status, DeliveryStatus::DeadLetter);
    // At 0, about 0.4 s and about 0.8 s; the next one would fall after the 1 s age.
    assert!(
        (2..=4).contains(&attempts.len()),
        "{} attempts within a 1 s maxAge of 400 ms retries",
        attempts.len()
    );
    assert!(gw.logs().contains("past retry.maxAge; dead-lettered"));
    Ok(())
}

#[tokio::test]
async fn retry_after_is_capped_by_max_retry_after() -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    rx.script([Reply::Full(
        503,
        vec![("retry-after".into(), "3600".into())],
        String::new(),
    )]);
    let extra = "  retry: {schedule: [50ms], maxAttempts: 3, maxRetryAfter: 1s}";
    let (_dir, mut gw) = single(&rx, extra, &[]).await?;
    ingest(&gw, "order.created", "{}").await?;
    let got = rx.wait_for(2, WAIT).await?;
    let gap = got[1].at.duration_since(got[0].at);
    assert!(
        gap >= Duration::from_millis(990) && gap < Duration::from_secs(20),
        "Retry-After: 3600 capped at 1 s gave {gap:?}"
    );
    wait_metric(&gw, &attempts_series("hook", "success"), 1.0).await?;
    gw.stop(STOP).await?;
    Ok(())
}

const WRITE_KEY: &str = "delivery-tests-write-key-0123456789";

fn api_key(dir: &Path) -> anyhow::Result<()> {
    write(
        dir,
        "api-key.yaml",
        &format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: ops-key, namespace: default, labels: {{hookmesh.io/api-key: "true"}}}}
stringData: {{key: {WRITE_KEY}, role: write}}
"#
        ),
    )
}

#[tokio::test]
async fn gone_410_fails_the_delivery_and_pauses_the_endpoint_until_resumed() -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    rx.script([Reply::Status(410)]);
    let (dir, mut gw) = single(&rx, FAST_RETRY, &[]).await?;
    api_key(dir.path())?;
    let first = ingest(&gw, "order.created", "{}").await?;
    let paused = "hookmesh_endpoint_paused{namespace=\"default\",endpoint=\"hook\"}";
    wait_metric(&gw, paused, 1.0).await?;
    // Seen in the REST API: the endpoint is paused, with the answer and the delivery.
    let view = wait_for_endpoint(&gw, |e| e["circuit"] == "paused").await?;
    assert_eq!(view["pods"][0]["paused"]["reason"], "HTTP 410 Gone");
    assert!(view["pods"][0]["paused"]["delivery_id"]
        .as_str()
        .is_some_and(|d| d.starts_with("dlv_")));
    // Nothing more goes there while paused.
    let second = ingest(&gw, "order.created", "{}").await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.count(), 1, "a paused endpoint got another delivery");
    // A read of an unknown endpoint, and a resume without a write key, are refused.
    gw.call(
        http::Method::POST,
        "/api/v1/endpoints/default/nope/resume",
        WRITE_KEY,
        None,
    )
    .await
    .expect_error(404, "ENDPOINT_NOT_FOUND");
    let r = gw
        .request(
            http::Method::POST,
            "/api/v1/endpoints/default/hook/resume",
            &[],
            bytes::Bytes::new(),
        )
        .await?;
    assert_eq!(r.status, 401);
    let r = gw
        .call(
            http::Method::POST,
            "/api/v1/endpoints/default/hook/resume",
            WRITE_KEY,
            None,
        )
        .await;
    r.expect(200);
    assert_eq!(
        r.json()["data"][0]["circuit"]
            .as_str()
            .map(|c| c != "paused"),
        Some(true)
    );
    // The held delivery goes at once; the first one stays failed (410 is not retried).
    rx.wait_for(2, WAIT).await?;
    wait_metric(&gw, &attempts_series("hook", "success"), 1.0).await?;
    assert_eq!(gw.metric(paused).await?, 0.0);
    gw.stop(STOP).await?;
    let store = open_store(&gw)?;
    let out = read_back(&store, &first)?;
    assert_eq!(out.deliveries[0].0.status, DeliveryStatus::Failed);
    assert_eq!(out.deliveries[0].1.len(), 1);
    assert_eq!(out.deliveries[0].1[0].status_code, Some(410));
    let out = read_back(&store, &second)?;
    assert_eq!(out.deliveries[0].0.status, DeliveryStatus::Success);
    Ok(())
}

/// The peer token of the gateways that are asked for `GET /internal/v1/endpoints`.
const PEER_TOKEN: &str = "peer-token-for-the-health-route";

/// Poll `GET /api/v1/endpoints` until the endpoint `hook` satisfies `want`.
async fn wait_for_endpoint(
    gw: &Gateway,
    want: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body = gw.get("/api/v1/endpoints", WRITE_KEY).await.json();
        if let Some(e) = body["data"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["name"] == "hook"))
        {
            if want(e) {
                return Ok(e.clone());
            }
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "endpoint never reached the state: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_egress_guard_refuses_loopback_metadata_and_names_that_resolve_there(
) -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    let port = rx.addr.port();
    let dir = tempfile::tempdir()?;
    source(dir.path())?;
    // Loopback by IP, loopback by a name that resolves to it, the cloud metadata address, and
    // a range denied by flag; one endpoint on loopback explicitly allowed stays reachable.
    let targets = [
        ("loop", format!("http://127.0.0.1:{port}/x")),
        ("named", format!("http://localhost:{port}/x")),
        (
            "meta",
            "http://169.254.169.254/latest/meta-data/".to_string(),
        ),
        ("v6", format!("http://[::1]:{port}/x")),
    ];
    for (name, url) in &targets {
        endpoint(dir.path(), name, url, FAST_RETRY)?;
        subscription(dir.path(), name, &["*"])?;
    }
    let mut gw = Gateway::start_with(GatewayOptions {
        manifests: dir.path().to_path_buf(),
        guard_loopback: true,
        ..GatewayOptions::default()
    })
    .await?;
    let id = ingest(&gw, "order.created", "{}").await?;
    for (name, _) in &targets {
        wait_metric(&gw, &attempts_series(name, "failed"), 1.0).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.stop(STOP).await?;
    assert_eq!(
        rx.count(),
        0,
        "the guard let a delivery through to loopback"
    );
    let out = read_back(&open_store(&gw)?, &id)?;
    assert_eq!(out.deliveries.len(), targets.len());
    for (d, attempts) in &out.deliveries {
        assert_eq!(d.status, DeliveryStatus::Failed, "{}", d.endpoint);
        assert_eq!(attempts.len(), 1, "{}: refused without retries", d.endpoint);
        let error = attempts[0].error.clone().unwrap_or_default();
        assert!(
            error.starts_with("EGRESS_REFUSED"),
            "{}: {error}",
            d.endpoint
        );
    }

    // The same gateway with loopback allowed delivers.
    let mut gw = Gateway::start_with(GatewayOptions {
        manifests: dir.path().to_path_buf(),
        guard_loopback: true,
        args: vec!["--egress-allow=127.0.0.0/8".into()],
        ..GatewayOptions::default()
    })
    .await?;
    ingest(&gw, "order.created", "{}").await?;
    rx.wait_for(1, WAIT).await?;
    gw.stop(STOP).await?;
    Ok(())
}

// --- signing profiles, key rotation, CloudEvents --------------------------------------------

#[tokio::test]
async fn every_signing_profile_verifies_with_an_independent_implementation() -> anyhow::Result<()> {
    use hookmesh_tests::python::standard_webhooks_verify;
    let rx = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    source(dir.path())?;
    let old = "whsec_b2xkLWtleS1iZWluZy1yb3RhdGVkLW91dC0wMDAwMDAwMA==";
    write(
        dir.path(),
        "old-keys.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: old-keys, namespace: default}}\nstringData: {{secret: \"{old}\"}}\n"
        ),
    )?;
    let endpoints = [
        ("rotating", "  previousSecretRef: {name: old-keys, key: secret, expiresAt: \"2099-01-01T00:00:00Z\"}".to_string()),
        ("expired", "  previousSecretRef: {name: old-keys, key: secret, expiresAt: \"2001-01-01T00:00:00Z\"}".to_string()),
        ("svix", "  signing: {profile: standard-webhooks, headerNames: svix}".to_string()),
        ("github", "  signing: {profile: hmac, hmac: {header: X-Hub-Signature-256, prefix: \"sha256=\"}}".to_string()),
        ("cebinary", "  format: cloudevents-binary".to_string()),
        ("cestructured", "  format: cloudevents-structured".to_string()),
    ];
    for (name, extra) in &endpoints {
        endpoint(dir.path(), name, &rx.url(&format!("/{name}")), extra)?;
        subscription(dir.path(), name, &["*"])?;
    }
    let mut gw = Gateway::start_with(GatewayOptions {
        manifests: dir.path().to_path_buf(),
        ..GatewayOptions::default()
    })
    .await?;
    let body = r#"{"order":42}"#;
    let id = ingest(&gw, "order.created", body).await?;
    let got = rx.wait_for(endpoints.len(), WAIT).await?;
    let at = |path: &str| {
        got.iter()
            .find(|r| r.path == path)
            .with_context(|| format!("nothing delivered to {path}"))
    };
    let headers = |r: &Received, names: &[&str]| -> Vec<(String, String)> {
        names
            .iter()
            .filter_map(|n| r.header(n).map(|v| (n.to_string(), v.to_string())))
            .collect()
    };
    let std_headers = ["webhook-id", "webhook-timestamp", "webhook-signature"];
    let verify = |secret: &str, r: &Received, h: &[(String, String)]| {
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        standard_webhooks_verify(secret, &h, &r.body)
    };

    // Rotation window: both the new and the old secret verify; an unrelated one does not.
    let r = at("/rotating")?;
    let h = headers(r, &std_headers);
    assert_eq!(verify(&secret_for("rotating"), r, &h)?, Ok(()));
    assert_eq!(
        verify(old, r, &h)?,
        Ok(()),
        "the previous secret no longer verifies"
    );
    assert!(verify(&secret_for("other"), r, &h)?.is_err());
    assert_eq!(
        r.header("webhook-signature").map(|s| s.split(' ').count()),
        Some(2)
    );
    // Past its expiry the previous secret is no longer signed with.
    let r = at("/expired")?;
    let h = headers(r, &std_headers);
    assert_eq!(verify(&secret_for("expired"), r, &h)?, Ok(()));
    assert!(verify(old, r, &h)?.is_err(), "an expired key still signs");
    // Svix header names: the same scheme under svix-*, as Svix's libraries read it.
    let r = at("/svix")?;
    assert!(r.header("webhook-signature").is_none());
    let h: Vec<(String, String)> = headers(r, &["svix-id", "svix-timestamp", "svix-signature"])
        .into_iter()
        .map(|(k, v)| (k.replacen("svix-", "webhook-", 1), v))
        .collect();
    assert_eq!(h.len(), 3);
    assert_eq!(verify(&secret_for("svix"), r, &h)?, Ok(()));
    // GitHub-style HMAC, checked by the suites' own GitHub signer.
    let r = at("/github")?;
    assert_eq!(
        r.header("x-hub-signature-256"),
        Some(hookmesh_tests::sign::github(&secret_for("github"), body.as_bytes()).as_str())
    );
    assert_eq!(r.header("hookmesh-event-id"), Some(id.as_str()));
    // CloudEvents binary: the payload as it came, the context in ce-* headers, still signed.
    let r = at("/cebinary")?;
    assert_eq!(&r.body[..], body.as_bytes());
    assert_eq!(r.header("ce-specversion"), Some("1.0"));
    assert_eq!(r.header("ce-id"), Some(id.as_str()));
    assert_eq!(r.header("ce-type"), Some("order.created"));
    assert_eq!(
        r.header("ce-source"),
        Some("/hookmesh/default/sources/shop")
    );
    assert!(r
        .header("ce-time")
        .is_some_and(|t| t.ends_with('Z') && t.contains('T')));
    assert_eq!(
        verify(&secret_for("cebinary"), r, &headers(r, &std_headers))?,
        Ok(())
    );
    // CloudEvents structured: one JSON envelope with the payload as data; signed as sent.
    let r = at("/cestructured")?;
    assert_eq!(
        r.header("content-type"),
        Some("application/cloudevents+json; charset=utf-8")
    );
    let ev: serde_json::Value = serde_json::from_slice(&r.body)?;
    assert_eq!(ev["specversion"], "1.0");
    assert_eq!(ev["id"], id.as_str());
    assert_eq!(ev["type"], "order.created");
    assert_eq!(ev["data"], serde_json::json!({"order": 42}));
    assert_eq!(ev["datacontenttype"], "application/json");
    assert_eq!(
        verify(&secret_for("cestructured"), r, &headers(r, &std_headers))?,
        Ok(())
    );
    gw.stop(STOP).await?;
    Ok(())
}

// --- dead-letter sink -----------------------------------------------------------------------

#[tokio::test]
async fn a_dead_lettered_delivery_goes_to_the_subscriptions_dead_letter_endpoint(
) -> anyhow::Result<()> {
    let rx = Receiver::start().await?;
    let sink = Receiver::start().await?;
    rx.set_default(Reply::Status(500));
    let dir = tempfile::tempdir()?;
    source(dir.path())?;
    api_key(dir.path())?;
    endpoint(
        dir.path(),
        "hook",
        &rx.url("/hook"),
        "  retry: {schedule: [50ms], maxAttempts: 2}",
    )?;
    endpoint(dir.path(), "dlq", &sink.url("/dead"), FAST_RETRY)?;
    write(
        dir.path(),
        "subscription-hook.yaml",
        r#"apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {name: to-hook, namespace: default}
spec:
  endpointRef: {name: hook}
  sources: [shop]
  deadLetter: {endpointRef: {name: dlq}}
"#,
    )?;
    let mut gw = Gateway::start(dir.path()).await?;
    let body = r#"{"order":7}"#;
    let id = ingest(&gw, "order.created", body).await?;
    let got = sink.wait_for(1, WAIT).await?;
    let dead = &got[0];
    assert_eq!(&dead.body[..], body.as_bytes(), "the original payload");
    assert_eq!(dead.header("webhook-id"), Some(id.as_str()));
    verify_signature(dead, "dlq")?;
    assert_eq!(dead.header("hookmesh-dead-letter-endpoint"), Some("hook"));
    assert_eq!(dead.header("hookmesh-dead-letter-status"), Some("500"));
    assert_eq!(dead.header("hookmesh-dead-letter-attempts"), Some("2"));
    assert_eq!(dead.header("hookmesh-dead-letter-error"), Some("HTTP 500"));
    let original = dead
        .header("hookmesh-dead-letter-delivery-id")
        .context("no dead-letter delivery id")?
        .to_string();
    let forwarded = dead
        .header("hookmesh-delivery-id")
        .context("no delivery id")?
        .to_string();
    assert_ne!(original, forwarded);
    assert_eq!(rx.count(), 2, "both attempts went to the failing endpoint");

    // The REST API links the two.
    let r = gw
        .get(&format!("/api/v1/deliveries/{original}"), WRITE_KEY)
        .await;
    r.expect(200);
    assert_eq!(r.json()["status"], "dead_letter");
    assert_eq!(r.json()["forwarded_to"], forwarded.as_str());
    let r = gw
        .get(&format!("/api/v1/deliveries/{forwarded}"), WRITE_KEY)
        .await;
    r.expect(200);
    let v = r.json();
    assert_eq!(v["endpoint"], "dlq");
    assert_eq!(v["dead_letter_of"]["delivery_id"], original.as_str());
    assert_eq!(v["dead_letter_of"]["endpoint"], "hook");
    assert_eq!(v["dead_letter_of"]["status_code"], 500);
    assert_eq!(v["dead_letter_of"]["attempts"], 2);
    gw.stop(STOP).await?;
    let out = read_back(&open_store(&gw)?, &id)?;
    let mut statuses: Vec<(String, DeliveryStatus)> = out
        .deliveries
        .iter()
        .map(|(d, _)| (d.endpoint.clone(), d.status))
        .collect();
    statuses.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        statuses,
        vec![
            ("dlq".to_string(), DeliveryStatus::Success),
            ("hook".to_string(), DeliveryStatus::DeadLetter)
        ]
    );
    Ok(())
}

#[tokio::test]
async fn ed25519_deliveries_verify_with_the_public_key_alone() -> anyhow::Result<()> {
    use base64::Engine as _;
    use ed25519_dalek::{Signature, VerifyingKey};
    let rx = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    source(dir.path())?;
    // RFC 8032, section 7.1, TEST 1: the seed as a whsk_ secret, and its public key.
    write(
        dir.path(),
        "endpoint-ed.yaml",
        &format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: ed-signing, namespace: default}}
stringData: {{secret: "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {{name: ed, namespace: default}}
spec:
  url: "{}"
  secretRef: {{name: ed-signing, key: secret}}
  signing: {{profile: standard-webhooks, algorithm: ed25519}}
"#,
            rx.url("/ed")
        ),
    )?;
    subscription(dir.path(), "ed", &["*"])?;
    let mut gw = Gateway::start(dir.path()).await?;
    ingest(&gw, "order.created", r#"{"order":1}"#).await?;
    let got = rx.wait_for(1, WAIT).await?;
    let r = &got[0];
    let public = hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")?;
    let key = VerifyingKey::from_bytes(public.as_slice().try_into()?)?;
    let sig = r
        .header("webhook-signature")
        .and_then(|s| s.strip_prefix("v1a,"))
        .context("no v1a signature")?;
    let sig = Signature::from_slice(&base64::engine::general_purpose::STANDARD.decode(sig)?)?;
    let content = format!(
        "{}.{}.{}",
        r.header("webhook-id").context("id")?,
        r.header("webhook-timestamp").context("timestamp")?,
        String::from_utf8_lossy(&r.body)
    );
    key.verify_strict(content.as_bytes(), &sig)
        .context("the Ed25519 signature does not verify with the public key")?;
    // And a changed body does not.
    assert!(key
        .verify_strict(format!("{content} ").as_bytes(), &sig)
        .is_err());
    gw.stop(STOP).await?;
    Ok(())
}
