//! Request parsing: query strings, path ids, JSON bodies, times, limits and cursors. Every
//! malformed input becomes a 400 with a code (`INVALID_PARAMETER`, `INVALID_BODY`), never a 500
//! and never axum's plain-text rejections.

use std::str::FromStr;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};
use ulid::Ulid;

use crate::error::ApiError;
use crate::store::Millis;

/// Largest page.
pub const MAX_LIMIT: usize = 100;
/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;
/// Longest accepted filter value (globs, names, search text).
const MAX_VALUE_LEN: usize = 256;

/// A query string parsed into `T` (unknown parameters refused), plus a fingerprint of its
/// filters that cursors carry so a cursor cannot be replayed against another query.
pub struct Params<T> {
    pub value: T,
    pub fingerprint: [u8; 8],
}

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::try_from_uri(&parts.uri).map_err(|e| {
            ApiError::invalid_parameter(format!("invalid query string: {}", e.body_text()))
        })?;
        Ok(Params {
            value,
            fingerprint: filters_fingerprint(parts.uri.query()),
        })
    }
}

/// The fingerprint of a query string's filters (every parameter but `cursor` and `limit`, in
/// any order): what a listing cursor carries, the same on every pod.
pub fn filters_fingerprint(query: Option<&str>) -> [u8; 8] {
    let mut pairs: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("cursor=") && !p.starts_with("limit="))
        .collect();
    pairs.sort_unstable();
    fingerprint(pairs.join("&").as_bytes())
}

/// The first 8 bytes of SHA-256: what a cursor carries to recognise its query.
pub fn fingerprint(canonical_filters: &[u8]) -> [u8; 8] {
    let digest = Sha256::digest(canonical_filters);
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&digest[..8]);
    fp
}

/// A path id such as `evt_...` or `dlv_...`, parsed; malformed is 400.
pub struct PathId<T>(pub T);

impl<T: FromStr + Send, S: Send + Sync> FromRequestParts<S> for PathId<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid_parameter(format!("invalid path: {}", e.body_text())))?;
        raw.parse::<T>().map(PathId).map_err(|_| {
            ApiError::invalid_parameter(format!("{:?} is not a valid id", truncate(&raw)))
        })
    }
}

/// A JSON body; an empty body is `T::default()` (every body of this API is optional or has
/// only optional fields).
pub struct JsonBody<T>(pub T);

/// Largest JSON body the REST API reads.
const MAX_JSON_BODY: usize = 1024 * 1024;

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let body = axum::body::to_bytes(req.into_body(), MAX_JSON_BODY)
            .await
            .map_err(|e| {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                if too_large {
                    ApiError::new(
                        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                        "PAYLOAD_TOO_LARGE",
                        format!("REST request bodies are at most {MAX_JSON_BODY} bytes"),
                    )
                } else {
                    ApiError::bad_request("INVALID_BODY", format!("unreadable body: {e}"))
                }
            })?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(T::default()));
        }
        serde_json::from_slice(&body)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request("INVALID_BODY", format!("invalid JSON body: {e}")))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn bad(name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_parameter(format!("{name}: {why}"))
}

/// A non-empty, bounded, control-character-free text value.
pub fn text(name: &str, v: Option<&String>) -> Result<Option<String>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    if v.is_empty() {
        return Err(bad(name, "must not be empty"));
    }
    if v.chars().count() > MAX_VALUE_LEN {
        return Err(bad(name, format!("at most {MAX_VALUE_LEN} characters")));
    }
    if v.chars().any(char::is_control) {
        return Err(bad(name, "control characters are not allowed"));
    }
    Ok(Some(v.clone()))
}

/// A Kubernetes object name or namespace (RFC 1123 label/subdomain characters).
pub fn name(param: &str, v: &str) -> Result<String, ApiError> {
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(v.to_string())
    } else {
        Err(bad(
            param,
            format!("{:?} is not a valid Kubernetes name", truncate(v)),
        ))
    }
}

/// `name` or `namespace/name`.
pub fn qualified_name(
    param: &str,
    v: Option<&String>,
) -> Result<Option<(Option<String>, String)>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    match v.split_once('/') {
        Some((ns, n)) => Ok(Some((Some(name(param, ns)?), name(param, n)?))),
        None => Ok(Some((None, name(param, v)?))),
    }
}

/// `limit`: 1 to 100, default 50.
pub fn limit(v: Option<&String>) -> Result<usize, ApiError> {
    let Some(v) = v else {
        return Ok(DEFAULT_LIMIT);
    };
    match v.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(bad(
            "limit",
            format!("must be an integer from 1 to {MAX_LIMIT}"),
        )),
    }
}

/// `true` or `false`.
pub fn boolean(name: &str, v: Option<&String>) -> Result<Option<bool>, ApiError> {
    match v.map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(bad(name, "must be true or false")),
    }
}

/// A time: RFC 3339 (`2024-05-01T12:00:00Z`) or Unix milliseconds.
pub fn time(name: &str, v: Option<&String>) -> Result<Option<Millis>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    if !v.is_empty() && v.len() <= 15 && v.bytes().all(|b| b.is_ascii_digit()) {
        return v
            .parse::<Millis>()
            .map(Some)
            .map_err(|_| bad(name, "out of range"));
    }
    let t = DateTime::parse_from_rfc3339(v).map_err(|_| {
        bad(
            name,
            "must be RFC 3339 (2024-05-01T12:00:00Z) or Unix milliseconds",
        )
    })?;
    let ms = t.timestamp_millis();
    if ms < 0 {
        return Err(bad(name, "must not be before 1970"));
    }
    Ok(Some(ms as Millis))
}

