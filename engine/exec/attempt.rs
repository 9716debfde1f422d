//! One step, from whatever state the journal left it in, through one attempt at a time:
//! `when` → approval → intent → guards (fresh, right before the side effect) → action (under
//! the step timeout) → wait (under its own timeout, applied outside the condition) →
//! checkpoint.
//!
//! Each move is chosen from the step's journaled state, never from local variables, so the
//! same code continues a step in a live run and after a crash: an `action-completed` with no
//! checkpoint resumes at the wait; a `retry-scheduled` resumes with the backoff; a failed
//! attempt resumes with the retry decision.
//!
//! The intent is journaled *before* the guards are checked because their verdicts are
//! journaled as part of the attempt; checking a guard has no side effect, so an attempt
//! interrupted before its action is simply settled like any other. A step whose action has no
//! effect outside the journal (`noop`, `log`, or no action) and no wait is group-committed:
//! intent, guard verdicts, outcome and checkpoint in one fsync.

use std::time::Duration;

use tokio::time::Instant;

use super::effects::{ActionCall, CheckCall, EffectError, Effects, Verdict};
use super::local::effect_free;
use super::retry::{self, AfterFailure};
use super::{Error, Runner};
use crate::event::{Event, Stop};
use crate::journal::{Fields, InDoubtResolution, Record, StepState, time};
use crate::plan::{Guard, Step, Wait};

/// Prompts of approvals asked because an interrupted step could not be verified start with
/// this; `--yes` never answers them.
pub const IN_DOUBT_PROMPT: &str = "interrupted with an unknown outcome";

