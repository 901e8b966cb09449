//! Reads: single records by id, and the filtered listings of the REST API answered from the
//! secondary indexes. Nothing here writes.
//!
//! Listings run newest first by id (ids are time-ordered ULIDs) and page with an exclusive
//! upper bound: a page ends at some id, the next page starts just below it. Events that arrive
//! while a client pages have larger ids, so they never shift the pages it has not read yet: no
//! duplicates, no gaps. Each listing examines a bounded number of records (`budget`); a page
//! may come back short with `next` set when the budget ran out first, so a filter that matches
//! rarely cannot turn one request into a scan of the whole store.

use std::collections::{BTreeMap, BTreeSet};
use std::iter::Peekable;

use sled::Tree;
use ulid::Ulid;
use wildmatch::WildMatch;

use super::codec::{decode, get};
use super::delivery_value;
use super::errors::StoreError;
use super::event_value::{self, StoredEvent};
use super::groups::{self, Width, SPAN_MS};
use super::handle::Store;
use super::keys::*;
use super::model::*;

/// Records examined per listing request, at most (a payload read counts [`PAYLOAD_COST`]).
pub const SCAN_BUDGET: usize = 20_000;
/// What one payload read costs against [`SCAN_BUDGET`].
pub const PAYLOAD_COST: usize = 20;

/// What `GET /events` filters on. Everything is optional; all given filters must match.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Namespaces an event may be in (`None`: any).
    pub namespaces: Option<BTreeSet<String>>,
    pub source: Option<String>,
    /// Any of these statuses (empty: any).
    pub statuses: Vec<EventStatus>,
    /// Has a delivery to this endpoint (by name, in the event's namespace).
    pub endpoint: Option<String>,
    pub event_type: Option<WildMatch>,
    /// Received at or after (ms).
    pub from: Option<Millis>,
    /// Received at or before (ms).
    pub to: Option<Millis>,
    /// Ids within this inclusive range (an id-prefix search).
    pub id_range: Option<(Ulid, Ulid)>,
    /// The raw payload body contains these bytes.
    pub payload_contains: Option<Vec<u8>>,
    pub signature_valid: Option<bool>,
}

/// What `GET /deliveries` filters on.
#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    pub namespaces: Option<BTreeSet<String>>,
    pub event_id: Option<EventId>,
    pub endpoint: Option<String>,
    pub statuses: Vec<DeliveryStatus>,
    /// Created at or after (ms).
    pub from: Option<Millis>,
    /// Created at or before (ms).
    pub to: Option<Millis>,
}

/// One page of a listing.
#[derive(Clone, Debug)]
pub struct Page<T, Id> {
    pub items: Vec<T>,
    /// Where the next page starts (exclusive upper bound); `None` at the end.
    pub next: Option<Id>,
}

type IdIter<'a> = Box<dyn Iterator<Item = Result<Ulid, StoreError>> + 'a>;
type KvIter<'a> = Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + 'a>;

/// Inclusive id bounds of a listing, from its time window, id range and cursor.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    lo: u128,
    hi: u128,
}

impl Bounds {
    fn new(
        from: Option<Millis>,
        to: Option<Millis>,
        range: Option<(Ulid, Ulid)>,
        before: Option<Ulid>,
    ) -> Option<Bounds> {
        let mut lo = from.map(|ms| ulid_floor(ms).0).unwrap_or(0);
        let mut hi = to.map(|ms| ulid_ceil(ms).0).unwrap_or(u128::MAX);
        if let Some((a, b)) = range {
            lo = lo.max(a.0);
            hi = hi.min(b.0);
        }
        if let Some(b) = before {
            hi = hi.min(b.0.checked_sub(1)?);
        }
        (lo <= hi).then_some(Bounds { lo, hi })
    }

    fn contains(&self, id: Ulid) -> bool {
        (self.lo..=self.hi).contains(&id.0)
    }

    fn lo_ms(&self) -> Millis {
        Ulid(self.lo).timestamp_ms()
    }
}

/// Largest ULID of a millisecond.
fn ulid_ceil(ms: Millis) -> Ulid {
    Ulid(ulid_floor(ms).0 | ((1u128 << 80) - 1))
}

