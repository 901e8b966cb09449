//! Routing: which subscriptions an event matches, hence which endpoints get a delivery.

use std::sync::OnceLock;

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
    pub body: &'a LazyJson<'a>,
}

/// A request body as routing and field extraction see it: parsed as JSON on first use, because
/// most sources and subscriptions never look inside it and a parse costs more than the HMAC.
pub struct LazyJson<'a> {
    raw: &'a [u8],
    parsed: OnceLock<Option<Value>>,
}

impl<'a> LazyJson<'a> {
    pub fn lazy(raw: &'a [u8]) -> Self {
        LazyJson {
            raw,
            parsed: OnceLock::new(),
        }
    }

    /// A body that is already a JSON value (the publish API).
    pub fn parsed(value: Value) -> LazyJson<'static> {
        LazyJson {
            raw: &[],
            parsed: OnceLock::from(Some(value)),
        }
    }

    /// The body as JSON, when it is a JSON object or array.
    pub fn get(&self) -> Option<&Value> {
        self.parsed
            .get_or_init(|| {
                let first = self.raw.iter().find(|b| !b.is_ascii_whitespace())?;
                if *first == b'{' || *first == b'[' {
                    serde_json::from_slice(self.raw).ok()
                } else {
                    None
                }
            })
            .as_ref()
    }
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
            .all(|m| matches(m, &|leaf| body_test(leaf, input.body.get())));
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

#[cfg(test)]
mod tests {
    use hookmesh_api::config::{
        FilterConfig, GatewayConfig, Leaf, Matcher, SubscriptionConfig, Test,
    };
    use http::HeaderMap;
    use serde_json::json;

    use super::*;

