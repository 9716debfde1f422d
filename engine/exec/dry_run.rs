//! `--dry-run`: walk the plan and say what would happen, with no side effect and no journal.
//!
//! Expression guards and `when` are evaluated read-only against the params; anything that
//! reads `steps.<id>` cannot be known before the run and is reported as checked at run time.
//! Named guards and wait conditions need fresh cluster observations, so they are reported as
//! "would check". Nothing is written: no run directory, no journal, no lock.

use super::eval::Evaluator;
use super::redact::Redactor;
use crate::event::{Event, Report, Stop};
use crate::journal::RunState;
use crate::plan::{Guard, Plan, Step};

use super::EventSink;

/// Walks `plan` and emits one [`Event::DryRun`] per step, then [`Event::Stopped`].
/// Stops as [`Stop::GuardRefused`] if an expression guard would refuse, else [`Stop::DryRun`].
pub fn dry_run(plan: &Plan, events: &dyn EventSink) -> Report {
    let redact = Redactor::new(plan);
    let eval = Evaluator::new(plan).sharing(redact.derived());
    let state = RunState::default();
    let mut refused = false;
    let mut done = Vec::new();
    for step in plan.steps() {
        let lines = describe(step, &eval, &state, &mut refused)
            .into_iter()
            .map(|l| redact.text(&l))
            .collect();
        events.emit(&Event::DryRun {
            step: step.id.clone(),
            lines,
        });
        done.push(step.id.clone());
    }
    let report = Report {
        run_id: String::new(),
        runbook: plan.runbook.clone(),
        stop: if refused {
            Stop::GuardRefused
        } else {
            Stop::DryRun
        },
        done: Vec::new(),
        skipped: Vec::new(),
        failed: None,
        rolled_back: Vec::new(),
        rollback_failed: Vec::new(),
        not_undone: Vec::new(),
        in_doubt: Vec::new(),
        not_run: done,
        next: vec!["dry run: nothing was done; run without --dry-run to execute".into()],
        preflight_overridden: Vec::new(),
    };
    events.emit(&Event::Stopped {
        report: report.clone(),
    });
    report
}

fn describe(step: &Step, eval: &Evaluator, state: &RunState, refused: &mut bool) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(when) = &step.when {
        lines.push(match eval.truth(step, state, &when.expr) {
            Ok(true) => format!("when `{}`: true, would run", when.expr),
            Ok(false) => {
                lines.push(format!("when `{}`: false, would skip", when.expr));
                return lines;
            }
            Err(_) => format!("when `{}`: decided at run time", when.expr),
        });
    }
    if let Some(a) = &step.approval {
        let yes = if a.allow_yes { " (--yes approves)" } else { "" };
        lines.push(format!("would ask for approval: {}{yes}", a.prompt));
    }
    for guard in &step.guards {
        lines.push(match guard {
            Guard::Named { name, .. } => {
                format!("would check guard `{name}` from fresh observations")
            }
            Guard::Expr { expr, message } => match eval.truth(step, state, &expr.expr) {
                Ok(true) => format!("guard `{}`: passes now", expr.expr),
                Ok(false) => {
                    *refused = true;
                    format!("guard `{}`: WOULD REFUSE: {message}", expr.expr)
                }
                Err(_) => format!("guard `{}`: checked at run time", expr.expr),
            },
        });
    }
    if let Some(call) = &step.action {
        let args: Vec<String> = call
            .args
            .iter()
            .map(|(k, v)| match eval.arg(step, state, v) {
                Ok(serde_json::Value::String(s)) => format!("{k}={s}"),
                // A config patch may hold keys and tokens: redacted by path, as its diff is.
                Ok(v) if k == "patch" => format!("{k}={}", crate::machine_config::redact(&v)),
                Ok(v) => format!("{k}={v}"),
                Err(_) => format!("{k}=<at run time>"),
            })
            .collect();
        let timeout = step
            .timeout
            .map(|t| format!(" (timeout {})", crate::dsl::duration::format(t)))
            .unwrap_or_default();
        lines.push(format!(
            "would run `{}` {}{timeout}",
            call.name,
            args.join(" ")
        ));
        if step.retry.attempts > 1 {
            lines.push(format!("up to {} attempts", step.retry.attempts));
        }
    }
    if let Some(w) = &step.wait {
        lines.push(format!(
            "would wait for `{}` up to {}",
            w.condition,
            crate::dsl::duration::format(w.timeout)
        ));
    }
    if !step.rollback.is_empty() {
        lines.push(format!(
            "on a later failure, rolled back by {}",
            step.rollback.join(", ")
        ));
    }
    if lines.is_empty() {
        lines.push("checkpoint only".into());
    }
    lines
}