/// The members of `tree`'s entries under `prefix` (group entries and keys of one member, see
/// `groups`) with the member id within `b`, newest first, each with the id it belongs to.
struct GroupScan<'a> {
    entries: Peekable<KvIter<'a>>,
    skip: usize,
    width: Width,
    bounds: Bounds,
    /// Members read but not yet returned: an entry read later may still hold larger ones.
    buffer: BTreeMap<u128, u128>,
    last: Option<u128>,
}

fn group_scan(tree: &Tree, prefix: Vec<u8>, width: Width, b: Bounds) -> GroupScan<'_> {
    let lo = concat(&[&prefix, &b.lo.to_be_bytes()]);
    // An entry is keyed by its largest member, at most SPAN_MS above its smallest one.
    let top = ulid_ceil(Ulid(b.hi).timestamp_ms().saturating_add(SPAN_MS)).0;
    let hi = concat(&[&prefix, &b.hi.max(top).to_be_bytes(), &[u8::MAX]]);
    let entries: KvIter<'_> = Box::new(tree.range(lo..=hi).rev());
    GroupScan {
        entries: entries.peekable(),
        skip: prefix.len(),
        width,
        bounds: b,
        buffer: BTreeMap::new(),
        last: None,
    }
}

impl GroupScan<'_> {
    /// The largest member the next entry can hold (its key's id), `None` when none is left.
    fn next_key(&mut self) -> Result<Option<u128>, StoreError> {
        match self.entries.peek() {
            None => Ok(None),
            Some(Ok((k, _))) => k
                .get(self.skip..self.skip + 16)
                .and_then(|b| b.try_into().ok())
                .map(|b| Some(u128::from_be_bytes(b)))
                .ok_or_else(|| StoreError::Codec("malformed index key".into())),
            Some(Err(_)) => match self.entries.next() {
                Some(Err(e)) => Err(e.into()),
                _ => Ok(None),
            },
        }
    }
}

impl Iterator for GroupScan<'_> {
    type Item = Result<(Ulid, Ulid), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let next_key = match self.next_key() {
                Ok(k) => k,
                Err(e) => return Some(Err(e)),
            };
            if let Some((&best, &of)) = self.buffer.last_key_value() {
                // Every member not read yet is at or below `next_key`.
                if next_key.is_none_or(|n| best > n) {
                    self.buffer.remove(&best);
                    self.last = Some(best);
                    return Some(Ok((Ulid(best), Ulid(of))));
                }
            } else if next_key.is_none() {
                return None;
            }
            let (k, v) = match self.entries.next()? {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            let Some(members) = k
                .get(self.skip..)
                .and_then(|tail| groups::members(tail, &v, self.width))
            else {
                return Some(Err(StoreError::Codec("malformed index entry".into())));
            };
            for (id, of) in members {
                if self.bounds.contains(Ulid(id)) && self.last.is_none_or(|l| id < l) {
                    self.buffer.insert(id, of);
                }
            }
        }
    }
}

/// The ids of a tree keyed by id (`events`, `deliveries`) within `b`, newest first.
fn key_range(tree: &Tree, b: Bounds) -> IdIter<'_> {
    Box::new(
        tree.range(b.lo.to_be_bytes()..=b.hi.to_be_bytes())
            .rev()
            .map(|item| {
                let (k, _) = item?;
                EventId::from_key(&k)
                    .map(|id| id.0)
                    .ok_or_else(|| StoreError::Codec("malformed key".into()))
            }),
    )
}

/// The ids of events' first deliveries (see `event_value`), newest first, from `events`: ids
/// the events' own reserved, so they sort among the keys of `deliveries`, which holds those
/// that changed since (the merge with that tree reads each once).
fn initial_range(tree: &Tree, b: Bounds) -> IdIter<'_> {
    // The event whose block holds the lowest id in bounds.
    let lo = DeliveryId(Ulid(b.lo)).initial_of().map_or(b.lo, |e| e.0 .0);
    Box::new(
        tree.range(lo.to_be_bytes()..=b.hi.to_be_bytes())
            .rev()
            .flat_map(move |item| {
                let ids = item.map_err(StoreError::from).and_then(|(_, v)| {
                    let e = StoredEvent::decode(v)?.record;
                    let mut ids: Vec<Ulid> = e
                        .delivery_ids
                        .iter()
                        .filter(|d| d.initial_of() == Some(e.id) && b.contains(d.0))
                        .map(|d| d.0)
                        .collect();
                    ids.sort_unstable_by(|x, y| y.cmp(x));
                    Ok(ids)
                });
                match ids {
                    Ok(ids) => ids.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(e) => vec![Err(e)],
                }
            }),
    )
}

