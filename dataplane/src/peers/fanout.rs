//! The REST API across pods. A middleware in front of the REST routes decides, from the method
//! and path alone, who answers:
//!
//! - listings (`GET /events`, `/deliveries`): every pod, merged ([`merge::pages`]);
//! - config listings (`/sources`, `/endpoints`, `/subscriptions`): every pod's counters added up;
//!   resuming an endpoint goes to every pod too, since each holds its own pause;
//! - anything about one event or delivery: the pod whose node the id carries; when that pod says
//!   404 (the event was handed to a peer) or is not known, the others are asked;
//! - bulk replay: by ids, each pod for its own ids; by filter, every pod, with one cursor that
//!   holds each pod's place;
//! - the rest (publish, probes, ingest): this pod.
//!
//! Calls to peers carry the caller's own credentials and the [`HOP_HEADER`], so each pod
//! authenticates, authorizes and scopes the caller itself and answers only for itself. This
//! pod's own answer goes first in every merge: when it refuses (401, 403, 400, 429), that
//! refusal is the answer. A peer that fails or times out is named in `missing_peers` with
//! `partial: true`; a call whose owner does not answer is 503 `PEER_UNAVAILABLE`.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;

use super::merge::{self, ConfigKind, PageIn};
use super::{Member, PeerError, PeerResponse, HOP_HEADER};
use crate::error::ApiError;
use crate::rest::params::{self, cursor};
use crate::state::AppState;
use crate::store::{node_of, DeliveryId, EventId};

/// Largest request body forwarded (the REST API's JSON limit).
const MAX_BODY: usize = 1024 * 1024;
/// Largest local answer merged.
const MAX_LOCAL_ANSWER: usize = 64 * 1024 * 1024;
/// Marks a bulk-replay cursor that holds every pod's own cursor.
const MULTI_CURSOR: &str = "m1.";

/// Who answers a request.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Local,
    List(u8),
    Config(ConfigKind),
    BulkReplay,
    /// About one object, created by this node.
    Owned(u16),
}

fn classify(method: &Method, path: &str) -> Route {
    if method == Method::GET && path == super::internal::INTERNAL_ENDPOINTS {
        return Route::Config(ConfigKind::Endpoints);
    }
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return Route::Local;
    };
    let segments: Vec<&str> = rest.split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["events"]) => Route::List(cursor::EVENTS),
        (&Method::GET, ["deliveries"]) => Route::List(cursor::DELIVERIES),
        (&Method::GET, ["sources"]) => Route::Config(ConfigKind::Sources),
        (&Method::GET, ["endpoints"]) => Route::Config(ConfigKind::Endpoints),
        // Each pod holds its own pause: every pod resumes, and the answers merge like a listing.
        (&Method::POST, ["endpoints", _, _, "resume"]) => Route::Config(ConfigKind::Endpoints),
        (&Method::GET, ["subscriptions"]) => Route::Config(ConfigKind::Subscriptions),
        (&Method::POST, ["events", "bulk", "replay"]) => Route::BulkReplay,
        (_, ["events", id, ..]) => id
            .parse::<EventId>()
            .map_or(Route::Local, |id| Route::Owned(node_of(id.0))),
        (_, ["deliveries", id, ..]) => id
            .parse::<DeliveryId>()
            .map_or(Route::Local, |id| Route::Owned(node_of(id.0))),
        _ => Route::Local,
    }
}

/// The middleware: see the module docs.
pub async fn route(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !state.peers.configured() || req.headers().contains_key(HOP_HEADER) {
        return next.run(req).await;
    }
    match classify(req.method(), req.uri().path()) {
        Route::Local => next.run(req).await,
        route => {
            let (parts, body) = req.into_parts();
            let body = match axum::body::to_bytes(body, MAX_BODY).await {
                Ok(b) => b,
                Err(_) => {
                    return ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "PAYLOAD_TOO_LARGE",
                        format!("request bodies of the REST API are at most {MAX_BODY} bytes"),
                    )
                    .into_response()
                }
            };
            let call = Call {
                state: &state,
                method: parts.method.clone(),
                path_and_query: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default(),
                headers: forwarded(&parts.headers),
                body: body.clone(),
            };
            let local = Local {
                req: Request::from_parts(parts, Body::from(body)),
                next,
            };
            match route {
                Route::List(kind) => call.list(local, kind).await,
                Route::Config(kind) => call.config(local, kind).await,
                Route::BulkReplay => call.bulk_replay(local).await,
                Route::Owned(node) => call.owned(local, node).await,
                Route::Local => local.run().await,
            }
        }
    }
}

