//! hookmesh data plane: ingest -> verify -> store -> route -> deliver, plus the REST API.
//!
//! One module per stage; `server` wires them together for the binary.

pub mod app;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod deliver;
pub mod error;
pub mod ingest;
pub mod metrics;
pub mod rest;
pub mod retention;
pub mod route;
pub mod server;
pub mod store;
pub mod verify;
