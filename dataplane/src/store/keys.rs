//! How keys are laid out. Every number is big-endian, so a range scan runs in time order.

use super::model::{DeliveryId, DeliveryRecord, EventId, EventStatus, Millis};

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

/// due time (ms) + delivery id, a delivery's entry in `due`.
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

/// status code + event id, the event's entry in `idx_status`.
pub(crate) fn status_key(status: EventStatus, id: EventId) -> Vec<u8> {
    concat(&[&[status.code()], &id.to_key()])
}

/// delivery id + attempt number, an attempt's key in `attempts`.
pub(crate) fn attempt_key(id: DeliveryId, number: u32) -> Vec<u8> {
    concat(&[&id.to_key(), &number.to_be_bytes()])
}

/// Smallest ULID of a millisecond (timestamps past the 48-bit range clamp to its end).
pub(crate) fn ulid_floor(ms: Millis) -> ulid::Ulid {
    ulid::Ulid(u128::from(ms.min((1 << 48) - 1)) << 80)
}

/// `dead_letters` keys: [`LINK_FROM`] + the dead-letter delivery's id -> where it came from;
/// [`LINK_TO`] + a dead-lettered delivery's id -> the delivery that took it on.
pub(crate) const LINK_FROM: u8 = b'f';
pub(crate) const LINK_TO: u8 = b't';

pub(crate) fn link_key(kind: u8, id: DeliveryId) -> Vec<u8> {
    concat(&[&[kind], &id.to_key()])
}
