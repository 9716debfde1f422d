//! What a patch changes, for people and for the classifier: the changed paths between two
//! configs, a redaction of secret values by path, a small block-YAML renderer and a unified
//! line diff of the redacted renderings (`talos.patch`'s dry run).
//!
//! Secrets are redacted by the key that holds them, never by recognising values: any key
//! whose name contains `key`, `token`, `secret` or `password`, or is `auth` (registry
//! credentials) or `inlineManifests` (which may carry Kubernetes Secrets), has its whole value
//! replaced, whatever it holds. That covers `machine.ca.key`,
//! `machine.token`, `cluster.token`, `cluster.secret`, `cluster.secretboxEncryptionSecret`,
//! `cluster.aescbcEncryptionSecret`, the service account, aggregator and etcd CA keys and
//! WireGuard private keys. A changed secret shows as `<redacted, changed>`: the reader learns
//! that it changed, never to what.

use serde_json::Value as J;

use super::Config;
use super::classify::ConfigPath;
use super::strategic::doc_id;

/// The placeholder of a secret value.
pub const REDACTED: &str = "<redacted>";
const REDACTED_CHANGED: &str = "<redacted, changed>";

/// The paths at which `new` differs from `old` (document by document, matched by identity):
/// a key added or removed lists the leaves under it; a list that differs is listed as a
/// whole; a document added or removed is listed as itself.
pub fn changed_paths(old: &Config, new: &Config) -> Vec<ConfigPath> {
    let mut out = Vec::new();
    for n in new {
        let id = doc_id(n);
        match old.iter().find(|o| doc_id(o) == id) {
            Some(o) => compare(o, n, &id, &mut Vec::new(), &mut out),
            None => out.push(ConfigPath {
                doc: id,
                keys: Vec::new(),
            }),
        }
    }
    for o in old {
        let id = doc_id(o);
        if !new.iter().any(|n| doc_id(n) == id) {
            out.push(ConfigPath {
                doc: id,
                keys: Vec::new(),
            });
        }
    }
    out.sort();
    out.dedup();
    out
}

fn compare(a: &J, b: &J, doc: &str, keys: &mut Vec<String>, out: &mut Vec<ConfigPath>) {
    if a == b {
        return;
    }
    match (a, b) {
        (J::Object(x), J::Object(y)) => {
            for (k, va) in x {
                keys.push(k.clone());
                match y.get(k) {
                    Some(vb) => compare(va, vb, doc, keys, out),
                    None => leaves(va, doc, keys, out),
                }
                keys.pop();
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    keys.push(k.clone());
                    leaves(vb, doc, keys, out);
                    keys.pop();
                }
            }
        }
        _ => out.push(ConfigPath {
            doc: doc.to_string(),
            keys: keys.clone(),
        }),
    }
}

fn leaves(v: &J, doc: &str, keys: &mut Vec<String>, out: &mut Vec<ConfigPath>) {
    match v {
        J::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                keys.push(k.clone());
                leaves(x, doc, keys, out);
                keys.pop();
            }
        }
        _ => out.push(ConfigPath {
            doc: doc.to_string(),
            keys: keys.clone(),
        }),
    }
}

/// Whether a key holds a secret.
pub fn secret_key(k: &str) -> bool {
    let l = k.to_ascii_lowercase();
    l == "auth"
        || l == "inlinemanifests"
        || ["key", "token", "secret", "password"]
            .iter()
            .any(|s| l.contains(s))
}

/// A copy of `v` with every secret value replaced by `<redacted>`.
pub fn redact(v: &J) -> J {
    redact_against(v, None)
}

