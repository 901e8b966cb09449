//! Durable storage in sled, laid out by mechanism:
//!
//! - `model`: what is stored (events, payloads, deliveries, attempts) and the ids;
//! - `keys` and `codec`: how keys and values are laid out on disk;
//! - `handle`: the trees, the per-event `locks`, and the signals every writer shares;
//! - `commit`: ingest, by group commit, and the repair of a group a crash cut short;
//! - `queue`: the delivery queue (claim, finish, requeue, replay, recovery at open);
//! - `reads`: single records and the REST listings;
//! - `expiry`: deletion on request and the retention sweeps;
//! - `handoff`: export and import of whole events, for a pod handing its queue to a peer;
//! - `pauses`: endpoints their receiver paused (410 Gone), until resumed.
//!
//! The hot paths write single keys, in an order chosen so that whatever prefix of them survives
//! a crash is consistent or repaired at the next open; the per-event locks stand in for
//! transactions against concurrent writers. Why not sled transactions: each one takes a
//! database-wide lock and writes sled's IO buffer out synchronously (see `locks.rs`).
//! `docs/architecture.md` has the whole crash-order argument.

mod codec;
mod commit;
mod errors;
mod expiry;
mod handle;
mod handoff;
mod keys;
mod locks;
pub mod model;
mod pauses;
mod queue;
mod reads;
#[cfg(test)]
mod testing;

use std::path::Path;
use std::sync::Arc;

pub use commit::{IdempotencyClaim, IngestOutcome, NewEvent};
pub use errors::StoreError;
pub use handle::Store;
pub use handoff::ExportedEvent;
pub use model::*;
pub use pauses::EndpointPause;
pub use queue::{Claimed, Finish};
pub use reads::{DeliveryFilter, EventFilter, Page, PAYLOAD_COST, SCAN_BUDGET};

use handle::{Inner, Signals, Trees};

/// sled's page cache by default, in MiB (`--store-cache-mb`).
pub const DEFAULT_CACHE_MB: u64 = 64;

impl Store {
    /// Open (or create) the store under `dir`: repair the last ingest group if a crash cut it
    /// short, then make due again whatever was in flight when the process last stopped.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, DEFAULT_CACHE_MB << 20)
    }

    /// [`Store::open`] with a page cache of `cache_bytes`.
    pub fn open_with(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(500))
            .open()?;
        let trees = Trees {
            events: db.open_tree("events")?,
            payloads: db.open_tree("payloads")?,
            deliveries: db.open_tree("deliveries")?,
            attempts: db.open_tree("attempts")?,
            due: db.open_tree("due")?,
            idempotency: db.open_tree("idempotency")?,
            idx_source: db.open_tree("idx_source")?,
            idx_status: db.open_tree("idx_status")?,
            idx_endpoint: db.open_tree("idx_endpoint")?,
            rounds: db.open_tree("delivery_rounds")?,
            meta: db.open_tree("meta")?,
            pauses: db.open_tree("endpoint_pauses")?,
            dead_letters: db.open_tree("dead_letters")?,
        };
        commit::recover_last_group(&trees)?;
        let signals = Signals::default();
        let committer = commit::Committer::start(db.clone(), trees.clone(), signals.clone());
        let store = Store {
            inner: Arc::new(Inner {
                db,
                trees,
                locks: locks::EventLocks::new(),
                signals,
                committer,
            }),
        };
        store.recover_in_flight(now_ms())?;
        Ok(store)
    }
}
