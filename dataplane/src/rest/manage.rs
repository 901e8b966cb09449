//! Registering endpoints and subscriptions through the API (write keys, in their namespace):
//! the door beside the declared resources, not a second store. `manage` writes them where
//! declared objects live, and each call answers once the object is live.

use std::collections::BTreeMap;

use base64::Engine as _;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::live::{endpoint_view, subscription_view, subscriptions_to};
use super::model::{EndpointView, SubscriptionView};
use super::params::{self, JsonBody};
use super::Auth;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::manage::{self, Manager, NewEndpoint, NewSubscription};
use crate::openapi::RestErrors;
use crate::state::AppState;

/// `POST /api/v1/endpoints`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Default: the key's namespace, or `default` for a key of every namespace.
    pub namespace: Option<String>,
    /// A Kubernetes name (DNS-1123 subdomain).
    #[serde(default)]
    pub name: String,
    /// Where deliveries are POSTed (http or https).
    #[serde(default)]
    pub url: String,
    /// Extra headers sent with every delivery.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Per-attempt timeout (default 30).
    pub timeout_seconds: Option<u32>,
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub disabled: bool,
}

/// The registered endpoint and its signing secret, shown this once and never again.
#[derive(Serialize, ToSchema)]
pub struct CreatedEndpoint {
    pub endpoint: EndpointView,
    /// The Standard Webhooks secret (`whsec_...`) deliveries are signed with.
    pub secret: String,
}

/// `POST /api/v1/subscriptions`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    /// Default: the key's namespace, or `default`.
    pub namespace: Option<String>,
    /// Default: the endpoint's name and a random suffix.
    pub name: Option<String>,
    /// The endpoint: `name`, or `namespace/name` in the same namespace.
    #[serde(default)]
    pub endpoint_id: String,
    #[serde(default)]
    pub filter: SubscriptionFilter,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionFilter {
    /// One event type glob (`order.*`); with `event_types`, any of them.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    #[serde(default)]
    pub event_types: Vec<String>,
    /// One source name; with `sources`, any of them. None: every source of the namespace.
    pub source: Option<String>,
    #[serde(default)]
    pub sources: Vec<String>,
}

fn manager(state: &AppState) -> Result<&Manager, ApiError> {
    state.manage.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "MANAGEMENT_UNAVAILABLE",
            "this data plane does not register objects through the API (a sidecar, or a \
             cluster install without dataplane.registration.enabled): declare Endpoint and \
             Subscription resources instead",
        )
    })
}

fn invalid(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_OBJECT", message)
}

/// The namespace a registration goes to: the one named (if the key may), else the key's.
fn namespace_of(caller: &Caller, named: Option<&str>) -> Result<String, ApiError> {
    let ns = named
        .or(caller.namespace.as_deref())
        .unwrap_or("default")
        .to_string();
    if !manage::valid_name(&ns, 63) {
        return Err(invalid(format!(
            "namespace {ns:?} is not a valid namespace name"
        )));
    }
    caller.require_namespace(&ns)?;
    Ok(ns)
}

/// The path of a removal, checked, and the caller's right to make it.
fn removal(caller: &Caller, namespace: &str, name: &str) -> Result<(String, String), ApiError> {
    let namespace = params::name("namespace", namespace)?;
    let name = params::name("name", name)?;
    caller.require_namespace(&namespace)?;
    caller.require_write()?;
    Ok((namespace, name))
}

fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    if manage::valid_name(name, 253) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {name:?}: a name is lower-case letters, digits, '-' and '.', each part \
             starting and ending with a letter or digit, at most 253 characters"
        )))
    }
}

/// Register an endpoint; the answer (with its signing secret, shown only here) comes once it
/// is live.
#[utoipa::path(post, path = "/api/v1/endpoints", tag = "config",
    request_body(content = CreateEndpoint, description = "`name` and `url` at least"),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Live; the secret is shown this once", body = CreatedEndpoint),
        (status = 403, description = "A read-only key, or a namespace the key may not see", body = ErrorBody),
        (status = 409, description = "It exists (`ALREADY_EXISTS`), the manifests do not compile (`MANIFESTS_DO_NOT_COMPILE`), or this data plane does not register objects (`MANAGEMENT_UNAVAILABLE`)", body = ErrorBody),
        (status = 422, description = "Not a valid endpoint (`INVALID_OBJECT`, with the reason)", body = ErrorBody),
        RestErrors,
    ))]
pub async fn create_endpoint(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(body): JsonBody<CreateEndpoint>,
) -> Result<Response, ApiError> {
    caller.require_write()?;
    let namespace = namespace_of(&caller, body.namespace.as_deref())?;
    check_name("name", &body.name)?;
    if body.url.is_empty() {
        return Err(invalid("url is required".into()));
    }
    let manager = manager(&state)?;
    let new = NewEndpoint {
        namespace,
        name: body.name,
        url: body.url,
        headers: body.headers,
        timeout_seconds: body.timeout_seconds,
        max_attempts: body.max_attempts,
        disabled: body.disabled,
    };
    manager.create_endpoint(&new).await?;
    tracing::info!(namespace = %new.namespace, endpoint = %new.name, key_id = %caller.id,
        "endpoint registered through the API");
    let live = state.live.load();
    let e = live
        .config
        .endpoint(&new.namespace, &new.name)
        .ok_or_else(|| ApiError::from(manage::ManageError::NotLive(manage::LIVE_TIMEOUT)))?;
    let endpoint = endpoint_view(e, subscriptions_to(&live.config, e), &state);
    // What it signs with, as compiled: the file's secret standalone, the operator's in cluster.
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(e.signing_key.expose())
    );
    Ok((
        StatusCode::CREATED,
        Json(CreatedEndpoint { endpoint, secret }),
    )
        .into_response())
}

