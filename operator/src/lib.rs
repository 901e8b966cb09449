//! hookmesh-operator: reconciles Sources, Endpoints and Subscriptions into the data-plane config.
//!
//! The pure parts ([`reconcile`], [`status`] building) decide; the rest talks to the API:
//! [`controller`] (watches, compile loop, per-kind controllers), [`publish`] (config Secret by
//! server-side apply), [`signing`] (generated Endpoint signing Secrets), [`leader`] (Lease
//! election), [`http`] and [`metrics`] (`/metrics`, `/healthz`, `/readyz`); [`inject`] is the
//! pure part of sidecar injection (the JSON patch a labelled Pod gets), [`webhook`] serves it
//! to the API server over TLS with the operator's own CA; [`sidecars`] publishes each workload's
//! config slice with the grants that let only that workload read it; [`health`] reads each
//! endpoint's delivery health from the data plane into its `Healthy` condition and Events.

pub mod controller;
pub mod health;
pub mod http;
pub mod inject;
pub mod leader;
pub mod metrics;
pub mod publish;
pub mod reconcile;
pub mod sidecars;
pub mod signing;
pub mod status;
pub mod webhook;

/// Field manager of every write the operator makes (server-side apply, status, creates).
pub const FIELD_MANAGER: &str = "hookmesh-operator";
