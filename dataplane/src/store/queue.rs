//! The delivery queue: which deliveries are due, recording an attempt's outcome, putting a
//! delivery back in the queue, and keeping each event's status rolled up from its deliveries.
//!
//! The delivery record is the truth about when it is due: a `due` entry counts only while it
//! matches the record's `next_attempt_at`, and any other is stale and dropped when met. That lets
//! a due time move with single-key writes, in crash-safe order: add the new entry, write the
//! record, remove the old entry. Every prefix of that leaves the delivery due exactly when its
//! record says (plus a stale entry at worst).
//!
//! A claimed delivery keeps a due entry at its lease expiry, so a crash mid-attempt leaves it
//! due again: delivery is at-least-once, never at-most-once.

use super::locks::Held;
use super::*;

/// How an attempt ended, as far as the queue is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    Success,
    /// Try again at this time.
    Retry {
        at: Millis,
    },
    /// A permanent refusal (4xx other than 408/429): no more attempts.
    Failed,
    /// Out of attempts.
    DeadLetter,
}

impl Store {
    /// Earliest due time in the queue, if any.
    pub fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        Ok(self
            .trees()
            .due
            .first()?
            .and_then(|(k, _)| parse_due_key(&k))
            .map(|(at, _)| at))
    }

    /// Number of entries in the due queue (metrics).
    pub fn queue_depth(&self) -> usize {
        self.trees().due.len()
    }

    /// Record an attempt and its outcome; roll the event's status up. Returns the delivery.
    pub fn finish(
        &self,
        id: DeliveryId,
        attempt: AttemptRecord,
        finish: Finish,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let t = self.trees();
        let Some((held, mut d)) = self.lock_delivery(id)? else {
            return Ok(None);
        };
        // The attempt first: if only it survives a crash, the delivery is still due and the
        // next attempt, with the same number, replaces it.
        put(
            &t.attempts,
            &concat(&[&id.to_key(), &attempt.number.to_be_bytes()]),
            &attempt,
        )?;
        d.attempts = d.attempts.max(attempt.number);
        d.last_status_code = attempt.status_code;
        d.last_error = attempt.error;
        d.updated_at = now_ms();
        let (status, next) = match finish {
            Finish::Success => (DeliveryStatus::Success, None),
            Finish::Retry { at } => (DeliveryStatus::Retrying, Some(at)),
            Finish::Failed => (DeliveryStatus::Failed, None),
            Finish::DeadLetter => (DeliveryStatus::DeadLetter, None),
        };
        d.status = status;
        self.move_due(&held, &mut d, next)?;
        self.roll_up(&held, d.event_id, &[])?;
        Ok(Some(d))
    }

    /// Put a delivery back in the queue, due at `at` (manual retry, or an endpoint paused by its
    /// circuit breaker). A finished delivery starts a fresh round of attempts.
    pub fn requeue(
        &self,
        id: DeliveryId,
        at: Millis,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let Some((held, mut d)) = self.lock_delivery(id)? else {
            return Ok(None);
        };
        if d.status.is_final() {
            d.status = DeliveryStatus::Pending;
        }
        d.updated_at = now_ms();
        self.move_due(&held, &mut d, Some(at))?;
        self.roll_up(&held, d.event_id, &[])?;
        Ok(Some(d))
    }

    /// Add deliveries to an existing event (replay) and queue them now.
    pub fn add_deliveries(&self, event: EventId, new: &[DeliveryRecord]) -> Result<(), StoreError> {
        let t = self.trees();
        let held = self.lock(event);
        if !t.events.contains_key(event.to_key())? {
            return Ok(());
        }
        // Records and index first, due entries last: a crash in between leaves deliveries the
        // event does not list yet, which nothing reads.
        for d in new {
            put(&t.deliveries, &d.id.to_key(), d)?;
            t.idx_endpoint.insert(endpoint_key(d), &event.to_key())?;
        }
        self.roll_up(&held, event, &new.iter().map(|d| d.id).collect::<Vec<_>>())?;
        for d in new {
            if let Some(at) = d.next_attempt_at {
                t.due.insert(due_key(at, d.id), &[])?;
            }
        }
        Ok(())
    }

    /// At start: whatever was in flight when the last process stopped is due now.
    pub(super) fn recover_in_flight(&self, now: Millis) -> Result<usize, StoreError> {
        let mut recovered = 0;
        let entries: Vec<sled::IVec> = self.trees().due.iter().keys().collect::<Result<_, _>>()?;
        for k in entries {
            let Some((_, id)) = parse_due_key(&k) else {
                continue;
            };
            let Some((held, mut d)) = self.lock_delivery(id)? else {
                continue;
            };
            if d.status == DeliveryStatus::InFlight {
                d.status = if d.attempts > 0 {
                    DeliveryStatus::Retrying
                } else {
                    DeliveryStatus::Pending
                };
                self.move_due(&held, &mut d, Some(now))?;
                recovered += 1;
            }
        }
        if recovered > 0 {
            tracing::info!(
                recovered,
                "deliveries in flight at the last stop are due again"
            );
        }
        Ok(recovered)
    }

    /// A delivery with its event's lock held, read under that lock (a writer may have changed it
    /// between the first read, which finds the event, and the lock).
    pub(super) fn lock_delivery(
        &self,
        id: DeliveryId,
    ) -> Result<Option<(Held<'_>, DeliveryRecord)>, StoreError> {
        let Some(event) = self.delivery(id)?.map(|d| d.event_id) else {
            return Ok(None);
        };
        let held = self.lock(event);
        Ok(self.delivery(id)?.map(|d| (held, d)))
    }

    /// Write `d` with its next attempt at `next`, moving its due entry in crash-safe order
    /// (see the module docs). `d.next_attempt_at` is where the entry is now.
    pub(super) fn move_due(
        &self,
        _held: &Held<'_>,
        d: &mut DeliveryRecord,
        next: Option<Millis>,
    ) -> Result<(), StoreError> {
        let t = self.trees();
        let old = d.next_attempt_at;
        if let Some(at) = next {
            t.due.insert(due_key(at, d.id), &[])?;
        }
        d.next_attempt_at = next;
        put(&t.deliveries, &d.id.to_key(), d)?;
        if let Some(at) = old.filter(|at| Some(*at) != next) {
            t.due.remove(due_key(at, d.id))?;
        }
        Ok(())
    }

    /// Recompute an event's status from its deliveries after appending `added` to them, and
    /// keep the status index in step. Index entry first, then the record, then the old entry:
    /// a crash in between leaves an extra index entry, which listings check against the record.
    fn roll_up(
        &self,
        _held: &Held<'_>,
        event: EventId,
        added: &[DeliveryId],
    ) -> Result<(), StoreError> {
        let t = self.trees();
        let Some(mut e) = self.event(event)? else {
            return Ok(());
        };
        e.delivery_ids.extend_from_slice(added);
        let mut statuses = Vec::with_capacity(e.delivery_ids.len());
        for id in &e.delivery_ids {
            if let Some(d) = self.delivery(*id)? {
                statuses.push(d.status);
            }
        }
        let status = rollup(&statuses);
        if status == e.status && added.is_empty() {
            return Ok(());
        }
        let old = e.status;
        if status != old {
            t.idx_status.insert(status_key(status, event), &[])?;
            e.status = status;
        }
        put(&t.events, &event.to_key(), &e)?;
        if status != old {
            t.idx_status.remove(status_key(old, event))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ingest, keys, new_event, open};
    use super::*;

    fn attempt(n: u32) -> AttemptRecord {
        AttemptRecord {
            number: n,
            started_at: 0,
            duration_ms: 1,
            status_code: Some(200),
            response_body: vec![],
            error: None,
        }
    }

    #[test]
    fn concurrent_finishes_of_one_event_roll_up_once() {
        let (_dir, store) = open();
        let new = new_event("github", 16, None, 10);
        let (event, ids) = (new.event.id, new.event.delivery_ids.clone());
        ingest(&store, new);
        std::thread::scope(|s| {
            for (i, id) in ids.iter().enumerate() {
                let store = store.clone();
                s.spawn(move || {
                    store
                        .claim_attempt(10, *id, 1000 + i as u64)
                        .expect("claim")
                        .expect("due");
                    store
                        .finish(*id, attempt(1), Finish::Success)
                        .expect("finish");
                });
            }
        });
        let e = store.event(event).expect("read").expect("stored");
        assert_eq!(e.status, EventStatus::Delivered);
        let index: Vec<Vec<u8>> = keys(&store.trees().idx_status)
            .into_iter()
            .filter(|k| k.ends_with(&event.to_key()))
            .collect();
        assert_eq!(index, vec![status_key(EventStatus::Delivered, event)]);
        assert_eq!(store.queue_depth(), 0, "every due entry and lease is gone");
    }

    /// Races between writers of one event are too rare to catch by chance, so check the
    /// mechanism itself: each writer waits for the event's lock.
    #[test]
    fn writers_of_one_event_wait_for_its_lock() {
        let (_dir, store) = open();
        let new = new_event("github", 3, None, 10);
        let (event, ids) = (new.event.id, new.event.delivery_ids.clone());
        ingest(&store, new);
        type Op = Box<dyn FnOnce(&Store) + Send>;
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        let ops: Vec<(&str, Op)> = vec![
            ("claim", Box::new(move |s| drop(s.claim_attempt(10, a, 99)))),
            (
                "finish",
                Box::new(move |s| drop(s.finish(b, attempt(1), Finish::Success))),
            ),
            ("requeue", Box::new(move |s| drop(s.requeue(c, 20)))),
            ("delete", Box::new(move |s| drop(s.delete_event(event)))),
        ];
        for (name, op) in ops {
            let held = store.lock(event);
            let (tx, rx) = std::sync::mpsc::channel();
            let s = store.clone();
            let worker = std::thread::spawn(move || {
                op(&s);
                let _ = tx.send(());
            });
            assert!(
                rx.recv_timeout(std::time::Duration::from_millis(200))
                    .is_err(),
                "{name} ran while another writer held the event"
            );
            drop(held);
            assert!(
                rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok(),
                "{name} never ran"
            );
            worker.join().expect("no panic");
        }
        assert!(store.event(event).expect("read").is_none(), "deleted last");
    }

    #[test]
    fn a_stale_due_entry_is_dropped_not_claimed() {
        let (_dir, store) = open();
        let new = new_event("github", 1, None, 10);
        let id = new.deliveries[0].id;
        ingest(&store, new);
        store.requeue(id, 50).expect("requeue").expect("exists");
        // As if a crash kept the old entry while the record moved on.
        store
            .trees()
            .due
            .insert(due_key(10, id), &[])
            .expect("insert");
        assert!(store.claim_attempt(10, id, 500).expect("claim").is_none());
        assert!(!store
            .trees()
            .due
            .contains_key(due_key(10, id))
            .expect("read"));
        let c = store
            .claim_attempt(50, id, 500)
            .expect("claim")
            .expect("due");
        assert_eq!(c.delivery.status, DeliveryStatus::InFlight);
        assert_eq!(store.next_due().expect("read"), Some(500));
    }

    #[test]
    fn in_flight_deliveries_are_due_again_after_a_restart() {
        let (dir, store) = open();
        let new = new_event("github", 2, None, 10);
        let ids = new.event.delivery_ids.clone();
        ingest(&store, new);
        store
            .claim_attempt(10, ids[0], u64::MAX / 2)
            .expect("claim");
        drop(store);
        let store = Store::open(&dir.path().join("sled")).expect("reopen");
        let d = store.delivery(ids[0]).expect("read").expect("stored");
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert!(d.next_attempt_at.is_some_and(|at| at < u64::MAX / 2));
        assert_eq!(store.queue_depth(), 2);
    }
}
