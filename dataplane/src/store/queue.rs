//! The delivery queue: which deliveries are due, recording an attempt's outcome, putting a
//! delivery back in the queue, and keeping each event's status rolled up from its deliveries.
//!
//! The delivery record is the truth about when it is due: a `due` entry counts only while it
//! matches the record's `next_attempt_at`, and any other is stale and dropped when met. That lets
//! a due time move with single-key writes, in crash-safe order: add the new entry, write the
//! record, remove the old entry. Every prefix of that leaves the delivery due exactly when its
//! record says (plus a stale entry at worst).
//!
//! A claim writes nothing (see `claims`): the delivery keeps its record and due entry, so a
//! crash mid-attempt leaves it due again: delivery is at-least-once, never at-most-once.
//!
//! Every write that makes a delivery due now (ingest's commit, replay, retry, requeue, recovery)
//! notifies the engine through the store's due signal, here in `move_due` and
//! `add_deliveries`, so no caller has to remember to.

use super::codec::{get, put};
use super::delivery_value::{self, Latest, LatestAttempt};
use super::errors::StoreError;
use super::event_value::{self, StoredEvent};
use super::groups;
use super::handle::Store;
use super::keys::*;
use super::locks::Held;
use super::model::*;

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

// The `rounds` tree: a delivery that finished (success, failed, dead letter) and is put back in
// the queue by a manual retry starts a fresh round of `maxAttempts`; attempt numbers keep growing
// so earlier attempt records stay, hence the offset it keeps.

