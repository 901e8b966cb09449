//! Durable storage in sled.
//!
//! One tree per job (DESIGN section 7). Keys are big-endian so range scans run in time order.
//! Writes that belong together are one multi-tree sled transaction. Ingest writes go through the
//! group committer ([`commit`]): concurrent requests share one transaction and one fsync, and
//! each caller hears back only after that flush, so a 202 always means "on disk".

mod codec;
mod commit;
pub mod deliver_ops;
pub mod model;
pub mod query;
mod queue;

use std::path::Path;
use std::sync::Arc;

use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Tree;

pub use commit::{IdempotencyClaim, IngestOutcome, NewEvent};
pub use model::*;
pub use queue::Finish;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("record encoding error: {0}")]
    Codec(String),
    #[error("the store is shutting down")]
    Closed,
}

impl From<sled::transaction::TransactionError<StoreError>> for StoreError {
    fn from(e: sled::transaction::TransactionError<StoreError>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
        }
    }
}

pub(crate) type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// The trees. `idx_*` are secondary indexes kept in the same transaction as their record.
#[derive(Clone)]
pub(crate) struct Trees {
    /// event id -> [`EventRecord`]
    pub events: Tree,
    /// event id -> [`Payload`]
    pub payloads: Tree,
    /// delivery id -> [`DeliveryRecord`]
    pub deliveries: Tree,
    /// delivery id + attempt number (u32 BE) -> [`AttemptRecord`]
    pub attempts: Tree,
    /// due time (ms, u64 BE) + delivery id -> ()
    pub due: Tree,
    /// namespace \0 source \0 key -> event id + expiry (ms, u64 BE)
    pub idempotency: Tree,
    /// namespace \0 source \0 event id -> ()
    pub idx_source: Tree,
    /// status code + event id -> ()
    pub idx_status: Tree,
    /// namespace \0 endpoint \0 delivery id -> event id
    pub idx_endpoint: Tree,
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    trees: Trees,
    committer: commit::Committer,
}

impl Store {
    /// Open (or create) the store under `dir`. Deliveries that were in flight when the process
    /// last stopped are made due again.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(256 * 1024 * 1024)
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
        };
        let committer = commit::Committer::start(db.clone(), trees.clone());
        let store = Store {
            inner: Arc::new(Inner {
                db,
                trees,
                committer,
            }),
        };
        store.recover_in_flight(now_ms())?;
        Ok(store)
    }

    pub(crate) fn trees(&self) -> &Trees {
        &self.inner.trees
    }

    /// Flush everything to disk (used at shutdown; ingest flushes through the committer).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        Ok(())
    }

    /// Store a new event with its payload and deliveries; resolves after the fsync.
    pub async fn ingest(&self, new: NewEvent) -> Result<IngestOutcome, StoreError> {
        self.inner.committer.submit(new).await
    }

    pub fn event(&self, id: EventId) -> Result<Option<EventRecord>, StoreError> {
        get(&self.inner.trees.events, &id.to_key())
    }

    pub fn payload(&self, id: EventId) -> Result<Option<Payload>, StoreError> {
        get(&self.inner.trees.payloads, &id.to_key())
    }

    pub fn delivery(&self, id: DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        get(&self.inner.trees.deliveries, &id.to_key())
    }

    /// Deliveries of one event, oldest first.
    pub fn deliveries_of(&self, event: EventId) -> Result<Vec<DeliveryRecord>, StoreError> {
        let Some(e) = self.event(event)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(e.delivery_ids.len());
        for id in e.delivery_ids {
            if let Some(d) = self.delivery(id)? {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Attempts of one delivery, in order.
    pub fn attempts(&self, delivery: DeliveryId) -> Result<Vec<AttemptRecord>, StoreError> {
        self.inner
            .trees
            .attempts
            .scan_prefix(delivery.to_key())
            .map(|item| codec::decode(&item?.1))
            .collect()
    }

    /// Number of events stored (for metrics and tests).
    pub fn event_count(&self) -> usize {
        self.inner.trees.events.len()
    }
}

pub(crate) fn get<T: serde::de::DeserializeOwned>(
    tree: &Tree,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    tree.get(key)?.map(|v| codec::decode(&v)).transpose()
}

pub(crate) fn tx_get<T: serde::de::DeserializeOwned>(
    tree: &TransactionalTree,
    key: &[u8],
) -> TxResult<Option<T>> {
    match tree.get(key)? {
        Some(v) => codec::decode(&v)
            .map(Some)
            .map_err(ConflictableTransactionError::Abort),
        None => Ok(None),
    }
}

pub(crate) fn tx_put<T: serde::Serialize>(
    tree: &TransactionalTree,
    key: &[u8],
    value: &T,
) -> TxResult<()> {
    let bytes = codec::encode(value).map_err(ConflictableTransactionError::Abort)?;
    tree.insert(key, bytes)?;
    Ok(())
}

/// `namespace \0 name \0` prefix of the per-source and per-endpoint keys.
pub(crate) fn name_prefix(namespace: &str, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(namespace.len() + name.len() + 2);
    k.extend_from_slice(namespace.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

pub(crate) fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

pub(crate) fn due_key(at: Millis, id: DeliveryId) -> Vec<u8> {
    concat(&[&at.to_be_bytes(), &id.to_key()])
}

pub(crate) fn status_key(status: EventStatus, id: EventId) -> Vec<u8> {
    concat(&[&[status.code()], &id.to_key()])
}
