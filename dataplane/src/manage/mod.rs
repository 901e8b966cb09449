//! Endpoints and subscriptions registered through the REST API, kept in the one source of
//! truth declared objects live in: standalone, YAML files under `<manifests>/managed/`, which
//! the directory watcher compiles like any other manifest. Each call answers once what it
//! wrote is live, or with the compiler's reason before anything is written.
//!
//! Objects written here carry the label `hookmesh.io/managed-by: api` (so a GitOps tool can be
//! told to leave them alone); objects declared any other way cannot be changed or deleted
//! through the API.

mod files;
mod objects;

pub use files::Files;
pub use objects::{generate_signing_secret, valid_name, NewEndpoint, NewSubscription};

use axum::http::StatusCode;
use hookmesh_api::compile::Problem;

use crate::error::ApiError;

/// The label on every object this module writes.
pub const MANAGED_BY_LABEL: &str = "hookmesh.io/managed-by";
pub const MANAGED_BY_API: &str = "api";

/// How long a call waits for what it wrote to go live.
pub const LIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("{kind} {namespace}/{name} already exists")]
    AlreadyExists {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("{kind} {namespace}/{name} is declared by manifests, not registered through the API: change it where it is declared")]
    DeclaredByManifests {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("endpoint {namespace}/{name} is the target of subscriptions declared by manifests ({subscriptions}): remove those first")]
    InUse {
        namespace: String,
        name: String,
        subscriptions: String,
    },
    #[error("{0}")]
    Rejected(Problem),
    #[error("the manifests directory does not compile ({0}); nothing was written: fix it first")]
    ManifestsBroken(String),
    #[error("written, but not live after {0:?}: see the data plane's log")]
    NotLive(std::time::Duration),
    #[error("cannot write the managed manifests: {0}")]
    Io(String),
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        let message = e.to_string();
        let (status, code) = match &e {
            ManageError::NotFound { .. } => (StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND"),
            ManageError::AlreadyExists { .. } => (StatusCode::CONFLICT, "ALREADY_EXISTS"),
            ManageError::DeclaredByManifests { .. } => {
                (StatusCode::CONFLICT, "DECLARED_BY_MANIFESTS")
            }
            ManageError::InUse { .. } => (StatusCode::CONFLICT, "ENDPOINT_IN_USE"),
            ManageError::Rejected(_) => (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_OBJECT"),
            ManageError::ManifestsBroken(_) => (StatusCode::CONFLICT, "MANIFESTS_DO_NOT_COMPILE"),
            ManageError::NotLive(_) => (StatusCode::SERVICE_UNAVAILABLE, "NOT_LIVE_YET"),
            ManageError::Io(_) => (StatusCode::SERVICE_UNAVAILABLE, "STORAGE_UNAVAILABLE"),
        };
        ApiError::new(status, code, message)
    }
}
