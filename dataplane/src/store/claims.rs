//! Claims: which deliveries have an attempt running, held in memory only.
//!
//! A claim used to be written to disk (the delivery marked in flight, its due entry moved to the
//! lease's end) so that a crash mid-attempt left it due again. It leaves it due anyway: a claim
//! writes nothing, so the delivery's record and due entry stay as they were, and after a crash
//! every delivery that was not finished is due at its old time, which has passed. In a running
//! process the claim hides the due entry from the engine until the attempt is recorded, or until
//! its lease ends (an attempt that never reported back is tried again).

use std::collections::HashMap;
use std::sync::Mutex;

use super::model::{DeliveryId, EventId, Millis};

/// Far above the engine's attempts in flight (`--delivery-concurrency`, 512 by default).
const FORGET_AT: usize = 16_384;

#[derive(Default)]
pub(crate) struct Claims {
    /// Each claimed delivery's lease end, and its event (so recording the outcome need not
    /// read the delivery to find which event to lock).
    leases: Mutex<HashMap<DeliveryId, (Millis, EventId)>>,
}

impl Claims {
    /// Claim `id` until `until`; `false` when a lease still running at `now` holds it.
    pub fn take(&self, id: DeliveryId, event: EventId, until: Millis, now: Millis) -> bool {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        if leases.get(&id).is_some_and(|(end, _)| *end > now) {
            return false;
        }
        if leases.len() >= FORGET_AT {
            // Claims whose attempt never reported back (a task that panicked): forget them.
            leases.retain(|_, (end, _)| *end > now);
        }
        leases.insert(id, (until, event));
        true
    }

    /// Whether a lease running at `now` holds `id`.
    pub fn held(&self, id: DeliveryId, now: Millis) -> bool {
        let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.get(&id).is_some_and(|(end, _)| *end > now)
    }

    /// The event of a claimed delivery (lease running or not).
    pub fn event_of(&self, id: DeliveryId) -> Option<EventId> {
        let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.get(&id).map(|(_, event)| *event)
    }

    /// The attempt was recorded (or the delivery moved): the claim ends.
    pub fn release(&self, id: DeliveryId) {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_holds_until_released_or_its_lease_ends() {
        let c = Claims::default();
        let (id, event) = (DeliveryId::generate(), EventId::generate());
        assert!(c.take(id, event, 100, 10));
        assert!(!c.take(id, event, 200, 50), "held");
        assert!(c.held(id, 99) && !c.held(id, 100));
        assert_eq!(c.event_of(id), Some(event));
        assert!(c.take(id, event, 300, 100), "the lease ended");
        c.release(id);
        assert!(!c.held(id, 0));
        assert_eq!(c.event_of(id), None);
    }
}
