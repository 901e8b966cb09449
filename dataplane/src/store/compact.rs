//! The pending index kept short. Since layout 4 ingest writes the events it leaves pending as
//! one group entry per commit group (see `groups`), as it does for every other status: one
//! insert per group, where a key per event cost an insert at ingest and a removal when the
//! event finished. A finished event then stays a member of its entry, stale; readers check
//! every member against its record, so a stale member is never listed, only read in vain.
//!
//! This thread takes stale members out. Each event that leaves pending is reported to it (see
//! `queue::roll_up`, `expiry`); a pass takes every reported event out of the entries that hold
//! it, with one walk over the pending entries from the oldest reported event on and no record
//! read. Reports live in memory, so after an open, and when more arrive than it holds, a
//! verifying pass walks every entry and reads each member's record instead, within a budget per
//! pass. Each rewrite is a compare-and-swap so an entry retention dropped meanwhile stays
//! dropped. Taking a member out is safe once its event has left pending even if it comes back:
//! an event that becomes pending again after ingest (a finished delivery sent again) gets a key
//! of its own in the same tree, written before its record.
//!
//! Nothing here is flushed on its own: a rewrite lost in a crash leaves stale members, which
//! the verifying pass after the next open takes out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::errors::StoreError;
use super::event_value;
use super::groups::{self, Width};
use super::handle::{Signals, Trees};
use super::keys::status_key;
use super::model::{EventId, EventStatus};
use super::worker::Worker;

/// A pass runs at least this often, and sooner once this many events were reported.
const INTERVAL: Duration = Duration::from_millis(500);
const NUDGE_AT: usize = 8_192;
/// Reports held between passes, at most (16 bytes each); past it the next pass verifies.
const MAX_REPORTS: usize = 262_144;
/// Members a verifying pass reads, at most; the next pass resumes where this one stopped.
const BUDGET: usize = 16_384;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pass {
    /// Members read.
    pub read: usize,
    /// Members taken out (their events are no longer pending, or gone).
    pub removed: usize,
}

/// Events that left pending since the last pass.
#[derive(Default)]
struct Reports {
    ids: Mutex<Vec<u128>>,
    /// Some were not held: the next pass verifies every entry.
    overflowed: AtomicBool,
}

pub(super) struct Compactor {
    worker: Worker<SyncSender<()>>,
    reports: Arc<Reports>,
}

