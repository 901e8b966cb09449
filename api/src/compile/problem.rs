//! Why an object is left out of the config: its kind, a machine reason and a message.

use std::fmt;

use serde::Serialize;

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

pub(super) type Outcome<T> = Result<T, (Reason, String)>;

pub(super) fn bad<T>(reason: Reason, message: impl Into<String>) -> Outcome<T> {
    Err((reason, message.into()))
}

pub(super) fn problem(
    kind: Kind,
    ns: &str,
    name: &str,
    reason: Reason,
    message: String,
) -> Problem {
    Problem {
        kind,
        namespace: ns.to_string(),
        name: name.to_string(),
        reason,
        message,
    }
}