/// This pod's own handler, run at most once.
struct Local {
    req: Request,
    next: Next,
}

impl Local {
    async fn run(self) -> Response {
        self.next.run(self.req).await
    }

    /// Run with another body (bulk replay hands each pod its own part).
    async fn run_with(self, body: Bytes) -> Response {
        let (parts, _) = self.req.into_parts();
        self.next
            .run(Request::from_parts(parts, Body::from(body)))
            .await
    }
}

/// What is sent to peers: the caller's request, on their behalf.
struct Call<'a> {
    state: &'a AppState,
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
    body: Bytes,
}

/// The caller's credentials and content type, and the hop marker.
fn forwarded(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in ["authorization", "x-api-key", "content-type", "accept"] {
        if let Some(v) = headers.get(name) {
            out.insert(name, v.clone());
        }
    }
    out.insert(HOP_HEADER, HeaderValue::from_static("1"));
    out
}

/// A peer that did not give a usable answer.
struct Missing {
    member: Member,
    why: String,
}

impl<'a> Call<'a> {
    fn members(&self) -> Vec<Member> {
        self.state.peers.members()
    }

    async fn send(&self, m: &Member, body: Bytes) -> Result<PeerResponse, PeerError> {
        let url = format!("{}{}", m.url, self.path_and_query);
        let r = self
            .state
            .peers
            .client
            .send(self.method.clone(), &url, &self.headers, body)
            .await;
        if let Err(e) = &r {
            self.state.metrics.peer_call_failures.inc();
            tracing::warn!(peer = %m.url, error = %e, "peer call failed");
        }
        r
    }

    /// Ask every member the same thing; 200 answers parsed, the rest reported missing.
    async fn ask_all(&self, members: &[Member]) -> (Vec<(Member, Value)>, Vec<Missing>) {
        let answers =
            futures::future::join_all(members.iter().map(|m| self.send(m, self.body.clone())))
                .await;
        let mut ok = Vec::new();
        let mut missing = Vec::new();
        for (m, a) in members.iter().cloned().zip(answers) {
            // `send` counted the calls that got no answer; these got an unusable one.
            let answered = a.is_ok();
            match json_answer(a) {
                Ok(v) => ok.push((m, v)),
                Err(why) => {
                    if answered {
                        self.state.metrics.peer_call_failures.inc();
                    }
                    missing.push(Missing { member: m, why })
                }
            }
        }
        (ok, missing)
    }

    /// This pod's answer and every peer's, asked at once. `Err`: this pod refused, and that
    /// refusal is the answer.
    async fn gather(&self, local: Local) -> Result<(Value, Vec<Value>, Vec<Missing>), Response> {
        let members = self.members();
        let (mine, (theirs, missing)) = tokio::join!(local.run(), self.ask_all(&members));
        let body = match local_json(mine).await {
            Some(Ok(v)) => v,
            Some(Err(refusal)) => return Err(refusal),
            None => return Err(unreadable_local()),
        };
        Ok((body, theirs.into_iter().map(|(_, v)| v).collect(), missing))
    }

    async fn list(self, local: Local, kind: u8) -> Response {
        let (body, theirs, missing) = match self.gather(local).await {
            Ok(all) => all,
            Err(refusal) => return refusal,
        };
        let query = self.path_and_query.split_once('?').map(|(_, q)| q);
        let fingerprint = params::filters_fingerprint(query);
        let limit = body["pagination"]["limit"]
            .as_u64()
            .map_or(params::DEFAULT_LIMIT, |l| l as usize);
        let mut pages = vec![page_in(&body, kind, fingerprint)];
        pages.extend(theirs.iter().map(|v| page_in(v, kind, fingerprint)));
        let (items, next) = merge::pages(pages, limit);
        let mut out = body;
        out["data"] = Value::Array(items);
        out["pagination"] = serde_json::json!({
            "limit": limit,
            "has_more": next.is_some(),
            "next_cursor": next.map(|n| cursor::encode(kind, fingerprint, n)),
        });
        mark_partial(&mut out, &missing);
        Json(out).into_response()
    }

