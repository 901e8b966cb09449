//! How an event is stored: one value in `events`, the record, its first deliveries and its
//! payload, so ingest writes one key for all three (layout 6).
//!
//! `[FORMAT_WITH_DELIVERIES] bytes(postcard(EventRecord)) bytes(postcard(Vec<DeliveryRecord>))
//! postcard(Payload)?`, where `bytes` is postcard's length-prefixed byte string. The first
//! deliveries are those planned at ingest, under ids the event's
//! id reserved (`DeliveryId::initial`), so a delivery id alone finds them here; each stays here
//! as written until its first change, which writes it under its own key in `deliveries` (see
//! `delivery_value`), and from then on that key is the delivery. Record and list are nested as
//! bytes so that a read of one skips the other without decoding it: a delivery is found in
//! its event's value without decoding the event's record. Listings decode
//! the record and never touch the bytes after it; the payload follows until retention removes
//! it.
//!
//! Older values still read: a record followed by its payload (layouts 3 to 5, every delivery
//! under its own key) and `codec`'s first format (layouts 1 and 2, payload in the `payloads`
//! tree). A rewrite of one (retention, a replay) keeps its format.
//!
//! Since layout 5 a status change is not such a rewrite: an event's status is rolled up from
//! its deliveries' records when it is read ([`load`]), so a finish writes the delivery alone.
//! The record keeps the status it was written with (pending or unrouted at ingest), which is
//! what an event without delivery records reads as.

use std::cell::OnceCell;

use sled::IVec;

use super::codec;
use super::delivery_value;
use super::errors::StoreError;
use super::handle::Trees;
use super::model::{
    rollup, DeliveryId, DeliveryRecord, DeliveryStatus, EventId, EventRecord, EventStatus, Payload,
};

/// The format byte of a record followed by its payload (layouts 3 to 5).
const FORMAT_WITH_PAYLOAD: u8 = 2;
/// The format byte of a record followed by its first deliveries and its payload (layout 6).
const FORMAT_WITH_DELIVERIES: u8 = 3;

/// A new event's value: the record, its first deliveries, then the payload (none once expired).
pub(crate) fn encode(
    record: &EventRecord,
    initial: &[&DeliveryRecord],
    payload: Option<&Payload>,
) -> Result<Vec<u8>, StoreError> {
    // Room for all of it, so the value is not copied as it grows: the payload's bytes, and a
    // generous allowance for the record, the deliveries and the headers' names.
    let room = payload.map_or(0, |p| {
        p.body.len() + p.headers.iter().map(|(_, v)| v.len() + 32).sum::<usize>()
    });
    let out = Vec::with_capacity(room + 256 * (2 + initial.len()));
    let out = nest(initial, head(FORMAT_WITH_DELIVERIES, record, out)?)?;
    match payload {
        Some(p) => postcard::to_extend(p, out).map_err(codec::postcard_error),
        None => Ok(out),
    }
}

/// `out` followed by `record` as the first part of a value of `format`.
fn head(format: u8, record: &EventRecord, mut out: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    out.push(format);
    if format == FORMAT_WITH_DELIVERIES {
        nest(record, out)
    } else {
        postcard::to_extend(record, out).map_err(codec::postcard_error)
    }
}

/// `out` followed by `value` as a byte string of its encoding: the length (postcard's varint,
/// as for any byte string), then the bytes in one copy (a slice serialized by serde goes byte
/// by byte).
fn nest<T: serde::Serialize + ?Sized>(value: &T, out: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    let bytes = postcard::to_stdvec(value).map_err(codec::postcard_error)?;
    let mut out = postcard::to_extend(&bytes.len(), out).map_err(codec::postcard_error)?;
    out.extend_from_slice(&bytes);
    Ok(out)
}

/// The parts of a value of the format with first deliveries; `None` for an older format.
struct Parts<'a> {
    record: &'a [u8],
    /// Where the bytes after the record start.
    after_record: usize,
    list: (usize, usize),
    payload_at: usize,
}

