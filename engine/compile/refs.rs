//! Which steps a declaration's expressions mention (`steps.<id>…`).
//!
//! The compiler gives each step only the names its expressions use: the expression checker
//! then sees exactly those, and the plan's `scope` (declared id → concrete id, read by the
//! executor to build `steps` for run-time evaluation) stays small. Without this, every step of
//! a long runbook would carry every earlier step, quadratic in memory.

use std::collections::BTreeSet;

use crate::dsl::ast::{ArgValue, Args, Guard, Step, TemplatePart, Wait};

fn scan(text: &str, out: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(i) = rest.find("steps") {
        let before_ok = rest[..i]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let after = rest[i + 5..].trim_start();
        rest = &rest[i + 5..];
        if !before_ok {
            continue;
        }
        let name = if let Some(a) = after.strip_prefix('.') {
            a.trim_start()
        } else if let Some(a) = after.strip_prefix('[') {
            a.trim_start().trim_start_matches(['"', '\''])
        } else {
            continue;
        };
        let id: String = name
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !id.is_empty() {
            out.insert(id);
        }
    }
}

fn args(a: &Args, out: &mut BTreeSet<String>) {
    for (_, v) in a {
        value(v, out);
    }
}

fn value(v: &ArgValue, out: &mut BTreeSet<String>) {
    match v {
        ArgValue::Literal(_) => {}
        ArgValue::Expr(e) => scan(&e.text, out),
        ArgValue::Template(parts, _) => {
            for p in parts {
                if let TemplatePart::Expr(e) = p {
                    scan(&e.text, out);
                }
            }
        }
        ArgValue::List(items, _) => items.iter().for_each(|i| value(i, out)),
        ArgValue::Map(entries, _) => entries.iter().for_each(|(_, v)| value(v, out)),
    }
}

fn wait(w: &Option<Wait>, out: &mut BTreeSet<String>) {
    if let Some(w) = w {
        args(&w.args, out);
    }
}

/// Step ids mentioned by `steps.<id>` (or `steps["id"]`) in a step's expressions (not its
/// nested steps).
pub fn mentioned(step: &Step) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(w) = &step.when {
        scan(&w.text, &mut out);
    }
    if let Some(a) = &step.action {
        args(&a.args, &mut out);
    }
    for g in &step.guards {
        match g {
            Guard::Named { args: a, .. } => args(a, &mut out),
            Guard::Expr { expr, .. } => scan(&expr.text, &mut out),
        }
    }
    wait(&step.wait, &mut out);
    wait(&step.verify, &mut out);
    for (_, e) in &step.outputs {
        scan(&e.text, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_step_references() {
        let mut out = BTreeSet::new();
        scan(
            "steps.a.x + steps .b.y + mysteps.c + steps[\"d\"].z + params.steps",
            &mut out,
        );
        assert_eq!(
            out,
            BTreeSet::from(["a".to_string(), "b".to_string(), "d".to_string()])
        );
    }
}
