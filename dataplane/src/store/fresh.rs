//! Due entries of the deliveries ingest just wrote, held in memory instead of in the `due`
//! tree: one insert and one removal fewer per delivery on the hot path.
//!
//! Nothing is lost in a crash: such a delivery's record says when it is due, and its event is
//! in the pending index from the same commit group, so the next open finds every delivery of a
//! pending event that has no entry in the tree and makes it due from here again
//! (`Store::rebuild_fresh`). Past [`CAP`] entries, ingest writes to the tree as before, so a
//! receiver that is down for hours costs no more memory than that.

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::model::{DeliveryId, Millis};

/// Most entries held (about 60 bytes each).
pub(crate) const CAP: usize = 65_536;

#[derive(Default)]
pub(crate) struct Fresh {
    entries: Mutex<BTreeSet<(Millis, DeliveryId)>>,
}

impl Fresh {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(Millis, DeliveryId)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hold `entries`, as many as fit under [`CAP`]; returns the ones that did not.
    pub fn add(&self, entries: Vec<(Millis, DeliveryId)>) -> Vec<(Millis, DeliveryId)> {
        let mut set = self.lock();
        let room = CAP.saturating_sub(set.len());
        let mut rest = entries;
        let spill = rest.split_off(room.min(rest.len()));
        set.extend(rest);
        spill
    }

    pub fn contains(&self, at: Millis, id: DeliveryId) -> bool {
        self.lock().contains(&(at, id))
    }

    /// Whether it was held.
    pub fn remove(&self, at: Millis, id: DeliveryId) -> bool {
        self.lock().remove(&(at, id))
    }

    /// Entries due at or before `now`, strictly after `after`, earliest first, at most `limit`,
    /// leaving out those `skip` says.
    pub fn due(
        &self,
        now: Millis,
        after: Option<(Millis, DeliveryId)>,
        limit: usize,
        skip: impl Fn(DeliveryId) -> bool,
    ) -> Vec<(Millis, DeliveryId)> {
        let set = self.lock();
        let start = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        set.range((start, std::ops::Bound::Unbounded))
            .take_while(|(at, _)| *at <= now)
            .filter(|(_, id)| !skip(*id))
            .take(limit)
            .copied()
            .collect()
    }

    /// The earliest due time strictly after `now`.
    pub fn next_after(&self, now: Millis) -> Option<Millis> {
        let set = self.lock();
        set.range((now.saturating_add(1), DeliveryId(ulid::Ulid(0)))..)
            .next()
            .map(|(at, _)| *at)
    }

    pub fn first(&self) -> Option<Millis> {
        self.lock().first().map(|(at, _)| *at)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> DeliveryId {
        DeliveryId(ulid::Ulid(n))
    }

    #[test]
    fn entries_come_due_in_order_and_page_after_a_cursor() {
        let f = Fresh::default();
        assert!(f
            .add(vec![(20, id(2)), (10, id(1)), (30, id(3))])
            .is_empty());
        assert_eq!(
            f.due(25, None, 10, |_| false),
            vec![(10, id(1)), (20, id(2))]
        );
        assert_eq!(
            f.due(25, Some((10, id(1))), 10, |_| false),
            vec![(20, id(2))]
        );
        assert_eq!(f.due(25, None, 10, |d| d == id(1)), vec![(20, id(2))]);
        assert_eq!(f.next_after(20), Some(30));
        assert_eq!(f.next_after(30), None);
        f.remove(10, id(1));
        assert_eq!(f.first(), Some(20));
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn what_does_not_fit_is_handed_back() {
        let f = Fresh::default();
        let many: Vec<_> = (0..CAP as u128 + 3).map(|n| (1, id(n))).collect();
        let spill = f.add(many);
        assert_eq!(spill.len(), 3);
        assert_eq!(f.len(), CAP);
        assert_eq!(f.add(vec![(1, id(u128::MAX))]).len(), 1);
    }
}
