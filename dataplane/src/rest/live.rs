//! `GET /api/v1/sources`, `/endpoints`, `/subscriptions`: the live config (declared in
//! Kubernetes, so read-only here) with this pod's counters. No secret material is shown: not the
//! verification or signing secrets, not source API keys, not custom header values, not URL
//! passwords.

use axum::extract::{Path, State};
use axum::Json;
use hookmesh_api::config::{
    EndpointConfig, RetryConfig, RetryDelays, SubscriptionConfig, VerifyMode,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::model::*;
use super::params::{self, Params};
use super::{visible, Auth};
use crate::config::Live;
use crate::deliver::health::HealthState;
use crate::deliver::HealthBoard;
use crate::error::{ApiError, ErrorBody};
use crate::metrics::Metrics;
use crate::openapi::RestErrors;
use crate::state::AppState;
use crate::store::now_ms;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConfigQuery {
    /// Only this namespace.
    #[param(pattern = "^[a-z0-9.-]{1,253}$")]
    pub namespace: Option<String>,
}

/// Filters of `GET /endpoints` and `GET /subscriptions`: a namespace, and optional paging.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConfigPageQuery {
    /// Only this namespace.
    #[param(pattern = "^[a-z0-9.-]{1,253}$")]
    pub namespace: Option<String>,
    /// Page size, 1 to 100; without it, every object in one answer.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of `items` (sorted by namespace and name) after `cursor`, when `limit` is given.
fn page_of<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> (&str, &str),
    q: &ConfigPageQuery,
) -> Result<(Vec<T>, Option<Pagination>), ApiError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let Some(limit) = q
        .limit
        .as_ref()
        .map(|l| params::limit(Some(l)))
        .transpose()?
    else {
        if q.cursor.is_some() {
            return Err(ApiError::invalid_parameter("cursor goes with limit"));
        }
        return Ok((items, None));
    };
    let after = match &q.cursor {
        None => None,
        Some(c) => {
            let text = b64
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ApiError::invalid_parameter("cursor: not a cursor of this listing")
                })?;
            let (ns, name) = text.split_once('/').ok_or_else(|| {
                ApiError::invalid_parameter("cursor: not a cursor of this listing")
            })?;
            Some((ns.to_string(), name.to_string()))
        }
    };
    let mut rest: Vec<T> = items
        .into_iter()
        .filter(|i| {
            after
                .as_ref()
                .is_none_or(|(ns, n)| key(i) > (ns.as_str(), n.as_str()))
        })
        .collect();
    let has_more = rest.len() > limit;
    rest.truncate(limit);
    let next_cursor = match rest.last() {
        Some(last) if has_more => {
            let (ns, n) = key(last);
            Some(b64.encode(format!("{ns}/{n}")))
        }
        _ => None,
    };
    Ok((
        rest,
        Some(Pagination {
            limit,
            has_more,
            next_cursor,
        }),
    ))
}

fn scope(caller: &crate::auth::Caller, q: &ConfigQuery) -> Result<impl Fn(&str) -> bool, ApiError> {
    scope_of(caller, q.namespace.as_deref())
}

fn scope_of(
    caller: &crate::auth::Caller,
    namespace: Option<&str>,
) -> Result<impl Fn(&str) -> bool, ApiError> {
    let named = namespace
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
    let dead_lettered = metrics.attempts_of(namespace, endpoint, "dead_letter");
    EndpointCounters {
        delivered: metrics.attempts_of(namespace, endpoint, "success"),
        failed: metrics.attempts_of(namespace, endpoint, "failed") + dead_lettered,
        retried: metrics.attempts_of(namespace, endpoint, "retry"),
        dead_lettered,
    }
}

/// `closed`, `open` or `half_open` as the delivery engine last published it; `unknown` before
/// the engine has met the endpoint.
fn circuit(board: &HealthBoard, namespace: &str, endpoint: &str) -> String {
    board
        .circuit(namespace, endpoint)
        .unwrap_or("unknown")
        .to_string()
}

fn retry_view(r: &RetryConfig) -> RetryView {
    let (form, schedule_ms, initial, max, multiplier) = match &r.delays {
        RetryDelays::Schedule { delays_ms } => ("schedule", delays_ms.clone(), None, None, None),
        RetryDelays::Exponential {
            initial_ms,
            max_ms,
            multiplier,
        } => (
            "exponential",
            Vec::new(),
            Some(*initial_ms),
            Some(*max_ms),
            Some(*multiplier),
        ),
    };
    RetryView {
        max_attempts: r.max_attempts,
        form: form.to_string(),
        schedule_ms,
        initial_backoff_ms: initial,
        max_backoff_ms: max,
        multiplier,
        max_age_ms: r.max_age_ms,
        max_retry_after_ms: r.max_retry_after_ms,
    }
}

