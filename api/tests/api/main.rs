//! The api crate's tests, one binary: the compiler by kind of object (`compile`), the CRDs'
//! CEL rules and schema shape offline (`cel`), and the manifests loader (`manifests`).

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is a failure with its cause

mod common;

mod cel;
mod compile;
mod manifests;
