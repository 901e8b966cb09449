//! Durable storage in sled, laid out by mechanism:
//!
//! - `model`: what is stored (events, payloads, deliveries, attempts) and the ids;
//! - `keys` and `codec`: how keys and values are laid out on disk;
//! - `event_value`: an event's value, its record, its first deliveries and its payload;
//! - `delivery_value`: a delivery's value, its record followed by its latest attempt;
//! - `groups`: the index entries ingest writes once per commit group;
//! - `handle`: the trees, the per-event `locks`, and the signals every writer shares;
//! - `commit`: ingest, by group commit, and the repair of a group a crash cut short;
//! - `compact`: the pending index's group entries, rid of the events that finished;
//! - `queue`: the delivery queue (claim, finish, requeue, replay, recovery at open);
//! - `claims`: which deliveries have an attempt running, in memory;
//! - `fresh`: the due entries of deliveries ingest just wrote, in memory;
//! - `reads`: single records and the REST listings;
//! - `expiry`: deletion on request and the retention sweeps;
//! - `handoff`: export and import of whole events, for a pod handing its queue to a peer;
//! - `pauses`: endpoints their receiver paused (410 Gone), until resumed.
//!
//! The hot paths write single keys (the indexes of what ingest fixes, once per group), in an
//! order chosen so that whatever prefix of them survives a crash is consistent or repaired at
//! the next open; the per-event locks stand in for
//! transactions against concurrent writers. Why not sled transactions: each one takes a
//! database-wide lock and writes sled's IO buffer out synchronously (see `locks.rs`).
//! `docs/architecture.md` has the whole crash-order argument.

mod claims;
mod codec;
mod commit;
mod compact;
mod delivery_value;
mod errors;
mod event_value;
mod expiry;
mod fresh;
mod groups;
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
mod worker;

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

/// The on-disk layout this code writes. 1: an index key per event, and claims written to disk.
/// 2: the indexes of what ingest fixes (source, endpoint, a status other than pending) as one
/// entry per commit group (`groups`), and claims held in memory (`claims`).
/// 3: the payload in the event's own value, after the record (`event_value`), with a group
/// entry per commit group for the payload retention sweep (`idx_payload`).
/// 4: pending events as group entries too, compacted as they finish (`compact`), where a key
/// per event was written at ingest and removed at the finish.
/// 5: an event's status rolled up from its deliveries' records when read, where each change
/// rewrote the whole value (record and payload), and the statuses it finishes in as group
/// entries the compactor writes; a delivery's latest attempt in its value (`delivery_value`),
/// where the attempt was a key of its own written beside it.
/// 6: a new event's first deliveries in its value, between the record and the payload, under
/// ids the event's id reserved (`DeliveryId::initial`), where each was a key of its own written
/// at ingest; a delivery's first change writes it under its own key as before.
/// Each layout reads what the older ones wrote (layout-1 keys as groups of one, records without
/// a payload by the `payloads` tree), so an older store opens as it is.
pub const LAYOUT: u8 = 6;
const LAYOUT_KEY: &[u8] = b"layout";

/// The layout a store was written in; a store of a newer one is refused. A store that does not
/// say is layout 1 (which did not; a new store is empty, so reading it as layout 1 costs
/// nothing).
fn stored_layout(meta: &sled::Tree) -> Result<u8, StoreError> {
    match meta.get(LAYOUT_KEY)?.and_then(|v| v.first().copied()) {
        Some(found) if found > LAYOUT => Err(StoreError::NewerLayout {
            found,
            supported: LAYOUT,
        }),
        Some(found) => Ok(found),
        None => Ok(1),
    }
}

/// sled's page cache by default, in MiB (`--store-cache-mb`).
pub const DEFAULT_CACHE_MB: u64 = 48;

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
            idx_payload: db.open_tree("idx_payload")?,
            rounds: db.open_tree("delivery_rounds")?,
            meta: db.open_tree("meta")?,
            pauses: db.open_tree("endpoint_pauses")?,
            dead_letters: db.open_tree("dead_letters")?,
        };
        let layout = stored_layout(&trees.meta)?;
        commit::recover_last_group(&trees)?;
        compact::verify_all(&trees)?;
        let signals = Signals::default();
        let fresh = Arc::new(fresh::Fresh::default());
        let committer =
            commit::Committer::start(db.clone(), trees.clone(), signals.clone(), fresh.clone());
        let compactor = compact::Compactor::start(trees.clone(), signals.clone());
        let store = Store {
            inner: Arc::new(Inner {
                db,
                trees,
                locks: locks::EventLocks::new(),
                claims: claims::Claims::default(),
                fresh,
                compactor,
                signals,
                committer,
            }),
        };
        store.rebuild_fresh()?;
        store.recover_in_flight(now_ms(), layout < 2)?;
        if layout < LAYOUT {
            // Only once what the older layout left is converted: a crash before this opens it
            // as the older layout again.
            let meta = &store.trees().meta;
            meta.insert(LAYOUT_KEY, &[LAYOUT])?;
            meta.flush()?;
        }
        Ok(store)
    }
}

