//! The rollback path: on a failure retries do not fix (or an operator's abort), undo every
//! step whose action *may have taken effect* (see `journal::exposure`: it succeeded, it failed
//! after its call was sent, or it is in doubt), newest first, then finish the run with a
//! report of what was done, what was undone and every effect that remains.
//!
//! A rollback step runs like a forward step, record for record: `rollback-started` declares
//! it (which forward step it undoes), then per attempt `step-started` (the intent, fsynced)
//! → its guards, checked fresh right before the side effect → the action under its timeout
//! (`action-completed` / `action-failed` / `action-not-sent`) → `retry-scheduled` under its
//! retry policy → its wait → `rollback-succeeded`. So a crash anywhere resumes it from the
//! journal without repeating a non-idempotent rollback action: an interrupted attempt is
//! settled by `Runner::resolve` (`in_doubt.rs`) (rerun if idempotent, else its verify condition or probe, else
//! an operator), exactly like a forward step.
//!
//! A rollback whose `verify:` condition already holds before its first attempt (the effect it
//! would restore is there, e.g. the node is already back in maintenance) is not run at all.
//!
//! A rollback refused by its guard is journaled (`guard-refused`, then `rollback-failed`) and
//! reported as "not undone"; the path stops at it, as at any rollback that fails: undoing
//! older steps on top of a newer step that could not be undone could make things worse, and
//! the operator must look.
//!
//! `runbook abort` first settles in-doubt main steps (the same `resolve`); one that cannot be
//! settled without an operator pauses the abort at an approval whose prompt `--yes` never
//! answers, naming the step.

use std::time::Duration;

use super::attempt::{AfterWait, IN_DOUBT_PROMPT, WaitEnd};
use super::effects::{ActionCall, CheckCall, EffectError, Effects};
use super::retry::{self, AfterFailure};
use super::schedule::{self, RollbackNext};
use super::{Error, Runner};
use crate::event::Stop;
use crate::journal::{Fields, InDoubtResolution, Record, RunOutcome, StepState, time};
use crate::plan::Step;

