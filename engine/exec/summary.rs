//! The report a stopped session hands to the operator: what was done, what was rolled back,
//! what is left, and the exact commands to run next.
//!
//! It is built from the plan and the journal state alone, so `runbook status` and a live run
//! tell the same story.

use super::redact::Redactor;
use crate::event::{Report, StepError, Stop};
use crate::journal::{RunState, StepState};
use crate::plan::Plan;

/// Builds the report for `stop`.
pub fn build(plan: &Plan, state: &RunState, stop: Stop, redact: &Redactor) -> Report {
    let run_id = state
        .header
        .as_ref()
        .map(|h| h.run_id.clone())
        .unwrap_or_default();
    let mut r = Report {
        run_id: run_id.clone(),
        runbook: plan.runbook.clone(),
        stop,
        done: Vec::new(),
        skipped: Vec::new(),
        failed: None,
        rolled_back: Vec::new(),
        rollback_failed: Vec::new(),
        not_undone: Vec::new(),
        in_doubt: state.in_doubt_steps().into_iter().map(|d| d.step).collect(),
        not_run: Vec::new(),
        next: Vec::new(),
    };
    for step in plan.steps() {
        let id = step.id.clone();
        match state.step_state(&step.id) {
            StepState::Succeeded { .. } => {
                if matches!(stop, Stop::Failed | Stop::RolledBack | Stop::Aborted) {
                    r.not_undone.push(id.clone());
                }
                r.done.push(id);
            }
            StepState::RolledBack | StepState::RollbackFailed { .. } => r.done.push(id),
            StepState::Skipped { .. } => r.skipped.push(id),
            StepState::Failed { error } => {
                r.failed = Some(StepError {
                    step: id,
                    error: redact.text(error),
                });
            }
            StepState::Refused { guard, reason } => {
                r.failed = Some(StepError {
                    step: id,
                    error: format!("guard `{guard}` refused: {}", redact.text(reason)),
                });
            }
            StepState::Pending => r.not_run.push(id),
            _ => {}
        }
    }
    for id in &state.step_order {
        let Some(rec) = state.step(id) else { continue };
        if rec.rollback_of.is_none() {
            continue;
        }
        match &rec.state {
            StepState::Succeeded { .. } => r.rolled_back.push(id.clone()),
            StepState::Failed { error } => r.rollback_failed.push(StepError {
                step: id.clone(),
                error: redact.text(error),
            }),
            _ => {}
        }
    }
    r.next = next_steps(&r, state);
    r
}

fn next_steps(r: &Report, state: &RunState) -> Vec<String> {
    let run = &r.run_id;
    let mut next = Vec::new();
    for step in &r.in_doubt {
        next.push(format!(
            "step `{step}` was interrupted and its effect is unknown: check it by hand"
        ));
    }
    match r.stop {
        Stop::Succeeded | Stop::DryRun => {}
        Stop::AwaitingApproval => {
            for (id, rec) in &state.steps {
                if let StepState::AwaitingApproval { prompt } = &rec.state {
                    next.push(format!("approval needed for `{id}`: {prompt}"));
                    next.push(format!(
                        "approve it with `runbook approve {run} {id}`, then `runbook resume {run}`"
                    ));
                }
            }
            next.push(format!("or roll back with `runbook abort {run}`"));
        }
        Stop::GuardRefused => {
            if let Some(f) = &r.failed {
                next.push(format!(
                    "`{}`: {}; nothing unsafe was done",
                    f.step, f.error
                ));
            }
            next.push(format!(
                "fix what the guard reports, then `runbook resume {run}` checks it again"
            ));
            next.push(format!("or roll back with `runbook abort {run}`"));
        }
        Stop::Failed | Stop::RolledBack | Stop::Aborted => {
            if let Some(f) = &r.failed {
                next.push(format!("`{}` failed: {}", f.step, f.error));
            }
            for f in &r.rollback_failed {
                next.push(format!(
                    "rollback `{}` failed: {}; undo it and the steps before it by hand",
                    f.step, f.error
                ));
            }
            if !r.not_undone.is_empty() {
                next.push(format!(
                    "these completed steps were not undone and their effects remain: {}",
                    r.not_undone.join(", ")
                ));
            }
            next.push(format!(
                "inspect with `runbook status {run}`; once the cause is fixed, start a new run"
            ));
        }
    }
    next
}