fn parts(raw: &[u8]) -> Result<Option<Parts<'_>>, StoreError> {
    let Some((&FORMAT_WITH_DELIVERIES, rest)) = raw.split_first() else {
        return Ok(None);
    };
    let take = |bytes| postcard::take_from_bytes::<&[u8]>(bytes).map_err(codec::postcard_error);
    let (record, rest) = take(rest)?;
    let after_record = raw.len() - rest.len();
    let (list, rest) = take(rest)?;
    let payload_at = raw.len() - rest.len();
    Ok(Some(Parts {
        record,
        after_record,
        list: (payload_at - list.len(), payload_at),
        payload_at,
    }))
}

/// The first delivery `id` in an event's stored value, read without decoding the record.
pub(crate) fn initial_delivery(
    raw: &[u8],
    id: DeliveryId,
) -> Result<Option<DeliveryRecord>, StoreError> {
    let Some(p) = parts(raw)? else {
        return Ok(None);
    };
    Ok(decode_list(raw, p.list)?.into_iter().find(|d| d.id == id))
}

/// The first deliveries encoded in `raw` between `from` and `to`.
fn decode_list(raw: &[u8], (from, to): (usize, usize)) -> Result<Vec<DeliveryRecord>, StoreError> {
    postcard::from_bytes(raw.get(from..to).unwrap_or_default()).map_err(codec::postcard_error)
}

/// An event as stored, with its status rolled up from its deliveries' records.
pub(crate) fn load(t: &Trees, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
    let Some(mut stored) = load_as_written(t, id)? else {
        return Ok(None);
    };
    stored.record.status = status(t, &stored)?;
    Ok(Some(stored))
}

/// An event's value as it was written, its status the record's (see the module docs).
pub(crate) fn load_as_written(t: &Trees, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
    t.events
        .get(id.to_key())?
        .map(StoredEvent::decode)
        .transpose()
}

/// The event's status from its deliveries' records; the record's own when none is there.
fn status(t: &Trees, stored: &StoredEvent) -> Result<EventStatus, StoreError> {
    let e = &stored.record;
    let mut statuses = Vec::with_capacity(e.delivery_ids.len());
    for id in &e.delivery_ids {
        if let Some(s) = stored.delivery_status(t, *id)? {
            statuses.push(s);
        }
    }
    Ok(rolled_up(&statuses, e.status))
}

/// An event's status from the statuses of the delivery records found, `as_written` (the
/// record's) when none is.
pub(crate) fn rolled_up(statuses: &[DeliveryStatus], as_written: EventStatus) -> EventStatus {
    if statuses.is_empty() {
        as_written
    } else {
        rollup(statuses)
    }
}

/// An event's value as read: the record, and the bytes after it (its first deliveries, its
/// payload).
pub(crate) struct StoredEvent {
    pub record: EventRecord,
    pub tail: Tail,
    /// The first deliveries, decoded on first use.
    initial: OnceCell<Vec<DeliveryRecord>>,
}

/// What a stored event's value holds after the record, kept as bytes beside the decoded record
/// so that a rewrite of the record carries them over without decoding them.
pub(crate) struct Tail {
    raw: IVec,
    shape: Shape,
}

#[derive(Clone, Copy)]
enum Shape {
    /// `codec`'s first format: the record alone, its payload in the `payloads` tree.
    RecordOnly,
    /// The record ends at `after_record`; the encoded list of first deliveries is
    /// `deliveries` (none in a value of the payload-only format); the payload starts at
    /// `payload_at`.
    Inline {
        format: u8,
        after_record: usize,
        deliveries: Option<(usize, usize)>,
        payload_at: usize,
    },
}

impl StoredEvent {
    pub fn decode(raw: IVec) -> Result<Self, StoreError> {
        let (record, shape) = if let Some(p) = parts(&raw)? {
            let record = postcard::from_bytes(p.record).map_err(codec::postcard_error)?;
            let shape = Shape::Inline {
                format: FORMAT_WITH_DELIVERIES,
                after_record: p.after_record,
                deliveries: Some(p.list),
                payload_at: p.payload_at,
            };
            (record, shape)
        } else if let Some((record, at)) = codec::decode_first(&raw, FORMAT_WITH_PAYLOAD)? {
            let shape = Shape::Inline {
                format: FORMAT_WITH_PAYLOAD,
                after_record: at,
                deliveries: None,
                payload_at: at,
            };
            (record, shape)
        } else {
            (codec::decode(&raw)?, Shape::RecordOnly)
        };
        Ok(StoredEvent {
            record,
            tail: Tail { raw, shape },
            initial: OnceCell::new(),
        })
    }

