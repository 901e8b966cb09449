//! The one compiler: custom resources + Secrets in, [`GatewayConfig`] + problems out.
//!
//! Pure and deterministic: no I/O, no clock, no randomness; inputs are sorted first, so the same
//! objects in any order give the same bytes and the same hash. An invalid object never takes the
//! rest down: it is left out of the config and reported as a [`Problem`] (the operator writes it
//! into that object's `Ready=False` condition, standalone mode logs it).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::*;
use crate::duration;
use crate::resources::{
    self, Endpoint, MatchExpr, MatchLeaf, Scheme, SecretKeyRef, Source, Subscription,
};

/// Default body limit: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
pub const MAX_BODY_BYTES_LIMIT: u64 = 64 * 1024 * 1024;
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;
pub const DEFAULT_IDEMPOTENCY_WINDOW_SECONDS: u64 = 24 * 3600;
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 30;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
pub const DEFAULT_INITIAL_BACKOFF_MS: u64 = 1_000;
pub const DEFAULT_MAX_BACKOFF_MS: u64 = 3_600_000;
pub const DEFAULT_MULTIPLIER: f64 = 2.0;
/// Label that marks a Secret as a REST API key.
pub const API_KEY_LABEL: &str = "hookmesh.io/api-key";
/// Namespace given to manifests that name none (as `kubectl apply` does).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Key of the Secret an Endpoint without `secretRef` signs with.
pub fn default_signing_secret_name(endpoint: &str) -> String {
    format!("{endpoint}-signing")
}
pub const DEFAULT_SIGNING_SECRET_KEY: &str = "secret";

/// Everything the compiler reads.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub sources: Vec<Source>,
    pub endpoints: Vec<Endpoint>,
    pub subscriptions: Vec<Subscription>,
    pub secrets: Vec<Secret>,
}

/// The compiler's answer: the config of every valid object and a problem per invalid one.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub config: GatewayConfig,
    pub problems: Vec<Problem>,
}

