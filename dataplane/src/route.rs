//! Routing: which subscriptions an event matches, hence which endpoints get a delivery.

use hookmesh_api::config::{Leaf, Matcher, Test};
use http::HeaderMap;
use serde_json::Value;

use crate::config::Live;

/// What routing looks at.
pub struct RouteInput<'a> {
    pub namespace: &'a str,
    pub source: &'a str,
    pub event_type: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The body parsed as JSON, when it is JSON.
    pub body: Option<&'a Value>,
}

/// One matched subscription and the endpoint it targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub subscription: String,
    pub endpoint: String,
}

/// Subscriptions in the event's namespace that match, at most one per endpoint (the first by
/// subscription name): two subscriptions to the same endpoint must not deliver twice.
pub fn route(live: &Live, input: &RouteInput<'_>) -> Vec<Route> {
    let mut out: Vec<Route> = Vec::new();
    let Some(subs) = live.subscriptions.get(input.namespace) else {
        return out;
    };
    for compiled in subs {
        let sub = live.subscription(compiled.index);
        if out.iter().any(|r| r.endpoint == sub.endpoint) {
            continue;
        }
        if !sub.sources.is_empty() && !sub.sources.iter().any(|s| s == input.source) {
            continue;
        }
        if !compiled.event_types.is_empty() {
            let Some(t) = input.event_type else { continue };
            if !compiled.event_types.iter().any(|g| g.matches(t)) {
                continue;
            }
        }
        let headers_ok = sub
            .filter
            .headers
            .iter()
            .all(|m| matches(m, &|leaf| header_test(leaf, input.headers)));
        let body_ok = sub
            .filter
            .body
            .iter()
            .all(|m| matches(m, &|leaf| body_test(leaf, input.body)));
        if headers_ok && body_ok {
            out.push(Route {
                subscription: sub.name.clone(),
                endpoint: sub.endpoint.clone(),
            });
        }
    }
    out
}

fn matches(m: &Matcher, leaf: &dyn Fn(&Leaf) -> bool) -> bool {
    match m {
        Matcher::Leaf(l) => leaf(l),
        Matcher::Any(ls) => ls.iter().any(leaf),
        Matcher::All(ls) => ls.iter().all(leaf),
        Matcher::Not(l) => !leaf(l),
    }
}

fn text_test(test: &Test, value: Option<&str>) -> bool {
    match (test, value) {
        (Test::Exists(want), v) => v.is_some() == *want,
        (_, None) => false,
        (Test::Exact(x), Some(v)) => v == x,
        (Test::Prefix(x), Some(v)) => v.starts_with(x.as_str()),
        (Test::Suffix(x), Some(v)) => v.ends_with(x.as_str()),
    }
}

/// A header repeated in the request matches when any of its values does (but `exists: false`
/// only when it is absent altogether).
fn header_test(leaf: &Leaf, headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(leaf.field.as_str()).iter().peekable();
    if values.peek().is_none() {
        return text_test(&leaf.test, None);
    }
    values.any(|v| text_test(&leaf.test, Some(&String::from_utf8_lossy(v.as_bytes()))))
}

/// Strings compare as themselves; numbers, booleans and null by their JSON text.
fn body_test(leaf: &Leaf, body: Option<&Value>) -> bool {
    let value = body.and_then(|b| b.pointer(&leaf.field));
    match value {
        None => text_test(&leaf.test, None),
        Some(Value::String(s)) => text_test(&leaf.test, Some(s)),
        Some(other) => text_test(&leaf.test, Some(&other.to_string())),
    }
}

/// The JSON text of a body value as used for event types and idempotency keys.
pub fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
