//! `/api/v1/events...`: list and search, one event, its payload, deliveries and timeline,
//! replay (one or in bulk), delete.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use wildmatch::WildMatch;

use super::model::*;
use super::params::{self, cursor, Params, PathId};
use super::{blocking, visible, Auth};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::openapi::RestErrors;
use crate::state::AppState;
use crate::store::{
    DeliveryStatus, EventFilter, EventId, EventRecord, EventStatus, Store, SCAN_BUDGET,
};

const EVENT_STATUSES: &[&str] = &[
    "pending",
    "delivered",
    "partial",
    "failed",
    "dead_letter",
    "unrouted",
];

/// Filters of `GET /events` (all optional, all must match).
#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListEventsQuery {
    /// Only this namespace (a namespaced API key sees only its own anyway).
    #[param(pattern = "^[a-z0-9.-]{1,253}$")]
    pub namespace: Option<String>,
    /// Source name, or `namespace/name`.
    #[param(pattern = "^([a-z0-9.-]{1,253}/)?[a-z0-9.-]{1,253}$")]
    pub source: Option<String>,
    /// One status or a comma-separated list: `pending`, `delivered`, `partial`, `failed`,
    /// `dead_letter`, `unrouted`.
    #[param(
        example = "failed,dead_letter",
        pattern = "^(pending|delivered|partial|failed|dead_letter|unrouted)(,(pending|delivered|partial|failed|dead_letter|unrouted))*$"
    )]
    pub status: Option<String>,
    /// Event type glob (`*` any run, `?` one character), e.g. `order.*`.
    #[param(min_length = 1, max_length = 256)]
    pub event_type: Option<String>,
    /// Endpoint name (or `namespace/name`) the event has a delivery to.
    #[param(pattern = "^([a-z0-9.-]{1,253}/)?[a-z0-9.-]{1,253}$")]
    pub endpoint: Option<String>,
    /// Received at or after: RFC 3339 or Unix milliseconds.
    pub from: Option<String>,
    /// Received at or before: RFC 3339 or Unix milliseconds.
    pub to: Option<String>,
    /// `evt_` + an id prefix (up to 26 Crockford base32 characters), or text the raw payload
    /// contains.
    #[param(min_length = 1, max_length = 256)]
    pub search: Option<String>,
    /// `true` or `false`: events whose signature verified (or failed, in audit mode).
    #[param(value_type = Option<bool>)]
    pub signature_valid: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page (keep the same filters).
    pub cursor: Option<String>,
}

/// Turn the query filters into a store filter, resolving names and the caller's scope.
pub(super) fn event_filter(caller: &Caller, q: &ListEventsQuery) -> Result<EventFilter, ApiError> {
    let namespace = q
        .namespace
        .as_deref()
        .map(|ns| params::name("namespace", ns))
        .transpose()?;
    let source = params::qualified_name("source", q.source.as_ref())?;
    let endpoint = params::qualified_name("endpoint", q.endpoint.as_ref())?;
    // A namespace named by `namespace`, `source=ns/x` or `endpoint=ns/x`: all must agree.
    let named: BTreeSet<&str> = namespace
        .iter()
        .chain(source.iter().filter_map(|s| s.0.as_ref()))
        .chain(endpoint.iter().filter_map(|e| e.0.as_ref()))
        .map(String::as_str)
        .collect();
    let mut namespaces = visible(caller, named.first().copied())?;
    if named.len() > 1 {
        namespaces = Some(BTreeSet::new());
    }
    let (from, to) = params::window(q.from.as_ref(), q.to.as_ref())?;
    let event_type = params::text("event_type", q.event_type.as_ref())?.map(|g| WildMatch::new(&g));
    let mut filter = EventFilter {
        namespaces,
        source: source.map(|s| s.1),
        statuses: params::statuses::<EventStatus>(q.status.as_ref(), EVENT_STATUSES)?,
        endpoint: endpoint.map(|e| e.1),
        event_type,
        from,
        to,
        id_range: None,
        payload_contains: None,
        signature_valid: params::boolean("signature_valid", q.signature_valid.as_ref())?,
    };
    if let Some(search) = params::text("search", q.search.as_ref())? {
        match search.strip_prefix(EventId::PREFIX) {
            Some(prefix) => {
                // A prefix no id can have matches nothing: an empty range.
                filter.id_range = Some(
                    params::id_prefix_range(prefix)?.unwrap_or((ulid::Ulid(1), ulid::Ulid(0))),
                );
            }
            None => filter.payload_contains = Some(search.into_bytes()),
        }
    }
    Ok(filter)
}

/// List and search events, newest first.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(ListEventsQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of events, newest first", body = EventPage),
        (status = 403, description = "The key may not see the namespace asked for", body = ErrorBody),
        RestErrors,
    ))]