/// Event ids from an index of events (`idx_source`, `idx_status`), newest first.
fn index_range<'a>(tree: &'a Tree, prefix: Vec<u8>, b: Bounds) -> IdIter<'a> {
    Box::new(group_scan(tree, prefix, Width::Id, b).map(|m| m.map(|(id, _)| id)))
}

/// The distinct `\0`-terminated segments that follow `prefix` in `tree`'s keys (namespaces, or
/// names within a namespace), found by seeking past each one instead of reading every key.
pub(super) fn distinct_segments(tree: &Tree, prefix: &[u8]) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    let mut start = prefix.to_vec();
    while let Some(item) = tree.range(start.clone()..).next() {
        let (k, _) = item?;
        let Some(rest) = k.strip_prefix(prefix) else {
            break;
        };
        let Some(end) = rest.iter().position(|b| *b == 0) else {
            break;
        };
        let segment = &rest[..end];
        out.push(String::from_utf8_lossy(segment).into_owned());
        // Every key of this segment starts with `prefix segment \0`; `\x01` sorts after them all.
        start = concat(&[prefix, segment, &[1]]);
    }
    Ok(out)
}

/// Several newest-first id streams as one, without repeats.
struct MergeDesc<'a> {
    streams: Vec<Peekable<IdIter<'a>>>,
}

impl Iterator for MergeDesc<'_> {
    type Item = Result<Ulid, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut best: Option<Ulid> = None;
        for s in &mut self.streams {
            match s.peek() {
                Some(Ok(id)) => best = Some(best.map_or(*id, |b| b.max(*id))),
                Some(Err(_)) => return s.next(),
                None => {}
            }
        }
        let best = best?;
        for s in &mut self.streams {
            if matches!(s.peek(), Some(Ok(id)) if *id == best) {
                s.next();
            }
        }
        Some(Ok(best))
    }
}

fn merge<'a>(streams: Vec<IdIter<'a>>) -> IdIter<'a> {
    if streams.len() == 1 {
        if let Some(s) = streams.into_iter().next() {
            return s;
        }
        return Box::new(std::iter::empty());
    }
    Box::new(MergeDesc {
        streams: streams.into_iter().map(Iterator::peekable).collect(),
    })
}

/// Events with a delivery to one endpoint, newest event first, from `idx_endpoint` (which is
/// ordered by delivery id). A delivery is never older than its event, so once the scan reaches
/// deliveries older than the best buffered event, that event is the next one in order.
struct ByEndpoint<'a> {
    deliveries: Peekable<GroupScan<'a>>,
    bounds: Bounds,
    buffer: BTreeSet<Ulid>,
    last: Option<Ulid>,
}

impl Iterator for ByEndpoint<'_> {
    type Item = Result<Ulid, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let next_delivery_ms = match self.deliveries.peek() {
                Some(Ok((d, _))) => Some(d.timestamp_ms()),
                Some(Err(_)) => return self.deliveries.next().and_then(|r| r.err()).map(Err),
                None => None,
            };
            // Every unscanned delivery (hence its event) is at or before `next_delivery_ms`.
            let exhausted = next_delivery_ms.is_none_or(|ms| ms < self.bounds.lo_ms());
            if let Some(best) = self.buffer.last().copied() {
                if exhausted || next_delivery_ms.is_some_and(|ms| best.timestamp_ms() > ms) {
                    self.buffer.remove(&best);
                    self.last = Some(best);
                    return Some(Ok(best));
                }
            } else if exhausted {
                return None;
            }
            match self.deliveries.next() {
                Some(Ok((_, evt))) => {
                    let fresh = self.last.is_none_or(|l| evt < l);
                    if fresh && self.bounds.contains(evt) {
                        self.buffer.insert(evt);
                    }
                }
                Some(Err(e)) => return Some(Err(e)),
                None => {}
            }
        }
    }
}

