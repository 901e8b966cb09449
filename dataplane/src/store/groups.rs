//! Group index entries: one key per index prefix per commit group instead of one per event.
//!
//! Which events came from a source, which deliveries go to an endpoint, which events were
//! unrouted: all of these are fixed when the event is written, so ingest writes them as derived
//! data, once per group. An entry is `prefix + the largest member id + GROUP` -> the members, sorted,
//! each [`Width`] bytes (for the endpoint index, a delivery id and its event id). Readers check
//! every member against its record (a member deleted since is skipped), so an entry is never
//! rewritten on the hot path; retention drops entries once every member is older than the
//! oldest event kept.
//!
//! Keys of one member (`prefix + id`, an empty value, or for the endpoint index the event id) are
//! what a layout-1 store holds, and what is still written for what changes after ingest (an
//! event's status once it is no longer unrouted or pending); they read as groups of one, so
//! opening a layout-1 store needs no migration. The trailing [`GROUP`] byte keeps the two kinds
//! of key apart, so a key of one member never overwrites a group.
//!
//! Each entry's members lie within [`SPAN_MS`] of its key, so a listing that starts below some
//! id only has to look that far above it for entries holding smaller members.

use super::keys::concat;
use super::model::Millis;

/// The last byte of a group entry's key.
pub(crate) const GROUP: u8 = b'g';

/// Largest distance, in id milliseconds, between an entry's key and its smallest member.
pub(crate) const SPAN_MS: Millis = 1_000;

/// How members are laid out in an entry's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Width {
    /// An id (event ids in `idx_source` and `idx_status`).
    Id,
    /// An id and the id it belongs to (a delivery and its event in `idx_endpoint`).
    Pair,
}

impl Width {
    fn bytes(self) -> usize {
        match self {
            Width::Id => 16,
            Width::Pair => 32,
        }
    }
}

/// A member: the id the index is ordered by, and the id it belongs to (the same for [`Width::Id`]).
pub(crate) type Member = (u128, u128);

/// An index entry: key and value.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// The entries for `members` under `prefix`: sorted, cut wherever the span would exceed
/// [`SPAN_MS`], each keyed by its largest member.
pub(crate) fn entries(
    prefix: &[u8],
    width: Width,
    mut members: Vec<Member>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    members.sort_unstable();
    members.dedup();
    let mut out = Vec::new();
    let mut chunk: Vec<Member> = Vec::new();
    for m in members {
        if chunk
            .first()
            .is_some_and(|first| ms(m.0).saturating_sub(ms(first.0)) > SPAN_MS)
        {
            out.push(entry(prefix, width, &chunk));
            chunk.clear();
        }
        chunk.push(m);
    }
    if !chunk.is_empty() {
        out.push(entry(prefix, width, &chunk));
    }
    out
}

fn entry(prefix: &[u8], width: Width, chunk: &[Member]) -> Entry {
    let max = chunk.last().map(|m| m.0).unwrap_or(0);
    let mut value = Vec::with_capacity(chunk.len() * width.bytes());
    for (id, of) in chunk {
        value.extend_from_slice(&id.to_be_bytes());
        if width == Width::Pair {
            value.extend_from_slice(&of.to_be_bytes());
        }
    }
    (concat(&[prefix, &max.to_be_bytes(), &[GROUP]]), value)
}

/// Whether the key ending in `tail` (what follows its prefix) is a group entry's, not a key of
/// one member's own.
pub(crate) fn is_group(tail: &[u8]) -> bool {
    tail.len() == 17 && tail[16] == GROUP
}

/// The members of the entry whose key ends in `tail` (what follows its prefix). `None` for a
/// key or value no writer of this index produces.
pub(crate) fn members(tail: &[u8], value: &[u8], width: Width) -> Option<Vec<Member>> {
    match tail.len() {
        16 => {
            let key = read(tail, 0)?;
            return match (width, value.len()) {
                (Width::Id, 0) => Some(vec![(key, key)]),
                (Width::Pair, 16) => Some(vec![(key, read(value, 0)?)]),
                _ => None,
            };
        }
        17 if is_group(tail) => {}
        _ => return None,
    }
    let w = width.bytes();
    if value.is_empty() || !value.len().is_multiple_of(w) {
        return None;
    }
    value
        .chunks_exact(w)
        .map(|c| {
            let id = read(c, 0)?;
            Some((
                id,
                if width == Width::Pair {
                    read(c, 16)?
                } else {
                    id
                },
            ))
        })
        .collect()
}

