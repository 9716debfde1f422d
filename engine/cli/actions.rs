//! `runbook actions`: the catalog of actions, guards and wait conditions, for authors.

use std::fmt::Write as _;

use crate::action::{self, ArgSpec};
use crate::cli::{Error, print_out};
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

/// Prints the catalog.
pub fn run() -> Result<(), Error> {
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
                    .map(|h| serde_json::to_value(h)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default())
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
