//! `runbook actions`: the catalog of actions, guards and wait conditions, for authors
//! (`--output json` gives the same catalog as data, for editors and scripts).

use std::fmt::Write as _;

use crate::action::{self, ArgSpec};
use crate::cli::args::DataFormat;
use crate::cli::{Error, print_json, print_out};
use crate::condition;
use crate::dsl::duration;

fn args(out: &mut String, specs: &[ArgSpec]) {
    for a in specs {
        let req = match (a.required, a.default) {
            (_, Some(d)) => format!("default {}", d.to_json()),
            (true, None) => "required".into(),
            (false, None) => "optional".into(),
        };
        let _ = writeln!(
            out,
            "      {:<16} {} ({req}): {}",
            a.name,
            a.ty.describe(),
            a.doc
        );
    }
}

fn args_json(specs: &[ArgSpec]) -> serde_json::Value {
    specs
        .iter()
        .map(|a| {
            serde_json::json!({
                "name": a.name,
                "type": a.ty.describe(),
                "required": a.required && a.default.is_none(),
                "default": a.default.map(|d| d.to_json()),
                "doc": a.doc,
            })
        })
        .collect()
}

fn hazard_name(h: &action::Hazard) -> String {
    serde_json::to_value(h)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// The catalog as one JSON document.
fn catalog_json() -> serde_json::Value {
    let actions: Vec<serde_json::Value> = action::ACTIONS
        .iter()
        .map(|a| {
            serde_json::json!({
                "name": a.name,
                "summary": a.summary,
                "idempotency": a.idempotency.name(),
                "disruptive": a.hazard(|_| None).map(|h| hazard_name(&h)),
                "args": args_json(a.args),
                "outputs": a.outputs,
            })
        })
        .collect();
    let guards: Vec<serde_json::Value> = condition::GUARDS
        .iter()
        .map(|g| {
            serde_json::json!({
                "name": g.name,
                "summary": g.summary,
                "protects": g.protects.iter().map(hazard_name).collect::<Vec<_>>(),
                "args": args_json(g.args),
            })
        })
        .collect();
    let conditions: Vec<serde_json::Value> = condition::CONDITIONS
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name,
                "summary": c.summary,
                "timeout_ms": u64::try_from(c.timeout.as_millis()).unwrap_or(u64::MAX),
                "interval_ms": u64::try_from(c.interval.as_millis()).unwrap_or(u64::MAX),
                "args": args_json(c.args),
            })
        })
        .collect();
    serde_json::json!({ "actions": actions, "guards": guards, "conditions": conditions })
}

/// Prints the catalog.
pub fn run(output: DataFormat) -> Result<(), Error> {
    if output == DataFormat::Json {
        return print_json(&catalog_json());
    }
    let mut out = String::from("actions\n");
    for a in action::ACTIONS {
        let disruptive = match a.hazard(|_| None) {
            Some(h) => format!(" [disruptive: {}]", h.describe()),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  {}  ({}){disruptive}\n      {}",
            a.name,
            a.idempotency.name(),
            a.summary
        );
        args(&mut out, a.args);
        if !a.outputs.is_empty() {
            let _ = writeln!(out, "      outputs: {}", a.outputs.join(", "));
        }
    }
    out.push_str("\nguards\n");
    for g in condition::GUARDS {
        let protects = if g.protects.is_empty() {
            String::new()
        } else {
            format!(
                " [protects: {}]",
                g.protects
                    .iter()
                    .map(hazard_name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let _ = writeln!(out, "  {}{protects}\n      {}", g.name, g.summary);
        args(&mut out, g.args);
    }
    out.push_str("\nwait conditions\n");
    for c in condition::CONDITIONS {
        let _ = writeln!(
            out,
            "  {}  (timeout {}, every {})\n      {}",
            c.name,
            duration::format(c.timeout),
            duration::format(c.interval),
            c.summary
        );
        args(&mut out, c.args);
    }
    print_out(&out)
}
