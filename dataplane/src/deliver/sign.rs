//! The outgoing request: the raw payload with `content-type` as received, Standard Webhooks
//! headers signed with the endpoint's key, hookmesh's own headers and the endpoint's custom ones.

use bytes::Bytes;
use hookmesh_api::config::EndpointConfig;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use http_body_util::Full;

use crate::standard_webhooks as sw;
use crate::store::{DeliveryRecord, EventRecord, Payload};

pub const USER_AGENT_VALUE: &str = concat!("hookmesh/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("endpoint url is not a valid request target: {0}")]
    Url(String),
    #[error("could not build the request: {0}")]
    Http(#[from] http::Error),
}

/// Everything one attempt sends.
pub struct Outgoing<'a> {
    pub event: &'a EventRecord,
    pub payload: &'a Payload,
    pub delivery: &'a DeliveryRecord,
    pub endpoint: &'a EndpointConfig,
    pub attempt: u32,
    /// Unix seconds, signed into `webhook-timestamp`.
    pub timestamp: i64,
}

pub fn build_request(o: &Outgoing<'_>) -> Result<http::Request<Full<Bytes>>, BuildError> {
    let uri: http::Uri = o
        .endpoint
        .url
        .parse()
        .map_err(|e: http::uri::InvalidUri| BuildError::Url(e.to_string()))?;
    // The event id, not the delivery id: receivers deduplicate on webhook-id, and a retry or a
    // replay of the same event must look like the same message to them.
    let msg_id = o.event.id.to_string();
    let signature = sw::sign(
        o.endpoint.signing_key.expose(),
        &msg_id,
        o.timestamp,
        &o.payload.body,
    );
    let mut req = http::Request::post(uri)
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(sw::ID, &msg_id)
        .header(sw::TIMESTAMP, o.timestamp.to_string())
        .header(sw::SIGNATURE, signature)
        .header("hookmesh-source", &o.event.source)
        .header("hookmesh-delivery-id", o.delivery.id.to_string())
        .header("hookmesh-attempt", o.attempt.to_string());
    if let Some(ct) = content_type(o.payload) {
        req = req.header(CONTENT_TYPE, ct);
    }
    if let Some(t) = &o.event.event_type {
        if let Ok(v) = HeaderValue::from_str(t) {
            req = req.header("hookmesh-event-type", v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&o.event.correlation_id) {
        req = req.header("x-correlation-id", v);
    }
    for (name, value) in &o.endpoint.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => req = req.header(n, v),
            // The compiler refuses most bad headers; one that slips through is left out rather
            // than failing every delivery of the endpoint.
            _ => tracing::warn!(header = %name, "custom header is not valid HTTP; not sent"),
        }
    }
    Ok(req.body(Full::new(Bytes::copy_from_slice(&o.payload.body)))?)
}

/// The content type the provider sent, byte for byte.
fn content_type(p: &Payload) -> Option<HeaderValue> {
    p.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .and_then(|(_, v)| HeaderValue::from_bytes(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EventId, EventStatus, Origin};
    use hookmesh_api::config::{RetryConfig, SecretBytes};

    fn fixtures() -> (EventRecord, Payload, DeliveryRecord, EndpointConfig) {
        let id = EventId::generate();
        let event = EventRecord {
            id,
            namespace: "default".into(),
            source: "github".into(),
            event_type: Some("push".into()),
            origin: Origin::Webhook,
            received_at: 1,
            signature_valid: None,
            signature_error: None,
            idempotency_key: None,
            content_type: Some("application/json; charset=utf-8".into()),
            body_len: 2,
            correlation_id: "corr-1".into(),
            status: EventStatus::Pending,
            payload_expired: false,
            config_hash: String::new(),
            delivery_ids: vec![],
        };
        let payload = Payload {
            headers: vec![(
                "content-type".into(),
                b"application/json; charset=utf-8".to_vec(),
            )],
            body: b"{}".to_vec(),
        };
        let delivery = DeliveryRecord::new(id, "default", "ci", Some("sub"), 1);
        let endpoint = EndpointConfig {
            namespace: "default".into(),
            name: "ci".into(),
            url: "http://127.0.0.1:9/hook?x=1".into(),
            signing_key: SecretBytes(b"key".to_vec()),
            headers: vec![
                ("x-team".into(), "payments".into()),
                ("x-bad".into(), "a\u{7f}b".into()),
            ],
            timeout_ms: 1000,
            retry: RetryConfig {
                max_attempts: 3,
                initial_backoff_ms: 10,
                max_backoff_ms: 100,
                multiplier: 2.0,
            },
            per_second: None,
            max_in_flight: None,
            disabled: false,
        };
        (event, payload, delivery, endpoint)
    }

    #[test]
    fn headers_and_body() {
        let (event, payload, delivery, endpoint) = fixtures();
        let req = build_request(&Outgoing {
            event: &event,
            payload: &payload,
            delivery: &delivery,
            endpoint: &endpoint,
            attempt: 2,
            timestamp: 1_700_000_000,
        })
        .expect("builds");
        let h = req.headers();
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(req.uri().to_string(), "http://127.0.0.1:9/hook?x=1");
        assert_eq!(get("webhook-id"), event.id.to_string());
        assert_eq!(get("webhook-timestamp"), "1700000000");
        assert_eq!(
            get("webhook-signature"),
            sw::sign(b"key", &event.id.to_string(), 1_700_000_000, b"{}")
        );
        assert_eq!(get("content-type"), "application/json; charset=utf-8");
        assert_eq!(get("hookmesh-event-type"), "push");
        assert_eq!(get("hookmesh-source"), "github");
        assert_eq!(get("hookmesh-delivery-id"), delivery.id.to_string());
        assert_eq!(get("hookmesh-attempt"), "2");
        assert_eq!(get("x-correlation-id"), "corr-1");
        assert_eq!(get("x-team"), "payments");
        assert!(h.get("x-bad").is_none());
        assert!(get("user-agent").starts_with("hookmesh/"));
    }
}