impl Store {
    pub fn event(&self, id: EventId) -> Result<Option<EventRecord>, StoreError> {
        Ok(self.stored_event(id)?.map(|s| s.record))
    }

    pub fn payload(&self, id: EventId) -> Result<Option<Payload>, StoreError> {
        match self.stored_event(id)? {
            Some(stored) => self.payload_of(&stored),
            None => Ok(None),
        }
    }

    /// An event and its payload, in one read where the payload is stored with the record.
    pub fn event_with_payload(
        &self,
        id: EventId,
    ) -> Result<Option<(EventRecord, Option<Payload>)>, StoreError> {
        let Some(stored) = self.stored_event(id)? else {
            return Ok(None);
        };
        let payload = self.payload_of(&stored)?;
        Ok(Some((stored.record, payload)))
    }

    /// An event's record as written, its status not rolled up from its deliveries (see
    /// `event_value`): for what needs only its deliveries' ids, or whether it is stored.
    pub(super) fn event_as_written(&self, id: EventId) -> Result<Option<EventRecord>, StoreError> {
        Ok(event_value::load_as_written(self.trees(), id)?.map(|s| s.record))
    }

    /// An event's value as stored (see `event_value`).
    pub(super) fn stored_event(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        event_value::load(self.trees(), id)
    }

    /// The payload stored with the record, or for an event written before layout 3, in the
    /// `payloads` tree.
    fn payload_of(&self, stored: &StoredEvent) -> Result<Option<Payload>, StoreError> {
        match stored.tail.inline()? {
            Some(p) => Ok(Some(p)),
            None if stored.record.payload_expired => Ok(None),
            None => get(&self.trees().payloads, &stored.record.id.to_key()),
        }
    }

    /// A delivery as the outside sees it: `in_flight` while an attempt holds it.
    pub fn delivery(&self, id: DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        Ok(self.stored_delivery(id)?.map(|d| self.as_seen(d)))
    }

    /// A stored delivery as the outside sees it (see [`Store::delivery`]).
    fn as_seen(&self, mut d: DeliveryRecord) -> DeliveryRecord {
        if !d.status.is_final() && self.inner.claims.held(d.id, now_ms()) {
            d.status = DeliveryStatus::InFlight;
        }
        d
    }

    /// A delivery's record as stored (a claim is not: see `claims`).
    pub(super) fn stored_delivery(
        &self,
        id: DeliveryId,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        delivery_value::read_record(self.trees(), id)
    }

    /// Deliveries of one event, oldest first.
    pub fn deliveries_of(&self, event: EventId) -> Result<Vec<DeliveryRecord>, StoreError> {
        let t = self.trees();
        let Some(e) = event_value::load_as_written(t, event)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(e.record.delivery_ids.len());
        for &id in &e.record.delivery_ids {
            if let Some(d) = e.delivery(t, id)? {
                out.push(self.as_seen(d));
            }
        }
        Ok(out)
    }

    /// Attempts of one delivery, in order.
    pub fn attempts(&self, delivery: DeliveryId) -> Result<Vec<AttemptRecord>, StoreError> {
        let t = self.trees();
        // The value first: a finish moves its attempt into the tree before it writes the next
        // one, so what the value held is then in the tree.
        // A delivery still in its event's value has made no attempt.
        let latest = match delivery_value::read_own(&t.deliveries, delivery)? {
            Some(d) => d.latest.decode()?,
            None => None,
        };
        let listed = t
            .attempts
            .scan_prefix(delivery.to_key())
            .map(|item| decode(&item?.1))
            .collect::<Result<_, _>>()?;
        Ok(delivery_value::merge(listed, latest))
    }

    /// Number of events stored (for metrics and tests).
    pub fn event_count(&self) -> usize {
        self.trees().events.len()
    }

    /// Number of entries in the due queue (metrics).
    pub fn queue_depth(&self) -> usize {
        self.trees().due.len() + self.inner.fresh.len()
    }

