//! The report a stopped session hands to the operator: what was done, what was rolled back,
//! what is left, and the exact commands to run next.
//!
//! It is built from the plan and the journal state alone, so `runbook status` and a live run
//! tell the same story.

use super::attempt::IN_DOUBT_PROMPT;
use super::local::effect_free;
use super::redact::Redactor;
use crate::event::{Report, StepError, Stop};
use crate::journal::exposure::Effect;
use crate::journal::{InDoubtResolution, RunState, StepState};
use crate::plan::{Plan, Step};

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
        preflight_overridden: overridden_lines(state),
    };
    let rolling_back = matches!(stop, Stop::Failed | Stop::RolledBack | Stop::Aborted)
        || state.abort_requested.is_some();
    for step in plan.steps() {
        let id = step.id.clone();
        match state.step_state(&step.id) {
            StepState::Succeeded { .. } => r.done.push(id.clone()),
            StepState::RolledBack | StepState::RollbackFailed { .. } => {
                // A step that failed and was then undone is still the step that failed.
                match state.step(&step.id).and_then(|rec| rec.failure.as_ref()) {
                    Some(error) => {
                        r.failed = Some(StepError {
                            step: id.clone(),
                            error: redact.text(error),
                        });
                    }
                    None => r.done.push(id.clone()),
                }
            }
            StepState::Skipped { .. } => r.skipped.push(id.clone()),
            StepState::Failed { error } => {
                r.failed = Some(StepError {
                    step: id.clone(),
                    error: redact.text(error),
                });
            }
            StepState::Refused { guard, reason } => {
                r.failed = Some(StepError {
                    step: id.clone(),
                    error: format!("guard `{guard}` refused: {}", redact.text(reason)),
                });
            }
            StepState::Pending => r.not_run.push(id.clone()),
            _ => {}
        }
        if rolling_back && let Some(reason) = not_undone(state, step) {
            r.not_undone.push(StepError {
                step: id,
                error: redact.text(&reason),
            });
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

/// Every main step whose effect may remain, with why (for `runbook status`; the live report
/// lists the same in [`Report::not_undone`]).
pub fn not_undone_all(plan: &Plan, state: &RunState) -> Vec<StepError> {
    plan.steps()
        .filter_map(|step| {
            not_undone(state, step).map(|error| StepError {
                step: step.id.clone(),
                error,
            })
        })
        .collect()
}

/// Why the effect of `step` remains, if its action may have taken effect and its rollbacks
/// did not all succeed.
fn not_undone(state: &RunState, step: &Step) -> Option<String> {
    let rec = state.step(&step.id)?;
    // A step with no action, or one that only writes to the journal or waits, left nothing.
    let leaves_nothing = step
        .action
        .as_ref()
        .is_none_or(|c| effect_free(&c.name) || c.name == "sleep");
    if !rec.exposure.may_have_acted() || (leaves_nothing && step.rollback.is_empty()) {
        return None;
    }
    let what = match rec.exposure.effect() {
        Effect::Done => "its action took effect",
        _ => "its action may have taken effect",
    };
    let in_doubt = match &rec.state {
        StepState::Started { .. } => true,
        StepState::InDoubtResolved { resolution, .. } => {
            *resolution == InDoubtResolution::AskOperator
        }
        StepState::AwaitingApproval { prompt } => prompt.starts_with(IN_DOUBT_PROMPT),
        _ => false,
    };
    if in_doubt {
        return Some(format!(
            "still in doubt ({what}): check it by hand, or approve it so its rollback can run"
        ));
    }
    if step.rollback.is_empty() {
        return Some(format!("no rollback declared ({what})"));
    }
    for rid in &step.rollback {
        let Some(rb) = state.step(rid) else {
            return Some(format!(
                "rollback `{rid}` not attempted: the rollback path stopped at a newer step that could not be undone ({what})"
            ));
        };
        match &rb.state {
            StepState::Succeeded { .. } => {}
            StepState::Failed { error } if rb.guards.last().is_some_and(|g| !g.passed) => {
                return Some(format!("rollback `{rid}` refused: {error}"));
            }
            StepState::Failed { error } => {
                return Some(format!("rollback `{rid}` failed: {error}"));
            }
            other => {
                return Some(format!(
                    "rollback `{rid}` did not finish (it is {}): `runbook resume` continues it",
                    other.name()
                ));
            }
        }
    }
    None
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
        Stop::Succeeded => {
            // A step may leave work for afterwards (etcd.diagnose: replace each dead machine).
            for id in &state.step_order {
                if let Some(StepState::Succeeded { outputs }) = state.step(id).map(|s| &s.state)
                    && let Some(serde_json::Value::Array(lines)) = outputs.get("next_steps")
                {
                    next.extend(lines.iter().filter_map(|l| l.as_str()).map(str::to_owned));
                }
            }
        }
        Stop::DryRun => {}
        Stop::AwaitingApproval => {
            for (id, rec) in &state.steps {
                if let StepState::AwaitingApproval { prompt } = &rec.state {
                    next.push(format!("approval needed for `{id}`: {prompt}"));
                    next.push(format!(
                        "approve it with `runbook approve {run} {id}`, then `runbook resume {run}`"
                    ));
                }
            }
            if state.abort_requested.is_some() {
                next.push(format!(
                    "the abort waits for these approvals; `runbook abort {run}` (or `resume`) then continues it"
                ));
            } else {
                next.push(format!("or roll back with `runbook abort {run}`"));
            }
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
                    "the rollback path stopped at `{}` ({}): undoing older steps on top of it could make things worse; undo it and the steps before it by hand",
                    f.step, f.error
                ));
            }
            if !r.not_undone.is_empty() {
                let steps: Vec<&str> = r.not_undone.iter().map(|n| n.step.as_str()).collect();
                next.push(format!(
                    "the effects of {} remain (see `not undone`): check them by hand",
                    steps.join(", ")
                ));
            }
            next.push(format!(
                "inspect with `runbook status {run}`; once the cause is fixed, start a new run"
            ));
        }
    }
    next
}

/// One line per overridden preflight: `step: overridden by USER on HOST (REASON): findings`.
pub fn overridden_lines(state: &RunState) -> Vec<String> {
    let Some(o) = &state.preflight_override else {
        return Vec::new();
    };
    state
        .preflight_overridden
        .iter()
        .map(|(step, findings)| {
            let what: Vec<String> = findings
                .iter()
                .map(|f| {
                    format!(
                        "{} {}",
                        f["scope"].as_str().unwrap_or("?"),
                        f["check"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            format!(
                "{step}: overridden by {} on {} ({}): {}",
                o.by,
                o.host,
                o.reason,
                what.join(", ")
            )
        })
        .collect()
}
