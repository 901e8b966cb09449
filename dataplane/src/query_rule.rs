//! One rule for every route: a route accepts exactly the query parameters its OpenAPI
//! declaration lists, and any other is `400 INVALID_PARAMETER` naming it. The allowed names are
//! read from the very document `/openapi.json` serves, so a new route or parameter cannot
//! escape the rule, and a parameter the document does not show cannot be relied on. (The
//! handlers then check the values.) Routes outside the document (`/internal/v1/...`) take none.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use axum::extract::{MatchedPath, Query, Request};
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{OpenApi, RefOr};

use crate::error::ApiError;

/// (method, path template) -> the query parameters it declares.
type Allowed = HashMap<(Method, String), BTreeSet<String>>;

fn allowed(doc: &OpenApi) -> Allowed {
    let mut out = Allowed::new();
    for (path, item) in &doc.paths.paths {
        let ops: [(Method, &Option<Operation>); 5] = [
            (Method::GET, &item.get),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::DELETE, &item.delete),
            (Method::PATCH, &item.patch),
        ];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            let names = op
                .parameters
                .iter()
                .chain(item.parameters.iter())
                .flatten()
                .filter_map(|p| match p {
                    RefOr::T(p) if p.parameter_in == ParameterIn::Query => Some(p.name.clone()),
                    _ => None,
                })
                .collect();
            out.insert((method, path.clone()), names);
        }
    }
    out
}

fn table() -> &'static Allowed {
    static TABLE: OnceLock<Arc<Allowed>> = OnceLock::new();
    TABLE.get_or_init(|| Arc::new(allowed(&crate::app::openapi())))
}

/// The middleware. Unmatched requests (404, 405) pass through to their own refusals.
pub async fn check(matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    let Some(matched) = matched.filter(|_| req.uri().query().is_some()) else {
        return next.run(req).await;
    };
    if let Err(e) = unknown(table(), req.method(), matched.as_str(), req.uri()) {
        return e.into_response();
    }
    next.run(req).await
}

fn unknown(table: &Allowed, method: &Method, path: &str, uri: &Uri) -> Result<(), ApiError> {
    let method = if method == Method::HEAD {
        Method::GET
    } else {
        method.clone()
    };
    let empty = BTreeSet::new();
    let accepted = table.get(&(method, path.to_string())).unwrap_or(&empty);
    let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(uri) else {
        return Err(ApiError::invalid_parameter("the query string is not valid"));
    };
    for (name, _) in pairs {
        if !accepted.contains(&name) {
            let name: String = name.chars().take(64).collect();
            return Err(ApiError::invalid_parameter(match accepted.is_empty() {
                true => format!("unknown query parameter {name:?}: this route takes none"),
                false => format!(
                    "unknown query parameter {name:?}: this route takes {}",
                    accepted.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_parameter_is_accepted_and_nothing_else() {
        let t = allowed(&crate::app::openapi());
        let uri = |q: &str| format!("/x?{q}").parse::<Uri>().expect("uri");
        let ok = |m: Method, p: &str, q: &str| unknown(&t, &m, p, &uri(q)).is_ok();
        assert!(ok(
            Method::GET,
            "/api/v1/events",
            "limit=5&cursor=x&status=pending"
        ));
        assert!(!ok(Method::GET, "/api/v1/events", "limit=5&colour=red"));
        assert!(!ok(Method::DELETE, "/api/v1/events/{id}", "dry_run=true"));
        assert!(ok(
            Method::GET,
            "/api/v1/events/{id}/deliveries",
            "status=failed"
        ));
        assert!(!ok(Method::POST, "/internal/v1/drain", "x=1"));
        assert!(ok(Method::HEAD, "/api/v1/events", "limit=1"));
        let e = unknown(&t, &Method::GET, "/healthz", &uri("verbose=1")).expect_err("refused");
        assert!(e.message.contains("\"verbose\""), "{}", e.message);
    }
}