impl Compiled {
    /// The problem reported for one object, if any.
    pub fn problem_for(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Problem> {
        self.problems
            .iter()
            .find(|p| p.kind == kind && p.namespace == namespace && p.name == name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    Source,
    Endpoint,
    Subscription,
    Secret,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why one object is not in the config. `reason` is a CamelCase machine code for the
/// condition's `reason`; `message` is for people and never contains secret material.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub reason: Reason,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}: {}: {}",
            self.kind, self.namespace, self.name, self.reason, self.message
        )
    }
}

/// Machine-readable cause of a [`Problem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Reason {
    InvalidSpec,
    SecretNotFound,
    SecretKeyNotFound,
    InvalidSecret,
    InvalidUrl,
    InvalidGlob,
    InvalidFilter,
    EndpointNotFound,
    EndpointNotReady,
    SourceNotFound,
    CrossNamespaceRef,
    DuplicateObject,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

type Outcome<T> = Result<T, (Reason, String)>;

fn bad<T>(reason: Reason, message: impl Into<String>) -> Outcome<T> {
    Err((reason, message.into()))
}

/// Compile the inputs. Pure: same inputs (in any order), same output, same hash.
pub fn compile(inputs: &Inputs) -> Compiled {
    let mut problems = Vec::new();
    let secrets = SecretIndex::new(&inputs.secrets, &mut problems);

    let sources = dedup(Kind::Source, &inputs.sources, &mut problems);
    let endpoints = dedup(Kind::Endpoint, &inputs.endpoints, &mut problems);
    let subscriptions = dedup(Kind::Subscription, &inputs.subscriptions, &mut problems);

    let mut config = GatewayConfig::default();
    for (ns, name, src) in &sources {
        match compile_source(src, &secrets) {
            Ok(mut s) => {
                s.namespace = ns.clone();
                s.name = name.clone();
                config.sources.push(s);
            }
            Err((reason, message)) => {
                problems.push(problem(Kind::Source, ns, name, reason, message))
            }
        }
    }
    for (ns, name, ep) in &endpoints {
        match compile_endpoint(ns, name, ep, &secrets) {
            Ok(e) => config.endpoints.push(e),
            Err((reason, message)) => {
                problems.push(problem(Kind::Endpoint, ns, name, reason, message))
            }
        }
    }
    let source_names: BTreeSet<(&str, &str)> = sources
        .iter()
        .map(|(ns, name, _)| (ns.as_str(), name.as_str()))
        .collect();
    let endpoint_names: BTreeSet<(&str, &str)> = endpoints
        .iter()
        .map(|(ns, name, _)| (ns.as_str(), name.as_str()))
        .collect();
    for (ns, name, sub) in &subscriptions {
        let compiled = compile_subscription(ns, sub, &source_names, &endpoint_names, &config);
        match compiled {
            Ok(mut s) => {
                s.namespace = ns.clone();
                s.name = name.clone();
                config.subscriptions.push(s);
            }
            Err((reason, message)) => {
                problems.push(problem(Kind::Subscription, ns, name, reason, message))
            }
        }
    }
    config.api_keys = compile_api_keys(&inputs.secrets, &mut problems);

    problems.sort();
    config.hash = hash_of(&config);
    Compiled { config, problems }
}

/// `sha256:<hex>` of the canonical JSON of the config with an empty hash field.
pub fn hash_of(config: &GatewayConfig) -> String {
    let mut unhashed = config.clone();
    unhashed.hash = String::new();
    // Serializing plain structs, vectors and strings cannot fail.
    let bytes = serde_json::to_vec(&unhashed).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

fn problem(kind: Kind, ns: &str, name: &str, reason: Reason, message: String) -> Problem {
    Problem {
        kind,
        namespace: ns.to_string(),
        name: name.to_string(),
        reason,
        message,
    }
}

fn namespace_of<K: ResourceExt>(obj: &K) -> String {
    obj.namespace()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
}

/// Sort by (namespace, name) and report all but the first of any repeated pair.
fn dedup<'a, K: ResourceExt>(
    kind: Kind,
    objs: &'a [K],
    problems: &mut Vec<Problem>,
) -> Vec<(String, String, &'a K)> {
    let mut keyed: Vec<(String, String, &K)> = objs
        .iter()
        .map(|o| (namespace_of(o), o.name_any(), o))
        .collect();
    // Stable: among duplicates the first given wins, whatever the rest of the order.
    keyed.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut out: Vec<(String, String, &K)> = Vec::with_capacity(keyed.len());
    for entry in keyed {
        if entry.1.is_empty() {
            problems.push(problem(
                kind,
                &entry.0,
                "",
                Reason::InvalidSpec,
                "metadata.name is required".into(),
            ));
            continue;
        }
        if let Some(last) = out.last() {
            if last.0 == entry.0 && last.1 == entry.1 {
                problems.push(problem(
                    kind,
                    &entry.0,
                    &entry.1,
                    Reason::DuplicateObject,
                    format!("{kind} {}/{} is declared more than once", entry.0, entry.1),
                ));
                continue;
            }
        }
        out.push(entry);
    }
    out
}

/// Secret data by (namespace, name), `stringData` merged over `data` as the API server does.
struct SecretIndex<'a> {
    by_name: BTreeMap<(String, String), &'a Secret>,
}

impl<'a> SecretIndex<'a> {
    /// Like the other kinds, the first of several Secrets with one name is kept and the rest
    /// are reported (only standalone manifests can repeat a name; the API server cannot).
    fn new(secrets: &'a [Secret], problems: &mut Vec<Problem>) -> Self {
        let mut by_name = BTreeMap::new();
        for s in secrets {
            let (ns, name) = (namespace_of(s), s.name_any());
            if by_name.contains_key(&(ns.clone(), name.clone())) {
                problems.push(problem(
                    Kind::Secret,
                    &ns,
                    &name,
                    Reason::DuplicateObject,
                    format!("Secret {ns}/{name} is declared more than once"),
                ));
                continue;
            }
            by_name.insert((ns, name), s);
        }
        Self { by_name }
    }

