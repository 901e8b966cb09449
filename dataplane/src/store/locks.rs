//! Per-event write locks.
//!
//! sled transactions (and batches) take a database-wide exclusive lock and write out sled's IO
//! buffer, with a synchronous `sync_file_range`, every time; two of them per delivery capped the
//! engine at under 2k deliveries/s. So the hot paths write single keys instead, and what a
//! transaction gave them (no lost update when two writers touch one event) comes from here: every
//! read-modify-write of an event, its deliveries, their due entries and its index entries holds
//! that event's lock. All writers live in this one process, so that is all the exclusion needed.
//! Crash atomicity comes from write order instead, as each operation documents.

use std::sync::{Mutex, MutexGuard};

use super::model::EventId;

/// More stripes than attempts that can finish at once, so unrelated events rarely share one.
const STRIPES: usize = 256;

pub(crate) struct EventLocks {
    stripes: Vec<Mutex<()>>,
}

/// Proof that the caller holds an event's lock, for helpers that must only run under it.
pub(crate) struct Held<'a> {
    _guard: MutexGuard<'a, ()>,
}

impl EventLocks {
    pub fn new() -> Self {
        EventLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Lock the event. Never hold it across an `.await`, and never take a second stripe while
    /// holding one.
    pub fn lock(&self, event: EventId) -> Held<'_> {
        // The low bits of a ULID are random, so they spread events evenly over the stripes.
        let i = (event.0 .0 as usize) % STRIPES;
        // A poisoned stripe only means another writer panicked mid-update; the store's own
        // ordering keeps the records usable, so carry on rather than wedge every later writer.
        let guard = self.stripes[i].lock().unwrap_or_else(|p| p.into_inner());
        Held { _guard: guard }
    }
}
