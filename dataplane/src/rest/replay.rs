//! `POST /api/v1/events/{id}/replay` and `POST /api/v1/events/bulk/replay`: deliver stored
//! events again. Both plan their deliveries through `plan::plan`, like ingest; the store queues
//! them and wakes the delivery engine.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::events::{event_filter, find_event, payload_expired, ListEventsQuery};
use super::model::*;
use super::params::{self, cursor, JsonBody, PathId};
use super::{blocking, Auth};
use crate::config::Live;
use crate::error::{ApiError, ErrorBody};
use crate::openapi::RestErrors;
use crate::plan::{self, Of, Targets};
use crate::route::{LazyJson, RouteInput};
use crate::state::AppState;
use crate::store::{now_ms, DeliveryRecord, EventId, EventRecord, Store, SCAN_BUDGET};

/// Most events one bulk replay call touches.
const BULK_MAX: usize = 100;

/// Create new deliveries of `e` (to `endpoints`, or wherever the current routing sends it), due
/// now. The store queues them and wakes the delivery engine.
fn replay_one(
    store: &Store,
    live: &Live,
    e: &EventRecord,
    endpoints: Option<&[String]>,
) -> Result<Vec<DeliveryRecord>, ApiError> {
    let Some(payload) = store.payload(e.id)? else {
        return Err(payload_expired(e.id));
    };
    let now = now_ms();
    let records = match endpoints {
        Some(names) => {
            let names = names
                .iter()
                .map(|n| params::name("endpoints", n))
                .collect::<Result<Vec<_>, _>>()?;
            let targets = Targets::Endpoints {
                namespace: &e.namespace,
                names: &names,
            };
            plan::plan(live, Of::StoredEvent(e.id), targets, now)?
        }
        None => {
            let headers = plan::stored_headers(&payload);
            let body = LazyJson::lazy(&payload.body);
            let input = RouteInput {
                namespace: &e.namespace,
                source: &e.source,
                event_type: e.event_type.as_deref(),
                headers: &headers,
                body: &body,
            };
            plan::plan(live, Of::StoredEvent(e.id), Targets::Routed(&input), now)?
        }
    };
    if records.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "NO_ROUTE",
            format!(
                "no endpoint to replay event {} to: no subscription of the current config matches it",
                e.id
            ),
        ));
    }
    store.add_deliveries(e.id, &records)?;
    Ok(records)
}

fn replay_result(id: EventId, records: &[DeliveryRecord]) -> ReplayResult {
    ReplayResult {
        event_id: id.to_string(),
        deliveries: records.iter().map(DeliveryView::from).collect(),
    }
}

/// Deliver an event again: to the listed endpoints, or to every endpoint the current routing
/// sends it to. The new deliveries are due now.
#[utoipa::path(post, path = "/api/v1/events/{id}/replay", tag = "events",
    params(("id" = String, Path, description = "Event id (`evt_...`)", pattern = "^evt_[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")),
    request_body(content = Option<ReplayRequest>, description = "Optional: `{\"endpoints\": [names]}`"),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 202, description = "New deliveries queued", body = ReplayResult),
        (status = 403, description = "A read-only key", body = ErrorBody),
        (status = 404, description = "No such event, or a listed endpoint does not exist", body = ErrorBody),
        (status = 410, description = "The payload expired: nothing to deliver", body = ErrorBody),
        (status = 422, description = "No endpoint to replay to (`NO_ROUTE`)", body = ErrorBody),
        RestErrors,
    ))]
pub async fn replay(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathId(id): PathId<EventId>,
    JsonBody(body): JsonBody<ReplayRequest>,
) -> Result<Response, ApiError> {
    caller.require_write()?;
    let e = find_event(&state.store, &caller, id)?;
    let live = state.live.load();
    let records = replay_one(&state.store, &live, &e, body.endpoints.as_deref())?;
    Ok((StatusCode::ACCEPTED, Json(replay_result(id, &records))).into_response())
}

/// What a bulk replay works on: events a filter found, or ids still to look up.
enum BulkTargets {
    Records(Vec<EventRecord>),
    Ids(Vec<EventId>),
}