    fn get(&self, ns: &str, r: &SecretKeyRef) -> Outcome<Vec<u8>> {
        let Some(secret) = self.by_name.get(&(ns.to_string(), r.name.clone())) else {
            return bad(
                Reason::SecretNotFound,
                format!("Secret {ns}/{} not found", r.name),
            );
        };
        match secret_value(secret, &r.key) {
            Some(v) if !v.is_empty() => Ok(v),
            Some(_) => bad(
                Reason::InvalidSecret,
                format!("key {:?} of Secret {ns}/{} is empty", r.key, r.name),
            ),
            None => bad(
                Reason::SecretKeyNotFound,
                format!("Secret {ns}/{} has no key {:?}", r.name, r.key),
            ),
        }
    }
}

fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.as_bytes().to_vec());
    }
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
}

/// Decode a Standard Webhooks secret: `whsec_` + base64 of the key.
pub fn decode_whsec(raw: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    let b64 = text.strip_prefix("whsec_")?;
    let key = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (!key.is_empty()).then_some(key)
}

fn compile_source(src: &Source, secrets: &SecretIndex<'_>) -> Outcome<SourceConfig> {
    let ns = namespace_of(src);
    let spec = &src.spec;
    let v = &spec.verification;
    let secret = match (&v.secret_ref, v.scheme) {
        (_, Scheme::None) => None,
        (Some(r), _) => Some(secrets.get(&ns, r)?),
        (None, _) => {
            return bad(
                Reason::InvalidSpec,
                "verification.secretRef is required unless scheme is none",
            )
        }
    };
    let key = || SecretBytes(secret.clone().unwrap_or_default());
    if v.scheme != Scheme::Hmac && v.hmac.is_some() {
        return bad(
            Reason::InvalidSpec,
            "verification.hmac is only allowed with scheme hmac",
        );
    }
    let verification = match v.scheme {
        Scheme::None => Verifier::None,
        Scheme::StandardWebhooks => {
            let raw = secret.clone().unwrap_or_default();
            let Some(decoded) = decode_whsec(&raw) else {
                return bad(
                    Reason::InvalidSecret,
                    "the standard-webhooks secret must be whsec_ followed by base64",
                );
            };
            Verifier::StandardWebhooks {
                key: SecretBytes(decoded),
            }
        }
        Scheme::Stripe => Verifier::Stripe { key: key() },
        Scheme::Github => Verifier::Github { key: key() },
        Scheme::Shopify => Verifier::Shopify { key: key() },
        Scheme::Slack => Verifier::Slack { key: key() },
        Scheme::Hmac => {
            let Some(h) = &v.hmac else {
                return bad(
                    Reason::InvalidSpec,
                    "verification.hmac is required for scheme hmac",
                );
            };
            Verifier::Hmac(compile_generic_hmac(h, key())?)
        }
    };
    let tolerance_seconds = match v.tolerance_seconds {
        None => DEFAULT_TOLERANCE_SECONDS,
        Some(t @ 1..=86_400) => u64::from(t),
        Some(t) => {
            return bad(
                Reason::InvalidSpec,
                format!("verification.toleranceSeconds {t} is outside 1..=86400"),
            )
        }
    };
    let api_key = match &spec.auth {
        Some(a) => Some(SecretBytes(secrets.get(&ns, &a.api_key_secret_ref)?)),
        None => None,
    };
    let event_type = match &spec.event_type {
        Some(f) => Some(field_rule(
            f.header.as_deref(),
            f.json_pointer.as_deref(),
            "eventType",
        )?),
        None => default_event_type(v.scheme),
    };
    let idempotency = compile_idempotency(spec.idempotency.as_ref(), v.scheme)?;
    let max_body_bytes = match spec.max_body_bytes {
        None => DEFAULT_MAX_BODY_BYTES,
        Some(n @ 1..=MAX_BODY_BYTES_LIMIT) => n,
        Some(n) => {
            return bad(
                Reason::InvalidSpec,
                format!("maxBodyBytes {n} is outside 1..={MAX_BODY_BYTES_LIMIT}"),
            )
        }
    };
    Ok(SourceConfig {
        namespace: String::new(),
        name: String::new(),
        verification,
        mode: v.mode.unwrap_or_default(),
        tolerance_seconds,
        api_key,
        event_type,
        idempotency,
        max_body_bytes,
    })
}