impl Compactor {
    pub fn start(trees: Trees, signals: Signals) -> Self {
        let (tx, rx) = mpsc::sync_channel(1);
        let reports = Arc::new(Reports::default());
        let held = reports.clone();
        let worker = Worker::spawn(
            "hookmesh-compact",
            "listings stay right, they only read more stale members",
            tx,
            move || {
                // What a crash left stale is not reported: verify once after the open.
                let mut verify = Some(None);
                loop {
                    match rx.recv_timeout(INTERVAL) {
                        Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    if signals.writable().is_err() {
                        continue;
                    }
                    let ids = std::mem::take(
                        &mut *held.ids.lock().unwrap_or_else(PoisonError::into_inner),
                    );
                    if held.overflowed.swap(false, Ordering::Relaxed) {
                        verify = Some(None);
                    }
                    if let Err(e) = take_out(&trees, ids) {
                        // Those reports are gone; a verifying pass finds them.
                        tracing::warn!(error = %e, "compacting the pending index");
                        verify = Some(None);
                    }
                    if let Some(from) = verify.take() {
                        match compact_pending(&trees, from, BUDGET) {
                            Ok((_, next)) => verify = next.map(Some),
                            Err(e) => {
                                tracing::warn!(error = %e, "verifying the pending index");
                                verify = Some(None);
                            }
                        }
                    }
                }
            },
        );
        Compactor { worker, reports }
    }

    /// `event` left pending: take it out of its ingest group's entry at the next pass.
    pub fn left_pending(&self, event: EventId) {
        let n = {
            let mut ids = self
                .reports
                .ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if ids.len() >= MAX_REPORTS {
                self.reports.overflowed.store(true, Ordering::Relaxed);
                return;
            }
            ids.push(event.0 .0);
            ids.len()
        };
        if n == NUDGE_AT {
            if let Some(tx) = self.worker.sender() {
                let _ = tx.try_send(());
            }
        }
    }
}

/// Take the reported events out of every pending entry that holds them; returns how many
/// members went. An event reported is out of pending or was, and if it came back it has a key
/// of its own: no record needs reading.
fn take_out(t: &Trees, mut ids: Vec<u128>) -> Result<usize, StoreError> {
    ids.sort_unstable();
    ids.dedup();
    let Some(&oldest) = ids.first() else {
        return Ok(0);
    };
    // An entry is keyed by its largest member, so none before the oldest reported holds one.
    let from = status_key(EventStatus::Pending, EventId(ulid::Ulid(oldest)));
    let (pass, _) = sweep(t, &from, usize::MAX, |id| {
        Ok(ids.binary_search(&id).is_ok())
    })?;
    Ok(pass.removed)
}

/// A verifying pass over the pending entries from `from` (the first entry the last pass left
/// unread): reads each member's record and takes out those not pending. Returns what it did
/// and where the next pass resumes (`None`: the walk is done).
fn compact_pending(
    t: &Trees,
    from: Option<Vec<u8>>,
    budget: usize,
) -> Result<(Pass, Option<Vec<u8>>), StoreError> {
    let from = from.unwrap_or_else(|| vec![EventStatus::Pending.code()]);
    sweep(t, &from, budget, |id| {
        Ok(!is_pending(t, EventId(ulid::Ulid(id)))?)
    })
}

/// Rewrite each pending group entry from the key `from` on without the members `gone` picks
/// (keys of their own stay until their event's status changes, see `queue::roll_up`). Stops at
/// the first entry past `budget` members read and returns its key.
fn sweep(
    t: &Trees,
    from: &[u8],
    budget: usize,
    mut gone: impl FnMut(u128) -> Result<bool, StoreError>,
) -> Result<(Pass, Option<Vec<u8>>), StoreError> {
    let prefix = [EventStatus::Pending.code()];
    let mut pass = Pass::default();
    for item in t.idx_status.range(from..) {
        let (k, v) = item?;
        let Some(tail) = k.strip_prefix(prefix.as_slice()) else {
            break;
        };
        if pass.read >= budget {
            return Ok((pass, Some(k.to_vec())));
        }
        if !groups::is_group(tail) {
            continue;
        }
        let Some(members) = groups::members(tail, &v, Width::Id) else {
            continue;
        };
        pass.read += members.len();
        let mut out = Vec::new();
        for (id, _) in &members {
            if gone(*id)? {
                out.push(*id);
            }
        }
        if out.is_empty() {
            continue;
        }
        // Members are sorted, and so is `out`.
        let kept =
            groups::without(tail, &v, Width::Id, |m| out.binary_search(&m.0).is_ok()).flatten();
        // Lost to retention meanwhile: leave it gone.
        if t.idx_status.compare_and_swap(&k, Some(&v), kept)?.is_ok() {
            pass.removed += out.len();
        }
    }
    Ok((pass, None))
}

/// Whether the event is stored and pending.
fn is_pending(t: &Trees, id: EventId) -> Result<bool, StoreError> {
    Ok(event_value::load(t, id)?.is_some_and(|e| e.record.status == EventStatus::Pending))
}

#[cfg(test)]
mod tests {
    use super::super::commit::write_group;
    use super::super::keys::status_key;
    use super::super::queue::Finish;
    use super::super::reads::EventFilter;
    use super::super::testing::{new_event, open};
    use super::super::Store;
    use super::super::{AttemptRecord, NewEvent};
    use super::*;

    fn attempt() -> AttemptRecord {
        AttemptRecord {
            number: 1,
            started_at: 0,
            duration_ms: 1,
            status_code: Some(200),
            response_body: vec![],
            error: None,
        }
    }

    /// One ingest group of `n` pending events (one delivery each, due at 10).
    fn group(store: &Store, n: usize) -> Vec<NewEvent> {
        let news: Vec<NewEvent> = (0..n).map(|_| new_event("github", 1, None, 10)).collect();
        let refs: Vec<&NewEvent> = news.iter().collect();
        write_group(store.trees(), &store.inner.fresh, &refs).expect("write");
        news
    }

    fn deliver(store: &Store, e: &NewEvent) {
        let d = e.event.delivery_ids[0];
        store
            .claim_attempt(10, d, 1000)
            .expect("claim")
            .expect("due");
        store.finish(d, attempt(), Finish::Success).expect("finish");
    }

