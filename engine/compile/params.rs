//! Binding parameter values (from `--param key=value` or defaults) to declared types.
//!
//! `runbook check` has no parameters, so it compiles with [`Mode::Check`]: every parameter
//! without a default gets an example value of its type, which lets the whole compiler run
//! (foreach expansion, type checks) without inventing errors.

use std::collections::BTreeMap;

use crate::diagnostic::{Code, Diagnostic, Diagnostics, did_you_mean};
use crate::dsl::ast::{Param, ParamType, Runbook};
use crate::dsl::doc::{Node, Value};
use crate::dsl::duration;
use crate::plan::ParamValue;
use crate::source::Source;

/// What parameters the compiler gets.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Validate only: example values stand in for missing parameters.
    Check,
    /// Produce a plan from these `key=value` strings.
    Plan(Vec<(String, String)>),
}

/// Binds parameters, reporting unknown, missing and ill-typed ones.
pub fn bind(
    source: &Source,
    rb: &Runbook,
    mode: &Mode,
    diags: &mut Diagnostics,
) -> BTreeMap<String, ParamValue> {
    let mut out = BTreeMap::new();
    let given: &[(String, String)] = match mode {
        Mode::Check => &[],
        Mode::Plan(given) => given,
    };
    for (key, _) in given {
        if !rb.params.iter().any(|p| p.name.value == *key) {
            let names = rb.params.iter().map(|p| p.name.value.as_str());
            diags.push(
                Diagnostic::new(
                    Code::UnknownParam,
                    source,
                    rb.name.span,
                    format!("runbook `{}` has no parameter `{key}`", rb.name.value),
                    "declared here",
                )
                .with_help_opt(did_you_mean(key, names).or_else(|| {
                    let all: Vec<_> = rb.params.iter().map(|p| p.name.value.clone()).collect();
                    Some(if all.is_empty() {
                        "it takes no parameters".into()
                    } else {
                        format!("its parameters are: {}", all.join(", "))
                    })
                })),
            );
        }
    }
    let lists_given = node_list_given(&rb.params, given);
    for p in &rb.params {
        let secret = p.ty.value == ParamType::Secret;
        let value = if let Some((_, text)) = given.iter().rev().find(|(k, _)| *k == p.name.value) {
            match from_text(&p.ty.value, text) {
                Ok(v) => Some(v),
                Err(msg) => {
                    let shown = if secret {
                        crate::secret::REDACTED
                    } else {
                        text.as_str()
                    };
                    diags.push(Diagnostic::new(
                        Code::InvalidParam,
                        source,
                        p.name.span,
                        format!(
                            "invalid value `{shown}` for parameter `{}`: {msg}",
                            p.name.value
                        ),
                        format!("declared as {}", p.ty.value.name()),
                    ));
                    None
                }
            }
        } else if let Some(default) = &p.default {
            match from_node(&p.ty.value, default) {
                Ok(v) => Some(v),
                Err(msg) => {
                    diags.push(Diagnostic::new(
                        Code::WrongType,
                        source,
                        default.span,
                        format!("default of parameter `{}` is invalid: {msg}", p.name.value),
                        format!("expected {}", p.ty.value.name()),
                    ));
                    None
                }
            }
        } else if matches!(mode, Mode::Check) {
            Some(example(p))
        } else if lists_given && defaults_a_node_list(p) {
            // The operator chose the nodes: other node lists are not widened from the cluster.
            Some(serde_json::Value::Array(Vec::new()))
        } else if let Some(from) = &p.default_from {
            diags.push(
                Diagnostic::new(
                    Code::MissingParam,
                    source,
                    from.span,
                    format!(
                        "parameter `{}` defaults from the cluster ({}), and no cluster was read",
                        p.name.value,
                        from.value.name()
                    ),
                    "read from the cluster at `run`",
                )
                .with_help(format!(
                    "run it against a cluster (--talosconfig, $TALOSCONFIG, ~/.talos/config, or --sim), or pass it with `--param {}=<{}>`",
                    p.name.value,
                    p.ty.value.name()
                )),
            );
            None
        } else {
            diags.push(
                Diagnostic::new(
                    Code::MissingParam,
                    source,
                    p.name.span,
                    format!("missing required parameter `{}`", p.name.value),
                    "required here",
                )
                .with_help(format!(
                    "pass it with `--param {}=<{}>`",
                    p.name.value,
                    p.ty.value.name()
                )),
            );
            None
        };
        if let Some(value) = value {
            out.insert(p.name.value.clone(), ParamValue { value, secret });
        }
    }
    out
}