pub async fn list_events(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Params {
        value: q,
        fingerprint,
    }: Params<ListEventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let filter = event_filter(&caller, &q)?;
    let limit = params::limit(q.limit.as_ref())?;
    let before = cursor::decode(cursor::EVENTS, fingerprint, q.cursor.as_ref())?.map(EventId);
    let store = state.store.clone();
    let page =
        blocking(move || Ok(store.list_events(&filter, before, limit, SCAN_BUDGET)?)).await?;
    Ok(Json(EventPage {
        data: page.items.iter().map(EventView::from).collect(),
        pagination: Pagination {
            limit,
            has_more: page.next.is_some(),
            next_cursor: page
                .next
                .map(|n| cursor::encode(cursor::EVENTS, fingerprint, n.0)),
        },
        coverage: Coverage::default(),
    }))
}

/// The event, if the caller may see it; 404 otherwise (other namespaces look absent).
pub(super) fn find_event(
    store: &Store,
    caller: &Caller,
    id: EventId,
) -> Result<EventRecord, ApiError> {
    store
        .event(id)?
        .filter(|e| caller.may_see(&e.namespace))
        .ok_or_else(|| ApiError::not_found("RESOURCE_NOT_FOUND", format!("Event {id} not found")))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GetEventQuery {
    /// Comma-separated: `payload`, `deliveries`.
    #[param(example = "payload,deliveries")]
    pub include: Option<String>,
}

/// One event; `include=payload,deliveries` adds the payload and the deliveries.
#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "events",
    params(("id" = String, Path, description = "Event id (`evt_...`)", pattern = "^evt_[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$"), GetEventQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The event", body = EventDetail),
        (status = 404, description = "No such event (or not in the key's namespace)", body = ErrorBody),
        RestErrors,
    ))]
pub async fn get_event(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathId(id): PathId<EventId>,
    Params { value: q, .. }: Params<GetEventQuery>,
) -> Result<Json<EventDetail>, ApiError> {
    let (mut payload, mut deliveries) = (false, false);
    if let Some(include) = params::text("include", q.include.as_ref())? {
        for part in include.split(',') {
            match part.trim() {
                "payload" => payload = true,
                "deliveries" => deliveries = true,
                other => {
                    return Err(ApiError::invalid_parameter(format!(
                        "include: {other:?} is not one of payload, deliveries"
                    )))
                }
            }
        }
    }
    let e = find_event(&state.store, &caller, id)?;
    let payload = if payload {
        state.store.payload(id)?.as_ref().map(PayloadView::from)
    } else {
        None
    };
    let deliveries = if deliveries {
        Some(
            state
                .store
                .deliveries_of(id)?
                .iter()
                .map(DeliveryView::from)
                .collect(),
        )
    } else {
        None
    };
    Ok(Json(EventDetail {
        event: EventView::from(&e),
        payload,
        deliveries,
    }))
}

pub(super) fn payload_expired(id: EventId) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "PAYLOAD_EXPIRED",
        format!("the payload of event {id} was removed by retention"),
    )
}

/// The raw payload body, with the content type it arrived with.
#[utoipa::path(get, path = "/api/v1/events/{id}/payload", tag = "events",
    params(("id" = String, Path, description = "Event id (`evt_...`)", pattern = "^evt_[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The body exactly as received, with its original content type",
            content((Vec<u8> = "application/octet-stream"), (serde_json::Value = "application/json"), (String = "text/plain"))),
        (status = 404, description = "No such event", body = ErrorBody),
        (status = 410, description = "The payload expired (`PAYLOAD_EXPIRED`)", body = ErrorBody),
        RestErrors,
    ))]
pub async fn get_payload(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathId(id): PathId<EventId>,
) -> Result<Response, ApiError> {
    let e = find_event(&state.store, &caller, id)?;
    let Some(p) = state.store.payload(id)? else {
        return Err(payload_expired(id));
    };
    let content_type = e
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
        ],
        p.body,
    )
        .into_response())
}

/// Filter of `GET /events/{id}/deliveries`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventDeliveriesQuery {
    /// One status or a comma-separated list: `pending`, `in_flight`, `success`, `retrying`,
    /// `failed`, `dead_letter`.
    #[param(
        example = "failed,dead_letter",
        pattern = "^(pending|in_flight|success|retrying|failed|dead_letter)(,(pending|in_flight|success|retrying|failed|dead_letter))*$"
    )]
    pub status: Option<String>,
}

/// The deliveries of one event, oldest first; `status=` keeps only those in these states.
#[utoipa::path(get, path = "/api/v1/events/{id}/deliveries", tag = "events",
    params(("id" = String, Path, description = "Event id (`evt_...`)", pattern = "^evt_[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$"), EventDeliveriesQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Its deliveries", body = DeliveryList),
        (status = 404, description = "No such event", body = ErrorBody),
        RestErrors,
    ))]
