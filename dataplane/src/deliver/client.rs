//! The outgoing HTTP client: hyper 1 with a pooled connector, rustls (ring, Mozilla roots) for
//! https, plain TCP for http. One client for every endpoint, so connections are reused across
//! deliveries to the same host.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use super::egress::{refusal_in, EgressPolicy, EgressRefused, GuardedResolver};

/// How much of a response body an attempt keeps.
pub const BODY_LIMIT: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// Why no status code came back.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("timed out after {0} ms without a response")]
    Timeout(u64),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Request(String),
    /// The egress guard refused every address of the URL's host: not the receiver's fault,
    /// and retrying will not change it.
    #[error(transparent)]
    Egress(EgressRefused),
}

/// What a receiver answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    /// At most [`BODY_LIMIT`] bytes.
    pub body: Vec<u8>,
}

#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    egress: Arc<EgressPolicy>,
}

impl HttpClient {
    pub fn new(egress: Arc<EgressPolicy>) -> Result<Self, ClientError> {
        // Resolution goes through the egress guard, so the address checked is the one used.
        let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(egress.clone()));
        // https URLs go through the TLS wrapper; the inner connector must accept them.
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            // An explicit provider: `ClientConfig::builder()` would panic if a second one
            // were ever compiled in through some other dependency.
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(https);
        Ok(HttpClient { inner, egress })
    }

    /// Send one request. `timeout` covers connecting, the response head and reading the kept part
    /// of the body; once the status is in, a slow body only shortens what is kept.
    pub async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Answer, SendError> {
        self.egress
            .check_uri(req.uri())
            .map_err(SendError::Egress)?;
        let deadline = Instant::now() + timeout;
        let resp = match tokio::time::timeout_at(deadline, self.inner.request(req)).await {
            Err(_) => return Err(SendError::Timeout(timeout.as_millis() as u64)),
            Ok(Err(e)) if e.is_connect() => {
                return Err(match refusal_in(&e) {
                    Some(r) => SendError::Egress(r),
                    None => SendError::Connect(chain(&e)),
                })
            }
            Ok(Err(e)) => return Err(SendError::Request(chain(&e))),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = resp.into_body();
        let mut kept = Vec::new();
        while kept.len() < BODY_LIMIT {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        let room = BODY_LIMIT - kept.len();
                        kept.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                // End of body, a broken body, or out of time: the status already decided.
                Ok(None) | Ok(Some(Err(_))) | Err(_) => break,
            }
        }
        Ok(Answer {
            status,
            retry_after,
            body: kept,
        })
    }
}

/// An error with its causes, since hyper's top-level message ("client error (Connect)") alone
/// does not say what went wrong.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
