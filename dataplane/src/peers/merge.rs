//! Putting the pods' answers together. Pure functions over the JSON each pod returned, so the
//! rules are tested here without a network.
//!
//! Listings: ids are ULIDs that carry their node, so they are unique across pods and ordered by
//! time across pods; a cursor is "the ids below this one", which means the same thing on every
//! pod. Each pod answers its own page below the cursor; a pod whose page ended early (its page
//! was full, or its scan budget ran out) has looked only down to its own `next` id. The merged
//! page takes, newest first, at most `limit` items among those above the highest such `next`,
//! so nothing below a pod's horizon is skipped (no gaps), and the next cursor is the last item
//! given (no duplicates: every pod is next asked strictly below it).

use std::collections::BTreeMap;

use serde_json::Value;
use ulid::Ulid;

use crate::deliver::health::EndpointHealth;

/// One pod's page: its items with their ids, and where it stopped looking if it did.
pub struct PageIn {
    pub items: Vec<(Ulid, Value)>,
    pub next: Option<Ulid>,
}

/// The merged page and the exclusive upper bound the next page starts below (`None`: done).
pub fn pages(pages: Vec<PageIn>, limit: usize) -> (Vec<Value>, Option<Ulid>) {
    let horizon = pages.iter().filter_map(|p| p.next).max();
    let mut items: BTreeMap<Ulid, Value> = BTreeMap::new();
    for p in pages {
        for (id, v) in p.items {
            if horizon.is_none_or(|h| id >= h) {
                // The same id on two pods is one event caught mid-handoff: show it once.
                items.entry(id).or_insert(v);
            }
        }
    }
    let more = items.len() > limit;
    let page: Vec<(Ulid, Value)> = items.into_iter().rev().take(limit).collect();
    let next = match (more, page.last(), horizon) {
        (true, Some((last, _)), _) => Some(*last),
        (false, _, Some(h)) => Some(h),
        (false, _, None) => None,
        (true, None, _) => horizon,
    };
    (page.into_iter().map(|(_, v)| v).collect(), next)
}

/// The id of a listed item (`evt_...`, `dlv_...`).
pub fn item_id(v: &Value) -> Option<Ulid> {
    let id = v.get("id")?.as_str()?;
    let (_, ulid) = id.split_once('_')?;
    Ulid::from_string(ulid).ok()
}

/// Which config listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigKind {
    Sources,
    Endpoints,
    Subscriptions,
}

/// Add the other pods' counters into this pod's listing (matched by namespace and name; the
/// objects themselves come from the same config everywhere), list every pod's circuit state
/// under `pods`, and show the worst state of the set as the object's own.
pub fn config(kind: ConfigKind, mut local: Value, others: &[Value]) -> Value {
    let Some(items) = local.get_mut("data").and_then(Value::as_array_mut) else {
        return local;
    };
    for item in items.iter_mut() {
        let key = (item.get("namespace").cloned(), item.get("name").cloned());
        for other in others {
            let Some(theirs) = other.get("data").and_then(Value::as_array).and_then(|d| {
                d.iter()
                    .find(|o| (o.get("namespace").cloned(), o.get("name").cloned()) == key)
            }) else {
                continue;
            };
            match kind {
                ConfigKind::Sources => add_counters(item, theirs, "counters"),
                ConfigKind::Endpoints => {
                    add_counters(item, theirs, "counters");
                    if let (Some(mine), Some(more)) = (
                        item.get_mut("pods").and_then(Value::as_array_mut),
                        theirs.get("pods").and_then(Value::as_array),
                    ) {
                        mine.extend(more.iter().cloned());
                    }
                    worst(item, theirs, "circuit");
                    combine_health(item, theirs);
                }
                ConfigKind::Subscriptions => {
                    add_counters(item, theirs, "endpoint_counters");
                    worst(item, theirs, "endpoint_circuit");
                }
            }
        }
        if let Some(pods) = item.get_mut("pods").and_then(Value::as_array_mut) {
            pods.sort_by_key(|p| p.get("node").and_then(Value::as_u64));
        }
    }
    local
}

fn add_counters(item: &mut Value, theirs: &Value, field: &str) {
    let (Some(mine), Some(more)) = (
        item.get_mut(field).and_then(Value::as_object_mut),
        theirs.get(field).and_then(Value::as_object),
    ) else {
        return;
    };
    for (name, v) in mine.iter_mut() {
        let add = more.get(name).and_then(Value::as_u64).unwrap_or(0);
        if let Some(n) = v.as_u64() {
            *v = Value::from(n.saturating_add(add));
        }
    }
}

