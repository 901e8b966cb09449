//! Several data-plane pods answering as one gateway.
//!
//! Each pod keeps its own sled store; nothing is replicated. What makes the pods one gateway:
//!
//! - every id a pod creates carries its node number ([`crate::store::node_of`]), so any pod knows
//!   which pod holds an event or delivery without asking the others;
//! - [`discovery`] keeps the table of the other pods (a static `--peers` list, or the addresses
//!   of a headless Service from `--peers-dns`), probing each one's identity;
//! - [`fanout`] sits in front of the REST API: a listing asks every pod and [`merge`]s their
//!   pages into one newest-first page with one cursor; a call about one object goes to the pod
//!   that holds it; the config listings add up every pod's counters;
//! - [`drain`] takes a pod out of the set without stranding its queue: it stops ingest, lets
//!   attempts in flight finish, and hands each unfinished event to a peer ([`internal`] has the
//!   routes peers call).
//!
//! Peer calls carry the caller's own API key, so each pod applies the key's role and namespace
//! scope itself: going through a peer can never see or do more than asking it directly.

pub mod client;
pub mod discovery;
pub mod drain;
pub mod fanout;
pub mod internal;
pub mod merge;

use std::sync::RwLock;
use std::time::Duration;

use serde::Serialize;

pub use client::{PeerClient, PeerError, PeerResponse};

/// Set on a request one pod makes to another on a caller's behalf: answer from this pod alone.
/// A client may set it too; it only ever narrows the answer.
pub const HOP_HEADER: &str = "x-hookmesh-hop";

/// How this pod finds and talks to the others.
#[derive(Clone, Debug, Default)]
pub struct PeerSettings {
    /// This pod's node number, carried by every id it creates.
    pub node: u16,
    /// Base URLs (`http://host:port`) of a fixed set of pods; may include this one.
    pub static_peers: Vec<String>,
    /// `host:port` of a headless Service whose addresses are the pods.
    pub dns: Option<String>,
    /// How often the set is resolved and probed again.
    pub refresh: Duration,
    /// Bound on every call to a peer.
    pub timeout: Duration,
    /// Shared secret of the internal routes (handoff, drain); without it they are refused.
    pub token: Option<String>,
    /// Drain (hand the queue to peers) on SIGTERM before stopping.
    pub drain_on_shutdown: bool,
    /// Bound on a whole drain.
    pub drain_timeout: Duration,
}

/// Another pod, as the last probe saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    pub url: String,
    /// `None` until it has answered a probe once.
    pub node: Option<u16>,
    pub up: bool,
    /// Draining pods take no handoffs.
    pub draining: bool,
    pub error: Option<String>,
}

impl Member {
    /// How the member is named in `missing_peers`.
    pub fn label(&self) -> String {
        match self.node {
            Some(n) => format!("node {n} ({})", self.url),
            None => self.url.clone(),
        }
    }
}

/// This pod's view of the set.
pub struct Peers {
    pub settings: PeerSettings,
    /// Random per process: how a pod recognises itself among the addresses it probes.
    pub instance: String,
    pub client: PeerClient,
    members: RwLock<Vec<Member>>,
}

impl Peers {
    pub fn new(settings: PeerSettings) -> Result<Peers, PeerError> {
        let client = PeerClient::new(settings.timeout)?;
        Ok(Peers {
            settings,
            instance: format!("{:032x}", rand::random::<u128>()),
            client,
            members: RwLock::new(Vec::new()),
        })
    }

    pub fn node(&self) -> u16 {
        self.settings.node
    }

    /// Whether this pod is meant to have peers at all (else the REST API answers alone).
    pub fn configured(&self) -> bool {
        !self.settings.static_peers.is_empty() || self.settings.dns.is_some()
    }

    /// The other pods, as last probed.
    pub fn members(&self) -> Vec<Member> {
        self.members
            .read()
            .map(|m| m.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The pod with node number `node`, if known.
    pub fn owner(&self, node: u16) -> Option<Member> {
        self.members().into_iter().find(|m| m.node == Some(node))
    }

    pub(crate) fn set_members(&self, members: Vec<Member>) {
        match self.members.write() {
            Ok(mut m) => *m = members,
            Err(p) => *p.into_inner() = members,
        }
    }

    /// `Authorization` value of internal calls.
    pub(crate) fn bearer(&self) -> Option<String> {
        self.settings.token.as_ref().map(|t| format!("Bearer {t}"))
    }
}

/// The node number a pod name ends with (`hookmesh-dataplane-2` is 2): a StatefulSet's
/// ordinal, stable across restarts, which is what ids must carry.
pub fn ordinal(pod_name: &str) -> Option<u16> {
    let digits = pod_name.rsplit('-').next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_come_from_the_pod_name() {
        assert_eq!(ordinal("hookmesh-dataplane-2"), Some(2));
        assert_eq!(ordinal("x-65535"), Some(65535));
        assert_eq!(ordinal("x-65536"), None);
        assert_eq!(ordinal("web-7d9f8-abcde"), None);
        assert_eq!(ordinal("7"), Some(7));
        assert_eq!(ordinal("pod-"), None);
    }
}
