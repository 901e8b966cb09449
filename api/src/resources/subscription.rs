use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, HEADER_NAME_PATTERN, JSON_POINTER_PATTERN, NAME_PATTERN};

/// Routing: which events of which sources go to an endpoint.
// Several printcolumns repeat `type_ = "string"`; clippy reads that as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hookmesh.io",
    version = "v1alpha1",
    kind = "Subscription",
    namespaced,
    status = "SubscriptionStatus",
    shortname = "hmsub",
    category = "hookmesh",
    doc = "Routes events from sources to an endpoint",
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".spec.endpointRef.name"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionSpec {
    pub endpoint_ref: EndpointRef,
    /// Source names in this namespace; empty means every source of the namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253), regex(pattern = NAME_PATTERN)))]
    pub sources: Vec<String>,
    #[serde(default)]
    pub filter: Filter,
    /// Where a delivery goes once it is dead-lettered: the same event, delivered to this
    /// Endpoint, with headers saying why (like Knative's deadLetterSink).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetter>,
}

/// The dead-letter sink of a Subscription.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub endpoint_ref: EndpointRef,
}

/// The endpoint to deliver to. Cross-namespace references are refused.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRef {
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// Must be empty or this object's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
}

/// Which events match. All parts must match (AND); empty parts match everything.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.headers) || self.headers.all(m, !has(m.path) && (!has(m.any) || m.any.all(l, has(l.name))) && (!has(m.all) || m.all.all(l, has(l.name))) && (!has(m.not) || has(m.not.name)))").message("header matchers name a header (name), not a body path"))]
#[x_kube(validation = Rule::new("!has(self.body) || self.body.all(m, !has(m.name) && (!has(m.any) || m.any.all(l, has(l.path))) && (!has(m.all) || m.all.all(l, has(l.path))) && (!has(m.not) || has(m.not.path)))").message("body matchers name a JSON pointer (path), not a header"))]
pub struct Filter {
    /// Event-type globs (`order.*`, `*`, `invoice.?aid`); empty or absent means all types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(length(min = 1, max = 256), regex(pattern = r"^[\x21-\x7e]+$"))
    )]
    pub event_types: Vec<String>,
    /// Matchers on request headers (field `name`), all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub headers: Vec<MatchExpr>,
    /// Matchers on the JSON body (field `path`, a JSON pointer), all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub body: Vec<MatchExpr>,
}

/// A leaf test, or `any`/`all`/`not` over leaf tests (nesting stops there so the schema stays
/// structural). Exactly one of `exact`, `prefix`, `suffix`, `exists`, `any`, `all`, `not`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.exact), has(self.prefix), has(self.suffix), has(self.exists), has(self.any), has(self.all), has(self.not)].filter(x, x).size() == 1").message("set exactly one of exact, prefix, suffix, exists, any, all, not"))]
#[x_kube(validation = Rule::new("(has(self.any) || has(self.all) || has(self.not)) ? !has(self.name) && !has(self.path) : has(self.name) != has(self.path)").message("a leaf names exactly one of name (header) or path (body); any/all/not take neither"))]
pub struct MatchExpr {
    /// Header name (in `headers` matchers), case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = HEADER_NAME_PATTERN))]
    pub name: Option<String>,
    /// JSON pointer (in `body` matchers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512), regex(pattern = JSON_POINTER_PATTERN))]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub suffix: Option<String>,
    /// `true`: the field is present; `false`: it is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    /// At least one of these leaves holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    pub any: Option<Vec<MatchLeaf>>,
    /// Every one of these leaves holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    pub all: Option<Vec<MatchLeaf>>,
    /// This leaf does not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<MatchLeaf>,
}

/// One test on one field. `exact` on a JSON number or boolean compares its JSON text (`42`, `true`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.exact), has(self.prefix), has(self.suffix), has(self.exists)].filter(x, x).size() == 1").message("set exactly one of exact, prefix, suffix, exists"))]
#[x_kube(validation = Rule::new("has(self.name) != has(self.path)").message("set exactly one of name (header) or path (body)"))]
pub struct MatchLeaf {
    /// Header name (in `headers` matchers), case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = HEADER_NAME_PATTERN))]
    pub name: Option<String>,
    /// JSON pointer (in `body` matchers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512), regex(pattern = JSON_POINTER_PATTERN))]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub suffix: Option<String>,
    /// `true`: the field is present; `false`: it is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
}
