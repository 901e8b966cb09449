//! The OpenAPI document's frame (info, security schemes, tags), the ingest and publish routes
//! as documented handlers, and the probes.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::model::{ErrorBody, RateLimitBody};
use crate::app::AppState;
use crate::error::ApiError;
use crate::ingest;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hookmesh",
        description = "Kubernetes-native webhook gateway: ingest, inspect, search, replay. \
            Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>`. Errors are \
            `{\"error\", \"message\", \"code\"}`.",
    ),
    paths(healthz, readyz, metrics, openapi_json),
    components(schemas(ErrorBody, RateLimitBody)),
    modifiers(&Security),
    tags(
        (name = "ingest", description = "Receiving events"),
        (name = "events", description = "Inspect, search, replay and delete events"),
        (name = "deliveries", description = "The delivery log and manual retry"),
        (name = "config", description = "The live config, read-only"),
        (name = "operations", description = "Probes, metrics and this document"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// 202/200 of the ingest and publish routes.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// The event id (for a duplicate: the original event's id).
    pub id: String,
    /// `pending` or `unrouted`; `duplicate` for a duplicate.
    pub status: String,
    pub message: String,
    /// Present and `true` when the idempotency key was seen before (200).
    pub duplicate: Option<bool>,
}

/// Body of `POST /api/v1/events`.
#[derive(Serialize, ToSchema)]
pub struct PublishBody {
    /// The event type, 1 to 256 characters.
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 256)]
    pub event_type: String,
    /// Name of the Source the event is published under.
    pub source: String,
    /// Namespace of the Source; defaults to the API key's namespace, else `default`.
    pub namespace: Option<String>,
    /// Any JSON; stored as the event's body.
    pub payload: serde_json::Value,
    /// Duplicates within the source's idempotency window are answered with the original id.
    pub idempotency_key: Option<String>,
}

/// Receive a webhook from a provider. The body and headers are stored exactly as received;
/// 202 means the event is on disk.
#[utoipa::path(post, path = "/e/{namespace}/{source}", tag = "ingest",
    params(
        ("namespace" = String, Path, description = "The Source's namespace"),
        ("source" = String, Path, description = "The Source's name"),
    ),
    request_body(description = "The provider's payload, any content type",
        content((serde_json::Value = "application/json"), (Vec<u8> = "application/octet-stream"))),
    responses(
        (status = 202, description = "Stored durably and routed", body = Accepted),
        (status = 200, description = "A duplicate (idempotency key seen before); nothing stored", body = Accepted),
        (status = 400, description = "Unreadable body", body = ErrorBody),
        (status = 401, description = "Signature missing, invalid or out of tolerance, or the source's API key is wrong", body = ErrorBody),
        (status = 404, description = "No such source (`SOURCE_NOT_FOUND`)", body = ErrorBody),
        (status = 413, description = "Body over the source's limit", body = ErrorBody),
        (status = 503, description = "Storage unavailable; nothing stored, retry", body = ErrorBody),
    ))]
pub async fn webhook(
    state: State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    ingest::webhook(state, path, headers, body).await
}

/// Publish an event from an in-cluster service (a `write` key). It goes through the same path
/// as a webhook after verification.
#[utoipa::path(post, path = "/api/v1/events", tag = "ingest",
    request_body = PublishBody,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 202, description = "Stored durably and routed", body = Accepted),
        (status = 200, description = "A duplicate (idempotency key seen before); nothing stored", body = Accepted),
        (status = 400, description = "Malformed body (`INVALID_BODY`)", body = ErrorBody),
        (status = 401, description = "No or an unknown API key", body = ErrorBody),
        (status = 403, description = "A read-only key, or a namespace the key may not use", body = ErrorBody),
        (status = 404, description = "No such source (`SOURCE_NOT_FOUND`)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "Storage unavailable; nothing stored, retry", body = ErrorBody),
    ))]
pub async fn publish(
    state: State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    ingest::publish(state, headers, body).await
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = serde_json::Value)))]
#[allow(dead_code)]
fn healthz() {}

/// Readiness, with the hash of the config in use.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ready\", \"config_hash\"}`", body = serde_json::Value)))]
#[allow(dead_code)]
fn readyz() {}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
#[allow(dead_code)]
fn metrics() {}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = serde_json::Value)))]
#[allow(dead_code)]
fn openapi_json() {}
