use super::*;

fn health(state: &str) -> Health {
    Health {
        state: state.into(),
        consecutive_failures: 0,
        success_rate_percent: Some(100),
        last_error: None,
        last_error_at: None,
        last_success_at: Some(1_764_000_000_000),
        circuit_opened: 0,
    }
}

fn settings() -> Settings {
    Settings {
        url: "http://dp:8080".into(),
        token: "t".into(),
        interval: Duration::from_secs(10),
        min_interval: Duration::from_secs(30),
        resync: Duration::from_secs(300),
    }
}

fn condition(v: &Verdict) -> Condition {
    Condition {
        type_: HEALTHY.into(),
        status: v.status.into(),
        reason: v.reason.into(),
        message: v.message.clone(),
        observed_generation: Some(1),
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }
}

fn pod(node: u16, state: &str, opened: u64, dead: u64) -> PodReport {
    let mut h = health(state);
    h.circuit_opened = opened;
    h.last_error = Some("HTTP 503".into());
    PodReport {
        node,
        counters: PodCounters {
            dead_lettered: dead,
        },
        health: h,
    }
}

#[test]
fn each_state_maps_onto_one_condition_and_unknown_onto_none() {
    let mut failing = health("circuit_open");
    failing.last_error = Some("timed out after 10000 ms".into());
    let v = desired("shop", "orders", &failing).expect("a verdict");
    assert_eq!((v.status, v.reason), ("False", "CircuitOpen"));
    assert!(
        v.message.ends_with("last error: timed out after 10000 ms"),
        "{}",
        v.message
    );
    for (state, status, reason) in [
        ("healthy", "True", "Delivering"),
        ("failing", "False", "Failing"),
        ("paused", "False", "Paused"),
    ] {
        let v = desired("shop", "orders", &health(state)).expect(state);
        assert_eq!((v.status, v.reason), (status, reason));
    }
    let paused = desired("shop", "orders", &health("paused")).expect("paused");
    assert!(paused
        .message
        .contains("/api/v1/endpoints/shop/orders/resume"));
    assert_eq!(desired("shop", "orders", &health("unknown")), None);
    assert_eq!(desired("shop", "orders", &health("something-new")), None);
}

#[test]
fn a_changed_condition_waits_for_the_minimum_interval_and_the_record_for_the_resync() {
    let s = settings();
    let ok = desired("a", "b", &health("healthy"));
    let bad = desired("a", "b", &health("circuit_open"));
    let rec = record(&health("healthy"));
    let cur = condition(ok.as_ref().expect("ok"));
    // First sight: written at once.
    assert!(matches!(
        decide(None, None, ok.clone(), &rec, None, &s),
        Decision::Condition(_)
    ));
    // Same condition, same record: nothing.
    assert_eq!(
        decide(
            Some(&cur),
            Some(&rec),
            ok.clone(),
            &rec,
            Some(Duration::ZERO),
            &s
        ),
        Decision::Wait
    );
    // Flipped 10 s after the last patch: held; at 30 s: written.
    let ten = Some(Duration::from_secs(10));
    let thirty = Some(Duration::from_secs(30));
    assert_eq!(
        decide(Some(&cur), Some(&rec), bad.clone(), &rec, ten, &s),
        Decision::Wait
    );
    assert_eq!(
        decide(Some(&cur), Some(&rec), bad.clone(), &rec, thirty, &s),
        Decision::Condition(bad.clone().expect("bad"))
    );
    // The record alone moves only after the resync.
    let mut moved = health("healthy");
    moved.success_rate_percent = Some(97);
    let moved = record(&moved);
    assert_eq!(
        decide(Some(&cur), Some(&rec), ok.clone(), &moved, thirty, &s),
        Decision::Wait
    );
    assert_eq!(
        decide(
            Some(&cur),
            Some(&rec),
            ok.clone(),
            &moved,
            Some(Duration::from_secs(300)),
            &s
        ),
        Decision::Record
    );
    // No attempts anywhere: whatever was there stays.
    assert_eq!(
        decide(Some(&cur), Some(&rec), None, &moved, None, &s),
        Decision::Wait
    );
}