/// The set's health: see [`EndpointHealth::combine`]. A pod whose answer has no readable
/// `health` (an older version mid-rollout) adds nothing.
fn combine_health(item: &mut Value, theirs: &Value) {
    let read = |v: Option<&Value>| {
        v.cloned()
            .and_then(|h| serde_json::from_value::<EndpointHealth>(h).ok())
    };
    let (Some(mine), Some(more)) = (read(item.get("health")), read(theirs.get("health"))) else {
        return;
    };
    if let Ok(v) = serde_json::to_value(mine.combine(&more)) {
        item["health"] = v;
    }
}

/// `paused` beats `open` beats `half_open` beats `closed` beats `unknown`: one pod's paused or
/// open circuit is news.
fn worst(item: &mut Value, theirs: &Value, field: &str) {
    fn rank(s: Option<&str>) -> u8 {
        match s {
            Some("paused") => 4,
            Some("open") => 3,
            Some("half_open") => 2,
            Some("closed") => 1,
            _ => 0,
        }
    }
    let theirs = theirs.get(field).and_then(Value::as_str);
    if rank(theirs) > rank(item.get(field).and_then(Value::as_str)) {
        if let Some(t) = theirs {
            item[field] = Value::from(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page(ids: &[u128], next: Option<u128>) -> PageIn {
        PageIn {
            items: ids
                .iter()
                .map(|i| (Ulid(*i), json!({ "n": *i as u64 })))
                .collect(),
            next: next.map(Ulid),
        }
    }

    fn ns(v: &[Value]) -> Vec<u64> {
        v.iter().filter_map(|x| x["n"].as_u64()).collect()
    }

    #[test]
    fn pages_merge_newest_first_and_stop_at_the_limit() {
        let (items, next) = pages(vec![page(&[9, 5, 1], None), page(&[8, 7], None)], 3);
        assert_eq!(ns(&items), vec![9, 8, 7]);
        assert_eq!(next, Some(Ulid(7)));
        let (items, next) = pages(vec![page(&[5, 1], None), page(&[], None)], 3);
        assert_eq!(ns(&items), vec![5, 1]);
        assert_eq!(next, None);
    }

    #[test]
    fn nothing_below_a_pods_horizon_is_taken() {
        // Pod B stopped looking at 6 (its page was full there): pod A's 5 and 1 must wait for
        // the next page, or B's items between 1 and 6 would be skipped.
        let (items, next) = pages(vec![page(&[9, 5, 1], None), page(&[8, 6], Some(6))], 10);
        assert_eq!(ns(&items), vec![9, 8, 6]);
        assert_eq!(next, Some(Ulid(6)));
        // A budget stop with nothing found still moves the cursor on.
        let (items, next) = pages(vec![page(&[], Some(40))], 10);
        assert!(items.is_empty());
        assert_eq!(next, Some(Ulid(40)));
    }

    #[test]
    fn paging_through_merged_pages_sees_every_item_once() {
        // Three pods with interleaved ids; page by 4 through the merge, each pod answering
        // "below the cursor, up to limit" as the store does.
        let pods: Vec<Vec<u128>> = vec![
            (0..30).map(|i| i * 3 + 1).collect(),
            (0..30).map(|i| i * 3 + 2).collect(),
            (0..17).map(|i| i * 5 + 3).collect(),
        ];
        let answer = |pod: &Vec<u128>, before: Option<u128>, limit: usize| {
            let mut below: Vec<u128> = pod
                .iter()
                .copied()
                .filter(|i| before.is_none_or(|b| *i < b))
                .collect();
            below.sort_unstable_by(|a, b| b.cmp(a));
            let more = below.len() > limit;
            below.truncate(limit);
            let next = if more { below.last().copied() } else { None };
            page(&below, next)
        };
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (items, next) = pages(pods.iter().map(|p| answer(p, cursor, 4)).collect(), 4);
            seen.extend(ns(&items));
            match next {
                Some(n) => cursor = Some(n.0),
                None => break,
            }
        }
        let mut all: Vec<u64> = pods.iter().flatten().map(|i| *i as u64).collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        all.dedup();
        assert_eq!(seen, all);
    }

    #[test]
    fn config_counters_add_up_and_the_worst_circuit_shows() {
        let local = json!({"data": [{"namespace": "a", "name": "e", "circuit": "closed",
            "counters": {"delivered": 2, "failed": 0, "retried": 1},
            "pods": [{"node": 1, "circuit": "closed"}]}]});
        let other = json!({"data": [{"namespace": "a", "name": "e", "circuit": "open",
            "counters": {"delivered": 3, "failed": 4, "retried": 0},
            "pods": [{"node": 0, "circuit": "open"}]}]});
        let merged = config(ConfigKind::Endpoints, local, &[other]);
        let e = &merged["data"][0];
        assert_eq!(
            e["counters"],
            json!({"delivered": 5, "failed": 4, "retried": 1})
        );
        assert_eq!(e["circuit"], "open");
        assert_eq!(e["pods"][0]["node"], 0);
        assert_eq!(e["pods"][1]["node"], 1);
    }
}
