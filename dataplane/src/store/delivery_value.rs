//! How a delivery is stored: one value in `deliveries`, its record and then, since layout 5,
//! its latest attempt, so a finish writes the attempt and the outcome it decided as one key.
//! Since layout 6 a new event's first deliveries are in the event's value until their first
//! change writes them here ([`read`] finds them in either place).
//!
//! `[FORMAT_WITH_ATTEMPT] postcard(DeliveryRecord) postcard(AttemptRecord)?`. The attempt after
//! the record is the latest one and is not in `attempts` yet: the next attempt's finish moves it
//! there before it writes the value with the new one (a crash between leaves both copies, the
//! same attempt, which [`merge`] reads once). Records of `codec`'s first format (layouts 1 to
//! 4, and deliveries never attempted) have every attempt in `attempts`.

use serde::Deserialize;
use sled::IVec;

use super::codec;
use super::errors::StoreError;
use super::event_value;
use super::handle::Trees;
use super::model::{AttemptRecord, DeliveryId, DeliveryRecord, DeliveryStatus, EventId};

const FORMAT_WITH_ATTEMPT: u8 = 2;

/// A delivery's value as read: the record, and the latest attempt's bytes after it.
pub(crate) struct StoredDelivery {
    pub record: DeliveryRecord,
    pub latest: LatestAttempt,
}

/// The latest attempt in a delivery's value (if any), kept as bytes so a rewrite of the record
/// carries it over without decoding it.
pub(crate) struct LatestAttempt {
    raw: Option<IVec>,
    /// Where the attempt starts in `raw`.
    at: usize,
}

impl LatestAttempt {
    /// None: a delivery not written yet, or of the older format.
    pub const NONE: LatestAttempt = LatestAttempt { raw: None, at: 0 };

    fn bytes(&self) -> &[u8] {
        match &self.raw {
            Some(raw) => raw.get(self.at..).unwrap_or_default(),
            None => &[],
        }
    }

    pub fn decode(&self) -> Result<Option<AttemptRecord>, StoreError> {
        match self.bytes() {
            [] => Ok(None),
            bytes => postcard::from_bytes(bytes)
                .map(Some)
                .map_err(codec::postcard_error),
        }
    }
}

impl StoredDelivery {
    pub fn decode(raw: IVec) -> Result<Self, StoreError> {
        match codec::decode_first(&raw, FORMAT_WITH_ATTEMPT)? {
            Some((record, at)) => Ok(StoredDelivery {
                record,
                latest: LatestAttempt { raw: Some(raw), at },
            }),
            None => Ok(StoredDelivery {
                record: codec::decode(&raw)?,
                latest: LatestAttempt::NONE,
            }),
        }
    }
}

/// The delivery `id` as stored: under its own key, or, until its first change, in its event's
/// value as written with it at ingest (see `event_value`), without an attempt yet.
pub(crate) fn read(t: &Trees, id: DeliveryId) -> Result<Option<StoredDelivery>, StoreError> {
    Ok(read_with_event(t, id)?.map(|(d, _)| d))
}

/// [`read`], with the event's value when the delivery was found in it.
pub(crate) fn read_with_event(
    t: &Trees,
    id: DeliveryId,
) -> Result<Option<(StoredDelivery, Option<sled::IVec>)>, StoreError> {
    if let Some(d) = read_own(&t.deliveries, id)? {
        return Ok(Some((d, None)));
    }
    let Some(event) = id.initial_of() else {
        return Ok(None);
    };
    let Some(raw) = t.events.get(event.to_key())? else {
        return Ok(None);
    };
    let Some(record) = event_value::initial_delivery(&raw, id)? else {
        return Ok(None);
    };
    let d = StoredDelivery {
        record,
        latest: LatestAttempt::NONE,
    };
    Ok(Some((d, Some(raw))))
}

/// The record of the delivery `id`, wherever it is (see [`read`]).
pub(crate) fn read_record(t: &Trees, id: DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
    Ok(read(t, id)?.map(|d| d.record))
}

/// The delivery `id` under its own key in `deliveries`.
pub(crate) fn read_own(
    deliveries: &sled::Tree,
    id: DeliveryId,
) -> Result<Option<StoredDelivery>, StoreError> {
    deliveries
        .get(id.to_key())?
        .map(StoredDelivery::decode)
        .transpose()
}

/// The status of the delivery under its own key `id`, decoded without the rest of its record
/// (see `event_value`, which rolls events up from it on every read).
pub(crate) fn own_status(
    deliveries: &sled::Tree,
    id: DeliveryId,
) -> Result<Option<DeliveryStatus>, StoreError> {
    let Some(raw) = deliveries.get(id.to_key())? else {
        return Ok(None);
    };
    match raw.split_first() {
        Some((&(codec::FORMAT_V1 | FORMAT_WITH_ATTEMPT), rest)) => {
            let (head, _) =
                postcard::take_from_bytes::<Head<'_>>(rest).map_err(codec::postcard_error)?;
            Ok(Some(head.status))
        }
        _ => Err(StoreError::Codec(format!(
            "unknown format of delivery {id}"
        ))),
    }
}

/// The fields of a [`DeliveryRecord`] up to its status, in its order, strings borrowed.
#[derive(Deserialize)]
struct Head<'a> {
    _id: DeliveryId,
    _event_id: EventId,
    _namespace: &'a str,
    _endpoint: &'a str,
    _subscription: Option<&'a str>,
    status: DeliveryStatus,
}