    async fn config(self, local: Local, kind: ConfigKind) -> Response {
        let (body, others, missing) = match self.gather(local).await {
            Ok(all) => all,
            Err(refusal) => return refusal,
        };
        let mut out = merge::config(kind, body, &others);
        mark_partial(&mut out, &missing);
        Json(out).into_response()
    }

    /// One object: its owner answers; on 404 (or an owner not known) the others are asked.
    async fn owned(self, local: Local, node: u16) -> Response {
        let members = self.members();
        if node == self.state.peers.node() {
            let mine = local.run().await;
            if mine.status() != StatusCode::NOT_FOUND || members.is_empty() {
                return mine;
            }
            return self.search(None, &members, Some(mine)).await;
        }
        let Some(owner) = members.iter().find(|m| m.node == Some(node)).cloned() else {
            return self.search(Some(local), &members, None).await;
        };
        match self.send(&owner, self.body.clone()).await {
            Ok(resp) if resp.status != StatusCode::NOT_FOUND => relay(resp),
            Ok(not_found) => {
                let others: Vec<Member> = members.into_iter().filter(|m| *m != owner).collect();
                self.search(Some(local), &others, Some(relay(not_found)))
                    .await
            }
            Err(e) => owner_unavailable(&owner, &e.to_string()),
        }
    }

