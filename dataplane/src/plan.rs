//! Which deliveries an event gets. The one door through which new work enters the queue: ingest
//! plans the deliveries of a new event, replay those of a stored one, both here, and the store
//! writes them and wakes the delivery engine.

use std::collections::BTreeSet;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use crate::config::Live;
use crate::route::{self, RouteInput};
use crate::store::{DeliveryRecord, EventId, Millis, Payload};

/// Where the deliveries go.
pub enum Targets<'a> {
    /// Wherever the live subscriptions route the event (at most once per endpoint).
    Routed(&'a RouteInput<'a>),
    /// These endpoints of the event's namespace, each once, whatever the subscriptions say.
    Endpoints {
        namespace: &'a str,
        names: &'a [String],
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("Endpoint {namespace}/{name} not found")]
    UnknownEndpoint { namespace: String, name: String },
}

/// Whose deliveries are planned.
#[derive(Clone, Copy, Debug)]
pub enum Of {
    /// A new event's: its first deliveries, under the ids its id reserved, which the store keeps
    /// in the event's own value (one write at ingest).
    NewEvent(EventId),
    /// More for a stored event (a replay): fresh ids, each stored under its own key.
    StoredEvent(EventId),
}

/// Delivery records for `targets`, due at `now`. Empty when nothing routes the event.
pub fn plan(
    live: &Live,
    of: Of,
    targets: Targets<'_>,
    now: Millis,
) -> Result<Vec<DeliveryRecord>, PlanError> {
    let (namespace, picked): (&str, Vec<(String, Option<String>)>) = match targets {
        Targets::Routed(input) => (
            input.namespace,
            route::route(live, input)
                .into_iter()
                .map(|r| (r.endpoint, Some(r.subscription)))
                .collect(),
        ),
        Targets::Endpoints { namespace, names } => {
            let mut seen = BTreeSet::new();
            let mut out = Vec::new();
            for name in names {
                if live.endpoint(namespace, name).is_none() {
                    return Err(PlanError::UnknownEndpoint {
                        namespace: namespace.to_string(),
                        name: name.clone(),
                    });
                }
                if seen.insert(name.as_str()) {
                    out.push((name.clone(), None));
                }
            }
            (namespace, out)
        }
    };
    Ok(picked
        .iter()
        .enumerate()
        .map(|(n, (endpoint, sub))| {
            let sub = sub.as_deref();
            match of {
                Of::NewEvent(e) => DeliveryRecord::initial(e, n, namespace, endpoint, sub, now),
                Of::StoredEvent(e) => DeliveryRecord::new(e, namespace, endpoint, sub, now),
            }
        })
        .collect())
}

/// The headers of a stored payload as a map again, for routing a stored event as it arrived.
/// A header that no longer parses (none should: they were valid HTTP when received) is left out.
pub fn stored_headers(payload: &Payload) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in &payload.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(n, v);
        }
    }
    headers
}
