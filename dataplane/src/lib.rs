//! hookmesh data plane: ingest -> verify -> store -> plan/route -> deliver, plus the REST API.
//!
//! One module per stage; `server` wires them together for the binary. The stages below the
//! HTTP layer (`config`, `verify`, `route`, `plan`, `store`, `deliver`) know nothing of it;
//! `state` is what the HTTP modules (`ingest`, `rest`, `probes`, `console`) share, and `app` composes
//! their routes; `peers` makes several pods answer as one gateway. `docs/architecture.md` draws the whole picture.

pub mod app;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod console;
pub mod deliver;
pub mod error;
pub mod http_refusals;
pub mod ingest;
pub mod manage;
pub mod metrics;
pub mod openapi;
pub mod peers;
pub mod plan;
pub mod pod_event;
pub mod probes;
pub mod query_rule;
pub mod ratelimit;
pub mod rest;
pub mod retention;
pub mod route;
pub mod server;
pub mod settings;
pub mod standard_webhooks;
pub mod state;
pub mod store;
pub mod verify;
