//! `POST /e/{namespace}/{source}`: a webhook from a provider.
//!
//! find source (404) -> size limit (413) -> auth (401) -> verify (401, or flag in audit mode)
//! -> a provider handshake is answered here (see `handshake`) -> event type -> idempotency,
//! then [`accept`](super::accept) routes and stores it.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use hookmesh_api::config::{FieldRule, SourceConfig, Verifier, VerifyMode};
use subtle::ConstantTimeEq;
use tracing::Instrument as _;

use super::body::read_limited;
use super::{accept, handshake, Accepted, IngestResponse, WebhookOk};
use crate::auth;
use crate::error::{ApiError, ErrorBody};
use crate::openapi::Unavailable;
use crate::route::{json_text, LazyJson};
use crate::state::AppState;
use crate::store::{EventId, IdempotencyClaim, Origin};
use crate::verify;

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
        (status = 202, description = "Stored durably and routed", body = IngestResponse),
        (status = 200, description = "A duplicate (idempotency key seen before), nothing stored; or a provider handshake answered, not stored (Slack `url_verification`: `{\"challenge\"}`)", body = WebhookOk),
        (status = 400, description = "Unreadable body", body = ErrorBody),
        (status = 401, description = "Signature missing, invalid or out of tolerance, or the source's API key is wrong", body = ErrorBody),
        (status = 404, description = "No such source (`SOURCE_NOT_FOUND`)", body = ErrorBody),
        (status = 413, description = "Body over the source's limit", body = ErrorBody),
        Unavailable,
    ))]
pub async fn webhook(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Path((namespace, source)) = path.map_err(|e| {
        ApiError::invalid_parameter(format!(
            "the ingest path must be /e/{{namespace}}/{{source}}: {e}"
        ))
    })?;
    let id = EventId::generate();
    let span =
        tracing::info_span!("ingest", event_id = %id, namespace = %namespace, source = %source);
    async move {
        let live = state.live.load();
        let src = live.source(&namespace, &source).ok_or_else(|| {
            ApiError::not_found(
                "SOURCE_NOT_FOUND",
                format!("Source {namespace}/{source} not found"),
            )
        })?;
        let body = read_limited(
            &headers,
            body,
            src.max_body_bytes,
            "this source's limit (spec.maxBodyBytes)",
        )
        .await?;
        check_source_key(src, &headers)?;
        let (signature_valid, signature_error) = match verify::verify(
            &src.verification,
            src.tolerance_seconds,
            &headers,
            &body,
            now_unix(),
        ) {
            Ok(()) => (signature_checked(src), None),
            Err(failure) if src.mode == VerifyMode::Audit => {
                tracing::info!(
                    code = failure.code(),
                    "signature failed; stored in audit mode"
                );
                (Some(false), Some(failure.code().to_string()))
            }
            Err(failure) => {
                state.metrics.verification_failed(failure.code());
                return Err(ApiError::unauthorized(failure.code(), failure.to_string()));
            }
        };
        // Only a verified handshake is answered: in audit mode a badly signed one is stored
        // like any event, and the provider does not get its answer.
        if signature_valid == Some(true) {
            if let Some(answer) = handshake::answer(&src.verification, &body) {
                tracing::info!("answered the provider's handshake; not stored");
                return Ok(answer);
            }
        }
        let json = LazyJson::lazy(&body);
        let event_type = src
            .event_type
            .as_ref()
            .and_then(|r| extract(r, &headers, &json));
        let idempotency = src.idempotency.as_ref().and_then(|rule| {
            extract(&rule.key, &headers, &json).map(|key| IdempotencyClaim {
                key,
                window_ms: rule.window_seconds.saturating_mul(1000),
            })
        });
        let accepted = Accepted {
            id,
            origin: Origin::Webhook,
            namespace: &namespace,
            source: &source,
            event_type,
            idempotency,
            signature_valid,
            signature_error,
            headers: &headers,
            body: &body,
            json: &json,
        };
        accept(&state, &live, accepted).await
    }
    .instrument(span)
    .await
}

fn signature_checked(src: &SourceConfig) -> Option<bool> {
    match src.verification {
        Verifier::None => None,
        _ => Some(true),
    }
}

/// The source's own ingest API key, if it has one.
fn check_source_key(src: &SourceConfig, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &src.api_key else {
        return Ok(());
    };
    match auth::presented_key(headers) {
        Some(k) if bool::from(expected.expose().ct_eq(k)) => Ok(()),
        Some(_) => Err(ApiError::unauthorized(
            "UNAUTHORIZED",
            "invalid API key for this source",
        )),
        None => Err(ApiError::unauthorized(
            "UNAUTHORIZED",
            "this source requires an API key (Authorization: Bearer or X-API-Key)",
        )),
    }
}

/// An event type or idempotency key, from a header or a JSON pointer into the body.
fn extract(rule: &FieldRule, headers: &HeaderMap, json: &LazyJson<'_>) -> Option<String> {
    let v = match rule {
        FieldRule::Header(h) => headers
            .get(h.as_str())
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_string()),
        FieldRule::JsonPointer(p) => json
            .get()
            .and_then(|j| j.pointer(p))
            .filter(|v| !v.is_null())
            .map(json_text),
    }?;
    (!v.is_empty() && v.len() <= 512).then_some(v)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
