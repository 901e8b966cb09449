//! How an event is stored: one value in `events`, the record and then its payload, so ingest
//! writes one key for both (layout 3).
//!
//! `[FORMAT_WITH_PAYLOAD] postcard(EventRecord) postcard(Payload)?`: the payload follows the
//! record until retention removes it. Listings decode the record and never touch the bytes
//! after it. A record of layouts 1 and 2 (`codec`'s first format, payload in the `payloads`
//! tree) still reads; a rewrite of one (retention, a replay) keeps its payload where it is.
//!
//! Since layout 5 a status change is not such a rewrite: an event's status is rolled up from
//! its deliveries' records when it is read ([`load`]), so a finish writes the delivery alone.
//! The record keeps the status it was written with (pending or unrouted at ingest), which is
//! what an event without delivery records reads as.

use sled::IVec;

use super::codec;
use super::delivery_value;
use super::errors::StoreError;
use super::handle::Trees;
use super::model::{rollup, DeliveryStatus, EventId, EventRecord, EventStatus, Payload};

/// The format byte of a record followed by its payload.
const FORMAT_WITH_PAYLOAD: u8 = 2;

/// A new event's value: the record, then the payload (none once expired).
pub(crate) fn encode(
    record: &EventRecord,
    payload: Option<&Payload>,
) -> Result<Vec<u8>, StoreError> {
    let mut out = codec::encode_as(FORMAT_WITH_PAYLOAD, record)?;
    if let Some(p) = payload {
        postcard::to_io(p, &mut out).map_err(codec::postcard_error)?;
    }
    Ok(out)
}

/// An event as stored, with its status rolled up from its deliveries' records.
pub(crate) fn load(t: &Trees, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
    let Some(mut stored) = load_as_written(t, id)? else {
        return Ok(None);
    };
    stored.record.status = status(t, &stored.record)?;
    Ok(Some(stored))
}

/// An event's value as it was written, its status the record's (see the module docs).
pub(crate) fn load_as_written(t: &Trees, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
    t.events
        .get(id.to_key())?
        .map(StoredEvent::decode)
        .transpose()
}

/// `e`'s status from its deliveries' records; the record's own when none is there.
pub(crate) fn status(t: &Trees, e: &EventRecord) -> Result<EventStatus, StoreError> {
    let mut statuses = Vec::with_capacity(e.delivery_ids.len());
    for id in &e.delivery_ids {
        if let Some(s) = delivery_value::status(&t.deliveries, *id)? {
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

/// An event's value as read: the record, and where its payload is.
pub(crate) struct StoredEvent {
    pub record: EventRecord,
    pub payload: PayloadSlot,
}

/// Where a stored event's payload is, kept beside the decoded record so that a rewrite of the
/// record carries the payload bytes over without decoding them.
pub(crate) struct PayloadSlot {
    raw: IVec,
    /// Where the payload starts in `raw`; `None` for a record of the older format.
    at: Option<usize>,
}

impl StoredEvent {
    pub fn decode(raw: IVec) -> Result<Self, StoreError> {
        match codec::decode_first(&raw, FORMAT_WITH_PAYLOAD)? {
            Some((record, at)) => Ok(StoredEvent {
                record,
                payload: PayloadSlot { raw, at: Some(at) },
            }),
            None => Ok(StoredEvent {
                record: codec::decode(&raw)?,
                payload: PayloadSlot { raw, at: None },
            }),
        }
    }
}

impl PayloadSlot {
    /// The payload stored with the record. `None` when retention removed it, and for a record
    /// of the older format, whose payload lives in the `payloads` tree.
    pub fn inline(&self) -> Result<Option<Payload>, StoreError> {
        match self.at.map(|at| &self.raw[at..]) {
            None | Some([]) => Ok(None),
            Some(bytes) => postcard::from_bytes(bytes)
                .map(Some)
                .map_err(codec::postcard_error),
        }
    }

    /// Whether the value carries a payload after the record.
    pub fn is_inline(&self) -> bool {
        self.at.is_some_and(|at| at < self.raw.len())
    }

    /// The value of `record` with this payload where it was: after the record in the new
    /// format; in the `payloads` tree for the older one, which is written as it was.
    pub fn rewrite(&self, record: &EventRecord) -> Result<Vec<u8>, StoreError> {
        match self.at {
            Some(at) => {
                let mut out = codec::encode_as(FORMAT_WITH_PAYLOAD, record)?;
                out.extend_from_slice(&self.raw[at..]);
                Ok(out)
            }
            None => codec::encode(record),
        }
    }

    /// The value of `record` without the payload (retention).
    pub fn dropped(&self, record: &EventRecord) -> Result<Vec<u8>, StoreError> {
        match self.at {
            Some(_) => encode(record, None),
            None => codec::encode(record),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::new_event;
    use super::*;

    #[test]
    fn the_record_and_its_payload_round_trip_and_rewrites_keep_the_payload() {
        let new = new_event("github", 1, None, 10);
        let raw = encode(&new.event, Some(&new.payload)).expect("encode");
        let stored = StoredEvent::decode(IVec::from(raw)).expect("decode");
        assert_eq!(stored.record, new.event);
        assert_eq!(
            stored.payload.inline().expect("payload"),
            Some(new.payload.clone())
        );

        let mut changed = new.event.clone();
        changed.status = crate::store::EventStatus::Delivered;
        changed.config_hash = "a longer config hash than before".into();
        let again = StoredEvent::decode(IVec::from(
            stored.payload.rewrite(&changed).expect("rewrite"),
        ))
        .expect("decode");
        assert_eq!(again.record, changed);
        assert_eq!(
            again.payload.inline().expect("payload"),
            Some(new.payload.clone())
        );

        let expired = StoredEvent::decode(IVec::from(
            again.payload.dropped(&changed).expect("rewrite"),
        ))
        .expect("decode");
        assert!(!expired.payload.is_inline());
        assert_eq!(expired.payload.inline().expect("payload"), None);
        assert_eq!(expired.record, changed);
    }

    #[test]
    fn a_record_of_the_older_format_reads_and_stays_in_it() {
        let new = new_event("github", 1, None, 10);
        let old = codec::encode(&new.event).expect("encode");
        let stored = StoredEvent::decode(IVec::from(old.clone())).expect("decode");
        assert_eq!(stored.record, new.event);
        assert!(!stored.payload.is_inline());
        assert_eq!(stored.payload.rewrite(&new.event).expect("rewrite"), old);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[FORMAT_WITH_PAYLOAD][..],
            &[FORMAT_WITH_PAYLOAD, 0xff, 0xff][..],
            &[9, 1][..],
        ] {
            assert!(StoredEvent::decode(IVec::from(bad)).is_err(), "{bad:?}");
        }
        let new = new_event("github", 1, None, 10);
        let mut raw = encode(&new.event, Some(&new.payload)).expect("encode");
        raw.truncate(raw.len() - 3);
        let cut = StoredEvent::decode(IVec::from(raw)).expect("the record is whole");
        assert!(cut.payload.inline().is_err());
    }
}
