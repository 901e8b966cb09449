//! Calls from one pod to another: plain HTTP inside the cluster network, pooled connections, and
//! one deadline over the whole exchange so a slow peer costs at most `--peer-timeout`.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::deliver::client::chain;

/// Largest answer read from a peer: a payload of the largest body a source accepts, as JSON.
const MAX_ANSWER: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("unreachable: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("answered something unreadable: {0}")]
    Invalid(String),
}

/// A peer's whole answer.
#[derive(Debug)]
pub struct PeerResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct PeerClient {
    inner: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl PeerClient {
    pub fn new(timeout: Duration) -> Result<Self, PeerError> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(32)
            .build(http);
        Ok(PeerClient { inner, timeout })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// One request to `url` (base URL + path and query), answered within the timeout.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<PeerResponse, PeerError> {
        self.send_within(method, url, headers, body, self.timeout)
            .await
    }

    pub async fn send_within(
        &self,
        method: Method,
        url: &str,
        headers: &HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<PeerResponse, PeerError> {
        let mut req = http::Request::builder().method(method).uri(url);
        if let Some(h) = req.headers_mut() {
            h.extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| PeerError::Request(e.to_string()))?;
        let exchange = async {
            let resp = self.inner.request(req).await.map_err(|e| {
                if e.is_connect() {
                    PeerError::Connect(chain(&e))
                } else {
                    PeerError::Request(chain(&e))
                }
            })?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| PeerError::Invalid(e.to_string()))?
                .to_bytes();
            Ok(PeerResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| PeerError::Timeout(timeout))?
    }
}