    /// The deliveries written with the event, as written (see the module docs).
    pub fn initial(&self) -> Result<&[DeliveryRecord], StoreError> {
        if let Some(list) = self.initial.get() {
            return Ok(list);
        }
        let list = match self.tail.shape {
            Shape::Inline {
                deliveries: Some(range),
                ..
            } => decode_list(&self.tail.raw, range)?,
            _ => Vec::new(),
        };
        Ok(self.initial.get_or_init(|| list))
    }

    /// One of the deliveries written with the event, as written.
    pub fn initial_delivery(&self, id: DeliveryId) -> Result<Option<&DeliveryRecord>, StoreError> {
        Ok(self.initial()?.iter().find(|d| d.id == id))
    }

    /// The status of the event's delivery `id`: its own key's, or as written with the event
    /// until it has one.
    pub fn delivery_status(
        &self,
        t: &Trees,
        id: DeliveryId,
    ) -> Result<Option<DeliveryStatus>, StoreError> {
        if let Some(s) = delivery_value::own_status(&t.deliveries, id)? {
            return Ok(Some(s));
        }
        Ok(self.initial_delivery(id)?.map(|d| d.status))
    }

    /// The event's delivery `id`: its own key's record, or as written with the event until it
    /// has one.
    pub fn delivery(
        &self,
        t: &Trees,
        id: DeliveryId,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        if let Some(d) = delivery_value::read_own(&t.deliveries, id)? {
            return Ok(Some(d.record));
        }
        Ok(self.initial_delivery(id)?.cloned())
    }
}

impl Tail {
    /// The payload stored with the record. `None` when retention removed it, and for a record
    /// of the oldest format, whose payload lives in the `payloads` tree.
    pub fn inline(&self) -> Result<Option<Payload>, StoreError> {
        match self.shape {
            Shape::Inline { payload_at, .. } if payload_at < self.raw.len() => {
                postcard::from_bytes(self.raw.get(payload_at..).unwrap_or_default())
                    .map(Some)
                    .map_err(codec::postcard_error)
            }
            _ => Ok(None),
        }
    }

    /// Whether the value carries a payload after the record.
    pub fn is_inline(&self) -> bool {
        matches!(self.shape, Shape::Inline { payload_at, .. } if payload_at < self.raw.len())
    }

    /// The value of `record` with what followed the record as it was, in the value's format
    /// (the oldest one's payload stays in the `payloads` tree).
    pub fn rewrite(&self, record: &EventRecord) -> Result<Vec<u8>, StoreError> {
        self.with(record, self.raw.len())
    }

    /// The value of `record` without the payload (retention), its first deliveries kept.
    pub fn dropped(&self, record: &EventRecord) -> Result<Vec<u8>, StoreError> {
        match self.shape {
            Shape::Inline { payload_at, .. } => self.with(record, payload_at),
            Shape::RecordOnly => codec::encode(record),
        }
    }

