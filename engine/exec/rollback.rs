//! The rollback path: on a failure retries do not fix (or an operator's abort), undo the
//! completed steps that declared rollbacks, newest first, each journaled like any step
//! (`rollback-started` is its intent; `rollback-succeeded` / `rollback-failed` its outcome),
//! then finish the run with a report of what was done, what was undone and what is left.
//!
//! The path stops at the first rollback that fails: undoing older steps on top of a newer step
//! that could not be undone could make things worse, and the operator must look. A rollback
//! interrupted by a crash is settled like a forward step: if its action has a probe (or the
//! rollback a `verify:` condition), the probe decides; otherwise it runs again (rollback
//! actions must be idempotent). Retries of a rollback happen in memory, under its policy.

use std::time::Duration;

use super::attempt::WaitEnd;
use super::effects::{ActionCall, EffectError, Effects};
use super::schedule::{self, RollbackNext};
use super::{Error, Runner, retry};
use crate::event::Stop;
use crate::journal::{Fields, Record, RunOutcome, StepState};
use crate::plan::Step;

impl<E: Effects> Runner<'_, E> {
    /// Runs the remaining rollbacks and finishes the run.
    pub(super) async fn roll_back(&mut self) -> Result<Stop, Error> {
        let mut blocked = false;
        loop {
            let plan = self.plan;
            match schedule::next_rollback(plan, self.journal.state()) {
                RollbackNext::Done => break,
                RollbackNext::Blocked { .. } => {
                    blocked = true;
                    break;
                }
                RollbackNext::Run { forward, rollback } => {
                    self.run_rollback(forward, rollback).await?;
                }
            }
        }
        let state = self.journal.state();
        let undone = state
            .steps
            .values()
            .filter(|r| r.rollback_of.is_some() && matches!(r.state, StepState::Succeeded { .. }))
            .count();
        let (outcome, stop) = if state.abort_requested.is_some() {
            (RunOutcome::Aborted, Stop::Aborted)
        } else if !blocked && undone > 0 {
            (RunOutcome::RolledBack, Stop::RolledBack)
        } else {
            (RunOutcome::Failed, Stop::Failed)
        };
        let summary = match (blocked, undone) {
            (true, _) => "a rollback failed; the operator must finish undoing by hand".to_owned(),
            (false, 0) => "no rollback to run".to_owned(),
            (false, n) => format!("{n} rollback(s) ran"),
        };
        self.append(vec![Record::RunFinished { outcome, summary }])?;
        Ok(stop)
    }

    async fn run_rollback(&mut self, forward: &Step, rollback: &Step) -> Result<(), Error> {
        let id = rollback.id.clone();
        if matches!(
            self.journal.state().step_state(&id),
            StepState::RollingBack { .. }
        ) && self.already_undone(rollback).await
        {
            self.append(vec![Record::RollbackSucceeded { step: id }])?;
            return Ok(());
        }
        self.append(vec![Record::RollbackStarted {
            step: id.clone(),
            for_step: forward.id.clone(),
        }])?;
        let record = match self.undo(rollback).await {
            Ok(()) => Record::RollbackSucceeded { step: id },
            Err(error) => Record::RollbackFailed {
                step: id,
                error: self.redact.text(&error),
            },
        };
        self.append(vec![record])
    }

    /// For a rollback interrupted with an unknown outcome: whether its effect is there.
    async fn already_undone(&self, rollback: &Step) -> bool {
        if let Some(verify) = &rollback.verify {
            return matches!(
                self.wait_for(rollback, verify).await,
                WaitEnd::Satisfied { .. }
            );
        }
        let Some(call) = &rollback.action else {
            return false;
        };
        let Ok(args) = self.eval.args(rollback, self.journal.state(), &call.args) else {
            return false;
        };
        let empty = Fields::new();
        let probe = self
            .effects
            .probe(ActionCall {
                step: &rollback.id,
                name: &call.name,
                args: &args,
                attempt: 1,
                pre_state: &empty,
            })
            .await;
        matches!(probe, Ok(Some(true)))
    }

    /// One rollback step: `when`, guards, action (with in-memory retries), wait.
    async fn undo(&self, rollback: &Step) -> Result<(), String> {
        let state = self.journal.state();
        if let Some(when) = &rollback.when
            && !self
                .eval
                .truth(rollback, state, &when.expr)
                .map_err(|e| e.to_string())?
        {
            return Ok(());
        }
        for guard in &rollback.guards {
            let (name, verdict) = self.check_guard(rollback, guard).await;
            if !verdict.passed {
                return Err(format!("guard `{name}` refused: {}", verdict.reason));
            }
        }
        if let Some(call) = &rollback.action {
            let args = self
                .eval
                .args(rollback, state, &call.args)
                .map_err(|e| e.to_string())?;
            let empty = Fields::new();
            let mut attempt = 1;
            loop {
                let c = ActionCall {
                    step: &rollback.id,
                    name: &call.name,
                    args: &args,
                    attempt,
                    pre_state: &empty,
                };
                let result = match rollback.timeout {
                    Some(limit) => tokio::time::timeout(limit, self.effects.perform(c))
                        .await
                        .unwrap_or_else(|_| {
                            Err(EffectError::Failed {
                                message: format!("`{}` timed out", call.name),
                                retryable: true,
                            })
                        }),
                    None => self.effects.perform(c).await,
                };
                match result {
                    Ok(outcome) => {
                        for m in &outcome.messages {
                            self.message(&rollback.id, m);
                        }
                        break;
                    }
                    Err(e) => match retry::decide(&rollback.retry, attempt, e.is_retryable()) {
                        retry::AfterFailure::Retry {
                            next_attempt,
                            delay,
                        } => {
                            tokio::time::sleep(delay.min(Duration::from_secs(3600))).await;
                            attempt = next_attempt;
                        }
                        retry::AfterFailure::GiveUp => return Err(e.to_string()),
                    },
                }
            }
        }
        if let Some(wait) = &rollback.wait {
            match self.wait_for(rollback, wait).await {
                WaitEnd::Satisfied { .. } => {}
                WaitEnd::TimedOut { elapsed_ms, .. } => {
                    return Err(format!(
                        "wait `{}` timed out after {elapsed_ms} ms",
                        wait.condition
                    ));
                }
                WaitEnd::Error(e) => return Err(format!("wait `{}`: {e}", wait.condition)),
            }
        }
        Ok(())
    }
}