pub(super) fn endpoint_view(
    e: &EndpointConfig,
    subscriptions: usize,
    state: &AppState,
) -> EndpointView {
    let pause = match state.store.endpoint_pause(&e.namespace, &e.name) {
        Ok(p) => p,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read an endpoint's pause");
            None
        }
    };
    let circuit = match &pause {
        Some(_) => "paused".to_string(),
        None => circuit(&state.health, &e.namespace, &e.name),
    };
    let counters = endpoint_counters(&state.metrics, &e.namespace, &e.name);
    let mut health = state.health.health(&e.namespace, &e.name, now_ms());
    if pause.is_some() {
        health.state = HealthState::Paused;
    }
    EndpointView {
        pods: vec![PodEndpointState {
            node: state.peers.node(),
            circuit: circuit.clone(),
            counters: counters.clone(),
            health: health.clone(),
            paused: pause.map(|p| PauseView {
                since: p.since,
                reason: p.reason,
                delivery_id: p.delivery_id.to_string(),
            }),
        }],
        namespace: e.namespace.clone(),
        name: e.name.clone(),
        url: redact_url(&e.url),
        header_names: e.headers.iter().map(|(n, _)| n.clone()).collect(),
        timeout_ms: e.timeout_ms,
        retry: retry_view(&e.retry),
        rate_limit_per_second: e.per_second,
        max_in_flight: e.max_in_flight,
        disabled: e.disabled,
        subscription_count: subscriptions,
        circuit,
        counters,
        health,
    }
}

/// Resume an endpoint that was paused because its receiver answered 410 Gone: its queued
/// deliveries are due at once. With several pods, every pod resumes it. Resuming an endpoint
/// that is not paused changes nothing.
#[utoipa::path(post, path = "/api/v1/endpoints/{namespace}/{name}/resume", tag = "config",
    params(
        ("namespace" = String, Path, description = "The endpoint's namespace", pattern = "^[a-z0-9.-]{1,253}$"),
        ("name" = String, Path, description = "The endpoint's name", pattern = "^[a-z0-9.-]{1,253}$"),
    ),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The endpoint as it is now", body = EndpointList),
        (status = 403, description = "A read-only key, or a namespace the key may not see", body = ErrorBody),
        (status = 404, description = "No such endpoint in the live config (`ENDPOINT_NOT_FOUND`)", body = ErrorBody),
        RestErrors,
    ))]
pub async fn resume_endpoint(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<EndpointList>, ApiError> {
    let namespace = params::name("namespace", &namespace)?;
    let name = params::name("name", &name)?;
    caller.require_namespace(&namespace)?;
    caller.require_write()?;
    let live = state.live.load();
    let e = live.config.endpoint(&namespace, &name).ok_or_else(|| {
        ApiError::not_found(
            "ENDPOINT_NOT_FOUND",
            format!("Endpoint {namespace}/{name} is not in the live config"),
        )
    })?;
    if let Some(p) = state.store.resume_endpoint(&namespace, &name)? {
        state.metrics.endpoint_paused(&namespace, &name, false);
        tracing::info!(%namespace, endpoint = %name, paused_ms = now_ms().saturating_sub(p.since),
            "endpoint resumed; its queued deliveries are due now");
    }
    Ok(Json(endpoint_list(&state, &live, [e], None)))
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

/// The Endpoints of the live config, with delivery counters and circuit state; with `limit`,
/// one page at a time.
#[utoipa::path(get, path = "/api/v1/endpoints", tag = "config",
    params(ConfigPageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Endpoints, by namespace and name", body = EndpointList),
        (status = 403, description = "The key may not see the namespace asked for", body = ErrorBody),
        RestErrors,
    ))]
pub async fn endpoints(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Params { value: q, .. }: Params<ConfigPageQuery>,
) -> Result<Json<EndpointList>, ApiError> {
    let keep = scope_of(&caller, q.namespace.as_deref())?;
    let live = state.live.load();
    let visible: Vec<&EndpointConfig> = live
        .config
        .endpoints
        .iter()
        .filter(|e| keep(&e.namespace))
        .collect();
    let (page, pagination) = page_of(visible, |e| (&e.namespace, &e.name), &q)?;
    Ok(Json(endpoint_list(&state, &live, page, pagination)))
}

/// Every Endpoint of the live config with this pod's health of it, for the operator (through
/// the peer-token route `GET /internal/v1/endpoints`, which the fan-out merges like the API's).
pub fn all_endpoints(state: &AppState) -> EndpointList {
    let live = state.live.load();
    endpoint_list(state, &live, &live.config.endpoints, None)
}