fn compile_generic_hmac(
    h: &resources::GenericHmac,
    key: SecretBytes,
) -> Outcome<GenericHmacConfig> {
    check_header_name(&h.header, "verification.hmac.header")?;
    if let Some(t) = &h.timestamp_header {
        check_header_name(t, "verification.hmac.timestampHeader")?;
    }
    let template = h.signed_content.as_deref().unwrap_or("{body}");
    let signed_content = parse_template(template)?;
    if !signed_content.contains(&TemplatePart::Body) {
        return bad(
            Reason::InvalidSpec,
            "verification.hmac.signedContent must contain {body}",
        );
    }
    if signed_content.contains(&TemplatePart::Timestamp) && h.timestamp_header.is_none() {
        return bad(
            Reason::InvalidSpec,
            "verification.hmac.signedContent uses {timestamp} but timestampHeader is not set",
        );
    }
    Ok(GenericHmacConfig {
        key,
        header: h.header.to_ascii_lowercase(),
        encoding: h.encoding,
        prefix: h.prefix.clone().unwrap_or_default(),
        algorithm: h.algorithm,
        timestamp_header: h.timestamp_header.as_ref().map(|t| t.to_ascii_lowercase()),
        signed_content,
    })
}

/// Split `{timestamp}.{body}` into parts; any other `{...}` is an error, not a literal.
fn parse_template(t: &str) -> Outcome<Vec<TemplatePart>> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Literal(rest[..open].to_string()));
        }
        let after = &rest[open..];
        if let Some(r) = after.strip_prefix("{body}") {
            parts.push(TemplatePart::Body);
            rest = r;
        } else if let Some(r) = after.strip_prefix("{timestamp}") {
            parts.push(TemplatePart::Timestamp);
            rest = r;
        } else {
            return bad(
                Reason::InvalidSpec,
                format!("verification.hmac.signedContent: unknown placeholder in {t:?} (use {{body}} and {{timestamp}})"),
            );
        }
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_string()));
    }
    Ok(parts)
}

fn default_event_type(scheme: Scheme) -> Option<FieldRule> {
    match scheme {
        Scheme::Github => Some(FieldRule::Header("x-github-event".into())),
        Scheme::Shopify => Some(FieldRule::Header("x-shopify-topic".into())),
        Scheme::Stripe | Scheme::StandardWebhooks => Some(FieldRule::JsonPointer("/type".into())),
        Scheme::Slack => Some(FieldRule::JsonPointer("/event/type".into())),
        Scheme::Hmac | Scheme::None => None,
    }
}

fn default_idempotency_key(scheme: Scheme) -> Option<FieldRule> {
    match scheme {
        Scheme::Github => Some(FieldRule::Header("x-github-delivery".into())),
        Scheme::StandardWebhooks => Some(FieldRule::Header("webhook-id".into())),
        Scheme::Stripe => Some(FieldRule::JsonPointer("/id".into())),
        Scheme::Shopify => Some(FieldRule::Header("x-shopify-webhook-id".into())),
        Scheme::Slack => Some(FieldRule::JsonPointer("/event_id".into())),
        Scheme::Hmac | Scheme::None => None,
    }
}