/// The parameters that default from the cluster and are not in `given`: what the engine
/// must read from the cluster before compiling (none when the source does not parse; the
/// compiler then reports why).
pub fn cluster_defaults(
    source: &Source,
    given: &[(String, String)],
) -> Vec<(String, crate::dsl::ast::ClusterDefault)> {
    let Ok((Some(rb), _)) = crate::dsl::parse_lenient(source) else {
        return Vec::new();
    };
    let lists_given = node_list_given(&rb.params, given);
    rb.params
        .iter()
        .filter(|p| !given.iter().any(|(k, _)| *k == p.name.value))
        .filter(|p| !(lists_given && defaults_a_node_list(p)))
        .filter_map(|p| {
            p.default_from
                .as_ref()
                .filter(|d| !d.value.from_inventory())
                .map(|d| (p.name.value.clone(), d.value))
        })
        .collect()
}

/// Whether `p` is a node list that defaults from the cluster (`cluster.control-planes`,
/// `cluster.workers`).
fn defaults_a_node_list(p: &crate::dsl::ast::Param) -> bool {
    p.default_from.is_some() && p.ty.value == ParamType::Nodes
}

/// Node lists that default from the cluster default together: once the operator gives one
/// (`--param nodes=a,b`), the others are empty rather than read from the cluster, so an
/// explicit choice of nodes is never widened (reboot-verify given three control planes does
/// not also reboot every worker).
fn node_list_given(params: &[crate::dsl::ast::Param], given: &[(String, String)]) -> bool {
    params
        .iter()
        .filter(|p| defaults_a_node_list(p))
        .any(|p| given.iter().any(|(k, _)| *k == p.name.value))
}

/// The shortest non-empty secret param value accepted. The redactor replaces every occurrence
/// of a secret in everything journaled or shown; a 1–3 character secret cannot be folded out
/// of all output without destroying it (every `a` of a one-letter secret), and is no secret
/// anyway. Empty stays allowed: it has nothing to leak.
pub const MIN_SECRET_CHARS: usize = 4;

/// Parses a command-line string as a value of the given type.
pub fn from_text(ty: &ParamType, text: &str) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match ty {
        ParamType::Secret if (1..MIN_SECRET_CHARS).contains(&text.chars().count()) => {
            return Err(format!(
                "a secret must be empty or at least {MIN_SECRET_CHARS} characters long: a shorter one could not be redacted from the journal and output"
            ));
        }
        ParamType::String | ParamType::Path | ParamType::Secret => J::String(text.into()),
        ParamType::Int => J::from(
            text.trim()
                .parse::<i64>()
                .map_err(|_| "expected an integer".to_string())?,
        ),
        ParamType::Bool => J::Bool(match text.trim() {
            "true" | "yes" | "1" => true,
            "false" | "no" | "0" => false,
            _ => return Err("expected `true` or `false`".into()),
        }),
        ParamType::Duration => {
            duration::parse(text)?;
            J::String(text.trim().into())
        }
        ParamType::Node => J::String(parse_node(text)?),
        // No node at all: an empty list (`--param workers=`, or `cluster.workers` on a
        // cluster without workers); a list with an empty element is still refused.
        ParamType::Nodes if text.trim().is_empty() => J::Array(Vec::new()),
        ParamType::Nodes => {
            let nodes = text
                .split(',')
                .map(parse_node)
                .collect::<Result<Vec<_>, _>>()?;
            check_unique(&nodes)?;
            J::Array(nodes.into_iter().map(J::String).collect())
        }
        ParamType::Enum(values) => {
            if !values.iter().any(|v| v == text) {
                let help = did_you_mean(text, values.iter().map(String::as_str))
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default();
                return Err(format!("expected one of {}{help}", values.join(", ")));
            }
            J::String(text.into())
        }
    })
}