/// `endpoints` of `live` as this pod shows them.
fn endpoint_list<'a>(
    state: &AppState,
    live: &Live,
    endpoints: impl IntoIterator<Item = &'a EndpointConfig>,
    pagination: Option<Pagination>,
) -> EndpointList {
    EndpointList {
        config_hash: live.hash().to_string(),
        data: endpoints
            .into_iter()
            .map(|e| endpoint_view(e, subscriptions_to(&live.config, e), state))
            .collect(),
        pagination,
        coverage: Coverage::default(),
    }
}

/// How many subscriptions deliver to `e`.
pub(super) fn subscriptions_to(c: &hookmesh_api::GatewayConfig, e: &EndpointConfig) -> usize {
    c.subscriptions
        .iter()
        .filter(|s| s.namespace == e.namespace && s.endpoint == e.name)
        .count()
}

/// The Subscriptions of the live config; with `limit`, one page at a time.
#[utoipa::path(get, path = "/api/v1/subscriptions", tag = "config",
    params(ConfigPageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Subscriptions, by namespace and name", body = SubscriptionList),
        (status = 403, description = "The key may not see the namespace asked for", body = ErrorBody),
        RestErrors,
    ))]
pub async fn subscriptions(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Params { value: q, .. }: Params<ConfigPageQuery>,
) -> Result<Json<SubscriptionList>, ApiError> {
    let keep = scope_of(&caller, q.namespace.as_deref())?;
    let live = state.live.load();
    let visible: Vec<&SubscriptionConfig> = live
        .config
        .subscriptions
        .iter()
        .filter(|s| keep(&s.namespace))
        .collect();
    let (page, pagination) = page_of(visible, |s| (&s.namespace, &s.name), &q)?;
    let data = page
        .into_iter()
        .map(|s| subscription_view(s, &state))
        .collect();
    Ok(Json(SubscriptionList {
        config_hash: live.hash().to_string(),
        data,
        pagination,
        coverage: Coverage::default(),
    }))
}

pub(super) fn subscription_view(s: &SubscriptionConfig, state: &AppState) -> SubscriptionView {
    SubscriptionView {
        namespace: s.namespace.clone(),
        name: s.name.clone(),
        endpoint: s.endpoint.clone(),
        sources: s.sources.clone(),
        event_types: s.filter.event_types.clone(),
        header_matchers: s.filter.headers.len(),
        body_matchers: s.filter.body.len(),
        filters: describe_filters(&s.filter),
        endpoint_circuit: circuit(&state.health, &s.namespace, &s.endpoint),
        endpoint_counters: endpoint_counters(&state.metrics, &s.namespace, &s.endpoint),
    }
}

/// A subscription's header and body matchers in words, one line each: `header x-env = "prod"`,
/// `body /type starts with "order."`, `any of: ...`.
fn describe_filters(f: &hookmesh_api::config::FilterConfig) -> Vec<String> {
    use hookmesh_api::config::{Leaf, Matcher, Test};
    fn leaf(place: &str, l: &Leaf) -> String {
        let test = match &l.test {
            Test::Exact(v) => format!("= {v:?}"),
            Test::Prefix(v) => format!("starts with {v:?}"),
            Test::Suffix(v) => format!("ends with {v:?}"),
            Test::Exists(true) => "is present".to_string(),
            Test::Exists(false) => "is absent".to_string(),
        };
        format!("{place} {} {test}", l.field)
    }
    fn list(place: &str, ls: &[Leaf]) -> String {
        ls.iter()
            .map(|l| leaf(place, l))
            .collect::<Vec<_>>()
            .join("; ")
    }
    let one = |place: &str, m: &Matcher| match m {
        Matcher::Leaf(l) => leaf(place, l),
        Matcher::Any(ls) => format!("any of: {}", list(place, ls)),
        Matcher::All(ls) => format!("all of: {}", list(place, ls)),
        Matcher::Not(l) => format!("not: {}", leaf(place, l)),
    };
    f.headers
        .iter()
        .map(|m| one("header", m))
        .chain(f.body.iter().map(|m| one("body", m)))
        .collect()
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

    use hookmesh_api::config::{FilterConfig, Leaf, Matcher, Test};

    #[test]
    fn filters_read_as_words() {
        let leaf = |field: &str, test| Leaf {
            field: field.into(),
            test,
        };
        let f = FilterConfig {
            event_types: vec![],
            headers: vec![Matcher::Leaf(leaf("x-env", Test::Exact("prod".into())))],
            body: vec![
                Matcher::Any(vec![
                    leaf("/type", Test::Prefix("order.".into())),
                    leaf("/kind", Test::Suffix("\"x".into())),
                ]),
                Matcher::Not(leaf("/test", Test::Exists(true))),
            ],
        };
        assert_eq!(
            super::describe_filters(&f),
            vec![
                r#"header x-env = "prod""#,
                r#"any of: body /type starts with "order."; body /kind ends with "\"x""#,
                "not: body /test is present",
            ]
        );
    }
}