pub async fn event_deliveries(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathId(id): PathId<EventId>,
    Params { value: q, .. }: Params<EventDeliveriesQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    let statuses = params::statuses::<DeliveryStatus>(
        q.status.as_ref(),
        super::deliveries::DELIVERY_STATUSES,
    )?;
    find_event(&state.store, &caller, id)?;
    let data = state
        .store
        .deliveries_of(id)?
        .iter()
        .filter(|d| statuses.is_empty() || statuses.contains(&d.status))
        .map(DeliveryView::from)
        .collect();
    Ok(Json(DeliveryList { data }))
}

/// What happened to an event, in order: received, verified, stored, routed, each attempt.
#[utoipa::path(get, path = "/api/v1/events/{id}/timeline", tag = "events",
    params(("id" = String, Path, description = "Event id (`evt_...`)", pattern = "^evt_[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The timeline, oldest first", body = Timeline),
        (status = 404, description = "No such event", body = ErrorBody),
        RestErrors,
    ))]
pub async fn timeline(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathId(id): PathId<EventId>,
) -> Result<Json<Timeline>, ApiError> {
    let e = find_event(&state.store, &caller, id)?;
    let entry = |at: u64, kind: &str, message: String| {
        (
            at,
            TimelineEntry {
                at: params::rfc3339(at),
                kind: kind.to_string(),
                message,
                delivery_id: None,
                endpoint: None,
                attempt: None,
                status_code: None,
                duration_ms: None,
                error: None,
            },
        )
    };
    let mut entries = vec![entry(
        e.received_at,
        "received",
        match e.origin {
            crate::store::Origin::Webhook => format!("webhook received by source {}", e.source),
            crate::store::Origin::Publish => format!("published to source {}", e.source),
        },
    )];
    match e.signature_valid {
        Some(true) => entries.push(entry(
            e.received_at,
            "verified",
            "signature verified".into(),
        )),
        Some(false) => entries.push(entry(
            e.received_at,
            "verification_failed",
            format!(
                "signature did not verify ({}); stored in audit mode",
                e.signature_error.as_deref().unwrap_or("unknown reason")
            ),
        )),
        None => {}
    }
    entries.push(entry(e.received_at, "stored", "stored durably".into()));
    let deliveries = state.store.deliveries_of(id)?;
    if deliveries.is_empty() {
        entries.push(entry(
            e.received_at,
            "unrouted",
            "no subscription matched".into(),
        ));
    }
    for d in &deliveries {
        let (at, mut routed) = entry(
            d.created_at,
            "routed",
            match &d.subscription {
                Some(s) => format!("routed to endpoint {} by subscription {s}", d.endpoint),
                None => format!("replayed to endpoint {}", d.endpoint),
            },
        );
        routed.delivery_id = Some(d.id.to_string());
        routed.endpoint = Some(d.endpoint.clone());
        entries.push((at, routed));
        for a in state.store.attempts(d.id)? {
            let outcome = match (a.status_code, &a.error) {
                (Some(code), _) => format!("HTTP {code}"),
                (None, Some(err)) => err.clone(),
                (None, None) => "no answer".to_string(),
            };
            let (at, mut t) = entry(
                a.started_at,
                "attempt",
                format!("attempt {} to {}: {outcome}", a.number, d.endpoint),
            );
            t.delivery_id = Some(d.id.to_string());
            t.endpoint = Some(d.endpoint.clone());
            t.attempt = Some(a.number);
            t.status_code = a.status_code;
            t.duration_ms = Some(a.duration_ms);
            t.error = a.error.clone();
            entries.push((at, t));
        }
    }
    entries.sort_by_key(|(at, _)| *at);
    Ok(Json(Timeline {
        event_id: id.to_string(),
        data: entries.into_iter().map(|(_, t)| t).collect(),
    }))
}

/// Delete an event with its payload, deliveries, attempts and index entries.
#[utoipa::path(delete, path = "/api/v1/events/{id}", tag = "events",
    params(("id" = String, Path, description = "Event id (`evt_...`)", pattern = "^evt_[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "A read-only key", body = ErrorBody),
        (status = 404, description = "No such event", body = ErrorBody),
        RestErrors,
    ))]
pub async fn delete_event(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathId(id): PathId<EventId>,
) -> Result<StatusCode, ApiError> {
    caller.require_write()?;
    find_event(&state.store, &caller, id)?;
    let store = state.store.clone();
    if blocking(move || Ok(store.delete_event(id)?)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "RESOURCE_NOT_FOUND",
            format!("Event {id} not found"),
        ))
    }
}
