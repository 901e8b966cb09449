//! API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>`, checked in constant time
//! against the keys of the live config, each with a role and an optional namespace scope.

use hookmesh_api::config::{ApiKeyConfig, Role};
use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The key a request presents, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let raw = v.as_bytes();
        let scheme = raw.get(..7)?;
        if scheme.eq_ignore_ascii_case(b"bearer ") {
            return Some(raw[7..].trim_ascii());
        }
        return None;
    }
    headers.get("x-api-key").map(|v| v.as_bytes().trim_ascii())
}

/// Compare against every key so timing does not tell which one (or whether any) matched.
pub fn find_key<'a>(keys: &'a [ApiKeyConfig], presented: &[u8]) -> Option<&'a ApiKeyConfig> {
    let mut found = None;
    for k in keys {
        if bool::from(k.key.expose().ct_eq(presented)) {
            found = Some(k);
        }
    }
    found
}

/// What an authenticated caller may do.
#[derive(Clone, Debug)]
pub struct Caller {
    pub id: String,
    pub role: Role,
    pub namespace: Option<String>,
}

impl Caller {
    pub fn may_see(&self, namespace: &str) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == namespace)
    }

    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.role == Role::Write {
            Ok(())
        } else {
            Err(ApiError::forbidden("this API key is read-only"))
        }
    }

    pub fn require_namespace(&self, namespace: &str) -> Result<(), ApiError> {
        if self.may_see(namespace) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this API key is not allowed in namespace {namespace}"
            )))
        }
    }
}

/// Authenticate a request against the config's keys.
pub fn authenticate(keys: &[ApiKeyConfig], headers: &HeaderMap) -> Result<Caller, ApiError> {
    let presented = presented_key(headers)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "UNAUTHORIZED",
                "an API key is required (Authorization: Bearer or X-API-Key)",
            )
        })?;
    let key = find_key(keys, presented)
        .ok_or_else(|| ApiError::unauthorized("UNAUTHORIZED", "invalid API key"))?;
    Ok(Caller {
        id: key.id.clone(),
        role: key.role.clone(),
        namespace: key.namespace.clone(),
    })
}
