//! The delivery queue: which deliveries are due, claiming one for an attempt, recording the
//! attempt's outcome, and keeping each event's status rolled up from its deliveries.
//!
//! A claimed delivery keeps a due entry at its lease expiry, so a crash mid-attempt leaves it
//! due again: delivery is at-least-once, never at-most-once.

use sled::transaction::{Transactional, TransactionalTree};

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
    /// Deliveries due at or before `now`, earliest first.
    pub fn due(&self, now: Millis, limit: usize) -> Result<Vec<(Millis, DeliveryId)>, StoreError> {
        let end = due_key(now, DeliveryId(ulid::Ulid(u128::MAX)));
        let mut out = Vec::new();
        for item in self.trees().due.range(..=end).take(limit) {
            let (k, _) = item?;
            let at = k
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            if let (Some(at), Some(id)) = (at, k.get(8..).and_then(DeliveryId::from_key)) {
                out.push((at, id));
            }
        }
        Ok(out)
    }

    /// Earliest due time in the queue, if any.
    pub fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        Ok(self.trees().due.first()?.and_then(|(k, _)| {
            k.get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
        }))
    }

    /// Number of entries in the due queue (metrics).
    pub fn queue_depth(&self) -> usize {
        self.trees().due.len()
    }

    /// Take a due delivery for an attempt: mark it in flight and move its due entry to the
    /// lease expiry. `None` when it is no longer due (taken, finished, or deleted).
    pub fn claim(
        &self,
        due_at: Millis,
        id: DeliveryId,
        lease_until: Millis,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let t = self.trees();
        let claimed = (&t.deliveries, &t.due).transaction(|(deliveries, due)| {
            let old_key = due_key(due_at, id);
            if due.remove(old_key)?.is_none() {
                return Ok(None);
            }
            let Some(mut d) = tx_get::<DeliveryRecord>(deliveries, &id.to_key())? else {
                return Ok(None);
            };
            if d.status.is_final() {
                return Ok(None);
            }
            d.status = DeliveryStatus::InFlight;
            d.next_attempt_at = Some(lease_until);
            d.updated_at = now_ms();
            tx_put(deliveries, &id.to_key(), &d)?;
            due.insert(due_key(lease_until, id), &[])?;
            Ok(Some(d))
        })?;
        Ok(claimed)
    }

    /// Record an attempt and its outcome; roll the event's status up. Returns the delivery.
    pub fn finish(
        &self,
        id: DeliveryId,
        attempt: AttemptRecord,
        finish: Finish,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let t = self.trees();
        let trees = (&t.events, &t.deliveries, &t.attempts, &t.due, &t.idx_status);
        let done = trees.transaction(|(events, deliveries, attempts, due, idx_status)| {
            let Some(mut d) = tx_get::<DeliveryRecord>(deliveries, &id.to_key())? else {
                return Ok(None);
            };
            if let Some(at) = d.next_attempt_at {
                due.remove(due_key(at, id))?;
            }
            d.attempts = d.attempts.max(attempt.number);
            d.last_status_code = attempt.status_code;
            d.last_error = attempt.error.clone();
            d.updated_at = now_ms();
            let (status, next) = match finish {
                Finish::Success => (DeliveryStatus::Success, None),
                Finish::Retry { at } => (DeliveryStatus::Retrying, Some(at)),
                Finish::Failed => (DeliveryStatus::Failed, None),
                Finish::DeadLetter => (DeliveryStatus::DeadLetter, None),
            };
            d.status = status;
            d.next_attempt_at = next;
            if let Some(at) = next {
                due.insert(due_key(at, id), &[])?;
            }
            tx_put(deliveries, &id.to_key(), &d)?;
            tx_put(
                attempts,
                &concat(&[&id.to_key(), &attempt.number.to_be_bytes()]),
                &attempt,
            )?;
            roll_up(events, deliveries, idx_status, d.event_id, &[])?;
            Ok(Some(d))
        })?;
        Ok(done)
    }

    /// Put a delivery back in the queue, due at `at` (manual retry, or an endpoint paused by its
    /// circuit breaker). A finished delivery starts a fresh round of attempts.
    pub fn requeue(
        &self,
        id: DeliveryId,
        at: Millis,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let t = self.trees();
        let trees = (&t.events, &t.deliveries, &t.due, &t.idx_status);
        let done = trees.transaction(|(events, deliveries, due, idx_status)| {
            let Some(mut d) = tx_get::<DeliveryRecord>(deliveries, &id.to_key())? else {
                return Ok(None);
            };
            if let Some(old) = d.next_attempt_at {
                due.remove(due_key(old, id))?;
            }
            if d.status.is_final() {
                d.status = DeliveryStatus::Pending;
            }
            d.next_attempt_at = Some(at);
            d.updated_at = now_ms();
            due.insert(due_key(at, id), &[])?;
            tx_put(deliveries, &id.to_key(), &d)?;
            roll_up(events, deliveries, idx_status, d.event_id, &[])?;
            Ok(Some(d))
        })?;
        Ok(done)
    }

    /// Add deliveries to an existing event (replay) and queue them now.
    pub fn add_deliveries(&self, event: EventId, new: &[DeliveryRecord]) -> Result<(), StoreError> {
        let t = self.trees();
        let trees = (
            &t.events,
            &t.deliveries,
            &t.due,
            &t.idx_status,
            &t.idx_endpoint,
        );
        trees.transaction(|(events, deliveries, due, idx_status, idx_endpoint)| {
            for d in new {
                let did = d.id.to_key();
                tx_put(deliveries, &did, d)?;
                idx_endpoint.insert(
                    concat(&[&name_prefix(&d.namespace, &d.endpoint), &did]),
                    &event.to_key(),
                )?;
                if let Some(at) = d.next_attempt_at {
                    due.insert(due_key(at, d.id), &[])?;
                }
            }
            roll_up(
                events,
                deliveries,
                idx_status,
                event,
                &new.iter().map(|d| d.id).collect::<Vec<_>>(),
            )?;
            Ok(())
        })?;
        Ok(())
    }

    /// At start: whatever was in flight when the last process stopped is due now.
    pub(super) fn recover_in_flight(&self, now: Millis) -> Result<usize, StoreError> {
        let mut recovered = 0;
        for (at, id) in self.due(Millis::MAX, usize::MAX)? {
            let Some(d) = self.delivery(id)? else {
                continue;
            };
            if d.status == DeliveryStatus::InFlight && at > now {
                let t = self.trees();
                (&t.deliveries, &t.due)
                    .transaction(|(deliveries, due)| {
                        let mut d = d.clone();
                        due.remove(due_key(at, id))?;
                        d.status = if d.attempts > 0 {
                            DeliveryStatus::Retrying
                        } else {
                            DeliveryStatus::Pending
                        };
                        d.next_attempt_at = Some(now);
                        due.insert(due_key(now, id), &[])?;
                        tx_put(deliveries, &id.to_key(), &d)?;
                        Ok(())
                    })
                    .map_err(StoreError::from)?;
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
}

/// Recompute an event's status from its deliveries (inside the caller's transaction), after
/// appending `added` delivery ids to it.
fn roll_up(
    events: &TransactionalTree,
    deliveries: &TransactionalTree,
    idx_status: &TransactionalTree,
    event: EventId,
    added: &[DeliveryId],
) -> TxResult<()> {
    let Some(mut e) = tx_get::<EventRecord>(events, &event.to_key())? else {
        return Ok(());
    };
    e.delivery_ids.extend_from_slice(added);
    let mut statuses = Vec::with_capacity(e.delivery_ids.len());
    for id in &e.delivery_ids {
        if let Some(d) = tx_get::<DeliveryRecord>(deliveries, &id.to_key())? {
            statuses.push(d.status);
        }
    }
    let status = rollup(&statuses);
    if status == e.status && added.is_empty() {
        return Ok(());
    }
    if status != e.status {
        idx_status.remove(status_key(e.status, event))?;
        idx_status.insert(status_key(status, event), &[])?;
        e.status = status;
    }
    tx_put(events, &event.to_key(), &e)?;
    Ok(())
}
