//! The store handle: the trees, the per-event locks, the group committer, and the two signals
//! every writer shares (deliveries made due, writes refused).

use std::sync::{Arc, OnceLock};

use sled::Tree;
use tokio::sync::Notify;

use super::claims::Claims;
use super::commit::Committer;
use super::compact::Compactor;
use super::errors::StoreError;
use super::fresh::Fresh;
use super::locks::{EventLocks, Held};
use super::model::{now_ms, EventId, Millis};

/// The trees. `idx_*` are secondary indexes, written in crash-safe order with their record.
#[derive(Clone)]
pub(crate) struct Trees {
    /// event id -> [`EventRecord`](super::EventRecord) and, since layout 3, its
    /// [`Payload`](super::Payload) (see `event_value`)
    pub events: Tree,
    /// event id -> [`Payload`](super::Payload), for events written before layout 3
    pub payloads: Tree,
    /// delivery id -> [`DeliveryRecord`](super::DeliveryRecord)
    pub deliveries: Tree,
    /// delivery id + attempt number (u32 BE) -> [`AttemptRecord`](super::AttemptRecord)
    pub attempts: Tree,
    /// due time (ms, u64 BE) + delivery id -> ()
    pub due: Tree,
    /// namespace \0 source \0 key -> event id + expiry (ms, u64 BE)
    pub idempotency: Tree,
    /// namespace \0 source \0 event id -> ()
    pub idx_source: Tree,
    /// status code + event id -> (), and group entries (see `groups`; the pending ones kept
    /// short by `compact`)
    pub idx_status: Tree,
    /// namespace \0 endpoint \0 delivery id -> event id
    pub idx_endpoint: Tree,
    /// Group entries of the events whose payload is stored with their record, until the
    /// payload retention sweep has taken it (see `expiry`).
    pub idx_payload: Tree,
    /// delivery id -> attempt count (u32 BE) when its current round of attempts began
    /// (see `queue.rs`)
    pub rounds: Tree,
    /// Bookkeeping: the last ingest group's intent (see `commit.rs`).
    pub meta: Tree,
    /// namespace \0 endpoint \0 -> [`EndpointPause`](super::EndpointPause)
    pub pauses: Tree,
    /// The links between dead-lettered deliveries and their dead-letter deliveries (see
    /// `keys::link_key`).
    pub dead_letters: Tree,
}

/// Shared between the handle and the commit thread.
#[derive(Clone, Default)]
pub(crate) struct Signals {
    /// Notified whenever a write makes a delivery due now: the delivery engine waits on it, so
    /// no caller that queues work can forget to wake it.
    pub due: Arc<Notify>,
    /// Set by the first failed flush; from then on every write is refused with its reason.
    pub failed: Arc<OnceLock<String>>,
}

impl Signals {
    /// Wake the engine when a delivery is due at `at`, if that is now or past. Later due times
    /// are found by the engine's own timer.
    pub fn made_due(&self, at: Millis) {
        if at <= now_ms() {
            self.due.notify_one();
        }
    }

    pub fn writable(&self) -> Result<(), StoreError> {
        match self.failed.get() {
            Some(reason) => Err(StoreError::WritesRefused(reason.clone())),
            None => Ok(()),
        }
    }
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub db: sled::Db,
    pub trees: Trees,
    pub locks: EventLocks,
    pub claims: Claims,
    /// Due entries of deliveries ingest just wrote (see `fresh`).
    pub fresh: Arc<Fresh>,
    pub signals: Signals,
    pub committer: Committer,
    /// Takes finished events out of the pending index's group entries (see `compact`).
    pub compactor: Compactor,
}

impl Store {
    pub(crate) fn trees(&self) -> &Trees {
        &self.inner.trees
    }

    pub(crate) fn signals(&self) -> &Signals {
        &self.inner.signals
    }

    /// Hold an event's write lock (see `locks.rs`). Every read-modify-write takes it, so this is
    /// also where writes are refused once a flush has failed.
    pub(crate) fn lock(&self, event: EventId) -> Result<Held<'_>, StoreError> {
        self.inner.signals.writable()?;
        Ok(self.inner.locks.lock(event))
    }

    /// Resolves when a write has made a delivery due now (or one was made due since the last
    /// call). The delivery engine's wake-up.
    pub async fn due_now(&self) {
        self.inner.signals.due.notified().await
    }

    /// Why the store refuses writes, once a flush has failed (it does until the process
    /// restarts: sled keeps an IO error for good, and the next open repairs the last group).
    pub fn refusing(&self) -> Option<String> {
        self.inner.signals.failed.get().cloned()
    }

    /// Flush everything to disk (used at shutdown; ingest flushes through the committer).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        Ok(())
    }
}
