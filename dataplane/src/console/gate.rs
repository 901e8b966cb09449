//! The gate in front of the REST API: a request that carries no API key but a console
//! session cookie is turned into a request with that session's key, after the CSRF check for
//! anything that changes state. Requests with an API key pass as they are.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hookmesh_api::config::ApiKeyConfig;

use super::session::{self, Session};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::now_ms;

pub async fn gate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let carries_key = req.headers().contains_key(header::AUTHORIZATION)
        || req.headers().contains_key("x-api-key");
    if !req.uri().path().starts_with("/api/") || carries_key || cookie(req.headers()).is_none() {
        return next.run(req).await;
    }
    let live = state.live.load();
    let key = match session_of(&live.config.api_keys, req.headers()).and_then(|(key, s)| {
        if !safe(req.method()) {
            require_csrf(key, &s, req.headers())?;
        }
        bearer(key)
    }) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let headers = req.headers_mut();
    // Past the gate the request is an ordinary API call: the peers it fans out to get the
    // key as a header, as from any client, and nothing downstream sees the session.
    headers.remove(header::COOKIE);
    headers.insert(header::AUTHORIZATION, key);
    next.run(req).await
}

fn safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn bearer(key: &ApiKeyConfig) -> Result<HeaderValue, ApiError> {
    let mut v = b"Bearer ".to_vec();
    v.extend_from_slice(key.key.expose());
    let mut v = HeaderValue::from_bytes(&v).map_err(|_| {
        ApiError::unauthorized(
            "UNAUTHORIZED",
            "this API key cannot be sent as a header; use another",
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// The session cookie's value, if the request has one.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == session::COOKIE)
        .map(|c| c.value().to_string())
}

/// The key and session the request's cookie names; 401 `SESSION_EXPIRED` when it has none
/// that opens.
pub(super) fn session_of<'k>(
    keys: &'k [ApiKeyConfig],
    headers: &HeaderMap,
) -> Result<(&'k ApiKeyConfig, Session), ApiError> {
    cookie(headers)
        .and_then(|c| Session::open(keys, &c, now_ms()))
        .ok_or_else(|| {
            ApiError::unauthorized(
                "SESSION_EXPIRED",
                "no console session, or it expired or its key changed: sign in again",
            )
        })
}

/// 403 `CSRF_TOKEN_INVALID` unless the request carries the session's CSRF token.
pub(super) fn require_csrf(
    key: &ApiKeyConfig,
    s: &Session,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let presented = headers
        .get(session::CSRF_HEADER)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    if s.csrf_matches(key, presented) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "CSRF_TOKEN_INVALID",
            "a console request that changes state must carry the session's X-CSRF-Token",
        ))
    }
}