    /// Ask this pod (when given) and `members` at once; the first answer that is not 404 wins.
    /// All 404: 404, unless some pod did not answer (then nobody can say: 503).
    async fn search(
        &self,
        local: Option<Local>,
        members: &[Member],
        not_found: Option<Response>,
    ) -> Response {
        let local_answer = async {
            match local {
                Some(l) => Some(l.run().await),
                None => None,
            }
        };
        let remote =
            futures::future::join_all(members.iter().map(|m| self.send(m, self.body.clone())));
        let (mine, theirs) = tokio::join!(local_answer, remote);
        let mut not_found = not_found;
        if let Some(r) = mine {
            if r.status() != StatusCode::NOT_FOUND {
                return r;
            }
            not_found = Some(r);
        }
        let mut missing = Vec::new();
        for (m, a) in members.iter().zip(theirs) {
            match a {
                Ok(resp) if resp.status != StatusCode::NOT_FOUND => return relay(resp),
                Ok(resp) => {
                    if not_found.is_none() {
                        not_found = Some(relay(resp));
                    }
                }
                Err(e) => missing.push(format!("{}: {e}", m.label())),
            }
        }
        if !missing.is_empty() {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "PEER_UNAVAILABLE",
                format!(
                    "not found on the pods that answered, and some did not ({}); retry later",
                    missing.join("; ")
                ),
            )
            .into_response();
        }
        not_found.unwrap_or_else(|| {
            ApiError::not_found("RESOURCE_NOT_FOUND", "not found on any pod").into_response()
        })
    }

    /// Bulk replay. By ids: each id to its owner (ids of unknown owners to every pod). By
    /// filter: every pod replays its own matches, and the cursor holds each pod's place.
    async fn bulk_replay(self, local: Local) -> Response {
        let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(&self.body) else {
            return local.run().await;
        };
        if let Some(ids) = req.get("ids").and_then(Value::as_array) {
            return self.bulk_by_ids(local, &req, ids.clone()).await;
        }
        if req.get("filter").is_some() {
            return self.bulk_by_filter(local, req).await;
        }
        local.run().await
    }

    async fn bulk_by_ids(
        self,
        local: Local,
        req: &serde_json::Map<String, Value>,
        ids: Vec<Value>,
    ) -> Response {
        let members = self.members();
        let me = self.state.peers.node();
        // Malformed ids, and ids of pods not known: every pod is asked (this one reports the
        // malformed ones).
        let mut mine: Vec<Value> = Vec::new();
        let mut by_member: BTreeMap<usize, Vec<Value>> = BTreeMap::new();
        for v in ids {
            let node = v
                .as_str()
                .and_then(|s| s.parse::<EventId>().ok())
                .map(|id| node_of(id.0));
            match node.and_then(|n| members.iter().position(|m| m.node == Some(n))) {
                Some(i) if node != Some(me) => by_member.entry(i).or_default().push(v),
                _ if node == Some(me) => mine.push(v),
                _ => {
                    mine.push(v.clone());
                    for i in 0..members.len() {
                        by_member.entry(i).or_default().push(v.clone());
                    }
                }
            }
        }
        let with_ids = |ids: Vec<Value>| {
            let mut r = req.clone();
            r.insert("ids".into(), Value::Array(ids));
            Bytes::from(serde_json::to_vec(&Value::Object(r)).unwrap_or_default())
        };
        let local_answer = async {
            if mine.is_empty() {
                None
            } else {
                Some(local.run_with(with_ids(mine)).await)
            }
        };
        let sends = by_member
            .into_iter()
            .map(|(i, ids)| (members[i].clone(), with_ids(ids)))
            .collect::<Vec<_>>();
        let remote =
            futures::future::join_all(sends.iter().map(|(m, body)| self.send(m, body.clone())));
        let (mine, theirs) = tokio::join!(local_answer, remote);
        let mut answers = Vec::new();
        if let Some(r) = mine {
            match local_json(r).await {
                Some(Ok(v)) => answers.push(v),
                Some(Err(refusal)) => return refusal,
                None => return unreadable_local(),
            }
        }
        let mut missing = Vec::new();
        for ((m, body), a) in sends.iter().zip(theirs) {
            match json_answer(a) {
                Ok(v) => answers.push(v),
                Err(why) => {
                    // Each id the owner could not be asked about is an error of its own.
                    let ids: Vec<Value> = serde_json::from_slice::<Value>(body)
                        .ok()
                        .and_then(|b| b.get("ids").cloned())
                        .and_then(|v| v.as_array().cloned())
                        .unwrap_or_default();
                    answers.push(serde_json::json!({
                        "replayed": 0, "results": [], "has_more": false, "next_cursor": null,
                        "errors": ids.iter().map(|id| serde_json::json!({
                            "event_id": id, "code": "PEER_UNAVAILABLE",
                            "message": format!("{} did not answer: {why}", m.label()),
                        })).collect::<Vec<_>>(),
                    }));
                    missing.push(Missing {
                        member: m.clone(),
                        why,
                    });
                }
            }
        }
        if answers.is_empty() {
            // Only ids of a down owner, say: the local handler checks role and body anyway.
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "PEER_UNAVAILABLE",
                "no pod could be asked",
            )
            .into_response();
        }
        let mut out = bulk_merge(answers);
        mark_partial(&mut out, &missing);
        (StatusCode::ACCEPTED, Json(out)).into_response()
    }

    async fn bulk_by_filter(self, local: Local, req: serde_json::Map<String, Value>) -> Response {
        let members = self.members();
        let me = self.state.peers.node();
        let key = |m: &Member| m.node.map_or_else(|| m.url.clone(), |n| n.to_string());
        // Each pod's own cursor, from a cursor this code issued; `Some(None)`: that pod is done.
        let places: Option<BTreeMap<String, Option<String>>> = match req
            .get("cursor")
            .and_then(Value::as_str)
            .and_then(|c| c.strip_prefix(MULTI_CURSOR))
        {
            None => None,
            Some(c) => match base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|raw| serde_json::from_slice(&raw).ok())
            {
                Some(p) => Some(p),
                None => {
                    return ApiError::bad_request(
                        "INVALID_BODY",
                        "cursor: not a cursor this API issued",
                    )
                    .into_response()
                }
            },
        };
        let body_for = |k: &str| -> Option<Bytes> {
            let mut r = req.clone();
            if let Some(p) = &places {
                match p.get(k) {
                    Some(None) => return None,
                    Some(Some(c)) => {
                        r.insert("cursor".into(), Value::from(c.as_str()));
                    }
                    // A pod that joined since the last call starts from the top.
                    None => {
                        r.remove("cursor");
                    }
                }
            }
            serde_json::to_vec(&Value::Object(r)).ok().map(Bytes::from)
        };
        let my_key = me.to_string();
        let local_body = body_for(&my_key);
        let sends: Vec<(Member, Option<Bytes>)> = members
            .iter()
            .map(|m| (m.clone(), body_for(&key(m))))
            .collect();
        let local_answer = async {
            match local_body {
                Some(b) => Some(local.run_with(b).await),
                None => None,
            }
        };
        let this = &self;
        let remote = futures::future::join_all(sends.iter().map(|(m, b)| async move {
            match b {
                Some(b) => Some(this.send(m, b.clone()).await),
                None => None,
            }
        }));
        let (mine, theirs) = tokio::join!(local_answer, remote);
        let mut answers = Vec::new();
        let mut next: BTreeMap<String, Option<String>> = BTreeMap::new();
        match mine {
            Some(r) => match local_json(r).await {
                Some(Ok(v)) => {
                    next.insert(my_key, v["next_cursor"].as_str().map(str::to_string));
                    answers.push(v);
                }
                Some(Err(refusal)) => return refusal,
                None => return unreadable_local(),
            },
            None => {
                next.insert(my_key, None);
            }
        }
        let mut missing = Vec::new();
        for ((m, _), a) in sends.iter().zip(theirs) {
            match a.map(json_answer) {
                None => {
                    next.insert(key(m), None);
                }
                Some(Ok(v)) => {
                    next.insert(key(m), v["next_cursor"].as_str().map(str::to_string));
                    answers.push(v);
                }
                Some(Err(why)) => {
                    // Keep its place: the next call asks it again from there.
                    // Keep its place (absent: from the top), and say there is more.
                    if let Some(c) = places.as_ref().and_then(|p| p.get(&key(m)).cloned()) {
                        next.insert(key(m), c);
                    }
                    missing.push(Missing {
                        member: m.clone(),
                        why,
                    });
                }
            }
        }
        let mut out = bulk_merge(answers);
        let more = next.values().any(Option::is_some) || !missing.is_empty();
        out["has_more"] = Value::from(more);
        out["next_cursor"] = if more {
            let raw = serde_json::to_vec(&next).unwrap_or_default();
            Value::from(format!(
                "{MULTI_CURSOR}{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
            ))
        } else {
            Value::Null
        };
        mark_partial(&mut out, &missing);
        (StatusCode::ACCEPTED, Json(out)).into_response()
    }
}