/// A delivery read under its event's lock.
pub(super) struct Locked<'a> {
    pub held: Held<'a>,
    pub delivery: DeliveryRecord,
    pub latest: LatestAttempt,
    /// The event's value, when the delivery was read from it (it has not changed since
    /// ingest). Still the event's own while `held` is: every writer of an event's value holds
    /// the event's lock.
    pub event_value: Option<sled::IVec>,
}

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
        let claims = &self.inner.claims;
        let mut out = self
            .inner
            .fresh
            .due(now, after, limit, |id| claims.held(id, now));
        let mut from_tree = 0;
        for item in range {
            let (k, _) = item?;
            let Some(entry) = parse_due_key(&k) else {
                continue;
            };
            if Some(entry) == after || self.inner.claims.held(entry.1, now) {
                continue;
            }
            out.push(entry);
            from_tree += 1;
            if from_tree >= limit {
                break;
            }
        }
        // Both are in order; together, the first `limit`.
        out.sort_unstable();
        out.truncate(limit);
        Ok(out)
    }

    /// The earliest due time strictly after `now`, if any.
    pub fn next_due_after(&self, now: Millis) -> Result<Option<Millis>, StoreError> {
        let start = due_key(now.saturating_add(1), DeliveryId(ulid::Ulid(0)));
        let in_tree = match self.trees().due.range(start..).next() {
            Some(item) => parse_due_key(&item?.0).map(|(at, _)| at),
            None => None,
        };
        Ok(earliest(in_tree, self.inner.fresh.next_after(now)))
    }

    /// Take a due delivery for an attempt until `lease_until` (see `claims`: nothing is
    /// written). `None` when it is no longer due (taken, finished, moved or deleted); a stale
    /// entry is removed on the way. Also tells where the delivery's current round of attempts
    /// began: a delivery queued again after it finished (`pending` with attempts behind it)
    /// starts a new round here.
    pub fn claim_attempt(
        &self,
        due_at: Millis,
        id: DeliveryId,
        lease_until: Millis,
    ) -> Result<Option<Claimed>, StoreError> {
        let t = self.trees();
        let (_held, mut d) = match self.lock_delivery(id)? {
            Some(Locked {
                held, delivery: d, ..
            }) if !d.status.is_final() && d.next_attempt_at == Some(due_at) => (held, d),
            // Deleted, finished, or moved since this entry was written: the entry is stale.
            // Bound, not dropped, so the event stays locked while the entry goes.
            _stale => {
                self.drop_due(due_at, id)?;
                return Ok(None);
            }
        };
        if !self
            .inner
            .claims
            .take(id, d.event_id, lease_until, now_ms())
        {
            return Ok(None);
        }
        let round_start = if d.status == DeliveryStatus::Pending && d.attempts > 0 {
            // Written at every claim of the round's first attempt, so a crash before its
            // outcome is recorded leaves the same value.
            t.rounds.insert(id.to_key(), &d.attempts.to_be_bytes())?;
            d.attempts
        } else if d.attempts == 0 {
            0
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
        let prefix = name_prefix(namespace, endpoint);
        for item in self.trees().idx_endpoint.scan_prefix(&prefix) {
            let (k, v) = item?;
            let members = k
                .get(prefix.len()..)
                .and_then(|tail| groups::members(tail, &v, groups::Width::Pair))
                .unwrap_or_default();
            for (delivery, _) in members {
                moved += self.pull_one(DeliveryId(ulid::Ulid(delivery)), now)?;
            }
        }
        Ok(moved)
    }

    /// Pull one delivery forward to `now` if it waits for later; 1 if it moved.
    fn pull_one(&self, id: DeliveryId, now: Millis) -> Result<usize, StoreError> {
        let Some(d) = self.delivery(id)? else {
            return Ok(0);
        };
        let waiting = matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Retrying);
        if waiting && d.next_attempt_at.is_some_and(|at| at > now) {
            self.requeue(id, now)?;
            return Ok(1);
        }
        Ok(0)
    }

    /// Earliest due time in the queue, if any.
    pub fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        let in_tree = self
            .trees()
            .due
            .first()?
            .and_then(|(k, _)| parse_due_key(&k))
            .map(|(at, _)| at);
        Ok(earliest(in_tree, self.inner.fresh.first()))
    }

    /// Record an attempt and its outcome; roll the event's status up. Returns the delivery.
    pub fn finish(
        &self,
        id: DeliveryId,
        attempt: AttemptRecord,
        finish: Finish,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let Some(mut locked) = self.lock_delivery(id)? else {
            return Ok(None);
        };
        self.record_outcome(&mut locked, attempt, finish, &[])?;
        Ok(Some(locked.delivery))
    }

    /// Dead-letter `id` after `attempt`, and deliver its event to the dead-letter endpoint
    /// `to`: a new delivery, due now, linked to this one both ways. Returns the new delivery.
    pub fn dead_letter_forward(
        &self,
        id: DeliveryId,
        attempt: AttemptRecord,
        to: &str,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let t = self.trees();
        let Some(mut locked) = self.lock_delivery(id)? else {
            return Ok(None);
        };
        let d = &locked.delivery;
        let now = now_ms();
        let new = DeliveryRecord::new(d.event_id, &d.namespace, to, None, now);
        let link = DeadLetterLink {
            of: id,
            endpoint: d.endpoint.clone(),
            status_code: attempt.status_code,
            attempts: attempt.number,
            error: attempt.error.clone(),
        };
        // The new delivery and its links first: a crash before the original is marked leaves
        // the original due, and dead-lettering it again forwards again; the first new record
        // is then one the event does not list, which nothing reads.
        put(&t.deliveries, &new.id.to_key(), &new)?;
        t.idx_endpoint
            .insert(endpoint_key(&new), &d.event_id.to_key())?;
        put(&t.dead_letters, &link_key(LINK_FROM, new.id), &link)?;
        t.dead_letters
            .insert(link_key(LINK_TO, id), &new.id.to_key())?;
        self.record_outcome(&mut locked, attempt, Finish::DeadLetter, &[new.id])?;
        t.due.insert(due_key(now, new.id), &[])?;
        self.signals().made_due(now);
        Ok(Some(new))
    }

    /// For a delivery to a dead-letter endpoint: the delivery it came from and why.
    pub fn dead_letter_of(&self, id: DeliveryId) -> Result<Option<DeadLetterLink>, StoreError> {
        get(&self.trees().dead_letters, &link_key(LINK_FROM, id))
    }

    /// For a dead-lettered delivery: the delivery that took its event to the dead-letter
    /// endpoint, if one did.
    pub fn forwarded_to(&self, id: DeliveryId) -> Result<Option<DeliveryId>, StoreError> {
        Ok(self
            .trees()
            .dead_letters
            .get(link_key(LINK_TO, id))?
            .and_then(|v| DeliveryId::from_key(&v)))
    }

    /// The attempt and what it decided, under the event's lock: one write of the delivery's
    /// value, which holds both (see `delivery_value`).
    fn record_outcome(
        &self,
        locked: &mut Locked<'_>,
        attempt: AttemptRecord,
        finish: Finish,
        added: &[DeliveryId],
    ) -> Result<(), StoreError> {
        let t = self.trees();
        let Locked {
            held,
            delivery: d,
            latest: previous,
            event_value,
        } = locked;
        let (id, before) = (d.id, d.status);
        // The attempt the value held goes to the tree first: if only that survives a crash,
        // the value still holds it too, and listings read it once.
        if let Some(p) = previous.decode()?.filter(|p| p.number != attempt.number) {
            put(&t.attempts, &attempt_key(id, p.number), &p)?;
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
        self.move_due(held, d, next, Latest::New(&attempt))?;
        self.inner.claims.release(id);
        let written = Some((&*d, before));
        self.roll_up(held, d.event_id, event_value.as_ref(), written, added)?;
        Ok(())
    }

    /// Put a delivery back in the queue, due at `at` (manual retry, or an endpoint paused by its
    /// circuit breaker). A finished delivery starts a fresh round of attempts.
    pub fn requeue(
        &self,
        id: DeliveryId,
        at: Millis,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let Some(Locked {
            held,
            delivery: mut d,
            latest,
            event_value,
        }) = self.lock_delivery(id)?
        else {
            return Ok(None);
        };
        let before = d.status;
        if d.status.is_final() {
            // Its event is pending from the write below on: in the pending index before that,
            // so no crash leaves a pending event out of it (handoff and recovery walk it).
            self.trees()
                .idx_status
                .insert(status_key(EventStatus::Pending, d.event_id), &[])?;
            d.status = DeliveryStatus::Pending;
        }
        d.updated_at = now_ms();
        self.move_due(&held, &mut d, Some(at), Latest::Kept(&latest))?;
        self.inner.claims.release(id);
        let written = Some((&d, before));
        self.roll_up(&held, d.event_id, event_value.as_ref(), written, &[])?;
        Ok(Some(d))
    }

    /// Add deliveries to an existing event (replay) and queue them now.
    pub fn add_deliveries(&self, event: EventId, new: &[DeliveryRecord]) -> Result<(), StoreError> {
        let t = self.trees();
        let held = self.lock(event)?;
        if !t.events.contains_key(event.to_key())? {
            return Ok(());
        }
        // Records and index first, due entries last: a crash in between leaves deliveries the
        // event does not list yet, which nothing reads.
        for d in new {
            put(&t.deliveries, &d.id.to_key(), d)?;
            t.idx_endpoint.insert(endpoint_key(d), &event.to_key())?;
        }
        let added: Vec<DeliveryId> = new.iter().map(|d| d.id).collect();
        self.roll_up(&held, event, None, None, &added)?;
        for d in new {
            if let Some(at) = d.next_attempt_at {
                t.due.insert(due_key(at, d.id), &[])?;
                self.signals().made_due(at);
            }
        }
        Ok(())
    }

    /// At start: whatever was in flight when the last process stopped is due now. A claim
    /// writes nothing since layout 2, so such deliveries are simply past due; a store opened
    /// from layout 1 may also hold records marked in flight, made pending or retrying here.
    pub(super) fn recover_in_flight(
        &self,
        now: Millis,
        from_layout_1: bool,
    ) -> Result<usize, StoreError> {
        let due = &self.trees().due;
        // Layout 1 moved a claimed delivery's entry to its lease's end, which may not have come
        // yet: look at every entry then, at the past-due ones otherwise (only to count them).
        let entries: Vec<sled::IVec> = if from_layout_1 {
            due.iter().keys().collect::<Result<_, _>>()?
        } else {
            let past_due = due_key(now, DeliveryId(ulid::Ulid(u128::MAX)));
            due.range(..=past_due).keys().collect::<Result<_, _>>()?
        };
        let mut recovered = 0;
        for k in entries {
            let Some((at, id)) = parse_due_key(&k) else {
                continue;
            };
            if !from_layout_1 {
                recovered += 1;
                continue;
            }
            let Some(Locked {
                held,
                delivery: mut d,
                latest,
                ..
            }) = self.lock_delivery(id)?
            else {
                continue;
            };
            if d.status == DeliveryStatus::InFlight {
                d.status = if d.attempts > 0 {
                    DeliveryStatus::Retrying
                } else {
                    DeliveryStatus::Pending
                };
                self.move_due(&held, &mut d, Some(now), Latest::Kept(&latest))?;
                recovered += 1;
            } else if at <= now {
                recovered += 1;
            }
        }
        if recovered > 0 {
            tracing::info!(
                recovered,
                "deliveries waiting or in flight at the last stop are due again"
            );
        }
        Ok(recovered)
    }

    /// Remove a due entry, wherever it is held.
    pub(super) fn drop_due(&self, at: Millis, id: DeliveryId) -> Result<(), StoreError> {
        if !self.inner.fresh.remove(at, id) {
            self.trees().due.remove(due_key(at, id))?;
        }
        Ok(())
    }

    /// At open: every delivery of a pending event that is due and has no entry in the tree
    /// had one in memory (see `fresh`) when the last process stopped. Returns how many.
    pub(super) fn rebuild_fresh(&self) -> Result<usize, StoreError> {
        let t = self.trees();
        let mut found = Vec::new();
        for event in self.unfinished_events(usize::MAX)? {
            let Some(e) = event_value::load_as_written(t, event)? else {
                continue;
            };
            for &id in &e.record.delivery_ids {
                let Some(d) = e.delivery(t, id)? else {
                    continue;
                };
                if let (false, Some(at)) = (d.status.is_final(), d.next_attempt_at) {
                    if !self.inner.fresh.contains(at, id) && !t.due.contains_key(due_key(at, id))? {
                        found.push((at, id));
                    }
                }
            }
        }
        let n = found.len();
        for (at, id) in self.inner.fresh.add(found) {
            t.due.insert(due_key(at, id), &[])?;
        }
        if n > 0 {
            tracing::info!(
                deliveries = n,
                "due again: deliveries whose due entry was held in memory at the last stop"
            );
            self.signals().due.notify_one();
        }
        Ok(n)
    }

    /// A delivery with its event's lock held, read under that lock (a writer may have changed it
    /// between the first read, which finds the event, and the lock).
    pub(super) fn lock_delivery(&self, id: DeliveryId) -> Result<Option<Locked<'_>>, StoreError> {
        // A delivery's event never changes, so the claim's copy is as good as a read; so is the
        // event an id of a new event's first delivery names, checked against the record below.
        let mut event = match self.inner.claims.event_of(id).or_else(|| id.initial_of()) {
            Some(event) => event,
            None => match self.stored_delivery(id)? {
                Some(d) => d.event_id,
                None => return Ok(None),
            },
        };
        loop {
            let held = self.lock(event)?;
            let Some((d, event_value)) = delivery_value::read_with_event(self.trees(), id)? else {
                return Ok(None);
            };
            if d.record.event_id == event {
                return Ok(Some(Locked {
                    held,
                    delivery: d.record,
                    latest: d.latest,
                    event_value,
                }));
            }
            // An id made before events reserved theirs only looked like one: its record names
            // the event to lock, and the next pass matches.
            event = d.record.event_id;
        }
    }

    /// Write `d` with its next attempt at `next` and `latest` after it, moving its due entry in
    /// crash-safe order (see the module docs). `d.next_attempt_at` is where the entry is now.
    pub(super) fn move_due(
        &self,
        _held: &Held<'_>,
        d: &mut DeliveryRecord,
        next: Option<Millis>,
        latest: Latest<'_>,
    ) -> Result<(), StoreError> {
        let t = self.trees();
        let old = d.next_attempt_at;
        if let Some(at) = next {
            t.due.insert(due_key(at, d.id), &[])?;
        }
        d.next_attempt_at = next;
        t.deliveries
            .insert(d.id.to_key(), delivery_value::encode(d, latest)?)?;
        if let Some(at) = old.filter(|at| Some(*at) != next) {
            self.drop_due(at, d.id)?;
        }
        if let Some(at) = next {
            self.signals().made_due(at);
        }
        Ok(())
    }

    /// Keep the status index in step with an event whose deliveries changed: `written` was
    /// just written, with `before` the status it had until then, and `added` are appended to
    /// the event's deliveries; `read` is the event's value if the caller read it under the same
    /// lock (a first finish does, to find the delivery). The status is not stored (see
    /// `event_value`); the index is:
    /// - the event left pending for the first time: reported to the compactor, which writes it
    ///   into the new status's group entry and takes it out of its ingest group's entry;
    /// - any other change: a key of its own under the new status, then the record when
    ///   deliveries were added (which is what changes the status then), then the old key.
    ///
    /// A crash in between leaves an extra index entry, which listings check against the status,
    /// or a finished member in the pending index, which the compactor's verifying pass indexes.
    fn roll_up(
        &self,
        _held: &Held<'_>,
        event: EventId,
        read: Option<&sled::IVec>,
        written: Option<(&DeliveryRecord, DeliveryStatus)>,
        added: &[DeliveryId],
    ) -> Result<(), StoreError> {
        let t = self.trees();
        let stored = match read {
            Some(raw) => Some(StoredEvent::decode(raw.clone())?),
            None => event_value::load_as_written(t, event)?,
        };
        let Some(stored) = stored else {
            return Ok(());
        };
        let (mut was, mut is) = (Vec::new(), Vec::new());
        for id in &stored.record.delivery_ids {
            // The delivery just written need not be read back.
            match written.filter(|(w, _)| w.id == *id) {
                Some((w, before)) => {
                    was.push(before);
                    is.push(w.status);
                }
                None => {
                    if let Some(s) = stored.delivery_status(t, *id)? {
                        was.push(s);
                        is.push(s);
                    }
                }
            }
        }
        for id in added {
            if let Some(s) = stored.delivery_status(t, *id)? {
                is.push(s);
            }
        }
        let StoredEvent {
            record: mut e,
            tail,
            ..
        } = stored;
        let (old, status) = (
            event_value::rolled_up(&was, e.status),
            event_value::rolled_up(&is, e.status),
        );
        if status == old && added.is_empty() {
            return Ok(());
        }
        let own = |s: EventStatus| status_key(s, event);
        if old == EventStatus::Pending && added.is_empty() {
            // Pending again after it finished once: its own key goes, after the new one.
            if t.idx_status.contains_key(own(old))? {
                t.idx_status.insert(own(status), &[])?;
                t.idx_status.remove(own(old))?;
                self.inner.compactor.left_pending(event, None);
            } else {
                self.inner.compactor.left_pending(event, Some(status));
            }
            return Ok(());
        }
        if status != old {
            t.idx_status.insert(own(status), &[])?;
        }
        if !added.is_empty() {
            e.delivery_ids.extend_from_slice(added);
            e.status = status;
            // The payload stored with the record is carried over as bytes.
            t.events.insert(event.to_key(), tail.rewrite(&e)?)?;
        }
        if status != old {
            // A key of its own, or its ingest group's entry, where it stays stale.
            t.idx_status.remove(own(old))?;
            if old == EventStatus::Pending {
                self.inner.compactor.left_pending(event, None);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