/// The value of `record` followed by `latest`: the attempt a finish just made, or the one the
/// value held (a requeue).
pub(crate) fn encode(record: &DeliveryRecord, latest: Latest<'_>) -> Result<Vec<u8>, StoreError> {
    let mut out = codec::encode_as(FORMAT_WITH_ATTEMPT, record)?;
    match latest {
        Latest::New(a) => return postcard::to_extend(a, out).map_err(codec::postcard_error),
        Latest::Kept(kept) => out.extend_from_slice(kept.bytes()),
    }
    Ok(out)
}

/// What follows the record in a rewritten delivery value.
pub(crate) enum Latest<'a> {
    New(&'a AttemptRecord),
    Kept(&'a LatestAttempt),
}

/// A delivery's attempts in order: those in `attempts`, and the latest from its value (which
/// wins over a copy of the same number a crash left in the tree).
pub(crate) fn merge(
    mut listed: Vec<AttemptRecord>,
    latest: Option<AttemptRecord>,
) -> Vec<AttemptRecord> {
    if let Some(a) = latest {
        listed.retain(|l| l.number != a.number);
        let at = listed.partition_point(|l| l.number < a.number);
        listed.insert(at, a);
    }
    listed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(number: u32, code: u16) -> AttemptRecord {
        AttemptRecord {
            number,
            started_at: 5,
            duration_ms: 1,
            status_code: Some(code),
            response_body: b"body".to_vec(),
            error: None,
        }
    }

    #[test]
    fn the_record_and_its_latest_attempt_round_trip_and_a_rewrite_keeps_the_attempt() {
        let d = DeliveryRecord::new(EventId::generate(), "ns", "ep", Some("sub"), 1);
        let a = attempt(1, 503);
        let raw = encode(&d, Latest::New(&a)).expect("encode");
        let stored = StoredDelivery::decode(IVec::from(raw)).expect("decode");
        assert_eq!(stored.record, d);
        assert_eq!(stored.latest.decode().expect("attempt"), Some(a.clone()));

        let mut moved = d.clone();
        moved.next_attempt_at = Some(99);
        let again = StoredDelivery::decode(IVec::from(
            encode(&moved, Latest::Kept(&stored.latest)).expect("encode"),
        ))
        .expect("decode");
        assert_eq!(again.record, moved);
        assert_eq!(again.latest.decode().expect("attempt"), Some(a));

        let none = StoredDelivery::decode(IVec::from(
            encode(&d, Latest::Kept(&LatestAttempt::NONE)).expect("encode"),
        ))
        .expect("decode");
        assert_eq!(none.latest.decode().expect("attempt"), None);
    }

    #[test]
    fn the_status_reads_alone_from_either_format() {
        let tree = sled::Config::new()
            .temporary(true)
            .open()
            .and_then(|db| db.open_tree("deliveries"))
            .expect("open");
        let mut d = DeliveryRecord::new(EventId::generate(), "ns", "ep", Some("sub"), 1);
        d.status = DeliveryStatus::Retrying;
        tree.insert(d.id.to_key(), codec::encode(&d).expect("encode"))
            .expect("write");
        assert_eq!(
            own_status(&tree, d.id).expect("read"),
            Some(DeliveryStatus::Retrying)
        );
        d.status = DeliveryStatus::Success;
        let value = encode(&d, Latest::New(&attempt(1, 200))).expect("encode");
        tree.insert(d.id.to_key(), value).expect("write");
        assert_eq!(
            own_status(&tree, d.id).expect("read"),
            Some(DeliveryStatus::Success)
        );
        assert_eq!(
            own_status(&tree, DeliveryId::generate()).expect("read"),
            None
        );
        tree.insert(d.id.to_key(), &[7u8, 1][..]).expect("write");
        assert!(own_status(&tree, d.id).is_err());
    }

    #[test]
    fn a_record_of_the_older_format_reads_without_an_attempt() {
        let d = DeliveryRecord::new(EventId::generate(), "ns", "ep", None, 1);
        let stored =
            StoredDelivery::decode(IVec::from(codec::encode(&d).expect("encode"))).expect("read");
        assert_eq!(stored.record, d);
        assert_eq!(stored.latest.decode().expect("attempt"), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[FORMAT_WITH_ATTEMPT][..],
            &[FORMAT_WITH_ATTEMPT, 0xff, 0xff][..],
            &[9, 1][..],
        ] {
            assert!(StoredDelivery::decode(IVec::from(bad)).is_err(), "{bad:?}");
        }
        let d = DeliveryRecord::new(EventId::generate(), "ns", "ep", None, 1);
        let mut raw = encode(&d, Latest::New(&attempt(1, 500))).expect("encode");
        raw.truncate(raw.len() - 2);
        let cut = StoredDelivery::decode(IVec::from(raw)).expect("the record is whole");
        assert!(cut.latest.decode().is_err());
    }

    #[test]
    fn the_latest_attempt_joins_the_listed_ones_once_and_in_order() {
        let listed = vec![attempt(1, 500), attempt(2, 502)];
        let numbers = |v: Vec<AttemptRecord>| v.iter().map(|a| a.number).collect::<Vec<_>>();
        assert_eq!(
            numbers(merge(listed.clone(), Some(attempt(3, 200)))),
            [1, 2, 3]
        );
        // A crash after the move left a copy in the tree: the value's wins.
        let merged = merge(listed.clone(), Some(attempt(2, 200)));
        assert_eq!(numbers(merged.clone()), [1, 2]);
        assert_eq!(merged[1].status_code, Some(200));
        assert_eq!(numbers(merge(listed, None)), [1, 2]);
    }
}
