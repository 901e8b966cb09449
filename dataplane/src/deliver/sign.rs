//! The outgoing request: the payload shaped by the endpoint's format (as received, or a
//! CloudEvents 1.0 HTTP binding), signed by its profile (Standard Webhooks, or one HMAC
//! header) with its key and any previous key not yet expired, plus hookmesh's own headers and
//! the endpoint's custom ones.

use base64::Engine as _;
use bytes::Bytes;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use hookmesh_api::config::{
    DeliveryFormatConfig, EndpointConfig, HmacAlgorithm, HmacSigningConfig, SignatureEncoding,
    SigningConfig, TemplatePart, TIMESTAMP_PLACEHOLDER,
};
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use http_body_util::Full;
use sha2::{Sha256, Sha512};

use crate::standard_webhooks as sw;
use crate::store::{DeadLetterLink, DeliveryRecord, EventRecord, Payload};

pub const USER_AGENT_VALUE: &str = concat!("hookmesh/", env!("CARGO_PKG_VERSION"));
/// The event id, for receivers whose signature scheme has no id header of its own.
pub const EVENT_ID_HEADER: &str = "hookmesh-event-id";
/// `type` of a CloudEvent whose webhook had no event type.
pub const DEFAULT_CLOUDEVENT_TYPE: &str = "io.hookmesh.event";

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
    /// Set when this delivery takes a dead-lettered one to its subscription's dead-letter
    /// endpoint.
    pub dead_letter: Option<&'a DeadLetterLink>,
    pub attempt: u32,
    /// Unix seconds, signed into the timestamp.
    pub timestamp: i64,
    /// Unix milliseconds now: which previous keys are still in use.
    pub now_ms: u64,
}