fn compile_idempotency(
    spec: Option<&resources::Idempotency>,
    scheme: Scheme,
) -> Outcome<Option<IdempotencyRule>> {
    let spec = spec.cloned().unwrap_or_default();
    if spec.disabled {
        if spec.header.is_some() || spec.json_pointer.is_some() {
            return bad(
                Reason::InvalidSpec,
                "idempotency: a disabled check takes no header or jsonPointer",
            );
        }
        return Ok(None);
    }
    let key = match (&spec.header, &spec.json_pointer) {
        (None, None) => default_idempotency_key(scheme),
        (h, p) => Some(field_rule(h.as_deref(), p.as_deref(), "idempotency")?),
    };
    let window_seconds = match &spec.window {
        None => DEFAULT_IDEMPOTENCY_WINDOW_SECONDS,
        Some(w) => parse_duration_ms(w, "idempotency.window")?
            .div_ceil(1000)
            .max(1),
    };
    Ok(key.map(|key| IdempotencyRule {
        key,
        window_seconds,
    }))
}

fn field_rule(header: Option<&str>, pointer: Option<&str>, what: &str) -> Outcome<FieldRule> {
    match (header, pointer) {
        (Some(h), None) => {
            check_header_name(h, &format!("{what}.header"))?;
            Ok(FieldRule::Header(h.to_ascii_lowercase()))
        }
        (None, Some(p)) => {
            check_json_pointer(p, &format!("{what}.jsonPointer"))?;
            Ok(FieldRule::JsonPointer(p.to_string()))
        }
        _ => bad(
            Reason::InvalidSpec,
            format!("{what}: set exactly one of header and jsonPointer"),
        ),
    }
}

/// RFC 9110 token characters.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn check_header_name(name: &str, what: &str) -> Outcome<()> {
    if is_header_name(name) {
        Ok(())
    } else {
        bad(
            Reason::InvalidSpec,
            format!("{what}: {name:?} is not a valid header name"),
        )
    }
}

/// RFC 6901: empty, or `/`-separated tokens where `~` is only in `~0` and `~1`.
pub fn is_json_pointer(p: &str) -> bool {
    if p.is_empty() {
        return true;
    }
    if !p.starts_with('/') || p.len() > 512 {
        return false;
    }
    let bytes = p.as_bytes();
    bytes
        .iter()
        .enumerate()
        .all(|(i, &b)| b != b'~' || matches!(bytes.get(i + 1), Some(b'0' | b'1')))
}

fn check_json_pointer(p: &str, what: &str) -> Outcome<()> {
    if is_json_pointer(p) {
        Ok(())
    } else {
        bad(
            Reason::InvalidSpec,
            format!("{what}: {p:?} is not a JSON pointer (RFC 6901)"),
        )
    }
}

fn parse_duration_ms(s: &str, what: &str) -> Outcome<u64> {
    match duration::parse(s) {
        Some(d) => Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => bad(
            Reason::InvalidSpec,
            format!("{what}: {s:?} is not a duration (like 500ms, 30s, 5m, 24h, 7d)"),
        ),
    }
}

/// The URL as problem messages may quote it: not at all when it may carry credentials
/// (`user:password@`), since problems end up in status conditions and logs.
fn shown_url(url: &str) -> String {
    if url.contains('@') {
        "(not shown: it contains '@' and may carry credentials)".to_string()
    } else {
        format!("{url:?}")
    }
}

/// Headers hookmesh sets itself on deliveries; an endpoint may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "user-agent",
];

