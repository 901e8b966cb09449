//! hookmesh's shared vocabulary: the custom resources users declare, the compiled
//! [`GatewayConfig`] the data plane runs on, and the one compiler between them.
//!
//! Data flows one way: manifests ([`manifests`]) -> [`compile::compile`] -> [`GatewayConfig`].
//! The operator and standalone mode both feed this pipeline; nothing else compiles config.

pub mod compile;
pub mod config;
pub mod duration;
pub mod manifests;
pub mod resources;

pub use compile::{compile, Compiled, Problem};
pub use config::GatewayConfig;
pub use resources::{Endpoint, Source, Subscription};

/// API group of every hookmesh resource.
pub const GROUP: &str = "hookmesh.io";
/// The one served version.
pub const VERSION: &str = "v1alpha1";
