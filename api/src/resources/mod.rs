//! The three custom resources (group `hookmesh.io`, version `v1alpha1`, namespaced).
//!
//! Validation lives in the schema (enums, patterns, bounds, CEL rules) so `kubectl apply`
//! refuses a bad manifest, and again in [`crate::compile`] so standalone mode refuses the same.

mod common;
mod endpoint;
mod source;
mod subscription;

pub use common::*;
pub use endpoint::*;
pub use source::*;
pub use subscription::*;

use kube::CustomResourceExt;

/// The CRDs of all three kinds as one multi-document YAML stream, as `crdgen` prints it.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in [Source::crd(), Endpoint::crd(), Subscription::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
