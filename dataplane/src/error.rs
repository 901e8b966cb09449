//! The one error shape of every HTTP answer: `{"error", "message", "code"}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// Every error: `{"error", "message", "code"}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The HTTP reason phrase, e.g. `Not Found`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// What went wrong, for programs, e.g. `RESOURCE_NOT_FOUND`, `INVALID_PARAMETER`.
    pub code: String,
}

/// 429: too many requests for this API key.
#[derive(Serialize, ToSchema)]
pub struct RateLimitBody {
    /// Always `rate_limit_exceeded`.
    pub error: String,
    pub message: String,
    /// Always `RATE_LIMIT_EXCEEDED`.
    pub code: String,
    /// Seconds to wait (also in the `Retry-After` header).
    pub retry_after: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::bad_request("INVALID_PARAMETER", message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    /// Storage trouble: the request was not accepted, the client should retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "STORAGE_UNAVAILABLE",
            message,
        )
    }
}

impl From<crate::plan::PlanError> for ApiError {
    fn from(e: crate::plan::PlanError) -> Self {
        ApiError::not_found("ENDPOINT_NOT_FOUND", e.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        ApiError::unavailable("storage is unavailable; nothing was changed, retry later")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            message: self.message,
            code: self.code.to_string(),
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// Unknown paths: JSON, like every other refusal.
pub async fn route_not_found() -> ApiError {
    ApiError::not_found("ROUTE_NOT_FOUND", "no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "method not allowed on this route",
    )
}