fn from_node(ty: &ParamType, node: &Node) -> Result<serde_json::Value, String> {
    match (&node.value, ty) {
        (Value::Str(s), _) => from_text(ty, s),
        (Value::Int(i), ParamType::Int) => Ok((*i).into()),
        (Value::Int(i), ParamType::Duration) => Ok(serde_json::Value::String(format!("{i}s"))),
        (Value::Bool(b), ParamType::Bool) => Ok((*b).into()),
        (Value::Seq(items), ParamType::Nodes) => {
            let nodes = items
                .iter()
                .map(|i| {
                    i.as_str()
                        .ok_or("expected a list of nodes")
                        .map(str::to_string)
                })
                .map(|r| r.map_err(String::from).and_then(|s| parse_node(&s)))
                .collect::<Result<Vec<_>, _>>()?;
            // A runbook may default a node list to none (`default: []`, e.g. reboot-verify's
            // `workers`); given lists still need at least one node.
            if !nodes.is_empty() {
                check_unique(&nodes)?;
            }
            Ok(nodes.into())
        }
        _ => Err(format!(
            "expected {}, found {}",
            ty.name(),
            node.type_name()
        )),
    }
}

fn parse_node(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.is_empty() || t.contains(char::is_whitespace) {
        return Err(format!("`{t}` is not a node address or hostname"));
    }
    Ok(t.to_string())
}

fn check_unique(nodes: &[String]) -> Result<(), String> {
    if nodes.is_empty() {
        return Err("expected at least one node".into());
    }
    for (i, n) in nodes.iter().enumerate() {
        if nodes[..i].contains(n) {
            return Err(format!("node `{n}` is listed twice"));
        }
    }
    Ok(())
}

fn example(p: &Param) -> serde_json::Value {
    match &p.ty.value {
        ParamType::String | ParamType::Path => "example".into(),
        ParamType::Secret => "example-secret".into(),
        ParamType::Int => 1.into(),
        ParamType::Bool => false.into(),
        ParamType::Duration => "1m".into(),
        ParamType::Node => "node-1".into(),
        ParamType::Nodes => serde_json::json!(["node-1", "node-2", "node-3"]),
        ParamType::Enum(values) => values.first().cloned().unwrap_or_default().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_lists() {
        let v = from_text(
            &ParamType::Nodes,
            "192.168.2.20, 192.168.2.223,192.168.2.49",
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!(["192.168.2.20", "192.168.2.223", "192.168.2.49"])
        );
        assert!(
            from_text(&ParamType::Nodes, "a,a")
                .unwrap_err()
                .contains("twice")
        );
        assert!(from_text(&ParamType::Nodes, "a,,b").is_err());
        assert!(from_text(&ParamType::Int, "x").is_err());
        assert!(from_text(&ParamType::Enum(vec!["a".into()]), "b").is_err());
    }

    #[test]
    fn a_secret_too_short_to_redact_is_refused_naming_the_param_not_the_value() {
        use crate::compile::{self, Mode};
        use crate::source::{Format, Source};
        let src = Source::new(
            "t.yaml",
            Format::Yaml,
            "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: t }\nparams:\n  token: { type: secret }\nsteps:\n  - { id: a, action: log, with: { message: hi } }\n",
        );
        let plan =
            |v: &str| compile::compile_source(&src, &Mode::Plan(vec![("token".into(), v.into())]));
        for short in ["a", "xy", "pé7"] {
            let e = format!("{:?}", plan(short).unwrap_err());
            assert!(e.contains("parameter `token`"), "{e}");
            assert!(e.contains("at least 4 characters"), "{e}");
            assert!(
                !e.contains(&format!("`{short}`")),
                "the value is shown: {e}"
            );
        }
        // Four characters and the empty secret (nothing to leak) are accepted.
        assert!(plan("abcd").is_ok());
        assert!(plan("").is_ok());
        assert!(from_text(&ParamType::Secret, "héé").is_err());
        assert!(from_text(&ParamType::String, "a").is_ok());
    }
}
