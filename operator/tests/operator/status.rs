//! Status building: Unknown on first sight, patch only on change, lastTransitionTime only on a
//! flip, other conditions kept, nothing outside `status`.
#![allow(clippy::unwrap_used)]

use hookmesh_api::resources::READY;
use hookmesh_operator::reconcile::{CrKind, DesiredStatus, ReadyStatus};
use hookmesh_operator::status::{self, CurrentStatus, HasStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

/// What the API server would hold after applying `patch` (a merge patch of `status`).
fn applied(current: &CurrentStatus, patch: &serde_json::Value) -> CurrentStatus {
    let s = &patch["status"];
    CurrentStatus {
        observed_generation: s["observedGeneration"].as_i64(),
        conditions: serde_json::from_value(s["conditions"].clone()).unwrap(),
        ingest_path: s
            .get("ingestPath")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .or(current.ingest_path.clone()),
        subscriptions: s
            .get("subscriptions")
            .and_then(|v| v.as_i64())
            .map(|n| i32::try_from(n).unwrap())
            .or(current.subscriptions),
        // Merge-patch semantics: absent keeps, null removes.
        public_key: match s.get("publicKey") {
            None => current.public_key.clone(),
            Some(v) => v.as_str().map(str::to_string),
        },
    }
}

fn ready(status: &str, reason: &str, gen: i64) -> DesiredStatus {
    DesiredStatus {
        observed_generation: Some(gen),
        ready: match status {
            "True" => ReadyStatus::True,
            "False" => ReadyStatus::False,
            _ => ReadyStatus::Unknown,
        },
        reason: reason.into(),
        message: format!("{reason} message"),
        ingest_path: None,
        subscriptions: None,
        public_key: None,
    }
}

#[test]
fn first_sight_writes_ready_unknown() {
    let desired = DesiredStatus::first_sight(CrKind::Source, "shop", "gh", Some(3));
    let patch = status::status_patch(&CurrentStatus::default(), &desired, &at(100)).unwrap();
    let keys: Vec<&String> = patch.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["status"],
        "the operator never writes spec or metadata"
    );
    let s = &patch["status"];
    assert_eq!(s["observedGeneration"], 3);
    assert_eq!(s["ingestPath"], "/e/shop/gh");
    assert_eq!(s["conditions"][0]["type"], "Ready");
    assert_eq!(s["conditions"][0]["status"], "Unknown");
    assert_eq!(s["conditions"][0]["reason"], "Reconciling");
    assert_eq!(s["conditions"][0]["observedGeneration"], 3);
    assert_eq!(
        s["conditions"][0]["lastTransitionTime"],
        "1970-01-01T00:01:40Z"
    );
}

#[test]
fn unchanged_status_is_not_patched() {
    let desired = ready("True", "Ready", 2);
    let patch = status::status_patch(&CurrentStatus::default(), &desired, &at(100)).unwrap();
    let now = applied(&CurrentStatus::default(), &patch);
    assert_eq!(status::status_patch(&now, &desired, &at(200)), None);
    assert!(status::up_to_date(&now, &desired));
}

#[test]
fn transition_time_moves_only_when_ready_flips() {
    let t0 = applied(
        &CurrentStatus::default(),
        &status::status_patch(
            &CurrentStatus::default(),
            &ready("False", "SecretNotFound", 1),
            &at(100),
        )
        .unwrap(),
    );
    // Same status, other reason: new reason, old transition time.
    let t1 = applied(
        &t0,
        &status::status_patch(&t0, &ready("False", "InvalidSecret", 1), &at(200)).unwrap(),
    );
    let c = t1.ready().unwrap();
    assert_eq!(c.reason, "InvalidSecret");
    assert_eq!(c.last_transition_time, at(100));
    // Flip to True: transition time moves.
    let t2 = applied(
        &t1,
        &status::status_patch(&t1, &ready("True", "Ready", 1), &at(300)).unwrap(),
    );
    assert_eq!(t2.ready().unwrap().last_transition_time, at(300));
    // A new generation with the same outcome still updates observedGeneration.
    let patch = status::status_patch(&t2, &ready("True", "Ready", 2), &at(400)).unwrap();
    assert_eq!(patch["status"]["observedGeneration"], 2);
    assert_eq!(
        applied(&t2, &patch).ready().unwrap().last_transition_time,
        at(300)
    );
}

#[test]
fn other_conditions_are_kept() {
    let foreign = Condition {
        type_: "Synced".into(),
        status: "True".into(),
        reason: "External".into(),
        message: "written by someone else".into(),
        observed_generation: None,
        last_transition_time: at(5),
    };
    let current = CurrentStatus {
        conditions: vec![foreign.clone()],
        ..CurrentStatus::default()
    };
    let patch = status::status_patch(&current, &ready("True", "Ready", 1), &at(10)).unwrap();
    let conds: Vec<Condition> =
        serde_json::from_value(patch["status"]["conditions"].clone()).unwrap();
    assert_eq!(conds.len(), 2);
    assert_eq!(conds[0], foreign);
    assert_eq!(conds[1].type_, READY);
}

#[test]
fn kind_specific_fields_are_part_of_the_comparison() {
    let mut desired = ready("True", "Ready", 1);
    desired.subscriptions = Some(2);
    let patch = status::status_patch(&CurrentStatus::default(), &desired, &at(1)).unwrap();
    assert_eq!(patch["status"]["subscriptions"], 2);
    let now = applied(&CurrentStatus::default(), &patch);
    assert_eq!(status::status_patch(&now, &desired, &at(2)), None);
    desired.subscriptions = Some(3);
    assert_eq!(
        status::status_patch(&now, &desired, &at(3)).unwrap()["status"]["subscriptions"],
        3
    );
}

#[test]
fn events_fire_on_failing_and_recovery_only() {
    let none = CurrentStatus::default();
    let failing = applied(
        &none,
        &status::status_patch(&none, &ready("False", "SecretNotFound", 1), &at(1)).unwrap(),
    );
    assert!(status::newly_failing(
        &none,
        &ready("False", "SecretNotFound", 1)
    ));
    assert!(!status::newly_failing(
        &failing,
        &ready("False", "SecretNotFound", 1)
    ));
    assert!(status::newly_failing(
        &failing,
        &ready("False", "InvalidSecret", 1)
    ));
    assert!(status::recovered(&failing, &ready("True", "Ready", 1)));
    assert!(!status::recovered(&none, &ready("True", "Ready", 1)));
}

#[test]
fn current_status_reads_each_kind() {
    let mut src = crate::common::source();
    src.status = Some(
        serde_json::from_value(serde_json::json!({
            "observedGeneration": 3, "ingestPath": "/e/shop/gh",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "m",
                            "lastTransitionTime": "2024-01-01T00:00:00Z"}]
        }))
        .unwrap(),
    );
    let cur = src.current_status();
    assert_eq!(cur.observed_generation, Some(3));
    assert_eq!(cur.ingest_path.as_deref(), Some("/e/shop/gh"));
    assert_eq!(cur.ready().unwrap().status, "True");
    assert_eq!(
        crate::common::endpoint().current_status(),
        CurrentStatus::default()
    );
}