/// Remove an endpoint registered through the API, with the subscriptions registered to it.
#[utoipa::path(delete, path = "/api/v1/endpoints/{namespace}/{name}", tag = "config",
    params(
        ("namespace" = String, Path, description = "The endpoint's namespace", pattern = "^[a-z0-9.-]{1,253}$"),
        ("name" = String, Path, description = "The endpoint's name", pattern = "^[a-z0-9.-]{1,253}$"),
    ),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Gone from the live config"),
        (status = 403, description = "A read-only key, or a namespace the key may not see", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 409, description = "Declared by manifests (`DECLARED_BY_MANIFESTS`), still the target of declared subscriptions (`ENDPOINT_IN_USE`), or not registrable here (`MANAGEMENT_UNAVAILABLE`)", body = ErrorBody),
        RestErrors,
    ))]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (namespace, name) = removal(&caller, &namespace, &name)?;
    manager(&state)?.delete_endpoint(&namespace, &name).await?;
    tracing::info!(%namespace, endpoint = %name, key_id = %caller.id,
        "endpoint removed through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// Register a subscription: which events (type globs, sources) go to an endpoint.
#[utoipa::path(post, path = "/api/v1/subscriptions", tag = "config",
    request_body(content = CreateSubscription, description = "`endpoint_id` at least"),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Live", body = SubscriptionView),
        (status = 403, description = "A read-only key, or a namespace the key may not see", body = ErrorBody),
        (status = 409, description = "It exists (`ALREADY_EXISTS`), the manifests do not compile, or not registrable here", body = ErrorBody),
        (status = 422, description = "Not a valid subscription (`INVALID_OBJECT`: a bad glob, an unknown endpoint or source, ...)", body = ErrorBody),
        RestErrors,
    ))]
pub async fn create_subscription(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(body): JsonBody<CreateSubscription>,
) -> Result<Response, ApiError> {
    caller.require_write()?;
    let namespace = namespace_of(&caller, body.namespace.as_deref())?;
    let endpoint = match body.endpoint_id.split_once('/') {
        Some((ns, name)) if ns == namespace => name.to_string(),
        Some((ns, _)) => {
            return Err(invalid(format!(
                "endpoint_id {:?}: a subscription in {namespace} delivers to an endpoint of \
                 {namespace}, not {ns}",
                body.endpoint_id
            )))
        }
        None => body.endpoint_id.clone(),
    };
    check_name("endpoint_id", &endpoint)?;
    let name = match body.name {
        Some(n) => n,
        None => format!("{endpoint}-{}", hex::encode(rand::random::<[u8; 3]>())),
    };
    check_name("name", &name)?;
    let f = body.filter;
    let new = NewSubscription {
        namespace,
        name,
        endpoint,
        sources: f.source.into_iter().chain(f.sources).collect(),
        event_types: f.event_type.into_iter().chain(f.event_types).collect(),
    };
    for s in &new.sources {
        check_name("source", s)?;
    }
    if state
        .live
        .load()
        .endpoint(&new.namespace, &new.endpoint)
        .is_none()
    {
        return Err(invalid(format!(
            "endpoint {}/{} is not in the live config",
            new.namespace, new.endpoint
        )));
    }
    manager(&state)?.create_subscription(&new).await?;
    tracing::info!(namespace = %new.namespace, subscription = %new.name, key_id = %caller.id,
        "subscription registered through the API");
    let live = state.live.load();
    let s = live
        .config
        .subscriptions
        .iter()
        .find(|s| s.namespace == new.namespace && s.name == new.name)
        .ok_or_else(|| ApiError::from(manage::ManageError::NotLive(manage::LIVE_TIMEOUT)))?;
    Ok((StatusCode::CREATED, Json(subscription_view(s, &state))).into_response())
}

/// Remove a subscription registered through the API.
#[utoipa::path(delete, path = "/api/v1/subscriptions/{namespace}/{name}", tag = "config",
    params(
        ("namespace" = String, Path, description = "The subscription's namespace", pattern = "^[a-z0-9.-]{1,253}$"),
        ("name" = String, Path, description = "The subscription's name", pattern = "^[a-z0-9.-]{1,253}$"),
    ),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Gone from the live config"),
        (status = 403, description = "A read-only key, or a namespace the key may not see", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
        (status = 409, description = "Declared by manifests (`DECLARED_BY_MANIFESTS`), or not registrable here", body = ErrorBody),
        RestErrors,
    ))]
pub async fn delete_subscription(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (namespace, name) = removal(&caller, &namespace, &name)?;
    manager(&state)?
        .delete_subscription(&namespace, &name)
        .await?;
    tracing::info!(%namespace, subscription = %name, key_id = %caller.id,
        "subscription removed through the API");
    Ok(StatusCode::NO_CONTENT)
}
