//! The pending index kept short, and the statuses events finish in indexed. Since layout 4
//! ingest writes the events it leaves pending as one group entry per commit group (see
//! `groups`), as it does for every other status: one insert per group, where a key per event
//! cost an insert at ingest and a removal when the event finished. A finished event then stays
//! a member of its entry, stale; readers check every member against its event, so a stale
//! member is never listed, only read in vain.
//!
//! Since layout 5 a finish writes its delivery and nothing else: the event's status is rolled
//! up from its deliveries when read (see `event_value`). Each event that leaves pending is
//! reported here with the status it left for; a pass writes the reported events as one group
//! entry per status, then takes them out of the pending entries that hold them, with one walk
//! over those entries from the oldest reported event on and no record read. Listings by status
//! read the reports not yet written too ([`Compactor::reported`]), so an event is listed under
//! its new status as soon as its delivery is written.
//!
//! Reports live in memory, so at open (before anything reads, see [`verify_all`]) and when
//! more arrive than it holds (then within a budget per pass), a verifying pass walks every
//! pending entry (and key of one event) and reads each member's status instead: a member no
//! longer pending is indexed under its status, then taken out. Each rewrite is a compare-and-swap so an entry retention dropped meanwhile
//! stays dropped. Taking a member out is safe once its event has left pending even if it comes
//! back: an event that becomes pending again after ingest (a finished delivery sent again) gets
//! a key of its own in the same tree, written before its delivery (see `queue::requeue`).
//!
//! Nothing here is flushed on its own: a pass lost in a crash leaves its members in the pending
//! entries, which the verifying pass at the next open indexes and takes out. Within a pass
//! the status entries are written before the pending entries lose their members, and sled
//! keeps that order through a crash.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::errors::StoreError;
use super::event_value;
use super::groups::{self, Member, Width};
use super::handle::{Signals, Store, Trees};
use super::keys::status_key;
use super::model::{EventId, EventStatus};
use super::worker::Worker;

/// A pass runs at least this often, and sooner once this many events were reported.
const INTERVAL: Duration = Duration::from_millis(500);
const NUDGE_AT: usize = 8_192;
/// Reports held between passes, at most (32 bytes each); past it the next pass verifies.
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

/// An event that left pending, and the status to index it under (`None`: nothing to index,
/// it is deleted or has a key of its own).
type Report = (u128, Option<EventStatus>);

/// Events that left pending since the last pass, and those the running pass is writing.
#[derive(Default)]
struct Reports {
    held: Mutex<Held>,
    passing: Mutex<()>,
    /// Some were not held: the next pass verifies every entry.
    overflowed: AtomicBool,
}

#[derive(Default)]
struct Held {
    new: Vec<Report>,
    /// Taken by the running pass; listed until it has written them.
    writing: Arc<Vec<Report>>,
}

pub(super) struct Compactor {
    worker: Worker<SyncSender<()>>,
    reports: Arc<Reports>,
}