fn compile_endpoint(
    ns: &str,
    name: &str,
    ep: &Endpoint,
    secrets: &SecretIndex<'_>,
) -> Outcome<EndpointConfig> {
    let spec = &ep.spec;
    let url = match url::Url::parse(&spec.url) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            u
        }
        Ok(u) => {
            return bad(
                Reason::InvalidUrl,
                format!(
                    "url {}: scheme {:?} is not http or https, or it has no host",
                    shown_url(&spec.url),
                    u.scheme()
                ),
            )
        }
        Err(e) => {
            return bad(
                Reason::InvalidUrl,
                format!("url {}: {e}", shown_url(&spec.url)),
            )
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return bad(
            Reason::InvalidUrl,
            "url must not carry credentials; use headers from a Secret-backed Endpoint instead",
        );
    }
    let secret_ref = spec.secret_ref.clone().unwrap_or_else(|| SecretKeyRef {
        name: default_signing_secret_name(name),
        key: DEFAULT_SIGNING_SECRET_KEY.into(),
    });
    let raw = secrets.get(ns, &secret_ref)?;
    let Some(signing_key) = decode_whsec(&raw) else {
        return bad(
            Reason::InvalidSecret,
            format!(
                "signing secret {ns}/{} key {:?} must be whsec_ followed by base64",
                secret_ref.name, secret_ref.key
            ),
        );
    };
    let mut headers = Vec::with_capacity(spec.headers.len());
    for (k, v) in &spec.headers {
        check_header_name(k, "headers")?;
        let lower = k.to_ascii_lowercase();
        if lower.starts_with("webhook-")
            || lower.starts_with("hookmesh-")
            || RESERVED_HEADERS.contains(&lower.as_str())
        {
            return bad(
                Reason::InvalidSpec,
                format!("headers: {k:?} is set by hookmesh and cannot be overridden"),
            );
        }
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return bad(
                Reason::InvalidSpec,
                format!("headers: value of {k:?} contains a control character"),
            );
        }
        headers.push((lower, v.clone()));
    }
    headers.sort();
    let timeout_seconds = match spec.timeout_seconds {
        None => DEFAULT_TIMEOUT_SECONDS,
        Some(t @ 1..=300) => u64::from(t),
        Some(t) => {
            return bad(
                Reason::InvalidSpec,
                format!("timeoutSeconds {t} is outside 1..=300"),
            )
        }
    };
    let r = spec.retry.clone().unwrap_or_default();
    let retry = RetryConfig {
        max_attempts: match r.max_attempts {
            None => DEFAULT_MAX_ATTEMPTS,
            Some(n @ 1..=100) => n,
            Some(n) => {
                return bad(
                    Reason::InvalidSpec,
                    format!("retry.maxAttempts {n} is outside 1..=100"),
                )
            }
        },
        initial_backoff_ms: match &r.initial_backoff {
            None => DEFAULT_INITIAL_BACKOFF_MS,
            Some(s) => parse_duration_ms(s, "retry.initialBackoff")?,
        },
        max_backoff_ms: match &r.max_backoff {
            None => DEFAULT_MAX_BACKOFF_MS,
            Some(s) => parse_duration_ms(s, "retry.maxBackoff")?,
        },
        multiplier: match r.multiplier {
            None => DEFAULT_MULTIPLIER,
            Some(m) if (1.0..=10.0).contains(&m) => m,
            Some(m) => {
                return bad(
                    Reason::InvalidSpec,
                    format!("retry.multiplier {m} is outside 1..=10"),
                )
            }
        },
    };
    if retry.initial_backoff_ms > retry.max_backoff_ms {
        return bad(
            Reason::InvalidSpec,
            "retry.initialBackoff is longer than retry.maxBackoff",
        );
    }
    let limits = spec.rate_limit.clone().unwrap_or_default();
    if limits.per_second == Some(0) || limits.max_in_flight == Some(0) {
        return bad(Reason::InvalidSpec, "rateLimit values must be at least 1");
    }
    Ok(EndpointConfig {
        namespace: ns.to_string(),
        name: name.to_string(),
        url: url.to_string(),
        signing_key: SecretBytes(signing_key),
        headers,
        timeout_ms: timeout_seconds * 1000,
        retry,
        per_second: limits.per_second,
        max_in_flight: limits.max_in_flight,
        disabled: spec.disabled,
    })
}

/// Event-type globs: `*` (any run) and `?` (one character) over printable ASCII. Brackets and
/// braces are refused rather than matched literally, since users would expect classes.
pub fn check_glob(g: &str) -> Result<(), String> {
    if g.is_empty() || g.len() > 256 {
        return Err("must be 1 to 256 characters".into());
    }
    if let Some(c) = g.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "contains {c:?}; use printable ASCII without spaces"
        ));
    }
    if let Some(c) = g.chars().find(|c| "[]{}\\".contains(*c)) {
        return Err(format!("contains {c:?}; only * and ? are wildcards"));
    }
    if g.contains("**") {
        return Err("contains **; a single * already matches any run".into());
    }
    Ok(())
}