/// The record for an action call that returned `e`: `action-not-sent` when the error proves
/// the call never left the process, else `action-failed` (the call may have taken effect).
pub(super) fn failed_call(step: &str, attempt: u32, error: String, e: &EffectError) -> Record {
    if e.is_before_sending() {
        Record::ActionNotSent {
            step: step.to_owned(),
            attempt,
            error,
            retryable: e.is_retryable(),
        }
    } else {
        Record::ActionFailed {
            step: step.to_owned(),
            attempt,
            error,
            retryable: e.is_retryable(),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The prompt for an in-doubt step an automatic check could not settle.
fn in_doubt_prompt(step: &str, attempt: u32, why: Option<&str>, aborting: bool) -> String {
    let why = why.map(|w| format!(" ({w})")).unwrap_or_default();
    let then = if aborting {
        "The run is being aborted: check by hand, then approve to undo it as if it had taken effect (its rollback's guards are still checked)."
    } else {
        "Check by hand; approve to run it again."
    };
    format!(
        "{IN_DOUBT_PROMPT}: attempt {attempt} of `{step}` may or may not have taken effect, and it cannot be checked automatically{why}. {then}"
    )
}

impl<E: Effects> Runner<'_, E> {
    /// Runs the remaining rollbacks and finishes the run, or pauses it if an in-doubt step
    /// needs an operator first.
    pub(super) async fn roll_back(&mut self) -> Result<Stop, Error> {
        if self.journal.state().abort_requested.is_some()
            && let Some(stop) = self.settle_for_abort().await?
        {
            return Ok(stop);
        }
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
                    if let Some(stop) = self.drive_rollback(forward, rollback).await? {
                        return Ok(stop);
                    }
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
            (true, _) => {
                "a rollback failed or was refused; the operator must finish undoing by hand"
                    .to_owned()
            }
            (false, 0) => "no rollback to run".to_owned(),
            (false, n) => format!("{n} rollback(s) ran"),
        };
        self.append(vec![Record::RunFinished { outcome, summary }])?;
        Ok(stop)
    }

    /// Before an abort rolls back: settles every in-doubt main step, so that its rollback
    /// applies if its action may have taken effect. A step only an operator can settle pauses
    /// the abort (`Some(stop)`) until `runbook approve` answers it.
    async fn settle_for_abort(&mut self) -> Result<Option<Stop>, Error> {
        let plan = self.plan;
        let mut waiting = Vec::new();
        for step in plan.steps() {
            let Some(rec) = self.journal.state().step(&step.id).cloned() else {
                continue;
            };
            let id = step.id.clone();
            match rec.state {
                StepState::Started { attempt, .. } => {
                    let (resolution, why) = match self.resolve(step, attempt).await {
                        Ok(r) => (r.resolution, (!r.evidence.is_empty()).then_some(r.evidence)),
                        Err(e) => (InDoubtResolution::AskOperator, Some(e.to_string())),
                    };
                    tracing::info!(step = %id, attempt, ?resolution, "settled an in-doubt step before an abort");
                    let mut batch = vec![Record::InDoubt {
                        step: id.clone(),
                        attempt,
                        resolution,
                    }];
                    if resolution == InDoubtResolution::AskOperator {
                        let why = why.map(|w| self.redact.text(&w));
                        batch.push(Record::ApprovalRequested {
                            step: id.clone(),
                            prompt: in_doubt_prompt(&id, attempt, why.as_deref(), true),
                        });
                        waiting.push(step);
                    }
                    self.append(batch)?;
                }
                StepState::InDoubtResolved {
                    attempt,
                    resolution: InDoubtResolution::AskOperator,
                } => {
                    self.append(vec![Record::ApprovalRequested {
                        step: id.clone(),
                        prompt: in_doubt_prompt(&id, attempt, None, true),
                    }])?;
                    waiting.push(step);
                }
                StepState::AwaitingApproval { prompt } if prompt.starts_with(IN_DOUBT_PROMPT) => {
                    waiting.push(step);
                }
                _ => {}
            }
        }
        let mut unanswered = Vec::new();
        for step in waiting {
            if !self.ask_in_doubt(step)? {
                unanswered.push(format!("`{}`", step.id));
            }
        }
        if unanswered.is_empty() {
            return Ok(None);
        }
        let reason = format!(
            "the abort waits for {}: interrupted with an unknown outcome; check by hand and approve",
            unanswered.join(", ")
        );
        self.append(vec![Record::RunPaused { reason }])?;
        Ok(Some(Stop::AwaitingApproval))
    }

    /// Offers an in-doubt approval to the interactive approver (never to `--yes`); appends
    /// `approved` and returns true if the operator approved.
    fn ask_in_doubt(&mut self, step: &Step) -> Result<bool, Error> {
        let StepState::AwaitingApproval { prompt } =
            self.journal.state().step_state(&step.id).clone()
        else {
            return Ok(true);
        };
        if self
            .options
            .approver
            .is_some_and(|a| a.ask(&step.id, &prompt))
        {
            let by = self.options.user.to_owned();
            self.append(vec![Record::Approved {
                step: step.id.clone(),
                by,
                at: time::now_rfc3339(),
            }])?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Drives `rollback` (which undoes `forward`) from whatever state the journal left it in,
    /// until it succeeded or failed (`None`) or the run must pause for an operator.
    async fn drive_rollback(
        &mut self,
        forward: &Step,
        rollback: &Step,
    ) -> Result<Option<Stop>, Error> {
        loop {
            let rec = self
                .journal
                .state()
                .step(&rollback.id)
                .cloned()
                .unwrap_or_default();
            let id = rollback.id.clone();
            match rec.state {
                StepState::Pending => {
                    let declare = Record::RollbackStarted {
                        step: id.clone(),
                        for_step: forward.id.clone(),
                    };
                    if let Some(when) = &rollback.when {
                        match self.eval.truth(rollback, self.journal.state(), &when.expr) {
                            Ok(true) => {}
                            Ok(false) => {
                                self.message(
                                    &id,
                                    &format!("not needed: `when: {}` is false", when.expr),
                                );
                                self.append(vec![declare, Record::RollbackSucceeded { step: id }])?;
                                return Ok(None);
                            }
                            Err(e) => {
                                let error = self.redact.text(&format!("`when`: {e}"));
                                self.append(vec![
                                    declare,
                                    Record::RollbackFailed { step: id, error },
                                ])?;
                                return Ok(None);
                            }
                        }
                    }
                    // Already undone (its `verify:` holds now, e.g. the node is back in
                    // maintenance): acting again could only make things worse.
                    if let Some(verify) = &rollback.verify
                        && self.holds_now(rollback, verify).await
                    {
                        self.message(
                            &id,
                            &format!("already undone: `{}` holds", verify.condition),
                        );
                        self.append(vec![declare, Record::RollbackSucceeded { step: id }])?;
                        return Ok(None);
                    }
                    // Its own fsync: the declaration says which forward step this undoes;
                    // a crash before the first intent leaves nothing sent (settled below).
                    self.append(vec![declare])?;
                    self.rollback_attempt(rollback, 1).await?;
                }
                StepState::RollingBack { .. } => {
                    // Declared with no attempt: a format 1.0 rollback interrupted with an
                    // unknown outcome, or a declaration whose first intent was torn off.
                    if rec.attempts == 0 && self.already_undone(rollback).await {
                        self.append(vec![Record::RollbackSucceeded { step: id }])?;
                        return Ok(None);
                    }
                    self.rollback_attempt(rollback, rec.attempts + 1).await?;
                }
                StepState::Started { attempt, .. } => {
                    // In doubt after a crash: settle it like a forward step.
                    let (resolution, why) = match self.resolve(rollback, attempt).await {
                        Ok(r) => (r.resolution, (!r.evidence.is_empty()).then_some(r.evidence)),
                        Err(e) => (InDoubtResolution::AskOperator, Some(e.to_string())),
                    };
                    tracing::info!(step = %id, attempt, ?resolution, "settled an in-doubt rollback");
                    let mut batch = vec![Record::InDoubt {
                        step: id.clone(),
                        attempt,
                        resolution,
                    }];
                    if resolution == InDoubtResolution::AskOperator {
                        let why = why.map(|w| self.redact.text(&w));
                        let prompt = in_doubt_prompt(&id, attempt, why.as_deref(), false);
                        batch.push(Record::ApprovalRequested { step: id, prompt });
                    }
                    self.append(batch)?;
                }
                StepState::InDoubtResolved {
                    attempt,
                    resolution: InDoubtResolution::AskOperator,
                } => {
                    let prompt = in_doubt_prompt(&id, attempt, None, false);
                    self.append(vec![Record::ApprovalRequested { step: id, prompt }])?;
                }
                StepState::InDoubtResolved { .. } | StepState::Approved { .. } => {
                    self.rollback_attempt(rollback, rec.attempts + 1).await?;
                }
                StepState::AwaitingApproval { .. } => {
                    if !self.ask_in_doubt(rollback)? {
                        let reason = format!(
                            "rollback `{id}` was interrupted with an unknown outcome; check by hand and approve"
                        );
                        self.append(vec![Record::RunPaused { reason }])?;
                        return Ok(Some(Stop::AwaitingApproval));
                    }
                }
                StepState::Refused { guard, reason } => {
                    let error = format!("guard `{guard}` refused: {reason}");
                    self.append(vec![Record::RollbackFailed { step: id, error }])?;
                }
                StepState::AttemptFailed {
                    attempt,
                    error,
                    retryable,
                } => match retry::decide(&rollback.retry, attempt, retryable) {
                    AfterFailure::Retry {
                        next_attempt,
                        delay,
                    } => self.append(vec![Record::RetryScheduled {
                        step: id,
                        next_attempt,
                        delay_ms: ms(delay),
                    }])?,
                    AfterFailure::GiveUp => {
                        let error = if attempt > 1 {
                            format!("{error} (after {attempt} attempts)")
                        } else {
                            error
                        };
                        self.append(vec![Record::RollbackFailed { step: id, error }])?;
                    }
                },
                StepState::RetryScheduled {
                    next_attempt,
                    delay_ms,
                } => {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    self.rollback_attempt(rollback, next_attempt).await?;
                }
                StepState::ActionDone { attempt, .. } => {
                    self.finish_rollback(rollback, attempt).await?;
                }
                StepState::Succeeded { .. }
                | StepState::Failed { .. }
                | StepState::Skipped { .. }
                | StepState::RolledBack
                | StepState::RollbackFailed { .. } => return Ok(None),
            }
        }
    }

    /// One attempt of a rollback step: intent, guards fresh, the action under its timeout,
    /// then its wait and outcome.
    async fn rollback_attempt(&mut self, rollback: &Step, attempt: u32) -> Result<(), Error> {
        let id = rollback.id.clone();
        let (args, pre_state) = match self.prepare(rollback, attempt).await {
            Ok(p) => p,
            Err(not_sent) => return self.append(self.not_sent(rollback, attempt, not_sent)),
        };
        self.append(vec![self.intent(rollback, attempt, pre_state.clone())])?;

        // Guards: fresh, right before the side effect.
        for guard in &rollback.guards {
            let (name, verdict) = self.check_guard(rollback, guard).await;
            let figures = self.redact.fields(verdict.figures);
            if verdict.passed {
                self.append(vec![Record::GuardPassed {
                    step: id.clone(),
                    guard: name,
                    figures,
                }])?;
            } else {
                let reason = self.redact.text(&verdict.reason);
                let error = format!("guard `{name}` refused: {reason}");
                return self.append(vec![
                    Record::GuardRefused {
                        step: id.clone(),
                        guard: name,
                        reason,
                        figures,
                    },
                    Record::RollbackFailed { step: id, error },
                ]);
            }
        }

        if let (Some(c), Some(a)) = (&rollback.action, &args) {
            let call = ActionCall {
                step: &id,
                name: &c.name,
                args: a,
                attempt,
                pre_state: &pre_state,
            };
            let outcome = match rollback.timeout {
                Some(limit) => tokio::time::timeout(limit, self.effects.perform(call))
                    .await
                    .unwrap_or_else(|_| {
                        Err(EffectError::Failed {
                            message: format!(
                                "`{}` timed out after {}",
                                c.name,
                                crate::dsl::duration::format(limit)
                            ),
                            retryable: true,
                        })
                    }),
                None => self.effects.perform(call).await,
            };
            match outcome {
                Ok(outcome) => {
                    let outputs = self.redact.fields(outcome.outputs);
                    self.append(vec![Record::ActionCompleted {
                        step: id.clone(),
                        attempt,
                        outputs,
                    }])?;
                    for m in &outcome.messages {
                        self.message(&id, m);
                    }
                }
                Err(e) => {
                    let error = self.redact.text(&e.to_string());
                    return self.append(vec![failed_call(&id, attempt, error, &e)]);
                }
            }
        }
        self.finish_rollback(rollback, attempt).await
    }

    /// After a rollback's action: its wait (unless this attempt's already held), then
    /// `rollback-succeeded`. A timed-out wait fails the attempt (the retry policy decides).
    async fn finish_rollback(&mut self, rollback: &Step, attempt: u32) -> Result<(), Error> {
        let step = rollback.id.clone();
        match self.journaled_wait(rollback, attempt).await? {
            AfterWait::Held => self.append(vec![Record::RollbackSucceeded { step }]),
            AfterWait::TimedOut => Ok(()),
            AfterWait::Failed(error) => self.append(vec![Record::RollbackFailed { step, error }]),
        }
    }

    /// One poll of `condition` for `rollback`: whether it holds right now. Anything else (it
    /// does not hold, it cannot be checked) is `false`, and the rollback runs with its guards.
    async fn holds_now(&self, rollback: &Step, condition: &crate::plan::Wait) -> bool {
        let Ok(args) = self
            .eval
            .args(rollback, self.journal.state(), &condition.args)
        else {
            return false;
        };
        let empty = Fields::new();
        let poll = self
            .effects
            .poll(CheckCall {
                step: &rollback.id,
                name: &condition.condition,
                args: &args,
                pre_state: &empty,
            })
            .await;
        matches!(poll, Ok(p) if p.satisfied)
    }

    /// For a rollback declared with no journaled attempt (format 1.0's single intent): whether
    /// its effect is already there, by its `verify:` condition or its action's probe.
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
}