/// Several pods' bulk-replay answers as one.
fn bulk_merge(answers: Vec<Value>) -> Value {
    let mut results: Vec<Value> = Vec::new();
    let mut errors: Vec<Value> = Vec::new();
    for a in &answers {
        if let Some(r) = a["results"].as_array() {
            results.extend(r.iter().cloned());
        }
        if let Some(e) = a["errors"].as_array() {
            errors.extend(e.iter().cloned());
        }
    }
    // An id asked of every pod: replayed somewhere means no error; otherwise one error, the
    // most telling (not-found only when nothing better was said).
    let done: Vec<Value> = results.iter().map(|r| r["event_id"].clone()).collect();
    errors.retain(|e| !done.contains(&e["event_id"]));
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for e in errors {
        let id = e["event_id"].as_str().unwrap_or_default().to_string();
        let replace = by_id
            .get(&id)
            .is_none_or(|old| old["code"] == "RESOURCE_NOT_FOUND");
        if replace {
            by_id.insert(id, e);
        }
    }
    serde_json::json!({
        "replayed": results.len(),
        "results": results,
        "errors": by_id.into_values().collect::<Vec<_>>(),
        "has_more": answers.iter().any(|a| a["has_more"] == true),
        "next_cursor": null,
    })
}

/// A listing answer as merge input: its items and, if it stopped early, where.
fn page_in(v: &Value, kind: u8, fingerprint: [u8; 8]) -> PageIn {
    let items = v["data"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|item| merge::item_id(item).map(|id| (id, item.clone())))
                .collect()
        })
        .unwrap_or_default();
    let next = v["pagination"]["next_cursor"]
        .as_str()
        .and_then(|c| cursor::decode(kind, fingerprint, Some(&c.to_string())).ok())
        .flatten();
    PageIn { items, next }
}

/// `partial` and `missing_peers` on a merged answer.
fn mark_partial(out: &mut Value, missing: &[Missing]) {
    out["partial"] = Value::from(!missing.is_empty());
    out["missing_peers"] = Value::Array(
        missing
            .iter()
            .map(|m| Value::from(format!("{}: {}", m.member.label(), m.why)))
            .collect(),
    );
}

