//! `fieldSelector` and `labelSelector` query parameters.
//!
//! `kubectl drain` lists a node's pods with `fieldSelector=spec.nodeName=<node>`, and
//! `kubectl get node <name> -w` watches with `fieldSelector=metadata.name=<name>`, so the
//! simulator filters lists and watches by the fields the real API server indexes for these
//! kinds. Like the real server, an unknown field is a `400 BadRequest` rather than silently
//! matching everything. Label selectors support the equality forms (`k=v`, `k==v`, `k!=v`),
//! existence (`k`, `!k`) and set forms (`k in (a,b)`, `k notin (a,b)`).

use std::collections::BTreeMap;

use super::render;
use super::status::Failure;
use super::store::{Content, Entry, Kind};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Eq(String),
    Ne(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

impl Op {
    fn matches(&self, value: Option<&str>) -> bool {
        match self {
            Op::Eq(v) => value == Some(v.as_str()),
            Op::Ne(v) => value != Some(v.as_str()),
            Op::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
            Op::NotIn(vs) => value.is_none_or(|x| vs.iter().all(|v| v != x)),
            Op::Exists => value.is_some(),
            Op::NotExists => value.is_none(),
        }
    }
}

/// A parsed field and label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    fields: Vec<(String, Op)>,
    labels: Vec<(String, Op)>,
}

/// The value of a selectable field, or None if the kind does not support the field.
fn field(entry: &Entry, path: &str) -> Option<String> {
    match path {
        "metadata.name" => return Some(entry.key.name.clone()),
        "metadata.namespace" => return Some(entry.key.namespace.clone()),
        _ => {}
    }
    match (&entry.content, path) {
        (Content::Node(n), "spec.unschedulable") => Some(n.node.unschedulable.to_string()),
        (Content::Pod(p), "spec.nodeName") => Some(p.node.clone().unwrap_or_default()),
        (Content::Pod(p), "status.phase") => Some(render::pod_phase(p).to_string()),
        (Content::Pod(_), "spec.restartPolicy") => Some("Always".into()),
        (Content::Pod(_), "spec.schedulerName") => Some("default-scheduler".into()),
        _ => None,
    }
}

fn split_terms(s: &str) -> Vec<String> {
    // Commas separate terms except inside the parentheses of a set.
    let mut terms = Vec::new();
    let (mut depth, mut cur) = (0usize, String::new());
    for ch in s.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    terms.push(cur);
    terms
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_set(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_string()).collect())
}

fn parse_term(term: &str, allow_sets: bool) -> Option<(String, Op)> {
    if let Some((k, v)) = term.split_once("!=") {
        return Some((k.trim().into(), Op::Ne(v.trim().into())));
    }
    if let Some((k, v)) = term.split_once("==") {
        return Some((k.trim().into(), Op::Eq(v.trim().into())));
    }
    if let Some((k, v)) = term.split_once('=') {
        return Some((k.trim().into(), Op::Eq(v.trim().into())));
    }
    if !allow_sets {
        return None;
    }
    if let Some((k, rest)) = term.split_once(" notin ") {
        return Some((k.trim().into(), Op::NotIn(parse_set(rest)?)));
    }
    if let Some((k, rest)) = term.split_once(" in ") {
        return Some((k.trim().into(), Op::In(parse_set(rest)?)));
    }
    if let Some(k) = term.strip_prefix('!') {
        return Some((k.trim().into(), Op::NotExists));
    }
    if term
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    {
        return Some((term.into(), Op::Exists));
    }
    None
}

impl Selector {
    /// Parses the `fieldSelector` and `labelSelector` parameters (either may be absent).
    pub fn parse(fields: Option<&str>, labels: Option<&str>) -> Result<Selector, Failure> {
        let mut sel = Selector::default();
        for term in split_terms(fields.unwrap_or("")) {
            let parsed = parse_term(&term, false)
                .ok_or_else(|| Failure::bad_request(format!("invalid field selector: {term:?}")))?;
            sel.fields.push(parsed);
        }
        for term in split_terms(labels.unwrap_or("")) {
            let parsed = parse_term(&term, true).ok_or_else(|| {
                Failure::bad_request(format!("unable to parse requirement: {term:?}"))
            })?;
            sel.labels.push(parsed);
        }
        Ok(sel)
    }

    /// Rejects fields the real API server does not support for `kind` (400 BadRequest).
    pub fn check_fields(&self, kind: Kind) -> Result<(), Failure> {
        let supported: &[&str] = match kind {
            Kind::Node => &["spec.unschedulable"],
            Kind::Pod => &[
                "spec.nodeName",
                "status.phase",
                "spec.restartPolicy",
                "spec.schedulerName",
            ],
            Kind::Lease | Kind::Pdb | Kind::RuntimeClass | Kind::DaemonSet => &[],
        };
        match self.fields.iter().map(|(p, _)| p.as_str()).find(|p| {
            !["metadata.name", "metadata.namespace"].contains(p) && !supported.contains(p)
        }) {
            Some(p) => Err(Failure::bad_request(format!(
                "field label not supported: {p}"
            ))),
            None => Ok(()),
        }
    }

    /// True if `entry` matches.
    pub fn matches(&self, entry: &Entry) -> bool {
        let labels: BTreeMap<String, String> = if self.labels.is_empty() {
            BTreeMap::new()
        } else {
            render::labels(&entry.content)
        };
        self.fields
            .iter()
            .all(|(p, op)| op.matches(field(entry, p).as_deref()))
            && self
                .labels
                .iter()
                .all(|(k, op)| op.matches(labels.get(k).map(String::as_str)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_equality_set_and_existence_terms() {
        let s = Selector::parse(
            Some("spec.nodeName=nuc-20,status.phase!=Succeeded"),
            Some("app in (web, db),tier,!gone,x==y"),
        )
        .unwrap();
        assert_eq!(s.fields.len(), 2);
        assert_eq!(
            s.fields[0],
            ("spec.nodeName".into(), Op::Eq("nuc-20".into()))
        );
        assert_eq!(
            s.fields[1],
            ("status.phase".into(), Op::Ne("Succeeded".into()))
        );
        assert_eq!(
            s.labels,
            vec![
                ("app".into(), Op::In(vec!["web".into(), "db".into()])),
                ("tier".into(), Op::Exists),
                ("gone".into(), Op::NotExists),
                ("x".into(), Op::Eq("y".into())),
            ]
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(Selector::parse(Some("spec.nodeName"), None).is_err());
        assert!(Selector::parse(None, Some("a in b")).is_err());
    }
}
