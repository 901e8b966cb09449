//! Durable storage in sled.
//!
//! One tree per job (DESIGN section 7). Keys are big-endian so range scans run in time order.
//! Ingest writes go through the group committer ([`commit`]): concurrent requests share one
//! flush, and each caller hears back only after it, so a 202 always means "on disk".
//!
//! The hot paths (ingest, claim, finish, requeue) write single keys, in an order chosen so that
//! whatever prefix of them survives a crash is consistent or repaired at the next open; the
//! per-event locks of [`locks`] stand in for transactions against concurrent writers. Why not
//! sled transactions: each one takes a database-wide lock and writes sled's IO buffer out
//! synchronously (see `locks.rs`).

mod codec;
mod commit;
pub mod deliver_ops;
mod locks;
pub mod model;
pub mod query;
mod queue;

use std::path::Path;
use std::sync::Arc;

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
    /// delivery id -> attempt count (u32 BE) when its current round of attempts began
    /// (see `deliver_ops.rs`)
    pub rounds: Tree,
    /// Bookkeeping: the last ingest group's intent (see `commit.rs`).
    pub meta: Tree,
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    trees: Trees,
    locks: locks::EventLocks,
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
            rounds: db.open_tree("delivery_rounds")?,
            meta: db.open_tree("meta")?,
        };
        commit::recover_last_group(&trees)?;
        let committer = commit::Committer::start(db.clone(), trees.clone());
        let store = Store {
            inner: Arc::new(Inner {
                db,
                trees,
                locks: locks::EventLocks::new(),
                committer,
            }),
        };
        store.recover_in_flight(now_ms())?;
        Ok(store)
    }

    pub(crate) fn trees(&self) -> &Trees {
        &self.inner.trees
    }

    /// Hold an event's write lock (see [`locks`]).
    pub(crate) fn lock(&self, event: EventId) -> locks::Held<'_> {
        self.inner.locks.lock(event)
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

pub(crate) fn put<T: serde::Serialize>(
    tree: &Tree,
    key: &[u8],
    value: &T,
) -> Result<(), StoreError> {
    tree.insert(key, codec::encode(value)?)?;
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

/// The due time and delivery of a `due` key.
pub(crate) fn parse_due_key(k: &[u8]) -> Option<(Millis, DeliveryId)> {
    let at = k
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)?;
    Some((at, k.get(8..).and_then(DeliveryId::from_key)?))
}

/// `namespace \0 source \0 event id`, the event's key in `idx_source`.
pub(crate) fn source_key(namespace: &str, source: &str, id: EventId) -> Vec<u8> {
    concat(&[&name_prefix(namespace, source), &id.to_key()])
}

/// `namespace \0 source \0 idempotency key`, a claim's key in `idempotency`.
pub(crate) fn claim_key(namespace: &str, source: &str, key: &str) -> Vec<u8> {
    concat(&[&name_prefix(namespace, source), key.as_bytes()])
}

/// When a claim (event id + expiry, both big-endian) stops counting; 0 when unreadable.
pub(crate) fn claim_expiry(claim: &[u8]) -> Millis {
    claim
        .get(16..24)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// `namespace \0 endpoint \0 delivery id`, the delivery's key in `idx_endpoint`.
pub(crate) fn endpoint_key(d: &DeliveryRecord) -> Vec<u8> {
    concat(&[&name_prefix(&d.namespace, &d.endpoint), &d.id.to_key()])
}

pub(crate) fn status_key(status: EventStatus, id: EventId) -> Vec<u8> {
    concat(&[&[status.code()], &id.to_key()])
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("sled")).expect("open");
        (dir, store)
    }

    /// An event from `source` with `fan_out` deliveries due at `at`.
    pub fn new_event(source: &str, fan_out: usize, key: Option<&str>, at: Millis) -> NewEvent {
        let id = EventId::generate();
        let deliveries: Vec<DeliveryRecord> = (0..fan_out)
            .map(|i| DeliveryRecord::new(id, "default", &format!("ep{i}"), None, at))
            .collect();
        NewEvent {
            event: EventRecord {
                id,
                namespace: "default".into(),
                source: source.into(),
                event_type: None,
                origin: Origin::Webhook,
                received_at: at,
                signature_valid: None,
                signature_error: None,
                idempotency_key: key.map(str::to_string),
                content_type: None,
                body_len: 2,
                correlation_id: id.to_string(),
                status: if fan_out == 0 {
                    EventStatus::Unrouted
                } else {
                    EventStatus::Pending
                },
                payload_expired: false,
                config_hash: String::new(),
                delivery_ids: deliveries.iter().map(|d| d.id).collect(),
            },
            payload: Payload {
                headers: vec![("content-type".into(), b"application/json".to_vec())],
                body: b"{}".to_vec(),
            },
            deliveries,
            idempotency: key.map(|k| IdempotencyClaim {
                key: k.into(),
                window_ms: 60_000,
            }),
        }
    }

    pub fn ingest(store: &Store, new: NewEvent) -> IngestOutcome {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(store.ingest(new))
            .expect("ingest")
    }

    /// Every key of a tree, for comparing whole-store states.
    pub fn keys(tree: &Tree) -> Vec<Vec<u8>> {
        tree.iter()
            .keys()
            .map(|k| k.expect("key").to_vec())
            .collect()
    }
}
