//! Shared helpers for the end-to-end suites: start the real binaries, talk HTTP to them, and
//! sign requests the way each provider documents (written here independently of the gateway).
//!
//! One of each: `http` (requests and the [`http::Resp`] answer), `gateway` (the data-plane
//! process), `receiver` (a scripted loopback receiver), `wait` (polling until a condition holds).

pub mod gateway;
pub mod http;
pub mod peer_set;
pub mod python;
pub mod receiver;
pub mod rest_harness;
pub mod sign;
pub mod wait;
pub mod webhooks;