    /// The members of the pending index, own keys and group entries alike, sorted.
    fn pending_members(store: &Store) -> Vec<u128> {
        let mut ids = Vec::new();
        for item in store
            .trees()
            .idx_status
            .scan_prefix([EventStatus::Pending.code()])
        {
            let (k, v) = item.expect("read");
            let members = groups::members(&k[1..], &v, Width::Id).expect("index entry");
            ids.extend(members.into_iter().map(|(id, _)| id));
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn ids(news: &[&NewEvent]) -> Vec<u128> {
        let mut ids: Vec<u128> = news.iter().map(|e| e.event.id.0 .0).collect();
        ids.sort_unstable();
        ids
    }

    fn listed_pending(store: &Store) -> Vec<EventId> {
        let f = EventFilter {
            statuses: vec![EventStatus::Pending],
            ..Default::default()
        };
        let mut ids: Vec<EventId> = store
            .list_events(&f, None, 100, usize::MAX)
            .expect("list")
            .items
            .iter()
            .map(|e| e.id)
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_pass_takes_out_the_finished_and_deleted_members_and_keeps_the_pending() {
        let (_dir, store) = open();
        let news = group(&store, 4);
        let [a, b, c, d] = [&news[0], &news[1], &news[2], &news[3]];
        assert_eq!(pending_members(&store), ids(&[a, b, c, d]));
        deliver(&store, a);
        store.delete_event(c.event.id).expect("delete");
        // Stale until a pass, but never listed: readers check each member's record.
        let mut want = vec![b.event.id, d.event.id];
        want.sort();
        assert_eq!(listed_pending(&store), want);
        assert_eq!(store.unfinished_count().expect("count"), 2);
        compact_pending(store.trees(), None, BUDGET).expect("pass");
        assert_eq!(pending_members(&store), ids(&[b, d]));
        // The rest finish: the entry goes.
        deliver(&store, b);
        deliver(&store, d);
        compact_pending(store.trees(), None, BUDGET).expect("pass");
        assert!(pending_members(&store).is_empty());
        assert_eq!(
            store
                .trees()
                .idx_status
                .scan_prefix([EventStatus::Pending.code()])
                .count(),
            0,
            "no empty entry is left behind"
        );
        assert!(listed_pending(&store).is_empty());
    }

    #[test]
    fn what_leaves_pending_is_reported_and_taken_out_without_a_verifying_pass() {
        let (_dir, store) = open();
        let news = group(&store, 4);
        let [a, b, c, d] = [&news[0], &news[1], &news[2], &news[3]];
        // Past the verifying pass that follows the open, so only the reports can take these out.
        std::thread::sleep(INTERVAL * 2);
        deliver(&store, a);
        store.delete_event(c.event.id).expect("delete");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pending_members(&store) != ids(&[b, d]) {
            assert!(
                std::time::Instant::now() < deadline,
                "still in the pending index: {:?}",
                pending_members(&store)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn reports_take_members_out_of_every_entry_that_holds_them_and_leave_the_rest() {
        let (_dir, store) = open();
        let first = group(&store, 3);
        let second = group(&store, 3);
        let gone = [&first[1], &second[0], &second[2]];
        let removed = take_out(
            store.trees(),
            gone.iter().map(|e| e.event.id.0 .0).rev().collect(),
        )
        .expect("take out");
        assert_eq!(removed, 3);
        assert_eq!(
            pending_members(&store),
            ids(&[&first[0], &first[2], &second[1]])
        );
        assert_eq!(take_out(store.trees(), Vec::new()).expect("nothing"), 0);
    }

    #[test]
    fn a_pass_stops_at_its_budget_and_the_next_resumes_there() {
        let (_dir, store) = open();
        // Nothing finishes, so the background thread (never nudged) changes nothing here.
        group(&store, 3);
        group(&store, 2);
        let (pass, cursor) = compact_pending(store.trees(), None, 3).expect("pass");
        assert_eq!(
            pass,
            Pass {
                read: 3,
                removed: 0
            }
        );
        let cursor = cursor.expect("stopped at the budget");
        let (pass, cursor) = compact_pending(store.trees(), Some(cursor), 3).expect("resume");
        assert_eq!(
            (pass, cursor),
            (
                Pass {
                    read: 2,
                    removed: 0
                },
                None
            )
        );
        assert_eq!(store.unfinished_count().expect("count"), 5);
    }

    #[test]
    fn an_event_sent_again_is_pending_once_whatever_the_pass_did_to_its_group() {
        let (_dir, store) = open();
        let news = group(&store, 2);
        let (a, b) = (&news[0], &news[1]);
        deliver(&store, a);
        // Sent again before any pass: a key of its own besides its stale group member.
        store
            .requeue(a.event.delivery_ids[0], 10)
            .expect("requeue")
            .expect("stored");
        let t = store.trees();
        assert!(t
            .idx_status
            .contains_key(status_key(EventStatus::Pending, a.event.id))
            .expect("read"));
        let mut want = vec![a.event.id, b.event.id];
        want.sort();
        assert_eq!(listed_pending(&store), want, "listed once");
        assert_eq!(store.unfinished_count().expect("count"), 2, "counted once");
        assert_eq!(store.unfinished_events(10).expect("ids").len(), 2);
        // The pass keeps the member (its event is pending); once it finishes again both go.
        compact_pending(t, None, BUDGET).expect("pass");
        assert_eq!(listed_pending(&store), want);
        deliver(&store, a);
        compact_pending(t, None, BUDGET).expect("pass");
        assert_eq!(pending_members(&store), ids(&[b]));
        assert_eq!(listed_pending(&store), vec![b.event.id]);
    }
}
