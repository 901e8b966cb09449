//! Provider handshakes: requests a provider sends to prove it may deliver to a URL before it
//! sends any event. Each is answered as the provider asks, only after its signature verified,
//! and is neither stored nor routed (it is not an event).
//!
//! Handled: Slack's Events API `url_verification` (`{"type":"url_verification","challenge":..}`,
//! signed like every Slack request; the answer is `{"challenge":..}`). GitHub's `ping` and
//! Shopify, Stripe and Standard Webhooks senders need no answer beyond the usual 2xx, so their
//! first requests are ordinary events.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hookmesh_api::config::Verifier;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The answer to a Slack `url_verification` request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeAnswer {
    /// The `challenge` of the request, echoed.
    pub challenge: String,
}

/// The answer to `body` if it is a handshake of the source's provider.
pub fn answer(verifier: &Verifier, body: &[u8]) -> Option<Response> {
    match verifier {
        Verifier::Slack { .. } => slack_url_verification(body),
        _ => None,
    }
}

fn slack_url_verification(body: &[u8]) -> Option<Response> {
    #[derive(Deserialize)]
    struct Request {
        #[serde(rename = "type")]
        kind: String,
        challenge: Option<String>,
    }
    let req: Request = serde_json::from_slice(body).ok()?;
    let challenge = req.challenge.filter(|_| req.kind == "url_verification")?;
    Some((StatusCode::OK, Json(ChallengeAnswer { challenge })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookmesh_api::config::SecretBytes;

    fn slack() -> Verifier {
        Verifier::Slack {
            key: SecretBytes(b"secret".to_vec()),
        }
    }

    #[tokio::test]
    async fn a_slack_url_verification_is_answered_with_its_challenge() {
        // Slack's documented example request.
        let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
        let resp = answer(&slack(), body).expect("answered");
        assert_eq!(resp.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(resp.into_body(), 1024)
            .await
            .expect("body");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&bytes).expect("json"),
            serde_json::json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
        );
    }

    #[test]
    fn events_and_other_providers_are_not_handshakes() {
        let event = br#"{"type":"event_callback","event":{"type":"message"}}"#;
        assert!(answer(&slack(), event).is_none());
        assert!(answer(&slack(), br#"{"type":"url_verification"}"#).is_none());
        assert!(answer(&slack(), b"not json").is_none());
        let github = Verifier::Github {
            key: SecretBytes(b"secret".to_vec()),
        };
        let challenge = br#"{"type":"url_verification","challenge":"x"}"#;
        assert!(answer(&github, challenge).is_none());
        assert!(answer(&Verifier::None, challenge).is_none());
    }
}