/// How a wait ended.
#[derive(Debug)]
pub(super) enum WaitEnd {
    Satisfied { elapsed_ms: u64, figures: Fields },
    TimedOut { elapsed_ms: u64, figures: Fields },
    Error(String),
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<E: Effects> Runner<'_, E> {
    /// Drives `step` until it finishes (`None`) or the run must pause (`Some(stop)`).
    pub(super) async fn drive_step(&mut self, step: &Step) -> Result<Option<Stop>, Error> {
        loop {
            let rec = self
                .journal
                .state()
                .step(&step.id)
                .cloned()
                .unwrap_or_default();
            let id = step.id.clone();
            match rec.state {
                StepState::Succeeded { .. }
                | StepState::Skipped { .. }
                | StepState::Failed { .. } => {
                    return Ok(None);
                }
                StepState::RollingBack { .. }
                | StepState::RolledBack
                | StepState::RollbackFailed { .. } => return Ok(None),
                StepState::Pending => {
                    if let Some(when) = &step.when {
                        match self.eval.truth(step, self.journal.state(), &when.expr) {
                            Ok(true) => {}
                            Ok(false) => {
                                let reason = format!("`when: {}` is false", when.expr);
                                self.append(vec![Record::StepSkipped { step: id, reason }])?;
                                continue;
                            }
                            Err(e) => {
                                let error = self.redact.text(&e.to_string());
                                self.append(vec![
                                    self.intent(step, 1, Fields::new()),
                                    Record::StepFailed { step: id, error },
                                ])?;
                                continue;
                            }
                        }
                    }
                    if let Some(approval) = &step.approval {
                        let prompt = self.redact.text(&approval.prompt);
                        self.append(vec![Record::ApprovalRequested { step: id, prompt }])?;
                        continue;
                    }
                    if let Some(stop) = self.attempt(step, 1).await? {
                        return Ok(Some(stop));
                    }
                }
                StepState::AwaitingApproval { prompt } => {
                    let in_doubt = prompt.starts_with(IN_DOUBT_PROMPT);
                    let allow_yes =
                        !in_doubt && step.approval.as_ref().is_some_and(|a| a.allow_yes);
                    let by = if self.options.yes && allow_yes {
                        Some(format!("{} (--yes)", self.options.user))
                    } else if self
                        .options
                        .approver
                        .is_some_and(|a| a.ask(&step.id, &prompt))
                    {
                        Some(self.options.user.to_owned())
                    } else {
                        None
                    };
                    match by {
                        Some(by) => {
                            let at = time::now_rfc3339();
                            self.append(vec![Record::Approved { step: id, by, at }])?;
                        }
                        None => {
                            let reason = format!("waiting for approval of `{id}`");
                            self.append(vec![Record::RunPaused { reason }])?;
                            return Ok(Some(Stop::AwaitingApproval));
                        }
                    }
                }
                StepState::Approved { .. }
                | StepState::Refused { .. }
                | StepState::InDoubtResolved {
                    resolution: InDoubtResolution::Rerun | InDoubtResolution::VerifiedNotDone,
                    ..
                } => {
                    if let Some(stop) = self.attempt(step, rec.attempts + 1).await? {
                        return Ok(Some(stop));
                    }
                }
                StepState::InDoubtResolved { attempt, .. } => {
                    let prompt = format!(
                        "{IN_DOUBT_PROMPT}: attempt {attempt} of `{id}` may or may not have taken effect, and its action cannot be checked automatically. Check by hand; approve to run it again."
                    );
                    self.append(vec![Record::ApprovalRequested { step: id, prompt }])?;
                }
                StepState::RetryScheduled {
                    next_attempt,
                    delay_ms,
                } => {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    if let Some(stop) = self.attempt(step, next_attempt).await? {
                        return Ok(Some(stop));
                    }
                }
                StepState::AttemptFailed {
                    attempt,
                    error,
                    retryable,
                } => match retry::decide(&step.retry, attempt, retryable) {
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
                        self.append(vec![Record::StepFailed { step: id, error }])?;
                    }
                },
                StepState::ActionDone { attempt, outputs } => {
                    self.finish_attempt(step, attempt, &outputs).await?;
                }
                StepState::Started { attempt, .. } => {
                    // Only after a crash: settle it like resume does, then continue.
                    self.settle(step, attempt).await?;
                }
            }
        }
    }

    fn intent(&self, step: &Step, attempt: u32, pre_state: Fields) -> Record {
        Record::StepStarted {
            step: step.id.clone(),
            attempt,
            session: self.journal.session().to_owned(),
            pre_state,
        }
    }

    /// Runs attempt `attempt` of `step` up to its checkpoint or its failure record.
    async fn attempt(&mut self, step: &Step, attempt: u32) -> Result<Option<Stop>, Error> {
        let id = step.id.clone();
        let args = match &step.action {
            Some(call) => match self.eval.args(step, self.journal.state(), &call.args) {
                Ok(args) => Some(args),
                Err(e) => {
                    let error = self.redact.text(&e.to_string());
                    self.append(vec![
                        self.intent(step, attempt, Fields::new()),
                        Record::ActionNotSent {
                            step: id,
                            attempt,
                            error,
                            retryable: false,
                        },
                    ])?;
                    return Ok(None);
                }
            },
            None => None,
        };
        let empty = Fields::new();
        let pre_state = match (&step.action, &args) {
            (Some(c), Some(a)) => {
                let pre = self
                    .effects
                    .pre_state(ActionCall {
                        step: &id,
                        name: &c.name,
                        args: a,
                        attempt,
                        pre_state: &empty,
                    })
                    .await;
                self.redact.fields(pre)
            }
            _ => Fields::new(),
        };
        let pure = step.wait.is_none() && step.action.as_ref().is_none_or(|c| effect_free(&c.name));
        let mut batch = vec![self.intent(step, attempt, pre_state.clone())];
        if !pure {
            self.append(std::mem::take(&mut batch))?;
        }

        // Guards: fresh, right before the side effect.
        for guard in &step.guards {
            let (name, verdict) = self.check_guard(step, guard).await;
            let figures = self.redact.fields(verdict.figures);
            if verdict.passed {
                batch.push(Record::GuardPassed {
                    step: id.clone(),
                    guard: name,
                    figures,
                });
            } else {
                let reason = self.redact.text(&verdict.reason);
                batch.push(Record::GuardRefused {
                    step: id.clone(),
                    guard: name.clone(),
                    reason: reason.clone(),
                    figures,
                });
                batch.push(Record::RunPaused {
                    reason: format!("guard `{name}` refused step `{id}`: {reason}"),
                });
                self.append(batch)?;
                return Ok(Some(Stop::GuardRefused));
            }
            if !pure {
                self.append(std::mem::take(&mut batch))?;
            }
        }

        // The action, under the step timeout.
        let mut result = Fields::new();
        if let (Some(c), Some(a)) = (&step.action, &args) {
            let call = ActionCall {
                step: &id,
                name: &c.name,
                args: a,
                attempt,
                pre_state: &pre_state,
            };
            let outcome = match step.timeout {
                Some(limit) => {
                    match tokio::time::timeout(limit, self.effects.perform(call)).await {
                        Ok(r) => r,
                        Err(_) => Err(EffectError::Failed {
                            message: format!(
                                "`{}` timed out after {}",
                                c.name,
                                crate::dsl::duration::format(limit)
                            ),
                            retryable: true,
                        }),
                    }
                }
                None => self.effects.perform(call).await,
            };
            match outcome {
                Ok(outcome) => {
                    result = self.redact.fields(outcome.outputs);
                    batch.push(Record::ActionCompleted {
                        step: id.clone(),
                        attempt,
                        outputs: result.clone(),
                    });
                    if !pure {
                        self.append(std::mem::take(&mut batch))?;
                    }
                    for m in &outcome.messages {
                        self.message(&id, m);
                    }
                }
                Err(e) => {
                    batch.push(super::rollback::failed_call(
                        &id,
                        attempt,
                        self.redact.text(&e.to_string()),
                        &e,
                    ));
                    self.append(batch)?;
                    return Ok(None);
                }
            }
        }
        if pure {
            // Group commit: intent, verdicts, outcome and checkpoint in one fsync.
            batch.push(self.checkpoint(step, &result));
            self.append(batch)?;
            return Ok(None);
        }
        self.finish_attempt(step, attempt, &result).await?;
        Ok(None)
    }

    /// After the action: the wait (unless this attempt's wait already held), then the
    /// checkpoint.
    async fn finish_attempt(
        &mut self,
        step: &Step,
        attempt: u32,
        result: &Fields,
    ) -> Result<(), Error> {
        let id = step.id.clone();
        if let Some(wait) = &step.wait {
            let waited = self
                .journal
                .state()
                .step(&id)
                .and_then(|r| r.waits.last())
                .is_some_and(|w| w.attempt == attempt && w.satisfied);
            if !waited {
                let condition = wait.condition.clone();
                match self.wait_for(step, wait).await {
                    WaitEnd::Satisfied {
                        elapsed_ms,
                        figures,
                    } => self.append(vec![Record::WaitSatisfied {
                        step: id.clone(),
                        attempt,
                        condition,
                        elapsed_ms,
                        figures: self.redact.fields(figures),
                    }])?,
                    WaitEnd::TimedOut {
                        elapsed_ms,
                        figures,
                    } => {
                        self.append(vec![Record::WaitTimedOut {
                            step: id,
                            attempt,
                            condition,
                            elapsed_ms,
                            figures: self.redact.fields(figures),
                        }])?;
                        return Ok(());
                    }
                    WaitEnd::Error(error) => {
                        let error = self.redact.text(&format!("wait `{condition}`: {error}"));
                        self.append(vec![Record::StepFailed { step: id, error }])?;
                        return Ok(());
                    }
                }
            }
        }
        let record = self.checkpoint(step, result);
        self.append(vec![record])
    }

    /// `step-succeeded` with the step's outputs, or `step-failed` if they cannot be computed.
    fn checkpoint(&self, step: &Step, result: &Fields) -> Record {
        match self.eval.outputs(step, self.journal.state(), result) {
            Ok(outputs) => Record::StepSucceeded {
                step: step.id.clone(),
                outputs: self.redact.fields(outputs),
            },
            Err(e) => Record::StepFailed {
                step: step.id.clone(),
                error: self.redact.text(&e.to_string()),
            },
        }
    }

    /// Checks one guard from fresh observations. A guard that cannot be checked refuses.
    pub(super) async fn check_guard(&self, step: &Step, guard: &Guard) -> (String, Verdict) {
        let refuse = |reason: String| Verdict {
            passed: false,
            reason,
            figures: Fields::new(),
        };
        match guard {
            Guard::Expr { expr, message } => {
                let verdict = match self.eval.truth(step, self.journal.state(), &expr.expr) {
                    Ok(true) => Verdict {
                        passed: true,
                        reason: String::new(),
                        figures: Fields::new(),
                    },
                    Ok(false) => refuse(if message.is_empty() {
                        format!("`{}` is false", expr.expr)
                    } else {
                        message.clone()
                    }),
                    Err(e) => refuse(format!("cannot check: {e}")),
                };
                (expr.expr.clone(), verdict)
            }
            Guard::Named { name, args } => {
                let pre_state = self.recorded_pre_state(step);
                let verdict = match self.eval.args(step, self.journal.state(), args) {
                    Ok(args) => match self
                        .effects
                        .check_guard(CheckCall {
                            step: &step.id,
                            name,
                            args: &args,
                            pre_state: &pre_state,
                        })
                        .await
                    {
                        Ok(v) => v,
                        Err(e) => refuse(format!("cannot check: {e}")),
                    },
                    Err(e) => refuse(format!("cannot check: {e}")),
                };
                (name.clone(), verdict)
            }
        }
    }

    /// What the step's latest intent recorded before acting (empty if nothing).
    fn recorded_pre_state(&self, step: &Step) -> Fields {
        self.journal
            .state()
            .steps
            .get(&step.id)
            .map(|r| r.pre_state.clone())
            .unwrap_or_default()
    }

    /// Polls `wait` until it holds or its timeout, which wraps the polling from outside.
    /// Polls become [`Event::WaitProgress`]; nothing here is journaled.
    pub(super) async fn wait_for(&self, step: &Step, wait: &Wait) -> WaitEnd {
        let args = match self.eval.args(step, self.journal.state(), &wait.args) {
            Ok(args) => args,
            Err(e) => return WaitEnd::Error(e.to_string()),
        };
        let pre_state = self.recorded_pre_state(step);
        let start = Instant::now();
        let timeout_ms = ms(wait.timeout);
        let mut last = Fields::new();
        let polling = async {
            loop {
                let call = CheckCall {
                    step: &step.id,
                    name: &wait.condition,
                    args: &args,
                    pre_state: &pre_state,
                };
                let (satisfied, error) = match self.effects.poll(call).await {
                    Ok(p) => {
                        last = self.redact.fields(p.figures);
                        (p.satisfied, None)
                    }
                    Err(
                        e @ (EffectError::NeedsCluster { .. } | EffectError::BadArgument { .. }),
                    ) => {
                        return Err(e.to_string());
                    }
                    Err(
                        e @ EffectError::Failed {
                            retryable: false, ..
                        },
                    ) => return Err(e.to_string()),
                    Err(e) => (false, Some(self.redact.text(&e.to_string()))),
                };
                self.events.emit(&Event::WaitProgress {
                    step: step.id.clone(),
                    condition: wait.condition.clone(),
                    elapsed_ms: ms(start.elapsed()),
                    timeout_ms,
                    figures: last.clone(),
                    satisfied,
                    error,
                });
                if satisfied {
                    return Ok(());
                }
                tokio::time::sleep(wait.interval).await;
            }
        };
        let outcome = tokio::time::timeout(wait.timeout, polling).await;
        let elapsed_ms = ms(start.elapsed());
        match outcome {
            Ok(Ok(())) => WaitEnd::Satisfied {
                elapsed_ms,
                figures: last,
            },
            Ok(Err(e)) => WaitEnd::Error(e),
            Err(_) => WaitEnd::TimedOut {
                elapsed_ms,
                figures: last,
            },
        }
    }
}
