//! Several data-plane processes on loopback that know each other (`--peers`, static), as the
//! scale-out suite and the benchmarks run them: one gateway across N pods.

use std::time::Duration;

use anyhow::Context as _;

use crate::gateway::{free_port, Gateway, GatewayOptions};
use crate::wait::wait_until;

/// The shared secret of the set's internal routes.
pub const PEER_TOKEN: &str = "peer-token-for-tests-0123456789";

/// Options of a set.
pub struct SetOptions {
    pub pods: usize,
    pub manifests_yaml: String,
    /// Arguments every pod gets (besides its identity and the peer list).
    pub args: Vec<String>,
    /// Environment every pod gets (e.g. a quieter `RUST_LOG` for benchmarks).
    pub env: Vec<(String, String)>,
    pub release: bool,
}

/// N pods, node numbers 1..=N, each listing all N URLs (its own among them).
pub struct PeerSet {
    pub pods: Vec<Gateway>,
}

impl PeerSet {
    pub async fn start(opts: SetOptions) -> anyhow::Result<PeerSet> {
        let ports = (0..opts.pods)
            .map(|_| free_port())
            .collect::<anyhow::Result<Vec<u16>>>()?;
        let peers = ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut pods = Vec::with_capacity(opts.pods);
        for (i, port) in ports.iter().enumerate() {
            let mut args = vec![
                format!("--node-id={}", i + 1),
                format!("--peers={peers}"),
                format!("--peer-token={PEER_TOKEN}"),
                "--peer-refresh=200ms".to_string(),
            ];
            args.extend(opts.args.iter().cloned());
            let gw = Gateway::start_with(GatewayOptions {
                manifests_yaml: Some(opts.manifests_yaml.clone()),
                port: Some(*port),
                args,
                release: opts.release,
                env: opts.env.clone(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("starting pod {}", i + 1))?;
            pods.push(gw);
        }
        let set = PeerSet { pods };
        set.wait_connected().await?;
        Ok(set)
    }

    /// Until every running pod has probed every other one as up.
    pub async fn wait_connected(&self) -> anyhow::Result<()> {
        let others = (self.pods.len() - 1) as f64;
        for (i, gw) in self.pods.iter().enumerate() {
            wait_until(
                &format!("pod {} to see its {} peers up", i + 1, others),
                Duration::from_secs(30),
                async || gw.metric("hookmesh_peers_up").await.ok() == Some(others),
            )
            .await?;
        }
        Ok(())
    }

    pub fn pod(&self, node: usize) -> &Gateway {
        &self.pods[node - 1]
    }

    pub fn pod_mut(&mut self, node: usize) -> &mut Gateway {
        &mut self.pods[node - 1]
    }
}
