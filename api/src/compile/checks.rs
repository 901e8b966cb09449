//! Validations more than one kind shares: header names, JSON pointers, durations, globs, URLs.

use super::problem::{bad, Outcome, Reason};
use crate::config::TemplatePart;
use crate::duration;

/// RFC 9110 token characters.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(super) fn check_header_name(name: &str, what: &str) -> Outcome<()> {
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

pub(super) fn check_json_pointer(p: &str, what: &str) -> Outcome<()> {
    if is_json_pointer(p) {
        Ok(())
    } else {
        bad(
            Reason::InvalidSpec,
            format!("{what}: {p:?} is not a JSON pointer (RFC 6901)"),
        )
    }
}

pub(super) fn parse_duration_ms(s: &str, what: &str) -> Outcome<u64> {
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
pub(super) fn shown_url(url: &str) -> String {
    if url.contains('@') {
        "(not shown: it contains '@' and may carry credentials)".to_string()
    } else {
        format!("{url:?}")
    }
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

/// Split a signed-content template such as `{timestamp}.{body}` into parts. `{id}` (the event
/// id) exists only where hookmesh signs (an Endpoint); any other `{...}` is an error, not a
/// literal.
pub(super) fn parse_template(t: &str, what: &str, allow_id: bool) -> Outcome<Vec<TemplatePart>> {
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
        } else if let (true, Some(r)) = (allow_id, after.strip_prefix("{id}")) {
            parts.push(TemplatePart::Id);
            rest = r;
        } else {
            let known = if allow_id {
                "{body}, {timestamp} and {id}"
            } else {
                "{body} and {timestamp}"
            };
            return bad(
                Reason::InvalidSpec,
                format!("{what}: unknown placeholder in {t:?} (use {known})"),
            );
        }
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_string()));
    }
    if !parts.contains(&TemplatePart::Body) {
        return bad(Reason::InvalidSpec, format!("{what} must contain {{body}}"));
    }
    Ok(parts)
}