    /// `record` in the value's format, then the bytes after the old record up to `end`.
    fn with(&self, record: &EventRecord, end: usize) -> Result<Vec<u8>, StoreError> {
        match self.shape {
            Shape::Inline {
                format,
                after_record,
                ..
            } => {
                let rest = self.raw.get(after_record..end).unwrap_or_default();
                let mut out = head(format, record, Vec::with_capacity(rest.len() + 512))?;
                out.extend_from_slice(rest);
                Ok(out)
            }
            Shape::RecordOnly => codec::encode(record),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::new_event;
    use super::*;

    fn decoded(raw: Vec<u8>) -> StoredEvent {
        StoredEvent::decode(IVec::from(raw)).expect("decode")
    }

    #[test]
    fn the_record_its_deliveries_and_its_payload_round_trip_and_rewrites_keep_the_rest() {
        let new = new_event("github", 2, None, 10);
        let initial: Vec<&DeliveryRecord> = new.deliveries.iter().collect();
        let stored = decoded(encode(&new.event, &initial, Some(&new.payload)).expect("encode"));
        assert_eq!(stored.record, new.event);
        assert_eq!(stored.initial().expect("deliveries"), &new.deliveries[..]);
        let second = new.deliveries[1].id;
        assert_eq!(
            stored.initial_delivery(second).expect("read").map(|d| d.id),
            Some(second)
        );
        // Found in the value as stored, the record left undecoded.
        let raw = encode(&new.event, &initial, Some(&new.payload)).expect("encode");
        assert_eq!(
            initial_delivery(&raw, second).expect("read").as_ref(),
            Some(&new.deliveries[1])
        );
        assert_eq!(
            initial_delivery(&raw, DeliveryId::generate()).expect("read"),
            None
        );
        assert_eq!(
            stored.tail.inline().expect("payload"),
            Some(new.payload.clone())
        );

        let mut changed = new.event.clone();
        changed.status = crate::store::EventStatus::Delivered;
        changed.config_hash = "a longer config hash than before".into();
        let again = decoded(stored.tail.rewrite(&changed).expect("rewrite"));
        assert_eq!(again.record, changed);
        assert_eq!(again.initial().expect("deliveries"), &new.deliveries[..]);
        assert_eq!(
            again.tail.inline().expect("payload"),
            Some(new.payload.clone())
        );

        let expired = decoded(again.tail.dropped(&changed).expect("rewrite"));
        assert!(!expired.tail.is_inline());
        assert_eq!(expired.tail.inline().expect("payload"), None);
        assert_eq!(expired.record, changed);
        assert_eq!(expired.initial().expect("deliveries"), &new.deliveries[..]);
    }

    #[test]
    fn an_event_without_deliveries_reads_none() {
        let new = new_event("github", 0, None, 10);
        let stored = decoded(encode(&new.event, &[], Some(&new.payload)).expect("encode"));
        assert!(stored.initial().expect("deliveries").is_empty());
        assert_eq!(stored.tail.inline().expect("payload"), Some(new.payload));
    }

    /// Layouts 3 to 5: the record, then the payload; every delivery under its own key.
    #[test]
    fn a_record_followed_by_its_payload_reads_and_stays_in_its_format() {
        let new = new_event("github", 1, None, 10);
        let mut old = codec::encode_as(FORMAT_WITH_PAYLOAD, &new.event).expect("encode");
        postcard::to_io(&new.payload, &mut old).expect("encode");
        let stored = decoded(old.clone());
        assert_eq!(stored.record, new.event);
        assert!(stored.initial().expect("deliveries").is_empty());
        assert_eq!(stored.tail.inline().expect("payload"), Some(new.payload));
        let id = new.deliveries[0].id;
        assert_eq!(initial_delivery(&old, id).expect("read"), None);
        assert_eq!(stored.tail.rewrite(&new.event).expect("rewrite"), old);
        let dropped = stored.tail.dropped(&new.event).expect("rewrite");
        assert_eq!(
            dropped,
            codec::encode_as(FORMAT_WITH_PAYLOAD, &new.event).expect("encode")
        );
    }

    #[test]
    fn a_record_of_the_oldest_format_reads_and_stays_in_it() {
        let new = new_event("github", 1, None, 10);
        let old = codec::encode(&new.event).expect("encode");
        let stored = decoded(old.clone());
        assert_eq!(stored.record, new.event);
        assert!(!stored.tail.is_inline());
        assert!(stored.initial().expect("deliveries").is_empty());
        assert_eq!(stored.tail.rewrite(&new.event).expect("rewrite"), old);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[FORMAT_WITH_PAYLOAD][..],
            &[FORMAT_WITH_PAYLOAD, 0xff, 0xff][..],
            &[FORMAT_WITH_DELIVERIES][..],
            &[9, 1][..],
        ] {
            assert!(StoredEvent::decode(IVec::from(bad)).is_err(), "{bad:?}");
        }
        let new = new_event("github", 1, None, 10);
        let initial: Vec<&DeliveryRecord> = new.deliveries.iter().collect();
        let mut raw = encode(&new.event, &initial, Some(&new.payload)).expect("encode");
        raw.truncate(raw.len() - 3);
        let cut = decoded(raw);
        assert!(cut.tail.inline().is_err());
        // A list that says it is longer than the value is refused at decode.
        let mut short = encode(&new.event, &initial, None).expect("encode");
        short.truncate(short.len() - 1);
        assert!(StoredEvent::decode(IVec::from(short)).is_err());
    }
}
