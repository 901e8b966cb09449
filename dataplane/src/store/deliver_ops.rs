//! Store operations the delivery engine needs beyond the queue basics in `queue.rs`: paging
//! through the due queue past deliveries it cannot send yet, claiming with the attempt round,
//! and pulling a paused endpoint's deliveries forward when it comes back.

use super::*;

// The `rounds` tree: a delivery that finished (success, failed, dead letter) and is put back in
// the queue by a manual retry starts a fresh round of `maxAttempts`; attempt numbers keep growing
// so earlier attempt records stay, hence the offset it keeps.

/// A claimed delivery and where its current round of attempts began.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub delivery: DeliveryRecord,
    /// Attempts made before this round; the round's attempt count is `attempts - round_start`.
    pub round_start: u32,
}

impl Store {
    /// Due entries at or before `now`, strictly after `after`, earliest first.
    pub fn due_after(
        &self,
        now: Millis,
        after: Option<(Millis, DeliveryId)>,
        limit: usize,
    ) -> Result<Vec<(Millis, DeliveryId)>, StoreError> {
        let end = due_key(now, DeliveryId(ulid::Ulid(u128::MAX)));
        let range = match after {
            Some((at, _)) if at > now => return Ok(Vec::new()),
            Some((at, id)) => {
                let start = due_key(at, id);
                self.trees().due.range(start..=end)
            }
            None => self.trees().due.range(..=end),
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in range {
            let (k, _) = item?;
            let Some(entry) = parse_due_key(&k) else {
                continue;
            };
            if Some(entry) == after {
                continue;
            }
            out.push(entry);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The earliest due time strictly after `now`, if any.
    pub fn next_due_after(&self, now: Millis) -> Result<Option<Millis>, StoreError> {
        let start = due_key(now.saturating_add(1), DeliveryId(ulid::Ulid(0)));
        match self.trees().due.range(start..).next() {
            Some(item) => Ok(parse_due_key(&item?.0).map(|(at, _)| at)),
            None => Ok(None),
        }
    }

    /// Take a due delivery for an attempt: mark it in flight and move its due entry to the
    /// lease expiry. `None` when it is no longer due (taken, finished, moved or deleted); a
    /// stale entry is removed on the way. Also tells where the delivery's current round of
    /// attempts began: a delivery queued again after it finished (`pending` with attempts behind
    /// it) starts a new round here.
    pub fn claim_attempt(
        &self,
        due_at: Millis,
        id: DeliveryId,
        lease_until: Millis,
    ) -> Result<Option<Claimed>, StoreError> {
        let t = self.trees();
        let (held, mut d) = match self.lock_delivery(id)? {
            Some((held, d)) if !d.status.is_final() && d.next_attempt_at == Some(due_at) => {
                (held, d)
            }
            // Deleted, finished, or moved since this entry was written: the entry is stale.
            // Bound, not dropped, so the event stays locked while the entry goes.
            _stale => {
                t.due.remove(due_key(due_at, id))?;
                return Ok(None);
            }
        };
        let round_start = if d.status == DeliveryStatus::Pending && d.attempts > 0 {
            t.rounds.insert(id.to_key(), &d.attempts.to_be_bytes())?;
            d.attempts
        } else {
            match t.rounds.get(id.to_key())? {
                Some(v) => v
                    .as_ref()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Codec("bad round record".into()))?,
                None => 0,
            }
        };
        d.status = DeliveryStatus::InFlight;
        d.updated_at = now_ms();
        self.move_due(&held, &mut d, Some(lease_until))?;
        Ok(Some(Claimed {
            delivery: d,
            round_start,
        }))
    }

    /// Make every waiting delivery of one endpoint due at `now` (the endpoint was paused,
    /// disabled or missing, and is back). Returns how many moved.
    pub fn pull_forward(
        &self,
        namespace: &str,
        endpoint: &str,
        now: Millis,
    ) -> Result<usize, StoreError> {
        let mut moved = 0;
        for item in self
            .trees()
            .idx_endpoint
            .scan_prefix(name_prefix(namespace, endpoint))
        {
            let (k, _) = item?;
            let Some(id) = k
                .len()
                .checked_sub(16)
                .and_then(|at| DeliveryId::from_key(&k[at..]))
            else {
                continue;
            };
            let Some(d) = self.delivery(id)? else {
                continue;
            };
            let waiting = matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Retrying);
            if waiting && d.next_attempt_at.is_some_and(|at| at > now) {
                self.requeue(id, now)?;
                moved += 1;
            }
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Finish;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("sled")).expect("open");
        (dir, store)
    }

    fn event_with(store: &Store, n: usize, endpoint: &str, at: Millis) -> Vec<DeliveryId> {
        let id = EventId::generate();
        let deliveries: Vec<DeliveryRecord> = (0..n)
            .map(|_| {
                let mut d = DeliveryRecord::new(id, "default", endpoint, None, at);
                d.next_attempt_at = Some(at);
                d
            })
            .collect();
        let ids = deliveries.iter().map(|d| d.id).collect();
        let event = EventRecord {
            id,
            namespace: "default".into(),
            source: "s".into(),
            event_type: None,
            origin: Origin::Webhook,
            received_at: at,
            signature_valid: None,
            signature_error: None,
            idempotency_key: None,
            content_type: None,
            body_len: 0,
            correlation_id: id.to_string(),
            status: EventStatus::Pending,
            payload_expired: false,
            config_hash: String::new(),
            delivery_ids: vec![],
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(store.ingest(NewEvent {
            event,
            payload: Payload {
                headers: vec![],
                body: vec![],
            },
            deliveries: vec![],
            idempotency: None,
        }))
        .expect("ingest");
        store.add_deliveries(id, &deliveries).expect("add");
        ids
    }

    fn attempt(n: u32) -> AttemptRecord {
        AttemptRecord {
            number: n,
            started_at: 0,
            duration_ms: 1,
            status_code: Some(500),
            response_body: vec![],
            error: None,
        }
    }

    #[test]
    fn due_after_pages_through_in_order() {
        let (_dir, s) = store();
        let mut ids = event_with(&s, 3, "a", 10);
        ids.extend(event_with(&s, 2, "b", 20));
        ids.extend(event_with(&s, 1, "c", 99));
        let first = s.due_after(50, None, 2).expect("due");
        assert_eq!(first.len(), 2);
        let second = s.due_after(50, first.last().copied(), 10).expect("due");
        let all: Vec<DeliveryId> = first.iter().chain(&second).map(|(_, id)| *id).collect();
        assert_eq!(all, ids[..5].to_vec());
        assert_eq!(s.next_due_after(50).expect("next"), Some(99));
        assert_eq!(s.next_due_after(99).expect("next"), None);
    }

    #[test]
    fn a_requeued_finished_delivery_starts_a_new_round() {
        let (_dir, s) = store();
        let id = event_with(&s, 1, "a", 10)[0];
        let c = s.claim_attempt(10, id, 1000).expect("claim").expect("due");
        assert_eq!(c.round_start, 0);
        s.finish(id, attempt(1), Finish::Retry { at: 20 })
            .expect("finish");
        let c = s.claim_attempt(20, id, 1000).expect("claim").expect("due");
        assert_eq!((c.delivery.attempts, c.round_start), (1, 0));
        s.finish(id, attempt(2), Finish::DeadLetter)
            .expect("finish");
        assert!(s.claim_attempt(1000, id, 2000).expect("claim").is_none());
        s.requeue(id, 30).expect("requeue");
        let c = s.claim_attempt(30, id, 1000).expect("claim").expect("due");
        assert_eq!((c.delivery.attempts, c.round_start), (2, 2));
        s.finish(id, attempt(3), Finish::Retry { at: 40 })
            .expect("finish");
        let c = s.claim_attempt(40, id, 1000).expect("claim").expect("due");
        assert_eq!((c.delivery.attempts, c.round_start), (3, 2));
    }

    #[test]
    fn pull_forward_moves_only_waiting_deliveries() {
        let (_dir, s) = store();
        let ids = event_with(&s, 3, "a", 10);
        let other = event_with(&s, 1, "b", 10);
        s.requeue(ids[0], 5000).expect("requeue");
        s.requeue(ids[1], 6000).expect("requeue");
        s.requeue(other[0], 7000).expect("requeue");
        let c = s.claim_attempt(10, ids[2], 9000).expect("claim");
        assert!(c.is_some());
        assert_eq!(s.pull_forward("default", "a", 100).expect("pull"), 2);
        let due: Vec<DeliveryId> = s
            .due_after(100, None, 10)
            .expect("due")
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        assert_eq!(due, vec![ids[0], ids[1]]);
    }
}
