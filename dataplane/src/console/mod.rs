//! The web console at `/console`: a page, its script and its style, all compiled into the
//! binary (nothing is fetched from anywhere but this pod), and the session routes it signs in
//! with. The console reads and acts through the REST API, with the same keys, roles and
//! namespace scopes: the [`gate`] turns a session cookie into that key for `/api/v1/...`
//! (refusing state-changing calls without the session's CSRF token), so the REST handlers
//! and the peer fan-out see an ordinary API caller and a console user sees the whole set of
//! pods exactly as the API does.

mod gate;
mod session;

pub use gate::gate;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hookmesh_api::config::{ApiKeyConfig, Role};
use serde::{Deserialize, Serialize};

use crate::auth;
use crate::error::ApiError;
use crate::rest::params::{rfc3339, JsonBody};
use crate::state::AppState;
use crate::store::now_ms;
use session::Session;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Only this pod's own script and style; no inline script, no frames, no other origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/app.js", get(script))
        .route("/console/app.css", get(style))
        .route(
            "/console/session",
            get(current).post(sign_in).delete(sign_out),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = (
        [
            (header::CONTENT_TYPE, content_type),
            // Revalidated each time, so an upgraded pod serves its own console at once.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    harden(resp.headers_mut());
    resp
}

fn harden(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SignIn {
    #[serde(default)]
    key: String,
}

/// What the console knows of its session; never the key.
#[derive(Serialize)]
struct SessionView {
    key_id: String,
    role: Role,
    /// The only namespace the key may see; `null` for all.
    namespace: Option<String>,
    /// Send as `X-CSRF-Token` on every state-changing call.
    csrf_token: String,
    expires_at: String,
}

fn view(key: &ApiKeyConfig, s: &Session) -> SessionView {
    SessionView {
        key_id: key.id.clone(),
        role: key.role.clone(),
        namespace: key.namespace.clone(),
        csrf_token: s.csrf_token(key),
        expires_at: rfc3339(s.expires_at),
    }
}

/// `POST /console/session` `{"key": "..."}`: a session cookie for a valid API key.
async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SignIn>,
) -> Result<Response, ApiError> {
    if body.key.is_empty() {
        return Err(ApiError::bad_request("INVALID_BODY", "`key` is required"));
    }
    let live = state.live.load();
    let key = auth::find_key(&live.config.api_keys, body.key.as_bytes())
        .ok_or_else(|| ApiError::unauthorized("UNAUTHORIZED", "invalid API key"))?;
    let session = Session::start(key, now_ms());
    tracing::info!(key_id = %key.id, "console sign-in");
    let cookie = cookie::Cookie::build((session::COOKIE, session.seal(key)))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .secure(behind_tls(&headers))
        .max_age(cookie::time::Duration::milliseconds(
            session::LIFETIME_MS as i64,
        ))
        .build();
    Ok(with_cookie(
        Json(view(key, &session)).into_response(),
        &cookie,
    ))
}

/// `GET /console/session`: who is signed in, and the CSRF token; 401 when nobody is.
async fn current(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let live = state.live.load();
    let (key, s) = gate::session_of(&live.config.api_keys, &headers)?;
    Ok(Json(view(key, &s)).into_response())
}

/// `DELETE /console/session` (with the CSRF token): the cookie is cleared. The token itself
/// stays valid until it expires; rotating the key ends every session made with it.
async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let live = state.live.load();
    let (key, s) = gate::session_of(&live.config.api_keys, &headers)?;
    gate::require_csrf(key, &s, &headers)?;
    tracing::info!(key_id = %key.id, "console sign-out");
    let cookie = cookie::Cookie::build((session::COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .max_age(cookie::time::Duration::ZERO)
        .build();
    Ok(with_cookie(StatusCode::NO_CONTENT.into_response(), &cookie))
}

fn with_cookie(mut resp: Response, cookie: &cookie::Cookie<'_>) -> Response {
    if let Ok(v) = HeaderValue::from_str(&cookie.to_string()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A TLS-terminating proxy in front says so; the cookie is then `Secure`. Behind
/// `kubectl port-forward` (plain HTTP on localhost) it cannot be.
fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}