fn compile_subscription(
    ns: &str,
    sub: &Subscription,
    source_names: &BTreeSet<(&str, &str)>,
    endpoint_names: &BTreeSet<(&str, &str)>,
    config: &GatewayConfig,
) -> Outcome<SubscriptionConfig> {
    let spec = &sub.spec;
    let ep = &spec.endpoint_ref;
    if let Some(other) = ep
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty() && *n != ns)
    {
        return bad(
            Reason::CrossNamespaceRef,
            format!(
                "endpointRef points to namespace {other:?}; cross-namespace references are refused"
            ),
        );
    }
    if !endpoint_names.contains(&(ns, ep.name.as_str())) {
        return bad(
            Reason::EndpointNotFound,
            format!("Endpoint {ns}/{} not found", ep.name),
        );
    }
    if config.endpoint(ns, &ep.name).is_none() {
        return bad(
            Reason::EndpointNotReady,
            format!("Endpoint {ns}/{} is not ready", ep.name),
        );
    }
    let mut sources: Vec<String> = spec.sources.clone();
    sources.sort();
    sources.dedup();
    if let Some(missing) = sources
        .iter()
        .find(|s| !source_names.contains(&(ns, s.as_str())))
    {
        return bad(
            Reason::SourceNotFound,
            format!("Source {ns}/{missing} not found"),
        );
    }
    for g in &spec.filter.event_types {
        if let Err(why) = check_glob(g) {
            return bad(
                Reason::InvalidGlob,
                format!("filter.eventTypes: {g:?} {why}"),
            );
        }
    }
    let mut event_types = spec.filter.event_types.clone();
    event_types.sort();
    event_types.dedup();
    let headers = compile_matchers(&spec.filter.headers, Field::Header)?;
    let body = compile_matchers(&spec.filter.body, Field::Body)?;
    Ok(SubscriptionConfig {
        namespace: String::new(),
        name: String::new(),
        endpoint: ep.name.clone(),
        sources,
        filter: FilterConfig {
            event_types,
            headers,
            body,
        },
    })
}

#[derive(Clone, Copy)]
enum Field {
    Header,
    Body,
}

fn compile_matchers(exprs: &[MatchExpr], field: Field) -> Outcome<Vec<Matcher>> {
    let list = match field {
        Field::Header => "filter.headers",
        Field::Body => "filter.body",
    };
    exprs
        .iter()
        .enumerate()
        .map(|(i, e)| compile_matcher(e, field).map_err(|(r, m)| (r, format!("{list}[{i}]: {m}"))))
        .collect()
}

fn compile_matcher(e: &MatchExpr, field: Field) -> Outcome<Matcher> {
    let groups = [e.any.is_some(), e.all.is_some(), e.not.is_some()];
    let tests = [
        e.exact.is_some(),
        e.prefix.is_some(),
        e.suffix.is_some(),
        e.exists.is_some(),
    ];
    let n_groups = groups.iter().filter(|x| **x).count();
    let n_tests = tests.iter().filter(|x| **x).count();
    if n_groups + n_tests != 1 {
        return bad(
            Reason::InvalidFilter,
            "set exactly one of exact, prefix, suffix, exists, any, all, not",
        );
    }
    if n_groups == 1 && (e.name.is_some() || e.path.is_some()) {
        return bad(
            Reason::InvalidFilter,
            "any/all/not take no name or path of their own",
        );
    }
    let leaves = |ls: &[MatchLeaf]| {
        ls.iter()
            .map(|l| compile_leaf(l, field))
            .collect::<Outcome<Vec<_>>>()
    };
    match (&e.any, &e.all, &e.not) {
        (Some(ls), _, _) if ls.is_empty() => {
            bad(Reason::InvalidFilter, "any needs at least one leaf")
        }
        (_, Some(ls), _) if ls.is_empty() => {
            bad(Reason::InvalidFilter, "all needs at least one leaf")
        }
        (Some(ls), _, _) => Ok(Matcher::Any(leaves(ls)?)),
        (_, Some(ls), _) => Ok(Matcher::All(leaves(ls)?)),
        (_, _, Some(l)) => Ok(Matcher::Not(compile_leaf(l, field)?)),
        _ => Ok(Matcher::Leaf(compile_leaf(
            &MatchLeaf {
                name: e.name.clone(),
                path: e.path.clone(),
                exact: e.exact.clone(),
                prefix: e.prefix.clone(),
                suffix: e.suffix.clone(),
                exists: e.exists,
            },
            field,
        )?)),
    }
}