    fn sub(
        name: &str,
        endpoint: &str,
        sources: &[&str],
        filter: FilterConfig,
    ) -> SubscriptionConfig {
        SubscriptionConfig {
            namespace: "shop".into(),
            name: name.into(),
            endpoint: endpoint.into(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
            filter,
            dead_letter: None,
        }
    }

    fn leaf(field: &str, test: Test) -> Leaf {
        Leaf {
            field: field.into(),
            test,
        }
    }

    fn types(globs: &[&str]) -> FilterConfig {
        FilterConfig {
            event_types: globs.iter().map(|g| g.to_string()).collect(),
            ..FilterConfig::default()
        }
    }

    fn endpoints(
        live: &Live,
        source: &str,
        event_type: Option<&str>,
        headers: &HeaderMap,
        body: Option<&Value>,
    ) -> Vec<String> {
        let body = body.map_or(LazyJson::lazy(b""), |v| LazyJson::parsed(v.clone()));
        route(
            live,
            &RouteInput {
                namespace: "shop",
                source,
                event_type,
                headers,
                body: &body,
            },
        )
        .into_iter()
        .map(|r| r.endpoint)
        .collect()
    }

    #[test]
    fn event_type_globs_and_sources() {
        let live = Live::new(GatewayConfig {
            hash: "h".into(),
            subscriptions: vec![
                sub("a-orders", "orders", &[], types(&["order.*"])),
                sub("b-all", "audit", &[], types(&[])),
                sub("c-star", "star", &["stripe"], types(&["*"])),
                sub("d-one", "one", &[], types(&["invoice.?aid"])),
            ],
            ..GatewayConfig::default()
        });
        let h = HeaderMap::new();
        let table: &[(&str, Option<&str>, &[&str])] = &[
            ("github", Some("order.created"), &["orders", "audit"]),
            ("github", Some("order"), &["audit"]),
            ("stripe", Some("order.paid"), &["orders", "audit", "star"]),
            ("stripe", None, &["audit"]),
            ("github", Some("invoice.paid"), &["audit", "one"]),
            ("github", Some("invoice.unpaid"), &["audit"]),
        ];
        for (source, event_type, want) in table {
            assert_eq!(
                endpoints(&live, source, *event_type, &h, None),
                *want,
                "{source} {event_type:?}"
            );
        }
        // Another namespace sees none of these.
        let other = route(
            &live,
            &RouteInput {
                namespace: "other",
                source: "github",
                event_type: Some("order.x"),
                headers: &h,
                body: &LazyJson::lazy(b""),
            },
        );
        assert!(other.is_empty());
    }

    #[test]
    fn one_delivery_per_endpoint_even_when_several_subscriptions_match() {
        let live = Live::new(GatewayConfig {
            hash: "h".into(),
            subscriptions: vec![
                sub("a", "ep", &[], types(&[])),
                sub("b", "ep", &[], types(&["*"])),
            ],
            ..GatewayConfig::default()
        });
        let routes = route(
            &live,
            &RouteInput {
                namespace: "shop",
                source: "s",
                event_type: Some("x"),
                headers: &HeaderMap::new(),
                body: &LazyJson::lazy(b""),
            },
        );
        assert_eq!(
            routes,
            vec![Route {
                subscription: "a".into(),
                endpoint: "ep".into()
            }]
        );
    }

    #[test]
    fn header_and_body_matchers() {
        let f = |headers: Vec<Matcher>, body: Vec<Matcher>| FilterConfig {
            event_types: vec![],
            headers,
            body,
        };
        let live = Live::new(GatewayConfig {
            hash: "h".into(),
            subscriptions: vec![
                sub(
                    "exact",
                    "exact",
                    &[],
                    f(
                        vec![],
                        vec![Matcher::Leaf(leaf("/livemode", Test::Exact("true".into())))],
                    ),
                ),
                sub(
                    "prefix",
                    "prefix",
                    &[],
                    f(
                        vec![],
                        vec![Matcher::Leaf(leaf("/cur", Test::Prefix("eu".into())))],
                    ),
                ),
                sub(
                    "suffix",
                    "suffix",
                    &[],
                    f(
                        vec![Matcher::Leaf(leaf(
                            "x-shop",
                            Test::Suffix(".myshopify.com".into()),
                        ))],
                        vec![],
                    ),
                ),
                sub(
                    "exists",
                    "exists",
                    &[],
                    f(
                        vec![Matcher::Leaf(leaf("x-tenant", Test::Exists(true)))],
                        vec![],
                    ),
                ),
                sub(
                    "absent",
                    "absent",
                    &[],
                    f(
                        vec![],
                        vec![Matcher::Leaf(leaf("/test", Test::Exists(false)))],
                    ),
                ),
                sub(
                    "any",
                    "any",
                    &[],
                    f(
                        vec![],
                        vec![Matcher::Any(vec![
                            leaf("/cur", Test::Exact("usd".into())),
                            leaf("/n", Test::Exact("42".into())),
                        ])],
                    ),
                ),
                sub(
                    "all",
                    "all",
                    &[],
                    f(
                        vec![],
                        vec![Matcher::All(vec![
                            leaf("/cur", Test::Exact("usd".into())),
                            leaf("/n", Test::Exact("42".into())),
                        ])],
                    ),
                ),
                sub(
                    "not",
                    "not",
                    &[],
                    f(
                        vec![],
                        vec![Matcher::Not(leaf("/cur", Test::Exact("usd".into())))],
                    ),
                ),
            ],
            ..GatewayConfig::default()
        });
        let mut h = HeaderMap::new();
        h.insert("x-shop", "acme.myshopify.com".parse().unwrap());
        let body = json!({"livemode": true, "cur": "usd", "n": 42});
        assert_eq!(
            endpoints(&live, "s", None, &h, Some(&body)),
            ["exact", "suffix", "absent", "any", "all"]
        );

        let mut h = HeaderMap::new();
        h.insert("x-tenant", "t1".parse().unwrap());
        h.insert("x-shop", "acme.example.com".parse().unwrap());
        let body = json!({"livemode": false, "cur": "eur", "test": null});
        assert_eq!(
            endpoints(&live, "s", None, &h, Some(&body)),
            ["prefix", "exists", "not"]
        );

        // A body that is not JSON: leaf tests fail, `exists: false` and `not` hold.
        assert_eq!(
            endpoints(&live, "s", None, &HeaderMap::new(), None),
            ["absent", "not"]
        );
    }
}
