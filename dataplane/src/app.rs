//! The HTTP surface of a data-plane pod: composes the routes each module owns (ingest, the REST
//! API, probes) with `GET /openapi.json`; puts the REST API behind the peer fan-out, and that
//! behind the console's session gate; adds the routes pods call on each other and the console.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use axum::Router;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error;
use crate::openapi::ApiDoc;
use crate::state::AppState;
use crate::{console, ingest, peers, probes, query_rule, rest};

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(ingest::routes())
        .merge(rest::routes())
        .merge(probes::routes())
        .routes(routes!(openapi_json))
}

/// The OpenAPI document of [`router`], from the same declarations as its routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

pub fn router(state: AppState) -> Router {
    let (router, _) = routes().split_for_parts();
    // Before the other internal routes are merged: those are this pod's alone.
    let router =
        router
            .merge(peers::internal::fanned_out())
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                peers::fanout::route,
            ));
    // Outside the fan-out: a console session becomes its API key before the peers are asked.
    let router = router.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        console::gate,
    ));
    router
        .merge(peers::internal::routes())
        .merge(console::routes())
        // Outermost: a request with a parameter its route does not take goes no further.
        .layer(axum::middleware::from_fn(query_rule::check))
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = serde_json::Value)))]
async fn openapi_json() -> impl IntoResponse {
    static DOC: OnceLock<String> = OnceLock::new();
    let json = DOC.get_or_init(|| {
        openapi().to_json().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot render the OpenAPI document");
            "{}".to_string()
        })
    });
    ([(header::CONTENT_TYPE, "application/json")], json.as_str())
}