fn compile_leaf(l: &MatchLeaf, field: Field) -> Outcome<Leaf> {
    let field = match (field, &l.name, &l.path) {
        (Field::Header, Some(n), None) => {
            if !is_header_name(n) {
                return bad(
                    Reason::InvalidFilter,
                    format!("{n:?} is not a valid header name"),
                );
            }
            n.to_ascii_lowercase()
        }
        (Field::Body, None, Some(p)) => {
            if !is_json_pointer(p) {
                return bad(
                    Reason::InvalidFilter,
                    format!("{p:?} is not a JSON pointer (RFC 6901)"),
                );
            }
            p.clone()
        }
        (Field::Header, _, _) => {
            return bad(
                Reason::InvalidFilter,
                "a header matcher names a header with name (and no path)",
            )
        }
        (Field::Body, _, _) => {
            return bad(
                Reason::InvalidFilter,
                "a body matcher names a JSON pointer with path (and no name)",
            )
        }
    };
    let test = match (&l.exact, &l.prefix, &l.suffix, l.exists) {
        (Some(v), None, None, None) => Test::Exact(v.clone()),
        (None, Some(v), None, None) => Test::Prefix(v.clone()),
        (None, None, Some(v), None) => Test::Suffix(v.clone()),
        (None, None, None, Some(b)) => Test::Exists(b),
        _ => {
            return bad(
                Reason::InvalidFilter,
                "set exactly one of exact, prefix, suffix, exists",
            )
        }
    };
    Ok(Leaf { field, test })
}

fn compile_api_keys(secrets: &[Secret], problems: &mut Vec<Problem>) -> Vec<ApiKeyConfig> {
    let mut keys: Vec<ApiKeyConfig> = Vec::new();
    for s in secrets {
        let labelled = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(API_KEY_LABEL))
            .is_some_and(|v| v == "true");
        if !labelled {
            continue;
        }
        let (ns, name) = (namespace_of(s), s.name_any());
        let mut report = |reason, message: String| {
            problems.push(problem(Kind::Secret, &ns, &name, reason, message))
        };
        let Some(key) = secret_value(s, "key") else {
            report(
                Reason::SecretKeyNotFound,
                "API key Secret has no key \"key\"".into(),
            );
            continue;
        };
        if key.len() < 16 {
            report(
                Reason::InvalidSecret,
                "API keys must be at least 16 bytes".into(),
            );
            continue;
        }
        let role = match secret_value(s, "role").as_deref() {
            None | Some(b"read") => Role::Read,
            Some(b"write") => Role::Write,
            Some(_) => {
                report(Reason::InvalidSecret, "role must be read or write".into());
                continue;
            }
        };
        let namespace = secret_value(s, "namespace")
            .map(|n| String::from_utf8_lossy(&n).trim().to_string())
            .filter(|n| !n.is_empty());
        keys.push(ApiKeyConfig {
            id: format!("{ns}/{name}"),
            key: SecretBytes(key),
            role,
            namespace,
        });
    }
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    keys.dedup_by(|a, b| a.id == b.id);
    keys
}
