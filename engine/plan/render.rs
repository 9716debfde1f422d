//! Renderings of a plan for `runbook plan`: text for operators, DOT and Mermaid for pictures,
//! JSON for tools (documented in `docs/cli.md`).
//!
//! Pure functions from [`Plan`] to `String`; the CLI decides where they go.

use std::fmt::Write as _;

use serde_json::json;

use super::{Guard, Plan, Role, Step, Value, Wait};
use crate::dsl::duration;

/// The version of the JSON rendering's shape.
pub const JSON_FORMAT: u32 = 1;

fn value_text(v: &Value) -> String {
    match v {
        Value::Literal(serde_json::Value::String(s)) => s.clone(),
        Value::Literal(serde_json::Value::Array(items)) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| match i {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            format!("[{}]", parts.join(","))
        }
        Value::Literal(other) => other.to_string(),
        Value::Expr(e) => format!("${{{{ {} }}}}", e.expr),
        Value::Template { template } => template.clone(),
        Value::List { items } => format!(
            "[{}]",
            items.iter().map(value_text).collect::<Vec<_>>().join(",")
        ),
        Value::Map { entries } => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, v)| format!("{k}: {}", value_text(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// How a plan-time argument is shown in every rendering (text and JSON), redacted as the
/// dry run's diffs are, by the same functions: a config `patch` by key
/// (`machine_config::redact`: keys, tokens, secrets, passwords, inline manifests), inline
/// `manifests` by Secret (`kube_apply::redact`: a Secret's `data`/`stringData` values).
fn shown_literal(key: &str, v: &serde_json::Value) -> Option<serde_json::Value> {
    use crate::cluster::effects::kube_apply;
    match key {
        "patch" => Some(crate::machine_config::redact(v)),
        "manifests" => Some(match v {
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(kube_apply::redact).collect())
            }
            other => kube_apply::redact(other),
        }),
        _ => None,
    }
}

fn args_text(args: &std::collections::BTreeMap<String, Value>) -> String {
    args.iter()
        .map(|(k, v)| match v {
            Value::Literal(p) => match shown_literal(k, p) {
                Some(shown) => format!("{k}={shown}"),
                None => format!("{k}={}", value_text(v)),
            },
            _ => format!("{k}={}", value_text(v)),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `args` with each plan-time value as [`shown_literal`] shows it.
fn shown_args(args: &mut std::collections::BTreeMap<String, Value>) {
    for (k, v) in args.iter_mut() {
        if let Value::Literal(p) = v
            && let Some(shown) = shown_literal(k, p)
        {
            *p = shown;
        }
    }
}

/// A copy of `step` for the JSON rendering, its arguments shown as in the text one.
fn shown_step(step: &Step) -> Step {
    let mut s = step.clone();
    if let Some(call) = s.action.as_mut() {
        shown_args(&mut call.args);
    }
    for g in &mut s.guards {
        if let Guard::Named { args, .. } = g {
            shown_args(args);
        }
    }
    if let Some(w) = s.wait.as_mut() {
        shown_args(&mut w.args);
    }
    s
}

fn guard_text(g: &Guard) -> String {
    match g {
        Guard::Named { name, args } if args.is_empty() => name.clone(),
        Guard::Named { name, args } => format!("{name}({})", args_text(args)),
        Guard::Expr { expr, .. } => format!("expr `{}`", expr.expr),
    }
}

fn wait_text(w: &Wait) -> String {
    let args = if w.args.is_empty() {
        String::new()
    } else {
        format!("({})", args_text(&w.args))
    };
    format!(
        "{}{args} timeout {} every {}",
        w.condition,
        duration::format(w.timeout),
        duration::format(w.interval)
    )
}

fn step_lines(out: &mut String, n: Option<usize>, s: &Step) {
    let head = match n {
        Some(n) => format!("{n:>3}. "),
        None => "   - ".into(),
    };
    let what = match &s.action {
        Some(a) if a.args.is_empty() => a.name.clone(),
        Some(a) => format!("{} {}", a.name, args_text(&a.args)),
        None if s.approval.is_some() => "approval".into(),
        None => "wait".into(),
    };
    let _ = writeln!(out, "{head}{}  {what}", s.id);
    let pad = "       ";
    if !s.description.is_empty() {
        let _ = writeln!(out, "{pad}# {}", s.description);
    }
    if let Some(h) = s.hazard {
        let _ = writeln!(out, "{pad}disruptive: {}", h.describe());
    }
    if let Some(w) = &s.when {
        let _ = writeln!(out, "{pad}when:   {}", w.expr);
    }
    if let Some(a) = &s.approval {
        let yes = if a.allow_yes { " (--yes allowed)" } else { "" };
        let _ = writeln!(out, "{pad}approve: {}{yes}", a.prompt);
    }
    for g in &s.guards {
        let _ = writeln!(out, "{pad}guard:  {}", guard_text(g));
    }
    if let Some(u) = &s.unguarded {
        let _ = writeln!(out, "{pad}UNGUARDED: {u}");
    }
    if let Some(w) = &s.wait {
        let _ = writeln!(out, "{pad}wait:   {}", wait_text(w));
    }
    if let Some(v) = &s.verify {
        let _ = writeln!(out, "{pad}verify: {}", wait_text(v));
    }
    if s.retry.attempts > 1 {
        let backoff = match s.retry.backoff {
            crate::dsl::ast::Backoff::Fixed => format!("{} apart", duration::format(s.retry.delay)),
            crate::dsl::ast::Backoff::Exponential => format!(
                "exponential backoff from {} up to {}",
                duration::format(s.retry.delay),
                duration::format(s.retry.max_delay)
            ),
        };
        let _ = writeln!(out, "{pad}retry:  {} attempts, {backoff}", s.retry.attempts);
    }
    if let Some(t) = s.timeout {
        let _ = writeln!(out, "{pad}timeout: {}", duration::format(t));
    }
    if s.action.is_some() {
        let _ = writeln!(out, "{pad}on interruption: {}", s.idempotency.name());
    }
    if !s.rollback.is_empty() {
        let _ = writeln!(out, "{pad}rollback: {}", s.rollback.join(", "));
    }
}

/// The operator's view: steps in execution order with their safety details.
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "runbook {}: {}", plan.runbook, plan.description);
    let _ = writeln!(out, "source  {}", plan.source);
    let _ = writeln!(out, "hash    {}", plan.hash);
    if !plan.params.is_empty() {
        let _ = writeln!(out, "params");
        for (k, v) in &plan.params {
            let shown = serde_json::to_value(v).unwrap_or_default();
            let shown = match shown {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            let _ = writeln!(out, "  {k} = {shown}");
        }
    }
    let _ = writeln!(out, "\nsteps ({}, in order)", plan.len());
    for (i, s) in plan.steps().enumerate() {
        step_lines(&mut out, Some(i + 1), s);
    }
    if !plan.rollbacks.is_empty() {
        let _ = writeln!(
            out,
            "\nrollbacks (run newest first when a later step fails)"
        );
        for s in &plan.rollbacks {
            step_lines(&mut out, None, s);
        }
    }
    out
}

fn label(s: &Step) -> String {
    match &s.action {
        Some(a) => format!("{}\\n{}", s.id, a.name),
        None => s.id.clone(),
    }
}

fn escape_dot(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace("\\\\n", "\\n")
}

/// Graphviz DOT: steps as boxes (disruptive ones red), `needs` edges solid, rollbacks dashed.
pub fn dot(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", escape_dot(&plan.runbook));
    let _ = writeln!(out, "  rankdir=TB;");
    let _ = writeln!(
        out,
        "  node [shape=box, style=rounded, fontname=\"Helvetica\"];"
    );
    for s in plan.steps() {
        let style = if s.hazard.is_some() {
            ", color=red, penwidth=2"
        } else if s.approval.is_some() {
            ", shape=diamond"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\"{style}];",
            escape_dot(&s.id),
            escape_dot(&label(s))
        );
    }
    for s in &plan.rollbacks {
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\", style=\"rounded,dashed\", color=gray40];",
            escape_dot(&s.id),
            escape_dot(&label(s))
        );
    }
    for s in plan.steps() {
        for dep in &s.needs {
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\";",
                escape_dot(dep),
                escape_dot(&s.id)
            );
        }
    }
    for s in &plan.rollbacks {
        if let Role::Rollback { for_step } = &s.role {
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\" [style=dashed, color=gray40, label=\"on failure\"];",
                escape_dot(for_step),
                escape_dot(&s.id)
            );
        }
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart, for pasting into Markdown docs.
pub fn mermaid(plan: &Plan) -> String {
    let ids: std::collections::BTreeMap<&str, String> = plan
        .steps()
        .chain(plan.rollbacks.iter())
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), format!("s{i}")))
        .collect();
    let id = |s: &str| ids.get(s).cloned().unwrap_or_else(|| "missing".into());
    let text = |s: &Step| {
        let l = match &s.action {
            Some(a) => format!("{}<br/>{}", s.id, a.name),
            None => s.id.clone(),
        };
        l.replace('"', "#quot;")
    };
    let mut out = String::from("flowchart TD\n");
    for s in plan.steps() {
        let (open, close) = if s.approval.is_some() {
            ("{{", "}}")
        } else {
            ("[", "]")
        };
        let _ = writeln!(out, "    {}{open}\"{}\"{close}", id(&s.id), text(s));
        if s.hazard.is_some() {
            let _ = writeln!(out, "    class {} disruptive", id(&s.id));
        }
    }
    for s in &plan.rollbacks {
        let _ = writeln!(out, "    {}[/\"{}\"/]", id(&s.id), text(s));
        let _ = writeln!(out, "    class {} rollback", id(&s.id));
    }
    for s in plan.steps() {
        for dep in &s.needs {
            let _ = writeln!(out, "    {} --> {}", id(dep), id(&s.id));
        }
    }
    for s in &plan.rollbacks {
        if let Role::Rollback { for_step } = &s.role {
            let _ = writeln!(out, "    {} -. on failure .-> {}", id(for_step), id(&s.id));
        }
    }
    out.push_str("    classDef disruptive stroke:#c00,stroke-width:2px\n");
    out.push_str("    classDef rollback stroke-dasharray: 5 5\n");
    out
}

/// The JSON rendering documented in `docs/cli.md`.
pub fn json(plan: &Plan) -> String {
    let doc = json!({
        "format": JSON_FORMAT,
        "runbook": plan.runbook,
        "description": plan.description,
        "source": plan.source,
        "hash": plan.hash,
        "params": plan.params,
        "steps": plan.steps().map(shown_step).collect::<Vec<_>>(),
        "rollbacks": plan.rollbacks.iter().map(shown_step).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}