/// `from` and `to` together: `from` must not be after `to`.
pub fn window(
    from: Option<&String>,
    to: Option<&String>,
) -> Result<(Option<Millis>, Option<Millis>), ApiError> {
    let (from, to) = (time("from", from)?, time("to", to)?);
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(ApiError::invalid_parameter("from must not be after to"));
        }
    }
    Ok((from, to))
}

/// A comma-separated list of statuses.
pub fn statuses<T: FromStr>(v: Option<&String>, allowed: &[&str]) -> Result<Vec<T>, ApiError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    v.split(',')
        .map(|s| {
            s.trim().parse::<T>().map_err(|_| {
                bad(
                    "status",
                    format!("{:?} is not one of {}", truncate(s), allowed.join(", ")),
                )
            })
        })
        .collect()
}

/// Render milliseconds as RFC 3339 UTC with millisecond precision.
pub fn rfc3339(ms: Millis) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The inclusive ULID range of ids that start with `prefix` (Crockford base32, after `evt_`).
/// `Ok(None)`: a well-formed prefix no id can have.
pub fn id_prefix_range(prefix: &str) -> Result<Option<(Ulid, Ulid)>, ApiError> {
    const ALPHABET: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let upper = prefix.to_ascii_uppercase();
    if upper.len() > 26 || !upper.chars().all(|c| ALPHABET.contains(c)) {
        return Err(bad(
            "search",
            "an id prefix is evt_ followed by up to 26 Crockford base32 characters",
        ));
    }
    // The first character of a ULID carries only 3 bits.
    if upper.chars().next().is_some_and(|c| c > '7') {
        return Ok(None);
    }
    let pad = |c: char| format!("{upper}{}", c.to_string().repeat(26 - upper.len()));
    match (Ulid::from_string(&pad('0')), Ulid::from_string(&pad('Z'))) {
        (Ok(lo), Ok(hi)) => Ok(Some((lo, hi))),
        _ => Ok(None),
    }
}

/// Cursors: opaque to clients; inside, a version, the listing kind, the fingerprint of the
/// query's filters and the id the next page starts below.
pub mod cursor {
    use super::*;

    const VERSION: u8 = 1;
    pub const EVENTS: u8 = b'e';
    pub const DELIVERIES: u8 = b'd';

    pub fn encode(kind: u8, fingerprint: [u8; 8], before: Ulid) -> String {
        let mut raw = Vec::with_capacity(26);
        raw.push(VERSION);
        raw.push(kind);
        raw.extend_from_slice(&fingerprint);
        raw.extend_from_slice(&before.0.to_be_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(
        kind: u8,
        fingerprint: [u8; 8],
        v: Option<&String>,
    ) -> Result<Option<Ulid>, ApiError> {
        let Some(v) = v else { return Ok(None) };
        let invalid = || ApiError::invalid_parameter("cursor: not a cursor this API issued");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v)
            .map_err(|_| invalid())?;
        if raw.len() != 26 || raw[0] != VERSION || raw[1] != kind {
            return Err(invalid());
        }
        if raw[2..10] != fingerprint {
            return Err(ApiError::invalid_parameter(
                "cursor: it belongs to a query with other filters; keep the filters when paging",
            ));
        }
        let id: [u8; 16] = raw[10..26].try_into().map_err(|_| invalid())?;
        Ok(Some(Ulid(u128::from_be_bytes(id))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(
            time("from", Some(&"1700000000000".into())),
            Ok(Some(1_700_000_000_000))
        );
        assert_eq!(
            time("from", Some(&"1970-01-01T00:00:01.5Z".into())),
            Ok(Some(1500))
        );
        assert!(time("from", Some(&"yesterday".into())).is_err());
        assert!(time("from", Some(&"1969-12-31T23:59:59Z".into())).is_err());
        assert!(time("from", Some(&"".into())).is_err());
        assert!(window(Some(&"5".into()), Some(&"4".into())).is_err());
        assert_eq!(rfc3339(1500), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn limits() {
        assert_eq!(limit(None), Ok(50));
        assert_eq!(limit(Some(&"100".into())), Ok(100));
        for bad in ["0", "101", "-1", "x", ""] {
            assert!(limit(Some(&bad.into())).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_others() {
        let fp = [1; 8];
        let c = cursor::encode(cursor::EVENTS, fp, Ulid(42));
        assert_eq!(
            cursor::decode(cursor::EVENTS, fp, Some(&c)),
            Ok(Some(Ulid(42)))
        );
        assert!(cursor::decode(cursor::DELIVERIES, fp, Some(&c)).is_err());
        assert!(cursor::decode(cursor::EVENTS, [2; 8], Some(&c)).is_err());
        assert!(cursor::decode(cursor::EVENTS, fp, Some(&"!!".into())).is_err());
    }

    #[test]
    fn id_prefixes() {
        let (lo, hi) = id_prefix_range("01h").ok().flatten().expect("range");
        assert!(lo.to_string().starts_with("01H"));
        assert!(hi.to_string().starts_with("01H"));
        assert_eq!(id_prefix_range("8"), Ok(None));
        assert!(id_prefix_range("01U").is_err());
    }
}
