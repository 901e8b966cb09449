//! Group commit: one writer thread takes every ingest waiting at that moment, writes them,
//! flushes once, then answers each caller. Under load the flush is shared by the whole group;
//! with one request in flight it is one write and one flush.
//!
//! Atomicity without a transaction: before a group's records, the writer records the group's
//! intent (which events, their deliveries, index keys and idempotency claims) under one key.
//! Then each tree is written in turn: idempotency claims (each a compare-and-swap, which is
//! also the duplicate check), deliveries that take keys of their own (rare: an event's first
//! deliveries are in its value), group index entries, events (each the record with its first
//! deliveries and its payload, see `event_value`), due entries. sled recovers a prefix of its log,
//! so after a crash the last group is in one of two states per event: its event record is there
//! (and everything before it), or it is not (and nothing after it). [`recover_last_group`]
//! finishes the first kind (due entries) and removes the leftovers of the second, its claim
//! included, so an event is either wholly stored or absent. None of these were acknowledged: the 202 waits
//! for the flush that follows the whole group.
//!
//! Due entries come after event records so the delivery engine never claims a delivery whose
//! event it cannot read yet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::codec::{self, get, put};
use super::delivery_value;
use super::errors::StoreError;
use super::event_value;
use super::fresh::Fresh;
use super::groups::{self, Member, Width};
use super::handle::{Signals, Store, Trees};
use super::keys::*;
use super::model::*;
use super::worker::Worker;

/// Most ingests written by one group and one flush.
const MAX_GROUP: usize = 512;
const QUEUE_DEPTH: usize = 8192;

/// Duplicate detection for one event: the key, and how long it counts.
#[derive(Clone, Debug)]
pub struct IdempotencyClaim {
    pub key: String,
    pub window_ms: u64,
}

/// Everything one accepted request writes, as one unit.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub event: EventRecord,
    pub payload: Payload,
    pub deliveries: Vec<DeliveryRecord>,
    pub idempotency: Option<IdempotencyClaim>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Written and flushed.
    Stored(EventId),
    /// The idempotency key was seen within its window: nothing written, the original id.
    Duplicate(EventId),
}

struct Job {
    new: NewEvent,
    reply: oneshot::Sender<Result<IngestOutcome, StoreError>>,
}

pub(super) struct Committer(Worker<mpsc::Sender<Job>>);

impl Store {
    /// Store a new event with its payload and deliveries; resolves after the fsync.
    pub async fn ingest(&self, new: NewEvent) -> Result<IngestOutcome, StoreError> {
        self.inner.committer.submit(new).await
    }
}

impl Committer {
    pub fn start(db: sled::Db, trees: Trees, signals: Signals, fresh: Arc<Fresh>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        Committer(Worker::spawn(
            "hookmesh-commit",
            "every ingest answers that the store is closed",
            tx,
            move || run(db, trees, signals, &fresh, rx),
        ))
    }