/// Replay many events: `ids` (at most 100), or a `filter` (the `GET /events` filters) taking
/// at most `limit` events per call, newest first, with a cursor to continue.
#[utoipa::path(post, path = "/api/v1/events/bulk/replay", tag = "events",
    request_body(content = BulkReplayRequest, description = "`ids` or `filter`"),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 202, description = "What was replayed, and what could not be", body = BulkReplayResult),
        (status = 403, description = "A read-only key, or a namespace the key may not see", body = ErrorBody),
        RestErrors,
    ))]
pub async fn bulk_replay(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(body): JsonBody<BulkReplayRequest>,
) -> Result<Response, ApiError> {
    caller.require_write()?;
    let invalid = |m: &str| ApiError::bad_request("INVALID_BODY", m);
    let (events, has_more, next_cursor) = match (&body.ids, &body.filter) {
        (Some(ids), None) => {
            if ids.is_empty() || ids.len() > BULK_MAX {
                return Err(invalid("ids: give 1 to 100 event ids"));
            }
            if body.limit.is_some() || body.cursor.is_some() {
                return Err(invalid("limit and cursor go with filter, not ids"));
            }
            let mut parsed = Vec::with_capacity(ids.len());
            for raw in ids {
                let id = raw.parse::<EventId>().map_err(|_| {
                    invalid(&format!(
                        "ids: {:?} is not an event id",
                        raw.chars().take(64).collect::<String>()
                    ))
                })?;
                if !parsed.contains(&id) {
                    parsed.push(id);
                }
            }
            (BulkTargets::Ids(parsed), false, None)
        }
        (None, Some(f)) => {
            let q = ListEventsQuery {
                namespace: f.namespace.clone(),
                source: f.source.clone(),
                status: f.status.clone(),
                event_type: f.event_type.clone(),
                endpoint: f.endpoint.clone(),
                from: f.from.clone(),
                to: f.to.clone(),
                search: f.search.clone(),
                signature_valid: f.signature_valid.map(|b| b.to_string()),
                limit: None,
                cursor: None,
            };
            let filter = event_filter(&caller, &q)?;
            let limit = match body.limit {
                None => BULK_MAX,
                Some(n) if (1..=BULK_MAX as u32).contains(&n) => n as usize,
                Some(_) => return Err(invalid("limit: 1 to 100")),
            };
            // The cursor is bound to this filter's JSON, as listing cursors are to their query.
            let fingerprint = params::fingerprint(
                &serde_json::to_vec(&(
                    &q.namespace,
                    &q.source,
                    &q.status,
                    &q.event_type,
                    &q.endpoint,
                    &q.from,
                    &q.to,
                    &q.search,
                    &q.signature_valid,
                ))
                .unwrap_or_default(),
            );
            let before =
                cursor::decode(cursor::EVENTS, fingerprint, body.cursor.as_ref())?.map(EventId);
            let store = state.store.clone();
            let page =
                blocking(move || Ok(store.list_events(&filter, before, limit, SCAN_BUDGET)?))
                    .await?;
            let next = page
                .next
                .map(|n| cursor::encode(cursor::EVENTS, fingerprint, n.0));
            (BulkTargets::Records(page.items), next.is_some(), next)
        }
        _ => return Err(invalid("give either ids or filter")),
    };
    let live = state.live.load();
    let endpoints = body.endpoints.clone();
    let store = state.store.clone();
    let (results, errors) = blocking(move || {
        let records: Vec<Result<EventRecord, (EventId, ApiError)>> = match events {
            BulkTargets::Records(records) => records.into_iter().map(Ok).collect(),
            BulkTargets::Ids(ids) => ids
                .into_iter()
                .map(|id| find_event(&store, &caller, id).map_err(|e| (id, e)))
                .collect(),
        };
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for r in records {
            let outcome = r.and_then(|e| {
                replay_one(&store, &live, &e, endpoints.as_deref())
                    .map(|d| (e.id, d))
                    .map_err(|err| (e.id, err))
            });
            match outcome {
                Ok((id, d)) => results.push(replay_result(id, &d)),
                Err((_, err)) if err.status == StatusCode::SERVICE_UNAVAILABLE => return Err(err),
                Err((id, err)) => errors.push(BulkReplayError {
                    event_id: id.to_string(),
                    code: err.code.to_string(),
                    message: err.message,
                }),
            }
        }
        Ok((results, errors))
    })
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(BulkReplayResult {
            replayed: results.len(),
            results,
            errors,
            has_more,
            next_cursor,
            coverage: Coverage::default(),
        }),
    )
        .into_response())
}