#[test]
fn the_patch_keeps_other_conditions_carries_the_resource_version_and_moves_the_transition_time_on_flips_only(
) {
    let ready = Condition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: "Compiled".into(),
        message: "live".into(),
        observed_generation: Some(3),
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    };
    let ok = desired("a", "b", &health("healthy")).expect("ok");
    let mut ep = Endpoint::new(
        "b",
        serde_json::from_value(json!({"url": "https://r.example/h"})).expect("spec"),
    );
    ep.metadata.namespace = Some("a".into());
    ep.metadata.resource_version = Some("77".into());
    ep.metadata.generation = Some(3);
    ep.status = Some(hookmesh_api::resources::EndpointStatus {
        common: hookmesh_api::resources::CommonStatus {
            observed_generation: Some(3),
            conditions: vec![ready.clone(), condition(&ok)],
        },
        ..Default::default()
    });
    let now = Time(Timestamp::from_second(1_800_000_000).expect("time"));
    let rec = record(&health("healthy"));
    let failing = desired("a", "b", &health("failing")).expect("failing");
    let p = status_patch(&ep, &Decision::Condition(failing), &rec, &now).expect("a patch");
    assert_eq!(
        status::guarded(&ep, &p)["metadata"]["resourceVersion"],
        "77"
    );
    let conds = p["status"]["conditions"].as_array().expect("conditions");
    assert_eq!(conds.len(), 2);
    assert_eq!(conds[0]["type"], "Ready");
    assert_eq!(conds[1]["status"], "False");
    assert_eq!(conds[1]["reason"], "Failing");
    assert_eq!(conds[1]["observedGeneration"], 3);
    assert_eq!(conds[1]["lastTransitionTime"], "2027-01-15T08:00:00Z");
    assert_eq!(p["status"]["delivery"]["successRatePercent"], 100);
    assert_eq!(
        p["status"]["delivery"]["lastSuccessTime"],
        "2025-11-24T16:00:00Z"
    );
    // A new message with the same status keeps the transition time.
    let mut other = ok.clone();
    other.message = "something else".into();
    let p = status_patch(&ep, &Decision::Condition(other), &rec, &now).expect("a patch");
    assert_eq!(
        p["status"]["conditions"][1]["lastTransitionTime"],
        "1970-01-01T00:00:00Z"
    );
    // A record refresh leaves the condition exactly as it is.
    let p = status_patch(&ep, &Decision::Record, &rec, &now).expect("a patch");
    assert_eq!(p["status"]["conditions"][1], json!(condition(&ok)));
    assert_eq!(status_patch(&ep, &Decision::Wait, &rec, &now), None);
}

#[test]
fn events_come_from_what_changed_on_each_pod_since_the_last_poll() {
    // First sight: the baseline, no history replayed.
    let (seen, ev) = events(None, &pod(0, "circuit_open", 4, 9));
    assert!(ev.is_empty());
    // Opened twice more and dead-lettered three; still open.
    let (seen, ev) = events(Some(seen), &pod(0, "circuit_open", 6, 12));
    let reasons: Vec<_> = ev.iter().map(|n| n.reason).collect();
    assert_eq!(reasons, ["CircuitOpened", "DeadLettered"]);
    assert!(ev[0].warning && ev[0].note.contains("opened 2 times on data-plane node 0"));
    assert!(ev[0].note.ends_with("last error: HTTP 503"));
    assert!(ev[1].note.starts_with("3 deliveries dead-lettered"));
    // Closed: one Normal Event.
    let (seen, ev) = events(Some(seen), &pod(0, "healthy", 6, 12));
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].reason, ev[0].warning), ("CircuitClosed", false));
    // Nothing new: nothing.
    let (seen, ev) = events(Some(seen), &pod(0, "healthy", 6, 12));
    assert!(ev.is_empty());
    // Opened and closed between two polls: both are told.
    let (seen, ev) = events(Some(seen), &pod(0, "healthy", 7, 12));
    let reasons: Vec<_> = ev.iter().map(|n| n.reason).collect();
    assert_eq!(reasons, ["CircuitOpened", "CircuitClosed"]);
    // A restarted pod counts from zero: what it counted since is news.
    let (_, ev) = events(Some(seen), &pod(0, "healthy", 0, 2));
    let reasons: Vec<_> = ev.iter().map(|n| n.reason).collect();
    assert_eq!(reasons, ["DeadLettered"]);
    assert!(ev[0].note.starts_with("2 deliveries"));
}

#[test]
fn the_report_reads_the_data_planes_answer() {
    let report: Report = serde_json::from_value(json!({
        "config_hash": "abc", "partial": true, "missing_peers": ["node 2 (http://x): unreachable"],
        "data": [{"namespace": "a", "name": "b", "url": "https://r", "circuit": "open",
            "counters": {"delivered": 1, "failed": 2, "retried": 3, "dead_lettered": 2},
            "health": {"state": "circuit_open", "consecutive_failures": 5, "succeeded_in_window": 1,
                "failed_in_window": 5, "success_rate_percent": 16, "last_error": "HTTP 503",
                "last_error_at": 1, "last_success_at": null, "circuit_opened": 1},
            "pods": [{"node": 0, "circuit": "open", "paused": null,
                "counters": {"delivered": 1, "failed": 2, "retried": 3, "dead_lettered": 2},
                "health": {"state": "circuit_open", "consecutive_failures": 5, "succeeded_in_window": 1,
                    "failed_in_window": 5, "success_rate_percent": 16, "last_error": "HTTP 503",
                    "last_error_at": 1, "last_success_at": null, "circuit_opened": 1}}]}]
    }))
    .expect("parses");
    assert!(report.partial);
    assert_eq!(report.data[0].health.state, "circuit_open");
    assert_eq!(report.data[0].pods[0].counters.dead_lettered, 2);
}