    pub async fn submit(&self, new: NewEvent) -> Result<IngestOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let tx = self.0.sender().ok_or(StoreError::Closed)?;
        tx.send(Job { new, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

fn run(db: sled::Db, trees: Trees, signals: Signals, fresh: &Fresh, mut rx: mpsc::Receiver<Job>) {
    let mut group: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if let Err(refused) = signals.writable() {
            for job in group.drain(..) {
                let _ = job
                    .reply
                    .send(Err(StoreError::WritesRefused(refused.to_string())));
            }
            continue;
        }
        let news: Vec<&NewEvent> = group.iter().map(|j| &j.new).collect();
        let result = write_group(&trees, fresh, &news).and_then(|outcomes| {
            db.flush()?;
            Ok(outcomes)
        });
        match result {
            Ok(outcomes) => {
                let due_now = news.iter().any(|n| !n.deliveries.is_empty());
                for (job, outcome) in group.drain(..).zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
                if due_now {
                    signals.due.notify_one();
                }
            }
            Err(e) => {
                // Part of the group may be in the trees; a later flush would make it durable
                // though no caller heard 202. Refuse every write from now on; the next open
                // repairs the group from its intent record.
                let reason = e.to_string();
                tracing::error!(error = %reason, events = group.len(),
                    "group commit failed; the store now refuses writes until restarted");
                let _ = signals.failed.set(reason.clone());
                for job in group.drain(..) {
                    let _ = job.reply.send(Err(StoreError::Flush(reason.clone())));
                }
            }
        }
    }
}

/// Key of the intent record in the `meta` tree.
const INTENT_KEY: &[u8] = b"ingest-intent-2";
/// Where layout 1 kept it (without the group entries): a store written by it may still hold
/// the intent of its last group.
const INTENT_V1_KEY: &[u8] = b"ingest-intent";

/// What one group is about to write, enough to finish or undo each event after a crash.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Intent {
    events: Vec<IntentEvent>,
    /// The group index entries it writes.
    groups: Vec<(IndexTree, Vec<u8>)>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IntentV1 {
    events: Vec<IntentEvent>,
}

/// The indexes that take group entries (see `groups`). Append only: the intent names them by
/// position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(super) enum IndexTree {
    Source,
    Status,
    Endpoint,
    /// Events whose payload is stored with their record, for the payload retention sweep.
    Payload,
}

impl IndexTree {
    fn width(self) -> Width {
        match self {
            IndexTree::Endpoint => Width::Pair,
            IndexTree::Source | IndexTree::Status | IndexTree::Payload => Width::Id,
        }
    }
}

fn index_tree(t: &Trees, which: IndexTree) -> &sled::Tree {
    match which {
        IndexTree::Source => &t.idx_source,
        IndexTree::Status => &t.idx_status,
        IndexTree::Endpoint => &t.idx_endpoint,
        IndexTree::Payload => &t.idx_payload,
    }
}

/// Every group index entry of one group, by tree: per source, per endpoint, per status (pending
/// too, kept short by `compact`), and the events whose payload their record carries.
fn index_entries(prepared: &[Prepared<'_>]) -> Vec<(IndexTree, Vec<groups::Entry>)> {
    let mut by: BTreeMap<(IndexTree, Vec<u8>), Vec<Member>> = BTreeMap::new();
    for p in prepared {
        let e = &p.new.event;
        let id = e.id.0 .0;
        by.entry((IndexTree::Source, name_prefix(&e.namespace, &e.source)))
            .or_default()
            .push((id, id));
        by.entry((IndexTree::Status, vec![e.status.code()]))
            .or_default()
            .push((id, id));
        if p.inline_payload {
            by.entry((IndexTree::Payload, Vec::new()))
                .or_default()
                .push((id, id));
        }
        for d in &p.new.deliveries {
            by.entry((IndexTree::Endpoint, name_prefix(&d.namespace, &d.endpoint)))
                .or_default()
                .push((d.id.0 .0, id));
        }
    }
    let mut out: Vec<(IndexTree, Vec<groups::Entry>)> = Vec::new();
    for ((tree, prefix), members) in by {
        let entries = groups::entries(&prefix, tree.width(), members);
        match out.last_mut() {
            Some((last, list)) if *last == tree => list.extend(entries),
            _ => out.push((tree, entries)),
        }
    }
    out
}

#[derive(Debug, Serialize, Deserialize)]
struct IntentEvent {
    id: EventId,
    namespace: String,
    source: String,
    status: EventStatus,
    deliveries: Vec<DeliveryId>,
    /// The idempotency key and the value it maps to (event id + expiry).
    claim: Option<(Vec<u8>, Vec<u8>)>,
}

/// One event of a group, after the idempotency check, with its keys and encoded values.
struct Prepared<'a> {
    new: &'a NewEvent,
    key: [u8; 16],
    /// The record, its first deliveries and, unless it came expired (a handoff), the payload:
    /// one value.
    event: Vec<u8>,
    inline_payload: bool,
    /// The deliveries that take keys of their own (see `write_group`).
    deliveries: Vec<([u8; 16], Vec<u8>)>,
    claim: Option<(Vec<u8>, Vec<u8>)>,
    /// Its place in the group's outcomes.
    outcome: usize,
}

pub(super) fn write_group(
    t: &Trees,
    fresh: &Fresh,
    news: &[&NewEvent],
) -> Result<Vec<IngestOutcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(news.len());
    let mut prepared = Vec::with_capacity(news.len());
    // Keys claimed earlier in this same group (the tree does not show them yet), each with
    // the place of the first event that claimed it among the outcomes.
    let mut claimed_here: HashMap<Vec<u8>, usize> = HashMap::new();
    // (outcome, outcome of the first event with its key): settled once the claims are.
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    for new in news {
        let e = &new.event;
        let key = e.id.to_key();
        let mut claim = None;
        if let Some(c) = &new.idempotency {
            let ikey = claim_key(&e.namespace, &e.source, &c.key);
            if let Some(first) = claimed_here.get(&ikey) {
                repeats.push((outcomes.len(), *first));
                outcomes.push(IngestOutcome::Duplicate(e.id));
                continue;
            }
            let expires = e.received_at.saturating_add(c.window_ms);
            claimed_here.insert(ikey.clone(), outcomes.len());
            claim = Some((ikey, concat(&[&key, &expires.to_be_bytes()])));
        }
        let inline_payload = !e.payload_expired;
        // Deliveries under ids the event's id reserved go in its value; any other (past the
        // block, or imported from a store of an older layout) under a key of its own.
        let (initial, own): (Vec<&DeliveryRecord>, Vec<&DeliveryRecord>) = new
            .deliveries
            .iter()
            .partition(|d| d.id.initial_of() == Some(e.id));
        prepared.push(Prepared {
            new,
            key,
            event: event_value::encode(e, &initial, inline_payload.then_some(&new.payload))?,
            inline_payload,
            deliveries: own
                .into_iter()
                .map(|d| Ok((d.id.to_key(), codec::encode(d)?)))
                .collect::<Result<_, StoreError>>()?,
            claim,
            outcome: outcomes.len(),
        });
        outcomes.push(IngestOutcome::Stored(e.id));
    }
    if prepared.is_empty() {
        return Ok(outcomes);
    }
    let mut index = index_entries(&prepared);
    put(&t.meta, INTENT_KEY, &intent(&prepared, &index))?;
    // Claims first, each a compare-and-swap: the check and the write in one pass down the
    // tree, where a read then an insert took two. Before anything else of their events, so an
    // event found a duplicate here has written nothing; the intent above names each claim, so
    // recovery takes back the claims of events that did not get their record.
    let before = prepared.len();
    let mut kept = Vec::with_capacity(before);
    for p in prepared {
        match &p.claim {
            Some((k, v)) => match claim(t, k, v, &p.new.event)? {
                Some(orig) => outcomes[p.outcome] = IngestOutcome::Duplicate(orig),
                None => kept.push(p),
            },
            None => kept.push(p),
        }
    }
    let prepared = kept;
    // A repeat within the group names the event its first holder was found to be, or is.
    for (repeat, first) in repeats {
        let (IngestOutcome::Stored(orig) | IngestOutcome::Duplicate(orig)) = outcomes[first];
        outcomes[repeat] = IngestOutcome::Duplicate(orig);
    }
    if prepared.is_empty() {
        t.meta.remove(INTENT_KEY)?;
        return Ok(outcomes);
    }
    if prepared.len() < before {
        // Rare (a redelivery within its window): the intent must name the group entries as
        // they will be written, without the duplicates'.
        index = index_entries(&prepared);
        put(&t.meta, INTENT_KEY, &intent(&prepared, &index))?;
    }
    // Tree by tree rather than event by event: each tree's hot leaf stays hot, and the order
    // per event is the same.
    for p in &prepared {
        for (key, bytes) in &p.deliveries {
            t.deliveries.insert(key, bytes.as_slice())?;
        }
    }
    for (tree, entries) in index {
        let tree = index_tree(t, tree);
        for (k, v) in entries {
            tree.insert(k, v)?;
        }
    }
    for p in &prepared {
        t.events.insert(p.key, p.event.as_slice())?;
    }
    // Due entries last, in memory while there is room (see `fresh`): the pending entries above
    // are their durable trace.
    let due: Vec<(Millis, DeliveryId)> = prepared
        .iter()
        .flat_map(|p| p.new.deliveries.iter())
        .filter_map(|d| d.next_attempt_at.map(|at| (at, d.id)))
        .collect();
    for (at, id) in fresh.add(due) {
        t.due.insert(due_key(at, id), &[])?;
    }
    Ok(outcomes)
}

