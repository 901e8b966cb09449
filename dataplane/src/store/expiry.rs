//! Removing events: one on request (`DELETE /events/{id}`), many by the retention sweeps.
//!
//! Each removal takes the event's lock and removes what hangs off the event before the event
//! record itself, so a crash part-way leaves an event listed with less attached, which the next
//! removal finishes.

use super::errors::StoreError;
use super::event_value::StoredEvent;
use super::groups;
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
        let Some(stored) = self.stored_event(id)? else {
            return Ok(false);
        };
        let e = &stored.record;
        for did in &e.delivery_ids {
            if let Some(d) = stored.delivery(t, *did)? {
                if let Some(at) = d.next_attempt_at {
                    self.drop_due(at, *did)?;
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
        if e.status == EventStatus::Pending {
            // Its ingest group's entry still names it.
            self.inner.compactor.left_pending(id, None);
        }
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

    /// Retention, step one: drop the payloads of events received before `before` and mark
    /// those events `payload_expired`. Works through about `batch` events (whole commit groups
    /// at a time) and returns how many it looked at.
    pub fn expire_payloads(&self, before: Millis, batch: usize) -> Result<usize, StoreError> {
        let inline = self.expire_inline_payloads(before, batch)?;
        let older = self.expire_tree_payloads(before, batch.saturating_sub(inline))?;
        Ok(inline + older)
    }

    /// Payloads stored with their record: each commit group's `idx_payload` entry names its
    /// events, and goes once all of them are before `before` and their payloads are dropped.
    fn expire_inline_payloads(&self, before: Millis, batch: usize) -> Result<usize, StoreError> {
        let t = self.trees();
        // An entry is keyed by its largest member: below this, every member is.
        let end = ulid_floor(before).0.to_be_bytes();
        let mut seen = 0;
        while seen < batch {
            let Some(item) = t.idx_payload.range(..end).next() else {
                break;
            };
            let (k, v) = item?;
            let members = groups::members(&k, &v, groups::Width::Id)
                .ok_or_else(|| StoreError::Codec("malformed idx_payload entry".into()))?;
            for (id, _) in members {
                let id = EventId(ulid::Ulid(id));
                let _held = self.lock(id)?;
                // Deleted since, or its payload already gone: nothing to do.
                if let Some(StoredEvent {
                    record: mut e,
                    tail,
                    ..
                }) = self.stored_event(id)?
                {
                    if tail.is_inline() {
                        e.payload_expired = true;
                        t.events.insert(id.to_key(), tail.dropped(&e)?)?;
                    }
                }
                seen += 1;
            }
            // Last: a crash before this leaves the entry, and the next sweep skips what it did.
            t.idx_payload.remove(&k)?;
        }
        Ok(seen)
    }

    /// Payloads of events written before layout 3, in the `payloads` tree.
    fn expire_tree_payloads(&self, before: Millis, batch: usize) -> Result<usize, StoreError> {
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
            if let Some(StoredEvent {
                record: mut e,
                tail,
                ..
            }) = self.stored_event(id)?
            {
                if !e.payload_expired {
                    e.payload_expired = true;
                    t.events.insert(k, tail.rewrite(&e)?)?;
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
        // The payload sweep takes these as it goes; what is left names deleted events only.
        dropped += drop_below(&t.idx_payload, &[], below)?;
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

#[cfg(test)]
mod tests {
    use super::super::testing::{index_members, ingest, new_event, open, KeyPrefix};
    use super::*;

    fn entries(store: &Store) -> Vec<u128> {
        index_members(
            &store.trees().idx_payload,
            groups::Width::Id,
            KeyPrefix::None,
        )
        .into_iter()
        .map(|(id, _)| id)
        .collect()
    }

    /// Payloads stored with their record go by commit group: the record stays, marked, the
    /// group's entry goes; a sweep repeated after a crash that kept the entry changes nothing,
    /// and a member deleted since is skipped.
    #[test]
    fn inline_payloads_expire_by_group_and_a_repeated_sweep_changes_nothing() {
        let (_dir, store) = open();
        let old = new_event("github", 0, None, 10);
        let old_id = old.event.id;
        ingest(&store, old);
        std::thread::sleep(std::time::Duration::from_millis(3));
        let kept = new_event("github", 0, None, 10);
        let kept_id = kept.event.id;
        ingest(&store, kept);
        assert_eq!(entries(&store), vec![old_id.0 .0, kept_id.0 .0]);

        let cutoff = kept_id.timestamp_ms();
        assert_eq!(store.expire_payloads(cutoff, 100).expect("sweep"), 1);
        let e = store.event(old_id).expect("read").expect("kept");
        assert!(e.payload_expired);
        assert_eq!(e.source, "github");
        assert!(store.payload(old_id).expect("read").is_none());
        assert!(store.payload(kept_id).expect("read").is_some());
        assert_eq!(entries(&store), vec![kept_id.0 .0]);

        // A crash after the rewrite, before the entry went: the next sweep finds it again.
        let value = store.trees().events.get(old_id.to_key()).expect("read");
        for (k, v) in groups::entries(&[], groups::Width::Id, vec![(old_id.0 .0, old_id.0 .0)]) {
            store.trees().idx_payload.insert(k, v).expect("write");
        }
        assert_eq!(store.expire_payloads(cutoff, 100).expect("sweep"), 1);
        assert_eq!(
            store.trees().events.get(old_id.to_key()).expect("read"),
            value
        );
        assert_eq!(entries(&store), vec![kept_id.0 .0]);

        // A member deleted before its payload's time: skipped, and its entry goes.
        assert!(store.delete_event(kept_id).expect("delete"));
        assert_eq!(store.expire_payloads(now_ms() + 1, 100).expect("sweep"), 1);
        assert!(entries(&store).is_empty());
        assert_eq!(store.expire_payloads(now_ms() + 1, 100).expect("sweep"), 0);
    }
}