    /// One page of events matching `f`, newest first, below `before` (the previous page's
    /// `next`).
    pub fn list_events(
        &self,
        f: &EventFilter,
        before: Option<EventId>,
        limit: usize,
        budget: usize,
    ) -> Result<Page<EventRecord, EventId>, StoreError> {
        let Some(bounds) = Bounds::new(f.from, f.to, f.id_range, before.map(|b| b.0)) else {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        };
        let stream = self.event_stream(f, bounds)?;
        let mut items: Vec<EventRecord> = Vec::new();
        let mut spent = 0usize;
        for id in stream {
            let id = EventId(id?);
            if spent >= budget {
                // Out of budget: resume exactly here next time.
                let next = Ulid(id.0 .0.saturating_add(1));
                return Ok(Page {
                    items,
                    next: Some(EventId(next)),
                });
            }
            spent += 1;
            let Some(stored) = self.stored_event(id)? else {
                continue;
            };
            if !self.event_matches(f, &stored, &mut spent)? {
                continue;
            }
            if items.len() == limit {
                let next = items.last().map(|l| l.id);
                return Ok(Page { items, next });
            }
            items.push(stored.record);
        }
        Ok(Page { items, next: None })
    }

    /// The ids to examine, newest first, from the most selective index the filter allows.
    fn event_stream(&self, f: &EventFilter, b: Bounds) -> Result<IdIter<'_>, StoreError> {
        let t = self.trees();
        let namespaces = |tree: &Tree| -> Result<Vec<String>, StoreError> {
            match &f.namespaces {
                Some(set) => Ok(set.iter().cloned().collect()),
                None => distinct_segments(tree, &[]),
            }
        };
        if let Some(source) = &f.source {
            let streams = namespaces(&t.idx_source)?
                .iter()
                .map(|ns| index_range(&t.idx_source, name_prefix(ns, source), b))
                .collect();
            return Ok(merge(streams));
        }
        if !f.statuses.is_empty() {
            let mut streams = Vec::with_capacity(f.statuses.len() * 2);
            for s in &f.statuses {
                streams.push(index_range(&t.idx_status, vec![s.code()], b));
                // Finished since the compactor's last pass, not in the index yet.
                let reported = self.inner.compactor.reported(*s);
                let within = reported.into_iter().filter(move |id| b.contains(Ulid(*id)));
                streams.push(Box::new(within.map(|id| Ok(Ulid(id)))));
            }
            return Ok(merge(streams));
        }
        if let Some(endpoint) = &f.endpoint {
            let mut streams: Vec<IdIter<'_>> = Vec::new();
            for ns in namespaces(&t.idx_endpoint)? {
                // Deliveries of events within `b`: their ids are at or above its low end.
                let all_after = Bounds {
                    lo: b.lo,
                    hi: u128::MAX,
                };
                let prefix = name_prefix(&ns, endpoint);
                let scan = group_scan(&t.idx_endpoint, prefix, Width::Pair, all_after);
                streams.push(Box::new(ByEndpoint {
                    deliveries: scan.peekable(),
                    bounds: b,
                    buffer: BTreeSet::new(),
                    last: None,
                }));
            }
            return Ok(merge(streams));
        }
        if let Some(set) = &f.namespaces {
            // A namespace-scoped listing reads that namespace's sources, not every event.
            let mut streams = Vec::new();
            for ns in set {
                let ns_prefix = concat(&[ns.as_bytes(), &[0]]);
                for source in distinct_segments(&t.idx_source, &ns_prefix)? {
                    streams.push(index_range(&t.idx_source, name_prefix(ns, &source), b));
                }
            }
            return Ok(merge(streams));
        }
        Ok(key_range(&t.events, b))
    }

    fn event_matches(
        &self,
        f: &EventFilter,
        stored: &StoredEvent,
        spent: &mut usize,
    ) -> Result<bool, StoreError> {
        let e = &stored.record;
        if f.namespaces
            .as_ref()
            .is_some_and(|s| !s.contains(&e.namespace))
            || f.source.as_ref().is_some_and(|s| *s != e.source)
            || (!f.statuses.is_empty() && !f.statuses.contains(&e.status))
            || f.signature_valid
                .is_some_and(|v| e.signature_valid != Some(v))
        {
            return Ok(false);
        }
        if let Some(glob) = &f.event_type {
            if !e.event_type.as_deref().is_some_and(|t| glob.matches(t)) {
                return Ok(false);
            }
        }
        if let Some(endpoint) = &f.endpoint {
            let mut found = false;
            for id in &e.delivery_ids {
                if stored
                    .delivery(self.trees(), *id)?
                    .is_some_and(|d| d.endpoint == *endpoint)
                {
                    found = true;
                    break;
                }
            }
            if !found {
                return Ok(false);
            }
        }
        if let Some(needle) = &f.payload_contains {
            *spent += PAYLOAD_COST;
            let Some(p) = self.payload_of(stored)? else {
                return Ok(false);
            };
            if !contains(&p.body, needle) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// One page of the delivery log, newest first, below `before`.
    pub fn list_deliveries(
        &self,
        f: &DeliveryFilter,
        before: Option<DeliveryId>,
        limit: usize,
        budget: usize,
    ) -> Result<Page<DeliveryRecord, DeliveryId>, StoreError> {
        let Some(b) = Bounds::new(f.from, f.to, None, before.map(|b| b.0)) else {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        };
        let t = self.trees();
        let stream: IdIter<'_> = if let Some(evt) = f.event_id {
            let mut ids: Vec<Ulid> = self
                .event_as_written(evt)?
                .map(|e| e.delivery_ids.iter().map(|d| d.0).collect())
                .unwrap_or_default();
            ids.retain(|id| b.contains(*id));
            ids.sort_unstable_by(|a, b| b.cmp(a));
            Box::new(ids.into_iter().map(Ok))
        } else if let Some(endpoint) = &f.endpoint {
            let namespaces = match &f.namespaces {
                Some(set) => set.iter().cloned().collect(),
                None => distinct_segments(&t.idx_endpoint, &[])?,
            };
            merge(
                namespaces
                    .iter()
                    .map(|ns| -> IdIter<'_> {
                        let scan =
                            group_scan(&t.idx_endpoint, name_prefix(ns, endpoint), Width::Pair, b);
                        Box::new(scan.map(|m| m.map(|(delivery, _)| delivery)))
                    })
                    .collect(),
            )
        } else {
            merge(vec![
                key_range(&t.deliveries, b),
                initial_range(&t.events, b),
            ])
        };
        let mut items: Vec<DeliveryRecord> = Vec::new();
        for (spent, id) in stream.enumerate() {
            let id = DeliveryId(id?);
            if spent >= budget {
                return Ok(Page {
                    items,
                    next: Some(DeliveryId(Ulid(id.0 .0.saturating_add(1)))),
                });
            }
            let Some(d) = self.delivery(id)? else {
                continue;
            };
            let matches = f
                .namespaces
                .as_ref()
                .is_none_or(|s| s.contains(&d.namespace))
                && f.event_id.is_none_or(|e| e == d.event_id)
                && f.endpoint.as_ref().is_none_or(|e| *e == d.endpoint)
                && (f.statuses.is_empty() || f.statuses.contains(&d.status));
            if !matches {
                continue;
            }
            if items.len() == limit {
                let next = items.last().map(|l| l.id);
                return Ok(Page { items, next });
            }
            items.push(d);
        }
        Ok(Page { items, next: None })
    }
}

/// Whether `haystack` contains `needle`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_cover_whole_milliseconds() {
        let b = Bounds::new(Some(10), Some(10), None, None).expect("non-empty");
        assert_eq!(Ulid(b.lo).timestamp_ms(), 10);
        assert_eq!(Ulid(b.hi).timestamp_ms(), 10);
        assert!(Bounds::new(Some(11), Some(10), None, None).is_none());
        assert!(Bounds::new(None, None, None, Some(Ulid(0))).is_none());
    }

    #[test]
    fn substring() {
        assert!(contains(b"hello world", b"o w"));
        assert!(!contains(b"hello", b"world"));
        assert!(contains(b"x", b""));
    }
}
