//! The operator's tests, one binary: the pure reconcile logic and status building, every API
//! call against kube's mock transport, the whole leader loop on a scripted API server, and the
//! committed CRDs against `crdgen`. The real API server's word is the e2e suite's.

mod common;

mod controller_run;
mod crd_drift;
mod kube_api;
mod reconcile;
mod status;