#[cfg(test)]
mod layout_tests {
    use super::testing::{ingest, new_event};
    use super::*;

    /// A copy of the store in `fixtures/<name>` (see its README), opened.
    fn open_fixture(name: &str) -> (tempfile::TempDir, std::path::PathBuf, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sled");
        std::fs::create_dir_all(path.join("blobs")).expect("mkdir");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/store/fixtures")
            .join(name);
        for f in ["conf", "db"] {
            std::fs::copy(fixture.join(f), path.join(f)).expect("copy fixture");
        }
        let store = Store::open(&path).expect("an older store opens");
        (dir, path, store)
    }

    fn open_v1_fixture() -> (tempfile::TempDir, std::path::PathBuf, Store) {
        open_fixture("v1")
    }

    /// Writes the fixture store the README of `fixtures/` describes, with the code of the day,
    /// into `$HOOKMESH_STORE_FIXTURE` (then copy its `conf` and `db` into `fixtures/vN`).
    #[test]
    #[ignore = "writes a fixture; HOOKMESH_STORE_FIXTURE=DIR cargo test -p hookmesh-dataplane --lib write_store_fixture -- --ignored"]
    fn write_store_fixture() {
        let Ok(dir) = std::env::var("HOOKMESH_STORE_FIXTURE") else {
            return;
        };
        let store = Store::open(Path::new(&dir)).expect("open");
        let pause = || std::thread::sleep(std::time::Duration::from_millis(5));
        // The oldest: unrouted, its payload removed by retention.
        let c = new_event("github", 0, None, now_ms());
        let c_id = c.event.id;
        ingest(&store, c);
        pause();
        store
            .expire_payloads(c_id.timestamp_ms() + 1, 10)
            .expect("expire");
        pause();
        // Two deliveries: ep0 succeeds after one attempt, ep1 is retrying far in the future.
        // Its claim's window closes 60 s after the epoch.
        let mut a = new_event("github", 2, Some("delivery-1"), 0);
        a.payload.body = br#"{"action":"opened","n":1}"#.to_vec();
        let (d0, d1) = (a.deliveries[0].id, a.deliveries[1].id);
        ingest(&store, a);
        let attempt = |code: u16| AttemptRecord {
            number: 1,
            started_at: now_ms(),
            duration_ms: 3,
            status_code: Some(code),
            response_body: b"ok".to_vec(),
            error: None,
        };
        for (id, code, finish) in [
            (d0, 200, Finish::Success),
            (
                d1,
                503,
                Finish::Retry {
                    at: 9_000_000_000_000,
                },
            ),
        ] {
            let claimed = store
                .claim_attempt(0, id, now_ms() + 60_000)
                .expect("claim");
            assert!(claimed.is_some(), "claim {id}");
            store.finish(id, attempt(code), finish).expect("finish");
        }
        pause();
        // One delivery due now, never attempted.
        ingest(&store, new_event("stripe", 1, None, now_ms()));
        store.flush().expect("flush");
    }

    fn listed(store: &Store, f: EventFilter) -> Vec<EventRecord> {
        store
            .list_events(&f, None, 100, usize::MAX)
            .expect("list")
            .items
    }

    fn sources(store: &Store, source: &str) -> usize {
        listed(
            store,
            EventFilter {
                source: Some(source.into()),
                ..Default::default()
            },
        )
        .len()
    }

    #[test]
    fn a_layout_1_store_opens_and_reads_as_it_was_written() {
        let (_dir, _path, store) = open_v1_fixture();
        reads_as_written(&store);
    }

    #[test]
    fn a_layout_2_store_opens_and_reads_as_it_was_written() {
        let (_dir, _path, store) = open_fixture("v2");
        reads_as_written(&store);
    }

    #[test]
    fn a_layout_3_store_opens_and_reads_as_it_was_written() {
        let (_dir, _path, store) = open_fixture("v3");
        reads_as_written(&store);
    }

    #[test]
    fn a_layout_4_store_opens_and_reads_as_it_was_written() {
        let (_dir, _path, store) = open_fixture("v4");
        reads_as_written(&store);
    }

    #[test]
    fn a_layout_5_store_opens_and_reads_as_it_was_written() {
        let (_dir, _path, store) = open_fixture("v5");
        reads_as_written(&store);
    }

