//! Removing events: one on request (`DELETE /events/{id}`), many by the retention sweeps.
//!
//! Each removal takes the event's lock and removes what hangs off the event before the event
//! record itself, so a crash part-way leaves an event listed with less attached, which the next
//! removal finishes.

use super::codec::put;
use super::errors::StoreError;
use super::handle::Store;
use super::keys::*;
use super::model::*;
use super::reads::distinct_segments;

impl Store {
    /// Delete an event with its payload, deliveries, attempts, queue and index entries.
    /// `false` when there was no such event.
    ///
    /// Everything of the event goes first and its record last, so a crash part-way leaves the
    /// event listed with less attached, and deleting it again (by hand or by retention, which
    /// walks the event records) finishes the job.
    pub fn delete_event(&self, id: EventId) -> Result<bool, StoreError> {
        let t = self.trees();
        let _held = self.lock(id)?;
        let key = id.to_key();
        let Some(e) = self.event(id)? else {
            return Ok(false);
        };
        for did in &e.delivery_ids {
            if let Some(d) = self.stored_delivery(*did)? {
                if let Some(at) = d.next_attempt_at {
                    t.due.remove(due_key(at, *did))?;
                }
                t.idx_endpoint.remove(endpoint_key(&d))?;
            }
            t.deliveries.remove(did.to_key())?;
            t.rounds.remove(did.to_key())?;
            t.dead_letters.remove(link_key(LINK_FROM, *did))?;
            t.dead_letters.remove(link_key(LINK_TO, *did))?;
            // Attempts are written under the event's lock, which is held: none can appear now.
            for k in t.attempts.scan_prefix(did.to_key()).keys() {
                t.attempts.remove(k?)?;
            }
        }
        t.payloads.remove(key)?;
        t.idx_source
            .remove(source_key(&e.namespace, &e.source, id))?;
        t.idx_status.remove(status_key(e.status, id))?;
        if let Some(k) = &e.idempotency_key {
            let ikey = claim_key(&e.namespace, &e.source, k);
            if let Some(v) = t.idempotency.get(&ikey)? {
                if EventId::from_key(&v) == Some(id) {
                    // Only if still ours: a new claim for the key is not this event's to drop.
                    let _ = t
                        .idempotency
                        .compare_and_swap(&ikey, Some(&v), None::<&[u8]>)?;
                }
            }
        }
        t.events.remove(key)?;
        Ok(true)
    }

    /// Retention, step one: drop the payloads of events received before `before` (at most
    /// `batch` of them) and mark those events `payload_expired`.
    pub fn expire_payloads(&self, before: Millis, batch: usize) -> Result<usize, StoreError> {
        let t = self.trees();
        let end = ulid_floor(before).0.to_be_bytes();
        let keys: Vec<sled::IVec> = t
            .payloads
            .range(..end)
            .keys()
            .take(batch)
            .collect::<Result<_, _>>()?;
        for k in &keys {
            let Some(id) = EventId::from_key(k) else {
                t.payloads.remove(k)?;
                continue;
            };
            let _held = self.lock(id)?;
            // Mark first: a crash before the removal leaves a payload retention removes next
            // time, never an event that claims a payload it no longer has.
            if let Some(mut e) = self.event(id)? {
                if !e.payload_expired {
                    e.payload_expired = true;
                    put(&t.events, k, &e)?;
                }
            }
            t.payloads.remove(k)?;
        }
        Ok(keys.len())
    }

    /// Retention, step two: delete events (and everything of theirs) received before `before`,
    /// at most `batch` of them.
    pub fn expire_events(&self, before: Millis, batch: usize) -> Result<usize, StoreError> {
        let end = ulid_floor(before).0.to_be_bytes();
        let ids: Vec<EventId> = self
            .trees()
            .events
            .range(..end)
            .keys()
            .take(batch)
            .filter_map(|k| k.map(|k| EventId::from_key(&k)).transpose())
            .collect::<Result<_, _>>()?;
        let mut deleted = 0;
        for id in ids {
            if self.delete_event(id)? {
                deleted += 1;
            }
        }
        self.drop_old_groups(before)?;
        Ok(deleted)
    }

    /// Drop the group index entries whose members are all gone: keyed (by their largest
    /// member) below both `before` and the oldest event kept. Returns how many went.
    fn drop_old_groups(&self, before: Millis) -> Result<usize, StoreError> {
        let t = self.trees();
        let oldest = match t.events.first()? {
            Some((k, _)) => EventId::from_key(&k).map_or(0, |id| id.0 .0),
            None => u128::MAX,
        };
        let below = oldest.min(ulid_floor(before).0);
        let mut dropped = 0;
        for tree in [&t.idx_source, &t.idx_endpoint] {
            for ns in distinct_segments(tree, &[])? {
                for name in distinct_segments(tree, &concat(&[ns.as_bytes(), &[0]]))? {
                    dropped += drop_below(tree, &name_prefix(&ns, &name), below)?;
                }
            }
        }
        for status in EventStatus::ALL {
            dropped += drop_below(&t.idx_status, &[status.code()], below)?;
        }
        Ok(dropped)
    }

    /// Retention, housekeeping: forget idempotency keys whose window closed before `now`.
    /// Scans at most `batch` keys after `after` and returns where to resume (`None`: done).
    pub fn expire_idempotency(
        &self,
        now: Millis,
        after: Option<Vec<u8>>,
        batch: usize,
    ) -> Result<(usize, Option<Vec<u8>>), StoreError> {
        self.signals().writable()?;
        let t = self.trees();
        let range = match &after {
            Some(a) => t.idempotency.range::<&[u8], _>((
                std::ops::Bound::Excluded(a.as_slice()),
                std::ops::Bound::Unbounded,
            )),
            None => t.idempotency.iter(),
        };
        let mut expired = 0;
        let mut last = None;
        let mut scanned = 0;
        for item in range.take(batch) {
            let (k, v) = item?;
            if claim_expiry(&v) <= now {
                // Only if unchanged since read: a concurrent ingest may have claimed it again.
                if t.idempotency
                    .compare_and_swap(&k, Some(&v), None::<&[u8]>)?
                    .is_ok()
                {
                    expired += 1;
                }
            }
            scanned += 1;
            last = Some(k.to_vec());
        }
        let resume = if scanned < batch { None } else { last };
        Ok((expired, resume))
    }
}

/// Remove `tree`'s entries under `prefix` keyed below the id `below`.
fn drop_below(tree: &sled::Tree, prefix: &[u8], below: u128) -> Result<usize, StoreError> {
    let end = concat(&[prefix, &below.to_be_bytes()]);
    let keys: Vec<sled::IVec> = tree
        .range(prefix.to_vec()..end)
        .keys()
        .collect::<Result<_, _>>()?;
    for k in &keys {
        tree.remove(k)?;
    }
    Ok(keys.len())
}
