//! Finding the other pods: the static `--peers` list and the addresses behind `--peers-dns`
//! (a headless Service publishes one A/AAAA record per pod, ready or not), resolved and probed
//! every `--peer-refresh`. A probe asks `/internal/v1/identity` for the pod's node number; the
//! answer that carries this process's own instance token is this pod, and is left out.
//!
//! Pods come and go: an address that leaves the DNS answer leaves the table (the pod is gone,
//! its ids are searched for on the others); an address that stays but does not answer stays
//! as down, with its node number, so a call about its objects says "unavailable", not "absent".
//! A failed DNS lookup keeps the previous addresses.

use std::sync::Arc;

use http::{HeaderMap, Method};
use serde::{Deserialize, Serialize};

use super::{Member, Peers};
use crate::metrics::Metrics;

/// What `/internal/v1/identity` answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Identity {
    pub node: u16,
    pub instance: String,
    pub draining: bool,
}

/// Keep the member table current until the process ends. Call once the listener is bound, so
/// this pod's own address answers its first probe.
pub fn spawn(peers: Arc<Peers>, metrics: Arc<Metrics>) {
    if !peers.configured() {
        return;
    }
    tokio::spawn(async move {
        loop {
            refresh(&peers, &metrics).await;
            tokio::time::sleep(peers.settings.refresh).await;
        }
    });
}

/// One round: resolve, probe every address, replace the table.
pub async fn refresh(peers: &Peers, metrics: &Metrics) {
    let previous = peers.members();
    let mut urls: Vec<String> = peers
        .settings
        .static_peers
        .iter()
        .map(|u| u.trim_end_matches('/').to_string())
        .collect();
    if let Some(name) = &peers.settings.dns {
        match tokio::net::lookup_host(name.as_str()).await {
            Ok(addrs) => urls.extend(addrs.map(|a| format!("http://{a}"))),
            Err(e) => {
                tracing::warn!(name = %name, error = %e,
                    "peer DNS lookup failed; keeping the pods found before");
                urls.extend(previous.iter().map(|m| m.url.clone()));
            }
        }
    }
    urls.sort();
    urls.dedup();
    let probes = urls.iter().map(|url| probe(peers, url));
    let answers = futures::future::join_all(probes).await;
    let mut members = Vec::with_capacity(urls.len());
    for (url, answer) in urls.into_iter().zip(answers) {
        let before = previous.iter().find(|m| m.url == url);
        match answer {
            Ok(id) if id.instance == peers.instance => {}
            Ok(id) => {
                if id.node == peers.node() {
                    tracing::error!(url = %url, node = id.node,
                        "another pod has this pod's node number; ids cannot tell them apart (set --node-id)");
                }
                if before.is_none_or(|b| !b.up) {
                    tracing::info!(url = %url, node = id.node, "peer up");
                }
                members.push(Member {
                    url,
                    node: Some(id.node),
                    up: true,
                    draining: id.draining,
                    error: None,
                });
            }
            Err(e) => {
                if before.is_none_or(|b| b.up) {
                    tracing::warn!(url = %url, error = %e, "peer not answering");
                }
                members.push(Member {
                    node: before.and_then(|b| b.node),
                    draining: before.is_some_and(|b| b.draining),
                    url,
                    up: false,
                    error: Some(e),
                });
            }
        }
    }
    metrics.peers_known.set(members.len() as i64);
    metrics
        .peers_up
        .set(members.iter().filter(|m| m.up).count() as i64);
    peers.set_members(members);
}

async fn probe(peers: &Peers, url: &str) -> Result<Identity, String> {
    let resp = peers
        .client
        .send(
            Method::GET,
            &format!("{url}/internal/v1/identity"),
            &HeaderMap::new(),
            bytes::Bytes::new(),
        )
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status.is_success() {
        return Err(format!("identity answered {}", resp.status));
    }
    serde_json::from_slice(&resp.body).map_err(|e| format!("identity unreadable: {e}"))
}
