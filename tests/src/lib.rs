//! Shared helpers for the end-to-end suites: start the real binaries, talk HTTP to them, and
//! sign requests the way each provider documents (written here independently of the gateway).

pub mod gateway;
pub mod harness;
pub mod receiver;
pub mod rest_harness;
pub mod sign;
pub mod webhooks;