pub fn build_request(o: &Outgoing<'_>) -> Result<http::Request<Full<Bytes>>, BuildError> {
    let uri: http::Uri = o
        .endpoint
        .url
        .parse()
        .map_err(|e: http::uri::InvalidUri| BuildError::Url(e.to_string()))?;
    // The event id, not the delivery id: receivers deduplicate on it, and a retry or a replay
    // of the same event must look like the same message to them.
    let msg_id = o.event.id.to_string();
    let (content_type, body) = shape(o, &msg_id);
    let mut keys: Vec<&[u8]> = vec![o.endpoint.signing_key.expose()];
    keys.extend(
        o.endpoint
            .previous_keys
            .iter()
            .filter(|p| p.expires_at_ms > o.now_ms)
            .map(|p| p.key.expose()),
    );
    let mut req = http::Request::post(uri).header(USER_AGENT, USER_AGENT_VALUE);
    match &o.endpoint.signing {
        SigningConfig::StandardWebhooks {
            svix_names,
            ed25519,
        } => {
            let (id, ts, sig) = if *svix_names {
                ("svix-id", "svix-timestamp", "svix-signature")
            } else {
                (sw::ID, sw::TIMESTAMP, sw::SIGNATURE)
            };
            // Space-separated, newest first: a receiver holding either key verifies.
            let signatures: Vec<String> = keys
                .iter()
                .filter_map(|k| match ed25519 {
                    None => Some(sw::sign(k, &msg_id, o.timestamp, &body)),
                    Some(_) => sw::sign_ed25519(k, &msg_id, o.timestamp, &body),
                })
                .collect();
            req = req
                .header(id, &msg_id)
                .header(ts, o.timestamp.to_string())
                .header(sig, signatures.join(" "));
        }
        SigningConfig::Hmac(h) => {
            // Comma-separated, newest first, each with its prefix.
            let values: Vec<String> = keys
                .iter()
                .map(|k| hmac_value(h, k, &msg_id, o.timestamp, &body))
                .collect();
            req = req
                .header(h.header.as_str(), values.join(","))
                .header(EVENT_ID_HEADER, &msg_id);
            if let Some(t) = &h.timestamp_header {
                req = req.header(t.as_str(), o.timestamp.to_string());
            }
        }
    }
    req = req
        .header("hookmesh-source", &o.event.source)
        .header("hookmesh-delivery-id", o.delivery.id.to_string())
        .header("hookmesh-attempt", o.attempt.to_string());
    if let Some(ct) = content_type {
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
    if let Some(dl) = o.dead_letter {
        req = req
            .header("hookmesh-dead-letter-endpoint", &dl.endpoint)
            .header("hookmesh-dead-letter-delivery-id", dl.of.to_string())
            .header("hookmesh-dead-letter-attempts", dl.attempts.to_string());
        if let Some(code) = dl.status_code {
            req = req.header("hookmesh-dead-letter-status", code.to_string());
        }
        if let Some(e) = &dl.error {
            // An error message may hold anything; only its printable ASCII part, bounded.
            let safe: String = e
                .chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .take(256)
                .collect();
            if let Ok(v) = HeaderValue::from_str(&safe) {
                req = req.header("hookmesh-dead-letter-error", v);
            }
        }
    }
    if o.endpoint.format == DeliveryFormatConfig::CloudEventsBinary {
        for (name, value) in cloudevent_attributes(o, &msg_id) {
            if let Ok(v) = HeaderValue::from_str(&value) {
                req = req.header(format!("ce-{name}"), v);
            }
        }
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
    Ok(req.body(Full::new(Bytes::from(body)))?)
}

/// One HMAC header value: prefix (its `{timestamp}` filled in), then the encoded MAC of the
/// signed content.
pub fn hmac_value(
    h: &HmacSigningConfig,
    key: &[u8],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let ts = timestamp.to_string();
    let parts = h.signed_content.iter().map(|p| match p {
        TemplatePart::Literal(l) => l.as_bytes(),
        TemplatePart::Body => body,
        TemplatePart::Timestamp => ts.as_bytes(),
        TemplatePart::Id => id.as_bytes(),
    });
    // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
    let digest: Vec<u8> = match h.algorithm {
        HmacAlgorithm::Sha256 => {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                .expect("HMAC accepts keys of any length");
            parts.for_each(|p| mac.update(p));
            mac.finalize().into_bytes().to_vec()
        }
        HmacAlgorithm::Sha512 => {
            let mut mac = <Hmac<Sha512> as KeyInit>::new_from_slice(key)
                .expect("HMAC accepts keys of any length");
            parts.for_each(|p| mac.update(p));
            mac.finalize().into_bytes().to_vec()
        }
    };
    let encoded = match h.encoding {
        SignatureEncoding::Hex => hex::encode(digest),
        SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(digest),
    };
    format!("{}{encoded}", h.prefix.replace(TIMESTAMP_PLACEHOLDER, &ts))
}

/// The CloudEvents context attributes of this event (without `datacontenttype`).
fn cloudevent_attributes(o: &Outgoing<'_>, id: &str) -> Vec<(&'static str, String)> {
    let time = k8s_openapi::jiff::Timestamp::from_millisecond(o.event.received_at as i64)
        .map(|t| t.to_string())
        .unwrap_or_default();
    vec![
        ("specversion", "1.0".to_string()),
        ("id", id.to_string()),
        (
            "type",
            o.event
                .event_type
                .clone()
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| DEFAULT_CLOUDEVENT_TYPE.to_string()),
        ),
        (
            "source",
            format!("/hookmesh/{}/sources/{}", o.event.namespace, o.event.source),
        ),
        ("time", time),
    ]
}

/// The content type and body the endpoint's format sends.
fn shape(o: &Outgoing<'_>, id: &str) -> (Option<HeaderValue>, Vec<u8>) {
    match o.endpoint.format {
        DeliveryFormatConfig::Raw | DeliveryFormatConfig::CloudEventsBinary => {
            (content_type(o.payload), o.payload.body.clone())
        }
        DeliveryFormatConfig::CloudEventsStructured => {
            let mut event = serde_json::Map::new();
            for (name, value) in cloudevent_attributes(o, id) {
                event.insert(name.to_string(), serde_json::Value::String(value));
            }
            let ct = content_type(o.payload).and_then(|v| v.to_str().ok().map(str::to_string));
            let json_body = ct
                .as_deref()
                .is_none_or(is_json)
                .then(|| serde_json::from_slice::<serde_json::Value>(&o.payload.body).ok())
                .flatten();
            if let Some(ct) = &ct {
                event.insert("datacontenttype".into(), ct.clone().into());
            }
            match json_body {
                Some(data) => {
                    event.insert("data".into(), data);
                }
                None => {
                    event.insert(
                        "data_base64".into(),
                        base64::engine::general_purpose::STANDARD
                            .encode(&o.payload.body)
                            .into(),
                    );
                }
            }
            let body = serde_json::to_vec(&serde_json::Value::Object(event)).unwrap_or_default();
            (
                Some(HeaderValue::from_static(
                    "application/cloudevents+json; charset=utf-8",
                )),
                body,
            )
        }
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
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
    use hookmesh_api::config::{RetryConfig, RetryDelays, SecretBytes};
    use sha2::Sha512;

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
            signing: SigningConfig::StandardWebhooks {
                svix_names: false,
                ed25519: None,
            },
            previous_keys: vec![],
            format: DeliveryFormatConfig::Raw,
            retry: RetryConfig {
                max_attempts: 3,
                delays: RetryDelays::Schedule {
                    delays_ms: vec![10],
                },
                max_age_ms: None,
                max_retry_after_ms: 1_000,
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
            dead_letter: None,
            attempt: 2,
            timestamp: 1_700_000_000,
            now_ms: 1_700_000_000_000,
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

    fn built(
        endpoint: &EndpointConfig,
        event: &EventRecord,
        payload: &Payload,
    ) -> http::Request<Full<Bytes>> {
        let (_, _, delivery, _) = fixtures();
        build_request(&Outgoing {
            event,
            payload,
            delivery: &delivery,
            endpoint,
            dead_letter: None,
            attempt: 1,
            timestamp: 1_700_000_000,
            now_ms: 1_700_000_000_000,
        })
        .expect("builds")
    }

    fn header<'a>(r: &'a http::Request<Full<Bytes>>, n: &str) -> &'a str {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    #[test]
    fn svix_names_and_a_previous_key_until_it_expires() {
        use hookmesh_api::config::PreviousKey;
        let (event, payload, _, mut endpoint) = fixtures();
        endpoint.signing = SigningConfig::StandardWebhooks {
            svix_names: true,
            ed25519: None,
        };
        endpoint.previous_keys = vec![
            PreviousKey {
                key: SecretBytes(b"old".to_vec()),
                expires_at_ms: 1_700_000_000_001,
            },
            PreviousKey {
                key: SecretBytes(b"older".to_vec()),
                expires_at_ms: 1_699_999_999_999,
            },
        ];
        let req = built(&endpoint, &event, &payload);
        let id = event.id.to_string();
        assert!(req.headers().get("webhook-id").is_none());
        assert_eq!(header(&req, "svix-id"), id);
        assert_eq!(header(&req, "svix-timestamp"), "1700000000");
        assert_eq!(
            header(&req, "svix-signature"),
            format!(
                "{} {}",
                sw::sign(b"key", &id, 1_700_000_000, b"{}"),
                sw::sign(b"old", &id, 1_700_000_000, b"{}")
            ),
            "the current key, then the previous one; the expired one is gone"
        );
    }

    #[test]
    fn hmac_profiles_github_and_stripe_style() {
        let (event, payload, _, mut endpoint) = fixtures();
        endpoint.signing_key = SecretBytes(b"It's a Secret to Everybody".to_vec());
        endpoint.signing = SigningConfig::Hmac(HmacSigningConfig {
            header: "x-hub-signature-256".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            prefix: "sha256=".into(),
            signed_content: vec![TemplatePart::Body],
            timestamp_header: None,
        });
        let mut payload = payload;
        payload.body = b"Hello, World!".to_vec();
        let req = built(&endpoint, &event, &payload);
        // GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
        assert_eq!(
            header(&req, "x-hub-signature-256"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert_eq!(header(&req, EVENT_ID_HEADER), event.id.to_string());
        assert!(req.headers().get("webhook-signature").is_none());

        endpoint.signing = SigningConfig::Hmac(HmacSigningConfig {
            header: "x-signature".into(),
            algorithm: HmacAlgorithm::Sha512,
            encoding: SignatureEncoding::Base64,
            prefix: "t={timestamp},v1=".into(),
            signed_content: vec![
                TemplatePart::Timestamp,
                TemplatePart::Literal(".".into()),
                TemplatePart::Body,
            ],
            timestamp_header: Some("x-timestamp".into()),
        });
        let req = built(&endpoint, &event, &payload);
        let mut mac =
            <Hmac<Sha512> as KeyInit>::new_from_slice(b"It's a Secret to Everybody").unwrap();
        mac.update(b"1700000000.Hello, World!");
        let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(
            header(&req, "x-signature"),
            format!("t=1700000000,v1={want}")
        );
        assert_eq!(header(&req, "x-timestamp"), "1700000000");
    }

    #[test]
    fn cloudevents_binary_and_structured() {
        let (event, payload, _, mut endpoint) = fixtures();
        endpoint.format = DeliveryFormatConfig::CloudEventsBinary;
        let req = built(&endpoint, &event, &payload);
        assert_eq!(header(&req, "ce-specversion"), "1.0");
        assert_eq!(header(&req, "ce-id"), event.id.to_string());
        assert_eq!(header(&req, "ce-type"), "push");
        assert_eq!(
            header(&req, "ce-source"),
            "/hookmesh/default/sources/github"
        );
        assert_eq!(header(&req, "ce-time"), "1970-01-01T00:00:00.001Z");
        assert_eq!(
            header(&req, "content-type"),
            "application/json; charset=utf-8"
        );

        endpoint.format = DeliveryFormatConfig::CloudEventsStructured;
        let req = built(&endpoint, &event, &payload);
        assert_eq!(
            header(&req, "content-type"),
            "application/cloudevents+json; charset=utf-8"
        );
        assert!(req.headers().get("ce-id").is_none());
        let body = futures::executor::block_on(http_body_util::BodyExt::collect(req.into_body()))
            .unwrap()
            .to_bytes();
        let ev: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(ev["specversion"], "1.0");
        assert_eq!(ev["id"], event.id.to_string());
        assert_eq!(ev["datacontenttype"], "application/json; charset=utf-8");
        assert_eq!(ev["data"], serde_json::json!({}));
        // The signature covers the body that was sent.
        let mut p2 = payload.clone();
        p2.headers = vec![("content-type".into(), b"text/plain".to_vec())];
        p2.body = b"not json".to_vec();
        let req = built(&endpoint, &event, &p2);
        let body = futures::executor::block_on(http_body_util::BodyExt::collect(req.into_body()))
            .unwrap()
            .to_bytes();
        let ev: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(ev["data_base64"], "bm90IGpzb24=");
        assert!(ev.get("data").is_none());
    }

    #[test]
    fn hmac_rotation_sends_both_values_comma_separated_newest_first() {
        use hookmesh_api::config::PreviousKey;
        let (event, payload, _, mut endpoint) = fixtures();
        let h = HmacSigningConfig {
            header: "x-signature".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            prefix: "sha256=".into(),
            signed_content: vec![TemplatePart::Body],
            timestamp_header: None,
        };
        endpoint.signing_key = SecretBytes(b"new".to_vec());
        endpoint.signing = SigningConfig::Hmac(h.clone());
        endpoint.previous_keys = vec![PreviousKey {
            key: SecretBytes(b"old".to_vec()),
            expires_at_ms: u64::MAX,
        }];
        let req = built(&endpoint, &event, &payload);
        let id = event.id.to_string();
        assert_eq!(
            header(&req, "x-signature"),
            format!(
                "{},{}",
                hmac_value(&h, b"new", &id, 1_700_000_000, b"{}"),
                hmac_value(&h, b"old", &id, 1_700_000_000, b"{}")
            )
        );
    }
}