/// Redacts `v`; where `old` holds a different secret at the same place, the placeholder says
/// it changed.
fn redact_against(v: &J, old: Option<&J>) -> J {
    match v {
        J::Object(m) => J::Object(
            m.iter()
                .map(|(k, x)| {
                    let before = old.and_then(|o| o.get(k));
                    let value = if secret_key(k) {
                        let changed = old.is_some() && before != Some(x);
                        J::String(if changed { REDACTED_CHANGED } else { REDACTED }.into())
                    } else {
                        redact_against(x, before)
                    };
                    (k.clone(), value)
                })
                .collect(),
        ),
        J::Array(items) => J::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| redact_against(x, old.and_then(|o| o.get(i))))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Block YAML for a value (maps in their order, strings quoted when plain style would not
/// read back as the same string).
pub fn render_yaml(v: &J) -> String {
    let mut out = String::new();
    block(v, 0, &mut out);
    out
}

fn block(v: &J, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        J::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                out.push_str(&pad);
                out.push_str(&scalar_text(&J::String(k.clone())));
                out.push(':');
                value_after_key(x, indent, out);
            }
        }
        J::Array(items) if !items.is_empty() => {
            for x in items {
                out.push_str(&pad);
                out.push('-');
                match x {
                    J::Object(m) if !m.is_empty() => {
                        // The first key on the dash line, the rest aligned under it.
                        let mut nested = String::new();
                        block(x, indent + 2, &mut nested);
                        out.push(' ');
                        out.push_str(nested.trim_start());
                    }
                    J::Array(a) if !a.is_empty() => {
                        out.push('\n');
                        block(x, indent + 2, out);
                    }
                    _ => {
                        out.push(' ');
                        out.push_str(&inline(x));
                        out.push('\n');
                    }
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

fn value_after_key(x: &J, indent: usize, out: &mut String) {
    match x {
        J::Object(m) if !m.is_empty() => {
            out.push('\n');
            block(x, indent + 2, out);
        }
        J::Array(a) if !a.is_empty() => {
            out.push('\n');
            block(x, indent + 2, out);
        }
        _ => {
            out.push(' ');
            out.push_str(&inline(x));
            out.push('\n');
        }
    }
}

fn inline(v: &J) -> String {
    match v {
        J::Object(_) => "{}".into(),
        J::Array(_) => "[]".into(),
        J::Null => "null".into(),
        other => scalar_text(other),
    }
}

fn scalar_text(v: &J) -> String {
    match v {
        J::String(s) => {
            let plain = !s.is_empty()
                && s.trim() == s
                && !s.contains(['\n', ':', '#', '{', '}', '[', ']', ',', '"', '\'', '`'])
                && !s.starts_with(['-', '?', '!', '&', '*', '|', '>', '%', '@', '<'])
                && !matches!(
                    s.to_ascii_lowercase().as_str(),
                    "true" | "false" | "null" | "~" | "yes" | "no" | "on" | "off"
                )
                && s.parse::<f64>().is_err();
            if plain {
                s.clone()
            } else {
                J::String(s.clone()).to_string()
            }
        }
        other => other.to_string(),
    }
}

/// Renders a config's documents (redacted against `old` when given) as YAML text.
fn render_config(config: &Config, old: Option<&Config>) -> String {
    config
        .iter()
        .map(|d| {
            let before = old.and_then(|o| o.iter().find(|x| doc_id(x) == doc_id(d)));
            render_yaml(&redact_against(d, before.or(old.map(|_| &J::Null))))
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The unified diff (3 lines of context) between two configs, both redacted; empty when they
/// render the same.
pub fn redacted_diff(old: &Config, new: &Config, label: &str) -> String {
    let a = render_config(old, None);
    let b = render_config(new, Some(old));
    unified(
        &a,
        &b,
        &format!("{label} (running)"),
        &format!("{label} (patched)"),
    )
}

/// A unified diff of two texts by lines (longest common subsequence; texts are a few hundred
/// lines).
fn unified(a: &str, b: &str, from: &str, to: &str) -> String {
    let x: Vec<&str> = a.lines().collect();
    let y: Vec<&str> = b.lines().collect();
    if x == y {
        return String::new();
    }
    // lcs[i][j]: the length of the LCS of x[i..] and y[j..].
    let mut lcs = vec![vec![0usize; y.len() + 1]; x.len() + 1];
    for i in (0..x.len()).rev() {
        for j in (0..y.len()).rev() {
            lcs[i][j] = if x[i] == y[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // The edit script: (tag, line index in x, line index in y).
    let mut ops: Vec<(char, usize, usize)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < x.len() || j < y.len() {
        if i < x.len() && j < y.len() && x[i] == y[j] {
            ops.push((' ', i, j));
            i += 1;
            j += 1;
        } else if i < x.len() && (j == y.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removals before additions, as diff(1) shows them.
            ops.push(('-', i, j));
            i += 1;
        } else {
            ops.push(('+', i, j));
            j += 1;
        }
    }
    const CONTEXT: usize = 3;
    let mut out = format!("--- {from}\n+++ {to}\n");
    let mut k = 0;
    while k < ops.len() {
        if ops[k].0 == ' ' {
            k += 1;
            continue;
        }
        // A hunk: from CONTEXT before this change to CONTEXT after the last change that is
        // at most 2*CONTEXT unchanged lines from the previous one.
        let start = k.saturating_sub(CONTEXT);
        let mut end = k;
        let mut last_change = k;
        while end < ops.len() {
            if ops[end].0 != ' ' {
                last_change = end;
            } else if end - last_change > 2 * CONTEXT {
                break;
            }
            end += 1;
        }
        let end = (last_change + CONTEXT + 1).min(ops.len());
        let hunk = &ops[start..end];
        let old_len = hunk.iter().filter(|o| o.0 != '+').count();
        let new_len = hunk.iter().filter(|o| o.0 != '-').count();
        let (o0, n0) = (hunk[0].1, hunk[0].2);
        out.push_str(&format!(
            "@@ -{},{} +{},{} @@\n",
            if old_len == 0 { o0 } else { o0 + 1 },
            old_len,
            if new_len == 0 { n0 } else { n0 + 1 },
            new_len
        ));
        for (tag, xi, yi) in hunk {
            let line = if *tag == '+' { y[*yi] } else { x[*xi] };
            out.push(*tag);
            out.push_str(line);
            out.push('\n');
        }
        k = end;
    }
    out
}
