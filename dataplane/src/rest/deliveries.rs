//! `/api/v1/deliveries...`: the delivery log, one delivery with its attempts, manual retry.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::events::payload_expired;
use super::model::*;
use super::params::{self, cursor, Params, PathId};
use super::{blocking, visible, Auth};
use crate::error::{ApiError, ErrorBody};
use crate::openapi::RestErrors;
use crate::state::AppState;
use crate::store::{now_ms, DeliveryFilter, DeliveryId, DeliveryStatus, EventId, SCAN_BUDGET};

pub(super) const DELIVERY_STATUSES: &[&str] = &[
    "pending",
    "in_flight",
    "success",
    "retrying",
    "failed",
    "dead_letter",
];

/// Filters of `GET /deliveries`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListDeliveriesQuery {
    /// Only this namespace.
    #[param(pattern = "^[a-z0-9.-]{1,253}$")]
    pub namespace: Option<String>,
    /// Deliveries of this event (`evt_...`).
    #[param(pattern = "^evt_[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")]
    pub event_id: Option<String>,
    /// Endpoint name, or `namespace/name`.
    #[param(pattern = "^([a-z0-9.-]{1,253}/)?[a-z0-9.-]{1,253}$")]
    pub endpoint: Option<String>,
    /// One status or a comma-separated list: `pending`, `in_flight`, `success`, `retrying`,
    /// `failed`, `dead_letter`.
    #[param(
        pattern = "^(pending|in_flight|success|retrying|failed|dead_letter)(,(pending|in_flight|success|retrying|failed|dead_letter))*$"
    )]
    pub status: Option<String>,
    /// Created at or after: RFC 3339 or Unix milliseconds.
    pub from: Option<String>,
    /// Created at or before: RFC 3339 or Unix milliseconds.
    pub to: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page (keep the same filters).
    pub cursor: Option<String>,
}

/// The delivery log, newest first.
#[utoipa::path(get, path = "/api/v1/deliveries", tag = "deliveries",
    params(ListDeliveriesQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of deliveries, newest first", body = DeliveryPage),
        (status = 403, description = "The key may not see the namespace asked for", body = ErrorBody),
        RestErrors,
    ))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Params {
        value: q,
        fingerprint,
    }: Params<ListDeliveriesQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let namespace = q
        .namespace
        .as_deref()
        .map(|ns| params::name("namespace", ns))
        .transpose()?;
    let endpoint = params::qualified_name("endpoint", q.endpoint.as_ref())?;
    let endpoint_ns = endpoint.as_ref().and_then(|e| e.0.clone());
    let mut namespaces = visible(&caller, namespace.as_deref().or(endpoint_ns.as_deref()))?;
    if let (Some(a), Some(b)) = (&namespace, &endpoint_ns) {
        if a != b {
            namespaces = Some(Default::default());
        }
    }
    let event_id = q
        .event_id
        .as_deref()
        .map(|v| {
            v.parse::<EventId>()
                .map_err(|_| ApiError::invalid_parameter("event_id: not an event id (evt_...)"))
        })
        .transpose()?;
    let (from, to) = params::window(q.from.as_ref(), q.to.as_ref())?;
    let filter = DeliveryFilter {
        namespaces,
        event_id,
        endpoint: endpoint.map(|e| e.1),
        statuses: params::statuses::<DeliveryStatus>(q.status.as_ref(), DELIVERY_STATUSES)?,
        from,
        to,
    };
    let limit = params::limit(q.limit.as_ref())?;
    let before =
        cursor::decode(cursor::DELIVERIES, fingerprint, q.cursor.as_ref())?.map(DeliveryId);
    let store = state.store.clone();
    let page =
        blocking(move || Ok(store.list_deliveries(&filter, before, limit, SCAN_BUDGET)?)).await?;
    Ok(Json(DeliveryPage {
        data: page.items.iter().map(DeliveryView::from).collect(),
        pagination: Pagination {
            limit,
            has_more: page.next.is_some(),
            next_cursor: page
                .next
                .map(|n| cursor::encode(cursor::DELIVERIES, fingerprint, n.0)),
        },
        coverage: Coverage::default(),
    }))
}

fn find_delivery(
    state: &AppState,
    caller: &crate::auth::Caller,
    id: DeliveryId,
) -> Result<crate::store::DeliveryRecord, ApiError> {
    state
        .store
        .delivery(id)?
        .filter(|d| caller.may_see(&d.namespace))
        .ok_or_else(|| {
            ApiError::not_found("RESOURCE_NOT_FOUND", format!("Delivery {id} not found"))
        })
}

/// One delivery with every attempt.
#[utoipa::path(get, path = "/api/v1/deliveries/{id}", tag = "deliveries",
    params(("id" = String, Path, description = "Delivery id (`dlv_...`)", pattern = "^dlv_[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The delivery and its attempts", body = DeliveryDetail),
        (status = 404, description = "No such delivery (or not in the key's namespace)", body = ErrorBody),
        RestErrors,
    ))]
pub async fn get_delivery(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathId(id): PathId<DeliveryId>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    let d = find_delivery(&state, &caller, id)?;
    let attempts = state
        .store
        .attempts(id)?
        .iter()
        .map(AttemptView::from)
        .collect();
    let dead_letter_of = state.store.dead_letter_of(id)?.map(|l| DeadLetterView {
        delivery_id: l.of.to_string(),
        endpoint: l.endpoint,
        status_code: l.status_code,
        attempts: l.attempts,
        error: l.error,
    });
    Ok(Json(DeliveryDetail {
        delivery: DeliveryView::from(&d),
        attempts,
        dead_letter_of,
        forwarded_to: state.store.forwarded_to(id)?.map(|f| f.to_string()),
    }))
}

/// Attempt a delivery again now. A finished delivery (success, failed, dead_letter) starts a
/// fresh round of attempts; a pending or retrying one is moved up to now.
#[utoipa::path(post, path = "/api/v1/deliveries/{id}/retry", tag = "deliveries",
    params(("id" = String, Path, description = "Delivery id (`dlv_...`)", pattern = "^dlv_[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 202, description = "Queued; the delivery as it is now", body = DeliveryView),
        (status = 403, description = "A read-only key", body = ErrorBody),
        (status = 404, description = "No such delivery", body = ErrorBody),
        (status = 409, description = "An attempt is in flight (`DELIVERY_IN_FLIGHT`)", body = ErrorBody),
        (status = 410, description = "The event's payload expired: nothing to deliver", body = ErrorBody),
        RestErrors,
    ))]
pub async fn retry_delivery(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathId(id): PathId<DeliveryId>,
) -> Result<Response, ApiError> {
    caller.require_write()?;
    let d = find_delivery(&state, &caller, id)?;
    if d.status == DeliveryStatus::InFlight {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "DELIVERY_IN_FLIGHT",
            format!("delivery {id} has an attempt in flight; retry once it ends"),
        ));
    }
    if state.store.payload(d.event_id)?.is_none() {
        return Err(payload_expired(d.event_id));
    }
    let d = state.store.requeue(id, now_ms())?.ok_or_else(|| {
        ApiError::not_found("RESOURCE_NOT_FOUND", format!("Delivery {id} not found"))
    })?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryView::from(&d))).into_response())
}
