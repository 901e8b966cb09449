//! Moving events between pods: a pod being scaled away exports every event that still has
//! deliveries to make, a peer imports them under the same ids, and the first pod deletes its
//! copies. Between the peer's import and the local delete both pods hold the event, so a crash
//! there can deliver it twice, never lose it (the at-least-once promise of the queue).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::codec::put;
use super::commit::{IngestOutcome, NewEvent};
use super::errors::StoreError;
use super::groups::{self, Width};
use super::handle::Store;
use super::keys::*;
use super::model::*;

/// One event with everything attached, as it travels between pods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportedEvent {
    pub event: EventRecord,
    /// `None` once retention removed it.
    pub payload: Option<Payload>,
    pub deliveries: Vec<(DeliveryRecord, Vec<AttemptRecord>)>,
}

impl Store {
    /// Ids of events that still have deliveries to make (status `pending`), oldest first, at
    /// most `n`.
    pub fn unfinished_events(&self, n: usize) -> Result<Vec<EventId>, StoreError> {
        let mut out = Vec::new();
        if n == 0 {
            return Ok(out);
        }
        self.each_pending(|id| {
            out.push(id);
            out.len() < n
        })?;
        Ok(out)
    }

    /// How many events still have deliveries to make.
    pub fn unfinished_count(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        self.each_pending(|_| {
            n += 1;
            true
        })?;
        Ok(n)
    }

    /// Every pending event in index order (oldest first, give or take a group's span), each
    /// checked against its record: the pending index holds finished members until the
    /// compactor takes them out (see `compact`). Stops when `f` says so.
    fn each_pending(&self, mut f: impl FnMut(EventId) -> bool) -> Result<(), StoreError> {
        let prefix = [EventStatus::Pending.code()];
        // An event pending again after it finished has a key of its own besides its group's
        // entry; the key sorts before any entry holding it (entries are keyed by their largest
        // member, with a byte more), so it is seen first.
        let mut own_keys = HashSet::new();
        for item in self.trees().idx_status.scan_prefix(prefix) {
            let (k, v) = item?;
            let tail = &k[prefix.len()..];
            let members = groups::members(tail, &v, Width::Id)
                .ok_or_else(|| StoreError::Codec("malformed idx_status entry".into()))?;
            let own = !groups::is_group(tail);
            for (id, _) in members {
                if own {
                    own_keys.insert(id);
                } else if own_keys.contains(&id) {
                    continue;
                }
                let id = EventId(ulid::Ulid(id));
                if self
                    .event(id)?
                    .is_some_and(|e| e.status == EventStatus::Pending)
                    && !f(id)
                {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The event with its payload, deliveries and attempts; `None` when there is no such event.
    pub fn export_event(&self, id: EventId) -> Result<Option<ExportedEvent>, StoreError> {
        let Some(event) = self.event(id)? else {
            return Ok(None);
        };
        let payload = self.payload(id)?;
        let mut deliveries = Vec::with_capacity(event.delivery_ids.len());
        for d in self.deliveries_of(id)? {
            let attempts = self.attempts(d.id)?;
            deliveries.push((d, attempts));
        }
        Ok(Some(ExportedEvent {
            event,
            payload,
            deliveries,
        }))
    }

    /// Store an event exported by another pod, under its own ids, with every unfinished
    /// delivery due at its time (an attempt that was in flight on the other pod is due now).
    /// `false` when the event is here already (a handoff repeated after a crash).
    pub async fn import_event(&self, ex: ExportedEvent, now: Millis) -> Result<bool, StoreError> {
        if self.event_as_written(ex.event.id)?.is_some() {
            return Ok(false);
        }
        let mut attempts = Vec::new();
        let deliveries = ex
            .deliveries
            .into_iter()
            .map(|(mut d, a)| {
                if d.status == DeliveryStatus::InFlight {
                    d.status = DeliveryStatus::Retrying;
                    d.next_attempt_at = Some(now);
                }
                if d.status.is_final() {
                    d.next_attempt_at = None;
                }
                attempts.push((d.id, a));
                d
            })
            .collect();
        let new = NewEvent {
            event: ex.event,
            payload: ex.payload.unwrap_or(Payload {
                headers: Vec::new(),
                body: Vec::new(),
            }),
            deliveries,
            // Duplicates are detected per pod; the claim stays with the pod that saw the key.
            idempotency: None,
        };
        match self.ingest(new).await? {
            IngestOutcome::Stored(_) => {}
            IngestOutcome::Duplicate(_) => return Ok(false),
        }
        // History, not queue state: written after the event, and flushed before the answer.
        for (id, list) in attempts {
            for a in list {
                put(&self.trees().attempts, &attempt_key(id, a.number), &a)?;
            }
        }
        self.flush()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;

    #[tokio::test]
    async fn an_exported_event_imports_whole_and_only_once() {
        let (_a_dir, a) = testing::open();
        let (_b_dir, b) = testing::open();
        let new = testing::new_event("src", 2, None, 1_000);
        let id = new.event.id;
        a.ingest(new).await.expect("ingest");
        let first = a.deliveries_of(id).expect("deliveries")[0].clone();
        a.trees()
            .attempts
            .insert(
                attempt_key(first.id, 1),
                super::super::codec::encode(&AttemptRecord {
                    number: 1,
                    started_at: 1_000,
                    duration_ms: 3,
                    status_code: Some(500),
                    response_body: b"no".to_vec(),
                    error: None,
                })
                .expect("encode"),
            )
            .expect("insert");

        assert_eq!(a.unfinished_events(10).expect("scan"), vec![id]);
        assert_eq!(a.unfinished_count().expect("count"), 1);
        let ex = a.export_event(id).expect("export").expect("present");
        assert!(b.import_event(ex.clone(), 2_000).await.expect("import"));
        assert!(!b.import_event(ex.clone(), 2_000).await.expect("again"));
        let back = b.export_event(id).expect("export").expect("present");
        assert_eq!(back, ex);
        assert_eq!(
            b.queue_depth(),
            2,
            "both deliveries are queued on the new pod"
        );
        assert_eq!(b.unfinished_events(10).expect("scan"), vec![id]);
    }
}
