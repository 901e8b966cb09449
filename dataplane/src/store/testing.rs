//! Helpers for the store's unit tests.

use sled::Tree;

use super::*;

pub fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("sled")).expect("open");
    (dir, store)
}

/// A new event from `source` with `fan_out` deliveries due at `at`, planned as ingest plans
/// them (under ids the event's id reserved).
pub fn new_event(source: &str, fan_out: usize, key: Option<&str>, at: Millis) -> NewEvent {
    let id = EventId::generate();
    let deliveries: Vec<DeliveryRecord> = (0..fan_out)
        .map(|i| DeliveryRecord::initial(id, i, "default", &format!("ep{i}"), None, at))
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

/// Open a store that was just dropped. sled's background flusher can hold the database's file
/// lock for a moment after the last handle goes, so a reopen right away may find it taken.
pub fn reopen(path: &std::path::Path) -> Store {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match Store::open(path) {
            Ok(store) => return store,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
}

/// What comes before the member ids in an index tree's keys.
#[derive(Clone, Copy)]
pub enum KeyPrefix {
    /// Nothing (`idx_payload`).
    None,
    /// A status byte (`idx_status`).
    Status,
    /// `namespace \0 name \0` (`idx_source`, `idx_endpoint`).
    Named,
}

/// Every member of every entry of an index tree.
pub fn index_members(tree: &Tree, width: groups::Width, prefix: KeyPrefix) -> Vec<groups::Member> {
    let mut out = Vec::new();
    for item in tree.iter() {
        let (k, v) = item.expect("read");
        let skip = match prefix {
            KeyPrefix::None => 0,
            KeyPrefix::Status => 1,
            KeyPrefix::Named => k
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == 0)
                .nth(1)
                .map_or(0, |(i, _)| i + 1),
        };
        out.extend(groups::members(&k[skip..], &v, width).expect("index entry"));
    }
    out
}
