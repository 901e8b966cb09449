//! The mutating admission webhook that injects the sidecar ([`crate::inject`] decides the
//! patch; this serves it).
//!
//! The API server only calls webhooks over TLS, with a CA it is told in the
//! MutatingWebhookConfiguration's `caBundle`. The operator is its own CA: at start it reads the
//! serving certificate from a Secret (`--webhook-secret`), or creates one (a new CA and a leaf
//! for the Service's DNS names, ten years); every replica serves the same certificate, and
//! whichever creates the Secret first wins. It then keeps the `caBundle` of every webhook in
//! `--webhook-config` equal to the Secret's CA, so a broken or rotated certificate is repaired
//! by a restart (delete the Secret to rotate).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;
use kube::Api;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::inject::{self, SidecarSettings};
use crate::FIELD_MANAGER;

/// The serving certificate, its key and the CA that signed it, all PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// A new CA and a serving certificate for `hosts` (DNS names or IP addresses) signed by it.
pub fn generate(hosts: &[String]) -> Result<Bundle, rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let now = time_now();
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "hookmesh-operator webhook CA");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = now.0;
    ca.not_after = now.1;
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let mut leaf = CertificateParams::new(hosts.to_vec())?;
    leaf.distinguished_name
        .push(DnType::CommonName, "hookmesh-operator webhook");
    leaf.not_before = now.0;
    leaf.not_after = now.1;
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &ca)?;
    Ok(Bundle {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// From a day ago (clock skew) to ten years on.
fn time_now() -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    (
        now - time::Duration::days(1),
        now + time::Duration::days(3650),
    )
}

const CA_KEY: &str = "ca.crt";
const CERT_KEY: &str = "tls.crt";
const KEY_KEY: &str = "tls.key";

fn from_secret(s: &Secret) -> Option<Bundle> {
    let data = s.data.as_ref()?;
    let text = |k: &str| {
        data.get(k)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    Some(Bundle {
        ca: text(CA_KEY)?,
        cert: text(CERT_KEY)?,
        key: text(KEY_KEY)?,
    })
}

/// The Secret's bundle, created first if there is none.
pub async fn load_or_create(
    client: kube::Client,
    namespace: &str,
    name: &str,
    hosts: &[String],
) -> anyhow::Result<Bundle> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    if let Some(s) = api.get_opt(name).await? {
        if let Some(b) = from_secret(&s) {
            return Ok(b);
        }
        anyhow::bail!("Secret {namespace}/{name} lacks {CA_KEY}, {CERT_KEY} or {KEY_KEY}; delete it to have a new one made");
    }
    let bundle = generate(hosts).context("generating the webhook certificate")?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_string(),
                    FIELD_MANAGER.to_string(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                (
                    CA_KEY.to_string(),
                    ByteString(bundle.ca.clone().into_bytes()),
                ),
                (
                    CERT_KEY.to_string(),
                    ByteString(bundle.cert.clone().into_bytes()),
                ),
                (
                    KEY_KEY.to_string(),
                    ByteString(bundle.key.clone().into_bytes()),
                ),
            ]
            .into(),
        ),
        ..Secret::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(bundle),
        // Another replica was first: serve its certificate.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let s = api.get(name).await?;
            from_secret(&s).context("the webhook Secret another replica made is incomplete")
        }
        Err(e) => Err(e.into()),
    }
}

/// Set `caBundle` of every webhook of the configuration to `ca`, if it is not already.
pub async fn sync_ca_bundle(client: kube::Client, config: &str, ca: &str) -> anyhow::Result<bool> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client);
    let current = api
        .get(config)
        .await
        .with_context(|| format!("reading MutatingWebhookConfiguration {config}"))?;
    let hooks = current.webhooks.unwrap_or_default();
    if hooks
        .iter()
        .all(|h| h.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) == Some(ca.as_bytes()))
    {
        return Ok(false);
    }
    // A JSON patch per webhook, by index: the list is atomic for merge patches.
    let ops: Vec<serde_json::Value> = (0..hooks.len())
        .map(|i| {
            serde_json::json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"),
                "value": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ca)})
        })
        .collect();
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))?;
    api.patch(config, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .with_context(|| format!("patching the caBundle of {config}"))?;
    Ok(true)
}