impl Compactor {
    pub fn start(trees: Trees, signals: Signals) -> Self {
        let (tx, rx) = mpsc::sync_channel(1);
        let reports = Arc::new(Reports::default());
        let shared = reports.clone();
        let worker = Worker::spawn(
            "hookmesh-compact",
            "listings stay right, they only read more stale members",
            tx,
            move || {
                // The open verified everything (`verify_all`); from then on, only overflows.
                let mut verify = None;
                loop {
                    match rx.recv_timeout(INTERVAL) {
                        Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    if signals.writable().is_err() {
                        continue;
                    }
                    if shared.overflowed.swap(false, Ordering::Relaxed) {
                        verify = Some(None);
                    }
                    if let Err(e) = shared.pass(&trees) {
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

    /// `event` left pending for `now` (`None`: it is deleted, or its status has a key of its
    /// own): index it there and take it out of its ingest group's entry at the next pass.
    pub fn left_pending(&self, event: EventId, now: Option<EventStatus>) {
        let n = {
            let mut held = self.reports.lock();
            if held.new.len() >= MAX_REPORTS {
                self.reports.overflowed.store(true, Ordering::Relaxed);
                return;
            }
            held.new.push((event.0 .0, now));
            held.new.len()
        };
        if n == NUDGE_AT {
            if let Some(tx) = self.worker.sender() {
                let _ = tx.try_send(());
            }
        }
    }

    /// Events reported as left for `status` and not written to its index yet, newest first:
    /// listings by status read them beside the index.
    pub fn reported(&self, status: EventStatus) -> Vec<u128> {
        let held = self.reports.lock();
        let mut ids: Vec<u128> = held
            .new
            .iter()
            .chain(held.writing.iter())
            .filter(|(_, s)| *s == Some(status))
            .map(|(id, _)| *id)
            .collect();
        drop(held);
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.dedup();
        ids
    }
}

impl Reports {
    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Write what is reported now; returns how many members left the pending index. One pass
    /// at a time, so `writing` is always the running pass's.
    fn pass(&self, t: &Trees) -> Result<usize, StoreError> {
        let _one = self.passing.lock().unwrap_or_else(PoisonError::into_inner);
        let writing = {
            let mut held = self.lock();
            let taken = Arc::new(std::mem::take(&mut held.new));
            held.writing = taken.clone();
            taken
        };
        let done = take_out(t, &writing);
        self.lock().writing = Arc::default();
        done
    }
}

impl Store {
    /// Run the compactor's pass now, on this thread, where the background one runs within
    /// half a second: for benchmarks, which count the work a finish leaves behind it.
    pub fn compact_now(&self) -> Result<usize, StoreError> {
        self.inner.compactor.reports.pass(self.trees())
    }
}

/// Index the reported events under their statuses, then take them out of every pending
/// entry that holds them; returns how many members went. An event reported is out of pending
/// or was, and if it came back it has a key of its own: no record needs reading.
fn take_out(t: &Trees, reports: &[Report]) -> Result<usize, StoreError> {
    let mut reports = reports.to_vec();
    reports.sort_unstable_by_key(|(id, s)| (*id, s.map(EventStatus::code)));
    reports.dedup();
    let Some(&(oldest, _)) = reports.first() else {
        return Ok(0);
    };
    index(t, &reports)?;
    let ids: Vec<u128> = reports.iter().map(|(id, _)| *id).collect();
    // An entry is keyed by its largest member, so none before the oldest reported holds one.
    let from = status_key(EventStatus::Pending, EventId(ulid::Ulid(oldest)));
    let (pass, _) = sweep(t, &from, usize::MAX, Members::GroupsOnly, |id| {
        Ok(ids.binary_search(&id).is_ok().then_some(None))
    })?;
    Ok(pass.removed)
}

/// Write `events` as group entries of the statuses they name, merged into any entry already
/// under the same key (an event that finished twice can be the largest member of two).
fn index(t: &Trees, events: &[Report]) -> Result<(), StoreError> {
    let mut by: Vec<(EventStatus, Vec<Member>)> = Vec::new();
    for (id, status) in events {
        let Some(status) = status else { continue };
        match by.iter_mut().find(|(s, _)| s == status) {
            Some((_, members)) => members.push((*id, *id)),
            None => by.push((*status, vec![(*id, *id)])),
        }
    }
    for (status, members) in by {
        for (k, v) in groups::entries(&[status.code()], Width::Id, members) {
            let mut current = t.idx_status.get(&k)?;
            loop {
                let merged = match &current {
                    Some(old) => groups::union(&v, old, Width::Id),
                    None => v.clone(),
                };
                match t
                    .idx_status
                    .compare_and_swap(&k, current.as_ref(), Some(merged))?
                {
                    Ok(()) => break,
                    Err(e) => current = e.current,
                }
            }
        }
    }
    Ok(())
}

/// At open, before the store serves anything: index and take out every finished member of the
/// pending index, whose reports the last process may have lost. Returns what it did.
pub(super) fn verify_all(t: &Trees) -> Result<Pass, StoreError> {
    let (pass, _) = compact_pending(t, None, usize::MAX)?;
    if pass.removed > 0 {
        tracing::info!(
            indexed = pass.removed,
            "events that finished before the last stop are in their status's index now"
        );
    }
    Ok(pass)
}

/// A verifying pass over the pending entries from `from` (the first entry the last pass left
/// unread): reads each member's status, and indexes and takes out those not pending. Returns
/// what it did and where the next pass resumes (`None`: the walk is done).
fn compact_pending(
    t: &Trees,
    from: Option<Vec<u8>>,
    budget: usize,
) -> Result<(Pass, Option<Vec<u8>>), StoreError> {
    let from = from.unwrap_or_else(|| vec![EventStatus::Pending.code()]);
    sweep(t, &from, budget, Members::All, |id| {
        Ok(match event_value::load(t, EventId(ulid::Ulid(id)))? {
            Some(e) if e.record.status == EventStatus::Pending => None,
            Some(e) => Some(Some(e.record.status)),
            None => Some(None),
        })
    })
}

/// Which keys of the pending index a pass looks at.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Members {
    /// Group entries: what reports name. A key of one event's own is its event's to remove.
    GroupsOnly,
    /// Keys of one event's own too, which a crash may have left behind its event's finish.
    All,
}

/// Rewrite each pending entry from the key `from` on without the members `gone` picks, after
/// indexing each under the status it names (`Some(None)`: out, nothing to index; `None`:
/// stays). Stops at the first entry past `budget` members read and returns its key.
fn sweep(
    t: &Trees,
    from: &[u8],
    budget: usize,
    which: Members,
    mut gone: impl FnMut(u128) -> Result<Option<Option<EventStatus>>, StoreError>,
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
        let group = groups::is_group(tail);
        if !group && which == Members::GroupsOnly {
            continue;
        }
        let Some(members) = groups::members(tail, &v, Width::Id) else {
            continue;
        };
        pass.read += members.len();
        let mut out: Vec<Report> = Vec::new();
        for (id, _) in &members {
            if let Some(status) = gone(*id)? {
                out.push((*id, status));
            }
        }
        if out.is_empty() {
            continue;
        }
        index(t, &out)?;
        // Members are sorted, and so is `out`.
        let kept = groups::without(tail, &v, Width::Id, |m| {
            out.binary_search_by(|(id, _)| id.cmp(&m.0)).is_ok()
        })
        .flatten();
        // Lost to retention meanwhile: leave it gone.
        if t.idx_status.compare_and_swap(&k, Some(&v), kept)?.is_ok() {
            pass.removed += out.len();
        }
    }
    Ok((pass, None))
}

#[cfg(test)]
mod tests {
    use super::super::commit::write_group;
    use super::super::keys::status_key;
    use super::super::queue::Finish;
    use super::super::reads::EventFilter;
    use super::super::testing::{new_event, open, reopen};
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

    fn pending_members(store: &Store) -> Vec<u128> {
        members_of(store, EventStatus::Pending)
    }

    /// The members of the index of `status`, own keys and group entries alike, sorted.
    fn members_of(store: &Store, status: EventStatus) -> Vec<u128> {
        let mut ids = Vec::new();
        for item in store.trees().idx_status.scan_prefix([status.code()]) {
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
    fn a_verifying_pass_indexes_and_takes_out_the_finished_and_deleted_and_keeps_the_pending() {
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
        // Read from its delivery and indexed, the deleted one not.
        assert_eq!(members_of(&store, EventStatus::Delivered), ids(&[a]));
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
        deliver(&store, a);
        store.delete_event(c.event.id).expect("delete");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pending_members(&store) != ids(&[b, d])
            || members_of(&store, EventStatus::Delivered) != ids(&[a])
        {
            assert!(
                std::time::Instant::now() < deadline,
                "still in the pending index: {:?}",
                pending_members(&store)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What a crash leaves: finishes whose reports died with the process (the delivery written,
    /// no pass), and a pending key of an event's own that its finish had not swapped yet. The
    /// next open indexes them before it serves anything.
    #[test]
    fn the_open_indexes_what_finished_before_a_crash_and_lost_its_report() {
        let (dir, store) = open();
        let news = group(&store, 3);
        let [a, b, c] = [&news[0], &news[1], &news[2]];
        deliver(&store, a);
        deliver(&store, c);
        // c had been sent again: its own pending key stays behind a finish cut short.
        store
            .trees()
            .idx_status
            .insert(status_key(EventStatus::Pending, c.event.id), &[])
            .expect("write");
        let path = dir.path().join("sled");
        store.flush().expect("flush");
        drop(store);
        let store = reopen(&path);
        assert_eq!(pending_members(&store), ids(&[b]));
        assert_eq!(members_of(&store, EventStatus::Delivered), ids(&[a, c]));
        let f = EventFilter {
            statuses: vec![EventStatus::Delivered],
            ..Default::default()
        };
        let listed = store.list_events(&f, None, 10, usize::MAX).expect("list");
        assert_eq!(listed.items.len(), 2);
    }

    #[test]
    fn reports_take_members_out_of_every_entry_that_holds_them_and_leave_the_rest() {
        let (_dir, store) = open();
        let first = group(&store, 3);
        let second = group(&store, 3);
        let gone = [&first[1], &second[0], &second[2]];
        let reports: Vec<Report> = gone
            .iter()
            .map(|e| (e.event.id.0 .0, Some(EventStatus::Failed)))
            .rev()
            .collect();
        let removed = take_out(store.trees(), &reports).expect("take out");
        assert_eq!(removed, 3);
        assert_eq!(
            pending_members(&store),
            ids(&[&first[0], &first[2], &second[1]])
        );
        assert_eq!(members_of(&store, EventStatus::Failed), ids(&gone));
        assert_eq!(take_out(store.trees(), &[]).expect("nothing"), 0);
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