    /// What `fixtures/README.md` says each fixture holds, read with today's code; then a new
    /// event beside the old ones, and retention on both kinds of payload.
    fn reads_as_written(store: &Store) {
        let all = listed(store, EventFilter::default());
        assert_eq!(all.len(), 3);
        // Newest first: stripe, then the github event with deliveries, then the unrouted one.
        let (b, a, c) = (&all[0], &all[1], &all[2]);
        assert_eq!((b.source.as_str(), a.source.as_str()), ("stripe", "github"));
        assert_eq!(sources(store, "github"), 2);
        assert_eq!(sources(store, "stripe"), 1);
        let status = |s: EventStatus| {
            listed(
                store,
                EventFilter {
                    statuses: vec![s],
                    ..Default::default()
                },
            )
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
        };
        assert_eq!(status(EventStatus::Unrouted), vec![c.id]);
        assert_eq!(status(EventStatus::Pending), vec![b.id, a.id]);
        let to_ep1 = listed(
            store,
            EventFilter {
                endpoint: Some("ep1".into()),
                ..Default::default()
            },
        );
        assert_eq!(to_ep1.iter().map(|e| e.id).collect::<Vec<_>>(), vec![a.id]);
        let page = store
            .list_deliveries(
                &DeliveryFilter {
                    endpoint: Some("ep0".into()),
                    ..Default::default()
                },
                None,
                10,
                usize::MAX,
            )
            .expect("deliveries");
        assert_eq!(page.items.len(), 2, "a's and b's deliveries to ep0");

        let body = store.payload(a.id).expect("read").expect("payload").body;
        assert_eq!(body, br#"{"action":"opened","n":1}"#);
        assert!(c.payload_expired && store.payload(c.id).expect("read").is_none());
        let ds = store.deliveries_of(a.id).expect("deliveries");
        assert_eq!(ds[0].status, DeliveryStatus::Success);
        assert_eq!(store.attempts(ds[0].id).expect("attempts").len(), 1);
        assert_eq!(ds[1].status, DeliveryStatus::Retrying);
        assert_eq!(ds[1].next_attempt_at, Some(9_000_000_000_000));
        // b's delivery is still due.
        let b_delivery = b.delivery_ids[0];
        let due = store.due_after(now_ms(), None, 10).expect("due");
        assert!(due.iter().any(|(_, id)| *id == b_delivery));

        // Its idempotency claim is there (its window closed long ago: the fixture's clock is
        // the epoch), and new events list beside the old ones.
        let claim = store
            .trees()
            .idempotency
            .get(keys::claim_key("default", "github", "delivery-1"))
            .expect("read")
            .expect("claim");
        assert_eq!(EventId::from_key(&claim), Some(a.id));
        let fresh = new_event("github", 1, None, now_ms());
        let fresh_id = fresh.event.id;
        ingest(store, fresh);
        let github = listed(
            store,
            EventFilter {
                source: Some("github".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            github.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![fresh_id, a.id, c.id]
        );
        assert_eq!(
            store.trees().meta.get(b"layout").expect("read").as_deref(),
            Some(&[LAYOUT][..])
        );

        // A status roll-up rewrites an old record in its own format, payload where it was.
        let ep1 = ds[1].id;
        assert!(store.requeue(ep1, 0).expect("requeue").is_some());
        assert!(store
            .claim_attempt(0, ep1, now_ms() + 60_000)
            .expect("claim")
            .is_some());
        let ok = AttemptRecord {
            number: 2,
            started_at: now_ms(),
            duration_ms: 1,
            status_code: Some(200),
            response_body: Vec::new(),
            error: None,
        };
        store.finish(ep1, ok, Finish::Success).expect("finish");
        let a_now = store.event(a.id).expect("read").expect("event");
        assert_eq!(a_now.status, EventStatus::Delivered);
        assert_eq!(
            store.payload(a.id).expect("read").expect("payload").body,
            br#"{"action":"opened","n":1}"#
        );

        // Retention takes the old payloads from their tree and the new one from its record.
        store.expire_payloads(now_ms() + 1, 100).expect("sweep");
        for id in [a.id, b.id, fresh_id] {
            assert!(store.payload(id).expect("read").is_none(), "{id}");
            assert!(
                store
                    .event(id)
                    .expect("read")
                    .expect("event")
                    .payload_expired
            );
        }
        assert!(store.trees().payloads.is_empty());
    }

    #[test]
    fn a_store_of_a_newer_layout_is_refused_with_what_to_do() {
        let (_dir, path, store) = open_v1_fixture();
        store
            .trees()
            .meta
            .insert(b"layout", &[LAYOUT + 1])
            .expect("write");
        store.flush().expect("flush");
        drop(store);
        // sled may hold the directory's lock a moment after the last handle goes.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let err = loop {
            match Store::open(&path) {
                Err(e @ StoreError::NewerLayout { .. }) => break e,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => panic!("expected a refusal: {:?}", other.err()),
            }
        };
        let text = err.to_string();
        assert!(matches!(err, StoreError::NewerLayout { found, .. } if found == LAYOUT + 1));
        assert!(
            text.contains(&format!("layout {}", LAYOUT + 1)) && text.contains("--data-dir"),
            "{text}"
        );
    }
}
