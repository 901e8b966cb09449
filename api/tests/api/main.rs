//! The api crate's tests, one binary: the compiler by kind of object (`compile`), the CRDs'
//! CEL rules and schema shape offline (`cel`), and the manifests loader (`manifests`).

mod common;

mod cel;
mod compile;
mod manifests;