/// Keep the caBundle current: now, then every `every` (someone may reapply the chart's copy).
pub fn keep_ca_bundle(client: kube::Client, config: String, ca: String, every: Duration) {
    tokio::spawn(async move {
        loop {
            match sync_ca_bundle(client.clone(), &config, &ca).await {
                Ok(true) => tracing::info!(config = %config, "webhook caBundle set"),
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "cannot keep the webhook caBundle current"
                ),
            }
            tokio::time::sleep(every).await;
        }
    });
}

/// `POST /mutate-pods`: the AdmissionReview in, the patch (or a refusal with the reason) out.
async fn mutate(
    axum::extract::State(settings): axum::extract::State<Arc<SidecarSettings>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let req: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "an AdmissionReview without a request");
            return Json(AdmissionResponse::invalid(e.to_string()).into_review());
        }
    };
    Json(respond(&req, &settings).into_review())
}

fn respond(req: &AdmissionRequest<DynamicObject>, settings: &SidecarSettings) -> AdmissionResponse {
    let base = AdmissionResponse::from(req);
    let Some(obj) = &req.object else {
        return base;
    };
    let pod: Pod = match serde_json::to_value(obj).and_then(serde_json::from_value) {
        Ok(p) => p,
        Err(e) => return base.deny(format!("not a Pod: {e}")),
    };
    let namespace = req.namespace.clone().unwrap_or_default();
    match inject::patch(&pod, &namespace, settings) {
        Ok(None) => base,
        Ok(Some(ops)) => {
            let patch = match serde_json::from_value::<json_patch::Patch>(ops) {
                Ok(p) => p,
                Err(e) => return base.deny(format!("internal: {e}")),
            };
            tracing::info!(namespace = %namespace, name = ?pod.metadata.name.or(pod.metadata.generate_name), "sidecar injected");
            match base.clone().with_patch(patch) {
                Ok(r) => r,
                Err(e) => base.deny(format!("internal: {e}")),
            }
        }
        Err(e) => base.deny(format!("hookmesh sidecar: {e}")),
    }
}

/// TLS on every accepted connection; a handshake that fails or stalls drops the connection.
struct TlsListener {
    tcp: TcpListener,
    tls: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        loop {
            let (tcp, addr) = axum::serve::Listener::accept(&mut self.tcp).await;
            match tokio::time::timeout(Duration::from_secs(5), self.tls.accept(tcp)).await {
                Ok(Ok(tls)) => return (tls, addr),
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "webhook TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, "webhook TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

fn server_config(bundle: &Bundle) -> anyhow::Result<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> =
        rustls::pki_types::pem::PemObject::pem_slice_iter(bundle.cert.as_bytes())
            .collect::<Result<_, _>>()
            .context("the webhook certificate is not PEM")?;
    let key = <PrivateKeyDer<'static> as rustls::pki_types::pem::PemObject>::from_pem_slice(
        bundle.key.as_bytes(),
    )
    .context("the webhook key is not PEM")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the webhook certificate and key do not match")
}

/// Serve `/mutate-pods` over TLS on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    bundle: &Bundle,
    settings: SidecarSettings,
) -> anyhow::Result<()> {
    let tls = TlsAcceptor::from(Arc::new(server_config(bundle)?));
    let app = Router::new()
        .route("/mutate-pods", post(mutate))
        .with_state(Arc::new(settings));
    axum::serve(TlsListener { tcp: listener, tls }, app)
        .await
        .context("serving the webhook")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_bundle_serves_tls_for_its_hosts() {
        let b = generate(&["hookmesh-operator.hookmesh.svc".into(), "127.0.0.1".into()])
            .expect("generated");
        assert!(b.ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(b.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_ne!(b.ca, b.cert);
        server_config(&b).expect("a usable server config");
    }
}