/// The same group entry's value without the members `gone` says are gone; `None` when none is
/// left. The outer `None`: not a group entry.
pub(crate) fn without(
    tail: &[u8],
    value: &[u8],
    width: Width,
    gone: impl Fn(&Member) -> bool,
) -> Option<Option<Vec<u8>>> {
    if !is_group(tail) {
        return None;
    }
    let kept: Vec<Member> = members(tail, value, width)?
        .into_iter()
        .filter(|m| !gone(m))
        .collect();
    if kept.is_empty() {
        return Some(None);
    }
    Some(Some(entry(&[], width, &kept).1))
}

/// The value of an entry holding the members of both values `a` and `b` (of entries under one
/// key, hence within one span), each once.
pub(crate) fn union(a: &[u8], b: &[u8], width: Width) -> Vec<u8> {
    let w = width.bytes();
    let mut all: Vec<&[u8]> = a.chunks_exact(w).chain(b.chunks_exact(w)).collect();
    all.sort_unstable();
    all.dedup();
    all.concat()
}

fn read(b: &[u8], at: usize) -> Option<u128> {
    Some(u128::from_be_bytes(b.get(at..at + 16)?.try_into().ok()?))
}

fn ms(id: u128) -> Millis {
    (id >> 80) as Millis
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, low: u128) -> u128 {
        (u128::from(ms) << 80) | low
    }

    #[test]
    fn a_union_holds_each_member_of_both_once_in_order() {
        let (k, a) = entry(
            b"p",
            Width::Id,
            &[(id(5, 1), id(5, 1)), (id(5, 3), id(5, 3))],
        );
        let (_, b) = entry(
            b"p",
            Width::Id,
            &[(id(5, 2), id(5, 2)), (id(5, 3), id(5, 3))],
        );
        let both = union(&a, &b, Width::Id);
        let ids: Vec<u128> = members(&k[1..], &both, Width::Id)
            .expect("an entry")
            .iter()
            .map(|m| m.0)
            .collect();
        assert_eq!(ids, vec![id(5, 1), id(5, 2), id(5, 3)]);
    }

    #[test]
    fn members_are_sorted_and_split_by_span() {
        let ms = [5_000, 5_300, 1_000, 5_999, 6_001];
        let list: Vec<Member> = ms.iter().map(|m| (id(*m, 1), id(*m, 1))).collect();
        let out = entries(b"p\0", Width::Id, list);
        let groups: Vec<Vec<u128>> = out
            .iter()
            .map(|(k, v)| {
                members(&k[2..], v, Width::Id)
                    .expect("parse")
                    .into_iter()
                    .map(|m| m.0)
                    .collect()
            })
            .collect();
        assert_eq!(
            groups,
            vec![
                vec![id(1_000, 1)],
                vec![id(5_000, 1), id(5_300, 1), id(5_999, 1)],
                vec![id(6_001, 1)],
            ]
        );
        // Keyed by the largest member.
        assert_eq!(&out[1].0[2..18], &id(5_999, 1).to_be_bytes());
        assert_eq!(out[1].0[18], GROUP);
    }

    #[test]
    fn layout_1_keys_read_as_groups_of_one() {
        let k = id(7, 9).to_be_bytes();
        assert_eq!(
            members(&k, &[], Width::Id),
            Some(vec![(id(7, 9), id(7, 9))])
        );
        let evt = id(6, 3).to_be_bytes();
        assert_eq!(
            members(&k, &evt, Width::Pair),
            Some(vec![(id(7, 9), id(6, 3))])
        );
        assert_eq!(members(&k, &[1, 2, 3], Width::Id), None);
        assert_eq!(members(&k[..15], &[], Width::Id), None);
        // A key of one member is not a group: nothing to drop members from.
        assert_eq!(without(&k, &[], Width::Id, |_| true), None);
    }

    #[test]
    fn pairs_round_trip_and_members_can_be_dropped() {
        let pairs = vec![(id(10, 2), id(9, 1)), (id(10, 1), id(9, 1))];
        let out = entries(b"", Width::Pair, pairs);
        assert_eq!(out.len(), 1);
        let (k, v) = &out[0];
        let k = &k[..];
        assert_eq!(
            members(k, v, Width::Pair),
            Some(vec![(id(10, 1), id(9, 1)), (id(10, 2), id(9, 1))])
        );
        let left = without(k, v, Width::Pair, |m| m.0 == id(10, 1)).expect("parse");
        let left = left.expect("one left");
        assert_eq!(
            members(k, &left, Width::Pair),
            Some(vec![(id(10, 2), id(9, 1))])
        );
        assert_eq!(without(k, v, Width::Pair, |_| true), Some(None));
    }
}