/// A peer's answer as JSON, when it is a success.
fn json_answer(a: Result<PeerResponse, PeerError>) -> Result<Value, String> {
    let resp = a.map_err(|e| e.to_string())?;
    if !resp.status.is_success() {
        let code = serde_json::from_slice::<Value>(&resp.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_string))
            .unwrap_or_default();
        return Err(format!("answered {} {code}", resp.status.as_u16())
            .trim_end()
            .to_string());
    }
    serde_json::from_slice(&resp.body).map_err(|e| format!("answered unreadable JSON: {e}"))
}

/// This pod's answer: `Ok` JSON when a success, `Err` the refusal to pass on as it is.
async fn local_json(r: Response) -> Option<Result<Value, Response>> {
    if !r.status().is_success() {
        return Some(Err(r));
    }
    let bytes = axum::body::to_bytes(r.into_body(), MAX_LOCAL_ANSWER)
        .await
        .ok()?;
    serde_json::from_slice(&bytes).ok().map(Ok)
}

fn unreadable_local() -> Response {
    tracing::error!("this pod's own REST answer could not be read for merging");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL",
        "the answer could not be assembled",
    )
    .into_response()
}

/// A peer's answer, passed on.
fn relay(resp: PeerResponse) -> Response {
    let mut out = Response::new(Body::from(resp.body));
    *out.status_mut() = resp.status;
    for name in ["content-type", "retry-after", "location"] {
        if let Some(v) = resp.headers.get(name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

fn owner_unavailable(owner: &Member, why: &str) -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "PEER_UNAVAILABLE",
        format!(
            "this object is held by {}, which did not answer ({why}); retry later",
            owner.label()
        ),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_told_apart_by_method_and_path() {
        let evt = EventId::generate();
        let node = node_of(evt.0);
        assert_eq!(
            classify(&Method::GET, "/api/v1/events"),
            Route::List(cursor::EVENTS)
        );
        assert_eq!(classify(&Method::POST, "/api/v1/events"), Route::Local);
        assert_eq!(
            classify(&Method::GET, "/api/v1/deliveries"),
            Route::List(cursor::DELIVERIES)
        );
        assert_eq!(
            classify(&Method::GET, &format!("/api/v1/events/{evt}/payload")),
            Route::Owned(node)
        );
        assert_eq!(
            classify(&Method::DELETE, &format!("/api/v1/events/{evt}")),
            Route::Owned(node)
        );
        assert_eq!(
            classify(&Method::POST, "/api/v1/events/bulk/replay"),
            Route::BulkReplay
        );
        assert_eq!(classify(&Method::GET, "/api/v1/events/nope"), Route::Local);
        assert_eq!(
            classify(&Method::GET, "/api/v1/endpoints"),
            Route::Config(ConfigKind::Endpoints)
        );
        assert_eq!(classify(&Method::POST, "/e/ns/src"), Route::Local);
        assert_eq!(classify(&Method::GET, "/metrics"), Route::Local);
    }

    #[test]
    fn bulk_answers_merge_and_a_replay_anywhere_clears_the_not_found_elsewhere() {
        let a = serde_json::json!({"replayed": 1, "results": [{"event_id": "evt_1"}],
            "errors": [{"event_id": "evt_2", "code": "RESOURCE_NOT_FOUND"}], "has_more": false});
        let b = serde_json::json!({"replayed": 1, "results": [{"event_id": "evt_2"}],
            "errors": [{"event_id": "evt_3", "code": "RESOURCE_NOT_FOUND"}], "has_more": false});
        let c = serde_json::json!({"replayed": 0, "results": [],
            "errors": [{"event_id": "evt_3", "code": "PAYLOAD_EXPIRED"}], "has_more": true});
        let m = bulk_merge(vec![a, b, c]);
        assert_eq!(m["replayed"], 2);
        assert_eq!(m["errors"].as_array().map(Vec::len), Some(1));
        assert_eq!(m["errors"][0]["code"], "PAYLOAD_EXPIRED");
        assert_eq!(m["has_more"], true);
    }
}
