//! Which objects a config is for. The central gateway serves every Source and Endpoint that
//! names no `workload`; a workload's sidecar serves exactly the ones that name it, with the
//! Subscriptions that target its Endpoints and the Secrets of its namespace. The slices come
//! from the same objects through the same [`compile`](super::compile), so a sidecar and the
//! gateway can never disagree about what an object means, and a sidecar's config holds no
//! other workload's secrets (the compiler embeds only the Secrets its objects reference, and a
//! slice's inputs hold only its namespace's).

use std::collections::BTreeSet;

use kube::ResourceExt;

use super::defaults::namespace_of;
use super::Inputs;
use crate::resources::{Endpoint, Source, Subscription};

/// Who a config is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience<'a> {
    /// The central gateway: everything not bound to a workload.
    Gateway,
    /// The sidecar of one workload.
    Workload { namespace: &'a str, name: &'a str },
}

fn source_workload(s: &Source) -> Option<&str> {
    s.spec.workload.as_deref()
}

fn endpoint_workload(e: &Endpoint) -> Option<&str> {
    e.spec.workload.as_deref()
}

impl Inputs {
    /// Every (namespace, workload) that some Source or Endpoint is bound to, sorted.
    pub fn workloads(&self) -> BTreeSet<(String, String)> {
        let sources = self
            .sources
            .iter()
            .filter_map(|s| source_workload(s).map(|w| (namespace_of(s), w.to_string())));
        let endpoints = self
            .endpoints
            .iter()
            .filter_map(|e| endpoint_workload(e).map(|w| (namespace_of(e), w.to_string())));
        sources.chain(endpoints).collect()
    }

    /// The inputs of one audience's config.
    pub fn for_audience(&self, audience: Audience<'_>) -> Inputs {
        let belongs = |ns: String, workload: Option<&str>| match audience {
            Audience::Gateway => workload.is_none(),
            Audience::Workload { namespace, name } => ns == namespace && workload == Some(name),
        };
        let endpoints: Vec<Endpoint> = self
            .endpoints
            .iter()
            .filter(|e| belongs(namespace_of(*e), endpoint_workload(e)))
            .cloned()
            .collect();
        let targets: BTreeSet<(String, String)> = endpoints
            .iter()
            .map(|e| (namespace_of(e), e.name_any()))
            .collect();
        // A Subscription goes where its Endpoint is.
        let subscriptions: Vec<Subscription> = self
            .subscriptions
            .iter()
            .filter(|s| targets.contains(&(namespace_of(*s), s.spec.endpoint_ref.name.clone())))
            .cloned()
            .collect();
        let sources = self
            .sources
            .iter()
            .filter(|s| belongs(namespace_of(*s), source_workload(s)))
            .cloned()
            .collect();
        let secrets = match audience {
            Audience::Gateway => self.secrets.clone(),
            Audience::Workload { namespace, .. } => self
                .secrets
                .iter()
                .filter(|s| s.namespace().as_deref() == Some(namespace))
                .cloned()
                .collect(),
        };
        Inputs {
            sources,
            endpoints,
            subscriptions,
            secrets,
        }
    }
}
