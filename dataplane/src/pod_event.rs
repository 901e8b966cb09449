//! The Kubernetes Event a pod records about itself when a drain leaves events undelivered
//! (a sidecar on an emptyDir loses them with the pod; the Event is where an admin sees that).
//!
//! The pod learns who it is from the downward API (`POD_NAME`, `POD_NAMESPACE`, `POD_UID`),
//! which the injected sidecar and the chart's StatefulSet both set. Recording is best effort and
//! bounded in time: it happens inside the termination grace period, and a missing RBAC grant
//! must not keep the pod from exiting.

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::peers::drain::DrainReport;

/// Longest the Event may take to record.
const RECORD_TIMEOUT: Duration = Duration::from_secs(3);

/// The Pod this process runs in, from the downward API; `None` outside a cluster.
pub fn this_pod() -> Option<ObjectReference> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(var("POD_NAME")?),
        namespace: Some(var("POD_NAMESPACE")?),
        uid: var("POD_UID"),
        ..ObjectReference::default()
    })
}

/// The Event for a drain that kept `report.kept` events, or `None` when it kept none.
pub fn undrained_event(report: &DrainReport) -> Option<Event> {
    if report.kept == 0 {
        return None;
    }
    let mut note = format!(
        "{} unfinished events were not delivered before this pod stopped; they stay in its data directory (lost with an emptyDir)",
        report.kept
    );
    if let Some(first) = report.errors.first() {
        note.push_str(&format!("; last error: {first}"));
    }
    // The API server caps an Event's note at 1 KiB; the cut falls on a character boundary
    // (a peer's error text may hold any UTF-8, and String::truncate panics inside a character).
    let mut end = note.len().min(1000);
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    Some(Event {
        type_: EventType::Warning,
        reason: "UndrainedEvents".into(),
        note: Some(note),
        action: "Drain".into(),
        secondary: None,
    })
}

/// Record `report` on this pod when it kept events. Logs, never fails.
pub async fn record_drain(client: kube::Client, report: &DrainReport) {
    let (Some(event), Some(pod)) = (undrained_event(report), this_pod()) else {
        return;
    };
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: "hookmesh-dataplane".into(),
            instance: pod.name.clone(),
        },
    );
    match tokio::time::timeout(RECORD_TIMEOUT, recorder.publish(&event, &pod)).await {
        Ok(Ok(())) => tracing::info!(
            kept = report.kept,
            "recorded an UndrainedEvents Event on this pod"
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not record the UndrainedEvents Event"),
        Err(_) => tracing::warn!("recording the UndrainedEvents Event timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_only_when_something_was_kept_and_its_note_fits() {
        let mut report = DrainReport::default();
        assert!(undrained_event(&report).is_none());
        report.kept = 7;
        report.errors = vec!["x".repeat(5000)];
        let ev = undrained_event(&report).expect("kept events make an Event");
        assert_eq!(ev.reason, "UndrainedEvents");
        assert_eq!(ev.type_, EventType::Warning);
        let note = ev.note.unwrap_or_default();
        assert!(note.starts_with("7 unfinished events"), "{note}");
        assert!(note.len() <= 1000);
        // A multi-byte character across the cut does not panic, and the note stays whole UTF-8.
        report.errors = vec!["é".repeat(3000)];
        let note = undrained_event(&report)
            .and_then(|ev| ev.note)
            .unwrap_or_default();
        assert!(note.len() <= 1000 && note.ends_with('é'), "{}", note.len());
    }
}