/// What a group is about to write, for [`recover_last_group`].
fn intent(prepared: &[Prepared<'_>], index: &[(IndexTree, Vec<groups::Entry>)]) -> Intent {
    Intent {
        groups: index
            .iter()
            .flat_map(|(tree, entries)| entries.iter().map(|(k, _)| (*tree, k.clone())))
            .collect(),
        events: prepared
            .iter()
            .map(|p| IntentEvent {
                id: p.new.event.id,
                namespace: p.new.event.namespace.clone(),
                source: p.new.event.source.clone(),
                status: p.new.event.status,
                deliveries: p.new.deliveries.iter().map(|d| d.id).collect(),
                claim: p.claim.clone(),
            })
            .collect(),
    }
}

/// Write `e`'s idempotency claim `value` under `key` unless a live claim holds the key: then
/// the event that claim names. This thread is the only writer of claims; retention removes
/// expired ones by compare-and-swap, which the loop rides out.
fn claim(
    t: &Trees,
    key: &[u8],
    value: &[u8],
    e: &EventRecord,
) -> Result<Option<EventId>, StoreError> {
    let mut held: Option<sled::IVec> = None;
    loop {
        match t
            .idempotency
            .compare_and_swap(key, held.as_ref(), Some(value))?
        {
            Ok(()) => return Ok(None),
            Err(sled::CompareAndSwapError { current, .. }) => {
                if let Some(orig) = current.as_ref().and_then(|v| live_claim(v, e)) {
                    return Ok(Some(orig));
                }
                // Expired (replace it) or just removed by retention (write it).
                held = current;
            }
        }
    }
}

/// The event a stored claim points at, if its window is still open at `e`'s arrival.
fn live_claim(stored: &[u8], e: &EventRecord) -> Option<EventId> {
    (claim_expiry(stored) > e.received_at)
        .then(|| EventId::from_key(stored))
        .flatten()
}

/// At open, before anything else writes: make the last group's events whole or absent (see
/// the module docs). Idempotent; a group that was written completely needs no change.
pub(super) fn recover_last_group(t: &Trees) -> Result<(), StoreError> {
    if let Some(old) = get::<IntentV1>(&t.meta, INTENT_V1_KEY)? {
        recover(t, &old.events, &[])?;
        t.meta.remove(INTENT_V1_KEY)?;
    }
    if let Some(intent) = get::<Intent>(&t.meta, INTENT_KEY)? {
        recover(t, &intent.events, &intent.groups)?;
        t.meta.remove(INTENT_KEY)?;
    }
    t.meta.flush()?;
    Ok(())
}

fn recover(
    t: &Trees,
    events: &[IntentEvent],
    groups: &[(IndexTree, Vec<u8>)],
) -> Result<(), StoreError> {
    let (mut finished, mut removed) = (0usize, 0usize);
    let mut absent: HashSet<u128> = HashSet::new();
    for ie in events {
        let key = ie.id.to_key();
        if t.events.contains_key(key)? {
            for did in &ie.deliveries {
                let Some(d) = delivery_value::read_record(t, *did)? else {
                    continue;
                };
                if let (false, Some(at)) = (d.status.is_final(), d.next_attempt_at) {
                    if !t.due.contains_key(due_key(at, d.id))? {
                        t.due.insert(due_key(at, d.id), &[])?;
                        finished += 1;
                    }
                }
            }
            if let Some((k, v)) = &ie.claim {
                if !t.idempotency.contains_key(k)? {
                    t.idempotency.insert(k.as_slice(), v.as_slice())?;
                    finished += 1;
                }
            }
        } else {
            absent.insert(ie.id.0 .0);
            if let Some((k, v)) = &ie.claim {
                // Claims are written first: take back this event's, and only if it is still
                // this event's (a layout-1 group wrote claims last, so there is none).
                let _ = t.idempotency.compare_and_swap(
                    k.as_slice(),
                    Some(v.as_slice()),
                    None as Option<&[u8]>,
                )?;
            }
            for did in &ie.deliveries {
                // Deliveries with keys of their own; those in the record went with it.
                if let Some(d) = delivery_value::read_own(&t.deliveries, *did)?.map(|d| d.record) {
                    // A layout-1 group wrote an endpoint key per delivery.
                    t.idx_endpoint.remove(endpoint_key(&d))?;
                    t.deliveries.remove(did.to_key())?;
                }
            }
            t.idx_status.remove(status_key(ie.status, ie.id))?;
            t.idx_source
                .remove(source_key(&ie.namespace, &ie.source, ie.id))?;
            t.payloads.remove(key)?;
            removed += 1;
        }
    }
    if !absent.is_empty() {
        // The group's entries may name events that are gone: keep the rest of each.
        for (which, k) in groups {
            let tree = index_tree(t, *which);
            let Some(v) = tree.get(k)? else { continue };
            let tail = k.get(k.len().saturating_sub(17)..).unwrap_or_default();
            match groups::without(tail, &v, which.width(), |m| absent.contains(&m.1)) {
                Some(Some(kept)) => {
                    tree.insert(k.as_slice(), kept)?;
                }
                Some(None) => {
                    tree.remove(k)?;
                }
                None => {}
            }
        }
    }
    if finished + removed > 0 {
        tracing::warn!(
            completed_writes = finished,
            removed_events = removed,
            "the last ingest group was cut short by a crash; its unacknowledged events are now whole or gone"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::reads::EventFilter;
    use super::super::testing::{index_members, keys, new_event, open, reopen, KeyPrefix};
    use super::*;

    /// The trees in the order `write_group` writes them after the intent (the group entries
    /// in `IndexTree` order); within a tree it writes in key order.
    fn tree_order(t: &Trees) -> [&sled::Tree; 8] {
        [
            &t.idempotency,
            &t.deliveries,
            &t.idx_source,
            &t.idx_status,
            &t.idx_endpoint,
            &t.idx_payload,
            &t.events,
            &t.due,
        ]
    }

    type Write = (usize, Vec<u8>, Vec<u8>);

    /// A group of two events (two deliveries in the event's value and an idempotency key each,
    /// the second a third delivery under its own key), written, then every
    /// write it made in order: sled recovers a prefix of its log, so a crash leaves the intent
    /// and some prefix of these.
    fn group_writes() -> (Vec<u8>, Vec<Write>, NewEvent, NewEvent) {
        let (_dir, store) = open();
        let first = new_event("github", 2, Some("k1"), 10);
        let mut second = new_event("github", 2, Some("k2"), 10);
        // One delivery not under the ids its event reserved (an import from an older layout):
        // a key of its own in `deliveries`.
        let keyed = DeliveryRecord::new(second.event.id, "default", "ep2", None, 10);
        second.event.delivery_ids.push(keyed.id);
        second.deliveries.push(keyed);
        let t = store.trees();
        // A throwaway for the due entries: the crash this stands for loses what memory held.
        write_group(t, &Fresh::default(), &[&first, &second]).expect("write");
        let intent = t
            .meta
            .get(INTENT_KEY)
            .expect("read")
            .expect("intent")
            .to_vec();
        let mut writes = Vec::new();
        for (n, tree) in tree_order(t).iter().enumerate() {
            for item in tree.iter() {
                let (k, v) = item.expect("read");
                writes.push((n, k.to_vec(), v.to_vec()));
            }
        }
        (intent, writes, first, second)
    }

    /// Everything that names `e`'s event or delivery ids, index entries' members included.
    fn mentions(store: &Store, e: &NewEvent) -> usize {
        let t = store.trees();
        let ids: Vec<u128> = std::iter::once(e.event.id.0 .0)
            .chain(e.deliveries.iter().map(|d| d.id.0 .0))
            .collect();
        let keyed = [
            &t.payloads,
            &t.deliveries,
            &t.events,
            &t.due,
            &t.idempotency,
        ]
        .iter()
        .flat_map(|tree| keys(tree))
        .filter(|k| {
            ids.iter()
                .any(|id| k.windows(16).any(|w| w == id.to_be_bytes()))
        })
        .count();
        let claims = t
            .idempotency
            .iter()
            .values()
            .filter(|v| {
                v.as_ref()
                    .is_ok_and(|v| v.starts_with(&e.event.id.to_key()))
            })
            .count();
        let indexed = [
            index_members(&t.idx_source, Width::Id, KeyPrefix::Named),
            index_members(&t.idx_status, Width::Id, KeyPrefix::Status),
            index_members(&t.idx_endpoint, Width::Pair, KeyPrefix::Named),
            index_members(&t.idx_payload, Width::Id, KeyPrefix::None),
        ]
        .iter()
        .flatten()
        .filter(|(id, of)| ids.contains(id) || ids.contains(of))
        .count();
        keyed + claims + indexed
    }

    /// Stored with everything attached, as the store's own reads see it.
    fn is_whole(store: &Store, e: &NewEvent) -> bool {
        let id = e.event.id;
        let listed = |f: EventFilter| {
            store
                .list_events(&f, None, 100, usize::MAX)
                .expect("list")
                .items
                .iter()
                .any(|x| x.id == id)
        };
        store.event(id).expect("read").is_some()
            && store.payload(id).expect("read").is_some()
            && index_members(&store.trees().idx_payload, Width::Id, KeyPrefix::None)
                .contains(&(id.0 .0, id.0 .0))
            && store.deliveries_of(id).expect("read").len() == e.deliveries.len()
            && e.deliveries.iter().all(|d| {
                store
                    .due_after(10, None, 100)
                    .expect("read")
                    .contains(&(10, d.id))
                    && listed(EventFilter {
                        endpoint: Some(d.endpoint.clone()),
                        ..Default::default()
                    })
            })
            && listed(EventFilter {
                source: Some("github".into()),
                ..Default::default()
            })
            && listed(EventFilter {
                statuses: vec![EventStatus::Pending],
                ..Default::default()
            })
            && store
                .trees()
                .idempotency
                .get(claim_key(
                    "default",
                    "github",
                    e.event.idempotency_key.as_deref().unwrap_or(""),
                ))
                .expect("read")
                .is_some_and(|v| EventId::from_key(&v) == Some(id))
    }

    /// Every cut point of a group: after the intent and any prefix of the group's writes, the
    /// next open leaves each event whole or without a trace, and whole once its record was
    /// written.
    #[test]
    fn a_group_cut_at_any_write_leaves_each_event_whole_or_absent() {
        let (intent, writes, first, second) = group_writes();
        let events_tree = 6;
        for cut in 0..=writes.len() {
            let (dir, store) = open();
            let path = dir.path().join("sled");
            let t = store.trees();
            t.meta
                .insert(INTENT_KEY, intent.as_slice())
                .expect("intent");
            for (n, k, v) in &writes[..cut] {
                tree_order(t)[*n]
                    .insert(k.as_slice(), v.as_slice())
                    .expect("write");
            }
            let written = |e: &NewEvent| {
                writes[..cut]
                    .iter()
                    .any(|(n, k, _)| *n == events_tree && k[..] == e.event.id.to_key())
            };
            drop(store);
            let store = reopen(&path);
            for e in [&first, &second] {
                if written(e) {
                    assert!(
                        is_whole(&store, e),
                        "cut {cut}: a written record is completed"
                    );
                } else {
                    assert_eq!(
                        mentions(&store, e),
                        0,
                        "cut {cut}: leftovers of an absent event"
                    );
                }
            }
            assert!(store.trees().meta.get(INTENT_KEY).expect("read").is_none());
        }
    }

    /// A store written by layout 1 may hold its last group's intent in the old form.
    #[test]
    fn a_layout_1_intent_is_recovered() {
        let (dir, store) = open();
        let path = dir.path().join("sled");
        let e = new_event("github", 1, None, 10);
        let t = store.trees();
        let old = IntentV1 {
            events: vec![IntentEvent {
                id: e.event.id,
                namespace: "default".into(),
                source: "github".into(),
                status: EventStatus::Pending,
                deliveries: vec![e.deliveries[0].id],
                claim: None,
            }],
        };
        put(&t.meta, INTENT_V1_KEY, &old).expect("intent");
        // Layout 1 wrote a key per event; the record never made it.
        t.payloads
            .insert(e.event.id.to_key(), b"x".as_slice())
            .expect("write");
        t.idx_source
            .insert(source_key("default", "github", e.event.id), &[])
            .expect("write");
        drop(store);
        let store = reopen(&path);
        assert_eq!(mentions(&store, &e), 0);
        assert!(store
            .trees()
            .meta
            .get(INTENT_V1_KEY)
            .expect("read")
            .is_none());
    }

    #[test]
    fn duplicates_within_one_group_store_one_event() {
        let (_dir, store) = open();
        let a = new_event("github", 1, Some("same"), 10);
        let b = new_event("github", 1, Some("same"), 10);
        let c = new_event("stripe", 1, Some("same"), 10);
        let out = write_group(store.trees(), &store.inner.fresh, &[&a, &b, &c]).expect("write");
        assert_eq!(
            out,
            vec![
                IngestOutcome::Stored(a.event.id),
                IngestOutcome::Duplicate(a.event.id),
                // Same key, another source: its own event.
                IngestOutcome::Stored(c.event.id),
            ]
        );
        assert_eq!(store.event_count(), 2);
        assert_eq!(mentions(&store, &b), 0);
    }

    /// A key claimed by an earlier group is found by the claim's compare-and-swap: the
    /// duplicate writes nothing, and the intent (what recovery would read) names only the
    /// events written, with group entries that do not count the duplicate.
    #[test]
    fn a_duplicate_of_an_earlier_group_writes_nothing_and_leaves_the_intent_exact() {
        let (_dir, store) = open();
        let t = store.trees();
        let first = new_event("github", 1, Some("k"), 10);
        write_group(t, &store.inner.fresh, &[&first]).expect("write");
        let again = new_event("github", 1, Some("k"), 10);
        let other = new_event("github", 1, Some("other"), 10);
        let out = write_group(t, &store.inner.fresh, &[&again, &other]).expect("write");
        assert_eq!(
            out,
            vec![
                IngestOutcome::Duplicate(first.event.id),
                IngestOutcome::Stored(other.event.id),
            ]
        );
        assert_eq!(mentions(&store, &again), 0);
        assert!(is_whole(&store, &other));
        let intent: Intent = get(&t.meta, INTENT_KEY).expect("read").expect("intent");
        let named: Vec<EventId> = intent.events.iter().map(|e| e.id).collect();
        assert_eq!(named, vec![other.event.id]);
        for (which, key) in &intent.groups {
            let members = index_tree(t, *which).get(key).expect("read");
            assert!(
                members.is_some(),
                "the intent names an entry that was written"
            );
        }
    }

    /// Two events of one group with a key an earlier group holds: both are duplicates of the
    /// stored event, the second too (it must not name the first, which is not stored).
    #[test]
    fn repeats_within_a_group_of_a_key_held_earlier_name_the_stored_event() {
        let (_dir, store) = open();
        let t = store.trees();
        let stored = new_event("github", 1, Some("k"), 10);
        write_group(t, &store.inner.fresh, &[&stored]).expect("write");
        let a = new_event("github", 1, Some("k"), 10);
        let b = new_event("github", 1, Some("k"), 10);
        let out = write_group(t, &store.inner.fresh, &[&a, &b]).expect("write");
        assert_eq!(
            out,
            vec![
                IngestOutcome::Duplicate(stored.event.id),
                IngestOutcome::Duplicate(stored.event.id),
            ]
        );
        assert_eq!(store.event_count(), 1);
    }

    /// A claim whose window has closed is replaced by the next event with its key.
    #[test]
    fn an_expired_claim_is_replaced() {
        let (_dir, store) = open();
        let t = store.trees();
        let first = new_event("github", 0, Some("k"), 10);
        write_group(t, &store.inner.fresh, &[&first]).expect("write");
        // `new_event` claims for 60 s.
        let later = new_event("github", 0, Some("k"), 10 + 60_001);
        let out = write_group(t, &store.inner.fresh, &[&later]).expect("write");
        assert_eq!(out, vec![IngestOutcome::Stored(later.event.id)]);
        let held = t
            .idempotency
            .get(claim_key("default", "github", "k"))
            .expect("read")
            .expect("claim");
        assert_eq!(EventId::from_key(&held), Some(later.event.id));
    }
}
