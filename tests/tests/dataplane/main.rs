//! The data plane end to end: the real `hookmesh-dataplane` binary over real HTTP, with real
//! sled on disk and real provider signatures. One test binary for all of it, so the suites
//! link once.

mod console;
mod delivery;
mod ingest;
mod manage;
mod refusals;
mod rest;
mod rest_limits;
mod scaleout;
mod sidecar;
