//! `GET /api/v1/sources`, `/endpoints`, `/subscriptions`: the live config (declared in
//! Kubernetes, so read-only here) with this pod's counters. No secret material is shown: not the
//! verification or signing secrets, not source API keys, not custom header values, not URL
//! passwords.

use axum::extract::State;
use axum::Json;
use hookmesh_api::config::{EndpointConfig, VerifyMode};
use serde::Deserialize;
use utoipa::IntoParams;

use super::model::*;
use super::params::{self, Params};
use super::{visible, Auth};
use crate::deliver::CircuitBoard;
use crate::error::{ApiError, ErrorBody};
use crate::metrics::Metrics;
use crate::openapi::RestErrors;
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConfigQuery {
    /// Only this namespace.
    #[param(pattern = "^[a-z0-9.-]{1,253}$")]
    pub namespace: Option<String>,
}

fn scope(caller: &crate::auth::Caller, q: &ConfigQuery) -> Result<impl Fn(&str) -> bool, ApiError> {
    let named = q
        .namespace
        .as_deref()
        .map(|ns| params::name("namespace", ns))
        .transpose()?;
    let set = visible(caller, named.as_deref())?;
    Ok(move |ns: &str| set.as_ref().is_none_or(|s| s.contains(ns)))
}

/// The URL with any password replaced.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:redacted@{host}{tail}")
        }
        None => url.to_string(),
    }
}

fn endpoint_counters(metrics: &Metrics, namespace: &str, endpoint: &str) -> EndpointCounters {
    EndpointCounters {
        delivered: metrics.attempts_of(namespace, endpoint, "success"),
        failed: metrics.attempts_of(namespace, endpoint, "failed")
            + metrics.attempts_of(namespace, endpoint, "dead_letter"),
        retried: metrics.attempts_of(namespace, endpoint, "retry"),
    }
}

/// `closed`, `open` or `half_open` as the delivery engine last published it; `unknown` before
/// the engine has met the endpoint.
fn circuit(circuits: &CircuitBoard, namespace: &str, endpoint: &str) -> String {
    circuits
        .state(namespace, endpoint)
        .unwrap_or("unknown")
        .to_string()
}

fn endpoint_view(
    e: &EndpointConfig,
    subscriptions: usize,
    node: u16,
    circuits: &CircuitBoard,
    metrics: &Metrics,
) -> EndpointView {
    let state = circuit(circuits, &e.namespace, &e.name);
    let counters = endpoint_counters(metrics, &e.namespace, &e.name);
    EndpointView {
        pods: vec![PodEndpointState {
            node,
            circuit: state.clone(),
            counters: counters.clone(),
        }],
        namespace: e.namespace.clone(),
        name: e.name.clone(),
        url: redact_url(&e.url),
        header_names: e.headers.iter().map(|(n, _)| n.clone()).collect(),
        timeout_ms: e.timeout_ms,
        retry: RetryView {
            max_attempts: e.retry.max_attempts,
            initial_backoff_ms: e.retry.initial_backoff_ms,
            max_backoff_ms: e.retry.max_backoff_ms,
            multiplier: e.retry.multiplier,
        },
        rate_limit_per_second: e.per_second,
        max_in_flight: e.max_in_flight,
        disabled: e.disabled,
        subscription_count: subscriptions,
        circuit: state,
        counters,
    }
}

/// The Sources of the live config.
#[utoipa::path(get, path = "/api/v1/sources", tag = "config",
    params(ConfigQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Sources, by namespace and name", body = SourceList),
        (status = 403, description = "The key may not see the namespace asked for", body = ErrorBody),
        RestErrors,
    ))]
pub async fn sources(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Params { value: q, .. }: Params<ConfigQuery>,
) -> Result<Json<SourceList>, ApiError> {
    let keep = scope(&caller, &q)?;
    let live = state.live.load();
    let data = live
        .config
        .sources
        .iter()
        .filter(|s| keep(&s.namespace))
        .map(|s| SourceView {
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            ingest_path: format!("/e/{}/{}", s.namespace, s.name),
            verification: s.verification.scheme_name().to_string(),
            mode: match s.mode {
                VerifyMode::Enforce => "enforce",
                VerifyMode::Audit => "audit",
            }
            .to_string(),
            tolerance_seconds: s.tolerance_seconds,
            requires_api_key: s.api_key.is_some(),
            max_body_bytes: s.max_body_bytes,
            counters: SourceCounters {
                received: state.metrics.ingested_of(&s.namespace, &s.name),
            },
        })
        .collect();
    Ok(Json(SourceList {
        config_hash: live.hash().to_string(),
        data,
        coverage: Coverage::default(),
    }))
}

/// The Endpoints of the live config, with delivery counters and circuit state.
#[utoipa::path(get, path = "/api/v1/endpoints", tag = "config",
    params(ConfigQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Endpoints, by namespace and name", body = EndpointList),
        (status = 403, description = "The key may not see the namespace asked for", body = ErrorBody),
        RestErrors,
    ))]
pub async fn endpoints(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Params { value: q, .. }: Params<ConfigQuery>,
) -> Result<Json<EndpointList>, ApiError> {
    let keep = scope(&caller, &q)?;
    let live = state.live.load();
    let subs = &live.config.subscriptions;
    let data = live
        .config
        .endpoints
        .iter()
        .filter(|e| keep(&e.namespace))
        .map(|e| {
            let n = subs
                .iter()
                .filter(|s| s.namespace == e.namespace && s.endpoint == e.name)
                .count();
            endpoint_view(e, n, state.peers.node(), &state.circuits, &state.metrics)
        })
        .collect();
    Ok(Json(EndpointList {
        config_hash: live.hash().to_string(),
        data,
        coverage: Coverage::default(),
    }))
}

/// The Subscriptions of the live config.
#[utoipa::path(get, path = "/api/v1/subscriptions", tag = "config",
    params(ConfigQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Subscriptions, by namespace and name", body = SubscriptionList),
        (status = 403, description = "The key may not see the namespace asked for", body = ErrorBody),
        RestErrors,
    ))]
pub async fn subscriptions(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Params { value: q, .. }: Params<ConfigQuery>,
) -> Result<Json<SubscriptionList>, ApiError> {
    let keep = scope(&caller, &q)?;
    let live = state.live.load();
    let data = live
        .config
        .subscriptions
        .iter()
        .filter(|s| keep(&s.namespace))
        .map(|s| SubscriptionView {
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            endpoint: s.endpoint.clone(),
            sources: s.sources.clone(),
            event_types: s.filter.event_types.clone(),
            header_matchers: s.filter.headers.len(),
            body_matchers: s.filter.body.len(),
            endpoint_circuit: circuit(&state.circuits, &s.namespace, &s.endpoint),
            endpoint_counters: endpoint_counters(&state.metrics, &s.namespace, &s.endpoint),
        })
        .collect();
    Ok(Json(SubscriptionList {
        config_hash: live.hash().to_string(),
        data,
        coverage: Coverage::default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url("https://u:p4ss@h.example:8443/x?y=1"),
            "https://u:redacted@h.example:8443/x?y=1"
        );
        assert_eq!(redact_url("http://h/x@y"), "http://h/x@y");
        assert_eq!(redact_url("http://h/x"), "http://h/x");
    }
}
