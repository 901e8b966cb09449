//! Endpoints and subscriptions registered through the REST API, kept in the one source of
//! truth declared objects live in: standalone, YAML files under `<manifests>/managed/`, which
//! the directory watcher compiles like any other manifest (`files`); in cluster, the resources
//! themselves, created through the Kubernetes API for the operator to compile (`kube`). Each
//! call answers once what it wrote is live, or with the reason it was refused.
//!
//! Objects written here carry the label `hookmesh.io/managed-by: api` (so a GitOps tool can be
//! told to leave them alone); objects declared any other way cannot be changed or deleted
//! through the API.

mod files;
mod kube;
mod objects;

pub use self::kube::Kube;
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
    /// Refused by the compiler or the API server: the reason code and its message.
    #[error("{reason}: {message}")]
    Rejected { reason: String, message: String },
    #[error("the manifests directory does not compile ({0}); nothing was written: fix it first")]
    ManifestsBroken(String),
    #[error("written, but not live after {0:?}: see the data plane's log")]
    NotLive(std::time::Duration),
    #[error("cannot write the managed manifests: {0}")]
    Io(String),
    #[error("the Kubernetes API refused the data plane: {0} (registration through the API needs the chart's dataplane.registration.enabled)")]
    NotPermitted(String),
    #[error("the Kubernetes API did not answer as expected: {0}")]
    Kube(String),
}

impl ManageError {
    pub(crate) fn not_found(kind: &'static str, namespace: &str, name: &str) -> Self {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        ManageError::NotFound {
            kind,
            namespace,
            name,
        }
    }

    pub(crate) fn exists(kind: &'static str, namespace: &str, name: &str) -> Self {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        ManageError::AlreadyExists {
            kind,
            namespace,
            name,
        }
    }

    pub(crate) fn declared(kind: &'static str, namespace: &str, name: &str) -> Self {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        ManageError::DeclaredByManifests {
            kind,
            namespace,
            name,
        }
    }
}

impl From<&Problem> for ManageError {
    fn from(p: &Problem) -> Self {
        ManageError::Rejected {
            reason: p.reason.to_string(),
            message: p.message.clone(),
        }
    }
}

/// Where registrations are written.
pub enum Manager {
    Files(Files),
    Kube(Kube),
}

impl Manager {
    pub async fn create_endpoint(&self, e: &NewEndpoint) -> Result<(), ManageError> {
        match self {
            Manager::Files(f) => f.create_endpoint(e, &generate_signing_secret()).await,
            Manager::Kube(k) => k.create_endpoint(e).await,
        }
    }

    pub async fn delete_endpoint(&self, namespace: &str, name: &str) -> Result<(), ManageError> {
        match self {
            Manager::Files(f) => f.delete_endpoint(namespace, name).await,
            Manager::Kube(k) => k.delete_endpoint(namespace, name).await,
        }
    }

    pub async fn create_subscription(&self, s: &NewSubscription) -> Result<(), ManageError> {
        match self {
            Manager::Files(f) => f.create_subscription(s).await,
            Manager::Kube(k) => k.create_subscription(s).await,
        }
    }

    pub async fn delete_subscription(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(), ManageError> {
        match self {
            Manager::Files(f) => f.delete_subscription(namespace, name).await,
            Manager::Kube(k) => k.delete_subscription(namespace, name).await,
        }
    }
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
            ManageError::Rejected { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_OBJECT"),
            ManageError::ManifestsBroken(_) => (StatusCode::CONFLICT, "MANIFESTS_DO_NOT_COMPILE"),
            ManageError::NotLive(_) => (StatusCode::SERVICE_UNAVAILABLE, "NOT_LIVE_YET"),
            ManageError::Io(_) => (StatusCode::SERVICE_UNAVAILABLE, "STORAGE_UNAVAILABLE"),
            ManageError::NotPermitted(_) => (StatusCode::CONFLICT, "MANAGEMENT_UNAVAILABLE"),
            ManageError::Kube(_) => (StatusCode::SERVICE_UNAVAILABLE, "KUBERNETES_UNAVAILABLE"),
        };
        ApiError::new(status, code, message)
    }
}
