//! Endpoints their receiver paused: a 410 Gone answer means "this endpoint no longer exists"
//! (Standard Webhooks says to treat it as disabled), so the engine stops sending there until
//! someone resumes it through the REST API. The pause outlives restarts; its deliveries stay
//! queued and are made due when it is resumed.

use serde::{Deserialize, Serialize};

use super::codec;
use super::errors::StoreError;
use super::handle::Store;
use super::keys::name_prefix;
use super::model::{now_ms, DeliveryId, Millis};

/// Why and since when an endpoint is paused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointPause {
    pub since: Millis,
    /// The receiver's answer that paused it (`HTTP 410 Gone`).
    pub reason: String,
    /// The delivery whose attempt got that answer.
    pub delivery_id: DeliveryId,
}

impl Store {
    /// Pause `namespace/endpoint`. An endpoint paused already keeps its first pause.
    /// Returns whether this call paused it.
    pub fn pause_endpoint(
        &self,
        namespace: &str,
        endpoint: &str,
        reason: &str,
        delivery_id: DeliveryId,
    ) -> Result<bool, StoreError> {
        self.signals().writable()?;
        let key = name_prefix(namespace, endpoint);
        let pause = EndpointPause {
            since: now_ms(),
            reason: reason.to_string(),
            delivery_id,
        };
        let tree = &self.trees().pauses;
        let swapped = tree.compare_and_swap(&key, None::<&[u8]>, Some(codec::encode(&pause)?))?;
        Ok(swapped.is_ok())
    }

    /// The pause of `namespace/endpoint`, if it is paused.
    pub fn endpoint_pause(
        &self,
        namespace: &str,
        endpoint: &str,
    ) -> Result<Option<EndpointPause>, StoreError> {
        codec::get(&self.trees().pauses, &name_prefix(namespace, endpoint))
    }

    /// Resume `namespace/endpoint`: its queued deliveries are due now. Returns the pause it
    /// lifted, or `None` when it was not paused.
    pub fn resume_endpoint(
        &self,
        namespace: &str,
        endpoint: &str,
    ) -> Result<Option<EndpointPause>, StoreError> {
        self.signals().writable()?;
        let Some(old) = self
            .trees()
            .pauses
            .remove(name_prefix(namespace, endpoint))?
        else {
            return Ok(None);
        };
        self.pull_forward(namespace, endpoint, now_ms())?;
        Ok(Some(codec::decode(&old)?))
    }
}

impl Store {
    /// Every paused endpoint, as `(namespace, endpoint, pause)`.
    pub fn paused_endpoints(&self) -> Result<Vec<(String, String, EndpointPause)>, StoreError> {
        let mut out = Vec::new();
        for item in self.trees().pauses.iter() {
            let (k, v) = item?;
            let mut parts = k.split(|b| *b == 0);
            let (Some(ns), Some(name)) = (parts.next(), parts.next()) else {
                continue;
            };
            out.push((
                String::from_utf8_lossy(ns).into_owned(),
                String::from_utf8_lossy(name).into_owned(),
                codec::decode(&v)?,
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::open;
    use crate::store::DeliveryId;

    #[test]
    fn a_pause_is_kept_until_resumed_and_the_first_one_wins() {
        let (_dir, store) = open();
        let first = DeliveryId::generate();
        assert!(store
            .pause_endpoint("ns", "ep", "HTTP 410 Gone", first)
            .expect("store"));
        assert!(!store
            .pause_endpoint("ns", "ep", "HTTP 410 Gone", DeliveryId::generate())
            .expect("store"));
        let p = store.endpoint_pause("ns", "ep").unwrap().expect("paused");
        assert_eq!(p.delivery_id, first);
        assert!(store.endpoint_pause("ns", "other").unwrap().is_none());
        let all = store.paused_endpoints().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].0.as_str(), all[0].1.as_str()), ("ns", "ep"));
        assert_eq!(
            store
                .resume_endpoint("ns", "ep")
                .unwrap()
                .map(|p| p.delivery_id),
            Some(first)
        );
        assert!(store.endpoint_pause("ns", "ep").unwrap().is_none());
        assert!(store.resume_endpoint("ns", "ep").unwrap().is_none());
    }
}
