//! Subscription: which events of which sources go to an endpoint, and the filters that decide.

use std::collections::BTreeSet;

use crate::config::*;
use crate::resources::*;

use super::checks::*;
use super::problem::{bad, Outcome, Reason};

pub(super) fn compile_subscription(
    ns: &str,
    sub: &Subscription,
    source_names: &BTreeSet<(&str, &str)>,
    endpoint_names: &BTreeSet<(&str, &str)>,
    config: &GatewayConfig,
) -> Outcome<SubscriptionConfig> {
    let spec = &sub.spec;
    let ep = &spec.endpoint_ref;
    target(ns, ep, "endpointRef", endpoint_names, config)?;
    let dead_letter = match &spec.dead_letter {
        None => None,
        Some(dl) => {
            target(
                ns,
                &dl.endpoint_ref,
                "deadLetter.endpointRef",
                endpoint_names,
                config,
            )?;
            if dl.endpoint_ref.name == ep.name {
                return bad(
                    Reason::InvalidSpec,
                    "deadLetter.endpointRef is the Subscription's own endpoint",
                );
            }
            Some(dl.endpoint_ref.name.clone())
        }
    };
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
        dead_letter,
    })
}

/// An endpoint a Subscription names: in its namespace, declared, and compiled.
fn target(
    ns: &str,
    r: &EndpointRef,
    field: &str,
    endpoint_names: &BTreeSet<(&str, &str)>,
    config: &GatewayConfig,
) -> Outcome<()> {
    if let Some(other) = r.namespace.as_deref().filter(|n| !n.is_empty() && *n != ns) {
        return bad(
            Reason::CrossNamespaceRef,
            format!(
                "{field} points to namespace {other:?}; cross-namespace references are refused"
            ),
        );
    }
    if !endpoint_names.contains(&(ns, r.name.as_str())) {
        return bad(
            Reason::EndpointNotFound,
            format!("Endpoint {ns}/{} not found", r.name),
        );
    }
    if config.endpoint(ns, &r.name).is_none() {
        return bad(
            Reason::EndpointNotReady,
            format!("Endpoint {ns}/{} is not ready", r.name),
        );
    }
    Ok(())
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
