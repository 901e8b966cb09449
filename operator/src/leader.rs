//! Leader election through a `coordination.k8s.io/v1` Lease, the client-go way: the holder
//! renews the Lease every retry period; a candidate takes it over only after it has watched the
//! record stay unchanged for a whole lease duration (measured on its own monotonic clock, so
//! clock skew between nodes does not matter). Every write is a create or an update carrying
//! the resourceVersion that was read, so two replicas racing for the Lease cannot both win:
//! the API server refuses the second with 409 Conflict. A leader that cannot renew within the
//! renew deadline steps down before anyone else may take over (deadline < lease duration).
//!
//! Verbs used: get, create, update (the chart's Role grants exactly those).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::Api;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::FIELD_MANAGER;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        LeaseConfig {
            namespace,
            name,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do about the Lease as it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create it holding it.
    Create,
    /// This replica holds it: renew.
    Renew,
    /// Nobody holds it, or the holder let it expire: take it over.
    TakeOver,
    /// Someone else holds a live Lease.
    Standby { holder: String },
}

/// Pure decision from the Lease record and whether it has been seen unchanged for a whole
/// lease duration.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, expired: bool) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(h) if h == me => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) if expired => Decision::TakeOver,
        Some(h) => Decision::Standby {
            holder: h.to_string(),
        },
    }
}

/// The fields whose change proves the holder is alive.
fn record_of(lease: &Lease) -> (Option<String>, Option<String>, Option<String>) {
    let spec = lease.spec.clone().unwrap_or_default();
    (
        spec.holder_identity,
        spec.renew_time.map(|t| t.0.to_string()),
        lease.metadata.resource_version.clone(),
    )
}

pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    /// Last Lease read or written, with the instant its record last changed.
    observed: Option<(Lease, Instant)>,
}

impl LeaderElector {
    pub fn new(client: kube::Client, cfg: LeaseConfig) -> Self {
        let api = Api::namespaced(client, &cfg.namespace);
        LeaderElector {
            api,
            cfg,
            observed: None,
        }
    }

    fn observe(&mut self, lease: Lease) {
        let now = Instant::now();
        let changed = match &self.observed {
            Some((old, _)) => record_of(old) != record_of(&lease),
            None => true,
        };
        let at = match (&self.observed, changed) {
            (Some((_, at)), false) => *at,
            _ => now,
        };
        self.observed = Some((lease, at));
    }

    fn expired(&self, lease: &Lease) -> bool {
        let duration = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.cfg.lease_duration);
        match &self.observed {
            Some((_, at)) => at.elapsed() > duration,
            None => false,
        }
    }

    fn spec_for(&self, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let me = self.cfg.identity.clone();
        let held_by_me = previous.and_then(|p| p.holder_identity.as_deref()) == Some(me.as_str());
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(me),
            lease_duration_seconds: i32::try_from(self.cfg.lease_duration.as_secs()).ok(),
            acquire_time: if held_by_me {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if held_by_me || previous.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        }
    }

    fn post_params() -> PostParams {
        PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        }
    }

    /// One round: read the Lease (or reuse the last one written), then create, renew or take
    /// it over as [`decide`] says. `Ok(true)` means this replica holds the Lease now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let current = match &self.observed {
            // Holding it: renew straight from what was last written; a conflict re-reads.
            Some((l, _))
                if decide(l.spec.as_ref(), &self.cfg.identity, false) == Decision::Renew =>
            {
                Some(l.clone())
            }
            _ => self.api.get_opt(&self.cfg.name).await?,
        };
        if let Some(l) = &current {
            self.observe(l.clone());
        }
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.cfg.identity,
            current.as_ref().is_some_and(|l| self.expired(l)),
        );
        let now = Timestamp::now();
        let result = match (&decision, current) {
            (Decision::Standby { holder }, _) => {
                debug!(%holder, "lease held by another replica");
                return Ok(false);
            }
            (Decision::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec_for(None, now)),
                };
                self.api.create(&Self::post_params(), &lease).await
            }
            (Decision::Renew | Decision::TakeOver, Some(mut lease)) => {
                lease.spec = Some(self.spec_for(lease.spec.as_ref(), now));
                lease.metadata.managed_fields = None;
                self.api
                    .replace(&self.cfg.name, &Self::post_params(), &lease)
                    .await
            }
        };
        match result {
            Ok(written) => {
                if decision == Decision::TakeOver || decision == Decision::Create {
                    info!(identity = %self.cfg.identity, "acquired leader lease");
                }
                self.observe(written);
                Ok(true)
            }
            // Somebody else wrote first (409 Conflict / AlreadyExists): re-read next round.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                debug!("lost a lease write race; re-reading");
                self.observed = None;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Give the Lease up (on graceful shutdown) so a standby takes over at once.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some((mut lease, _)) = self.observed.take() else {
            return Ok(());
        };
        if decide(lease.spec.as_ref(), &self.cfg.identity, false) != Decision::Renew {
            return Ok(());
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
        }
        lease.metadata.managed_fields = None;
        match self
            .api
            .replace(&self.cfg.name, &Self::post_params(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Campaign until `shutdown` flips to true, publishing leadership on `leader`. On shutdown
    /// the Lease is released if held.
    pub async fn run(mut self, leader: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        let mut last_renew: Option<Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            // A round that hangs must not keep a stale leader believing it leads.
            let round =
                tokio::time::timeout(self.cfg.renew_deadline / 2, self.try_acquire_or_renew())
                    .await
                    .unwrap_or_else(|_| {
                        Err(kube::Error::Service("lease request timed out".into()))
                    });
            match round {
                Ok(true) => {
                    last_renew = Some(Instant::now());
                    leader.send_if_modified(|l| !std::mem::replace(l, true));
                }
                Ok(false) => {
                    last_renew = None;
                    if leader.send_if_modified(|l| std::mem::replace(l, false)) {
                        warn!("lost the leader lease; standing by");
                    }
                }
                Err(e) => {
                    warn!(error = %e, "leader lease round failed");
                    let deadline_passed =
                        last_renew.is_none_or(|t| t.elapsed() > self.cfg.renew_deadline);
                    if deadline_passed && leader.send_if_modified(|l| std::mem::replace(l, false)) {
                        warn!("could not renew the leader lease within the renew deadline; stepping down");
                        self.observed = None;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.retry_period) => {}
                _ = shutdown.changed() => {}
            }
        }
        leader.send_if_modified(|l| std::mem::replace(l, false));
        if let Err(e) = self.release().await {
            warn!(error = %e, "could not release the leader lease");
        }
    }
}
