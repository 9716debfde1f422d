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
use crate::dsl::ast::Idempotency;
use crate::event::{Event, Stop};
use crate::journal::{Fields, InDoubtResolution, Record, StepState, time};
use crate::plan::{Guard, Step, Wait};

/// Prompts of approvals asked because an interrupted step could not be verified start with
/// this; `--yes` never answers them.
pub const IN_DOUBT_PROMPT: &str = "interrupted with an unknown outcome";

/// The guard whose journal half the runner checks itself (see `Runner::bootstrap_recorded`).
const BOOTSTRAP_SAFE: &str = "etcd.bootstrap-safe";

/// The first pause between two polls of a wait that no change woke; it doubles up to the
/// wait's `interval`.
pub const FIRST_REPOLL: Duration = Duration::from_millis(100);

/// Why an attempt's action is not sent (journaled as `action-not-sent`): redacted.
pub(super) struct NotSent {
    error: String,
    retryable: bool,
}

/// How the wait after an action ended, once journaled.
pub(super) enum AfterWait {
    /// It held (or there is none): the step may be checkpointed.
    Held,
    /// It timed out (`wait-timed-out` is journaled: the retry policy decides).
    TimedOut,
    /// It could not run; the redacted error.
    Failed(String),
}

/// How a wait ended.
#[derive(Debug)]
pub(super) enum WaitEnd {
    Satisfied {
        elapsed_ms: u64,
        figures: Fields,
    },
    /// The timeout ended the wait. `answered` says whether the last poll got an answer
    /// ("not yet") rather than an error: a condition nobody answered proves nothing.
    TimedOut {
        elapsed_ms: u64,
        figures: Fields,
        answered: bool,
        last_error: Option<String>,
    },
    Error(String),
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<E: Effects> Runner<'_, E> {
    /// Drives `step` until it finishes (`None`) or the run must pause (`Some(stop)`).
    pub(super) async fn drive_step(&mut self, step: &Step) -> Result<Option<Stop>, Error> {
        loop {
            // In a batch, a step whose wait is due returns to `drive_batch`, which waits for
            // every such step of the batch at once.
            if self.batch_mode && self.waiting(step).is_some() {
                return Ok(None);
            }
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
                    let prompt = super::in_doubt::in_doubt_prompt(&id, attempt, "");
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

    pub(super) fn intent(&self, step: &Step, attempt: u32, pre_state: Fields) -> Record {
        Record::StepStarted {
            step: step.id.clone(),
            attempt,
            session: self.journal.session().to_owned(),
            pre_state,
        }
    }

    /// What an attempt needs before its intent: its evaluated arguments and the evidence that
    /// will verify it later (`pre_state`). Either missing means the action must not be sent.
    /// Forward steps and rollbacks share it.
    pub(super) async fn prepare(
        &self,
        step: &Step,
        attempt: u32,
    ) -> Result<(Option<Fields>, Fields), NotSent> {
        let Some(call) = &step.action else {
            return Ok((None, Fields::new()));
        };
        let args = self
            .eval
            .args(step, self.journal.state(), &call.args)
            .map_err(|e| NotSent {
                error: self.redact.text(&e.to_string()),
                retryable: false,
            })?;
        let empty = Fields::new();
        let pre = self
            .effects
            .pre_state(ActionCall {
                step: &step.id,
                name: &call.name,
                args: &args,
                attempt,
                pre_state: &empty,
            })
            .await
            // Never send without the evidence that verifies the call later.
            .map_err(|e| NotSent {
                error: self.redact.text(&format!(
                    "cannot record what verifies `{}` before sending it, so it was not sent: {e}",
                    call.name
                )),
                retryable: e.is_retryable(),
            })?;
        Ok((Some(args), self.redact.fields(pre)))
    }

    /// The intent and `action-not-sent` of an attempt whose action cannot be sent.
    pub(super) fn not_sent(&self, step: &Step, attempt: u32, n: NotSent) -> Vec<Record> {
        vec![
            self.intent(step, attempt, Fields::new()),
            Record::ActionNotSent {
                step: step.id.clone(),
                attempt,
                error: n.error,
                retryable: n.retryable,
            },
        ]
    }

    /// Runs attempt `attempt` of `step` up to its checkpoint or its failure record.
    async fn attempt(&mut self, step: &Step, attempt: u32) -> Result<Option<Stop>, Error> {
        let id = step.id.clone();
        let (args, pre_state) = match self.prepare(step, attempt).await {
            Ok(p) => p,
            Err(not_sent) => {
                self.append(self.not_sent(step, attempt, not_sent))?;
                return Ok(None);
            }
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
                    // With a wait, the outcome is durable before it; without one it goes
                    // to disk with the checkpoint, in one fsync (below): a crash before that
                    // write leaves the intent alone, in doubt and settled by its probe or a
                    // person, as a crash during the effect does (docs/design/exactly-once.md).
                    if !pure && step.wait.is_some() {
                        self.append(std::mem::take(&mut batch))?;
                    }
                    for m in &outcome.messages {
                        self.message(&id, m);
                    }
                }
                Err(EffectError::Refused { reason, figures }) => {
                    let figures = self.redact.fields(figures);
                    let reason = self.redact.text(&reason);
                    // `--override-preflight` lifts the `preflight` action only: any other
                    // action's refusal (a rebuild's disk or identity check) always stands.
                    let lifted = if c.name == "preflight" {
                        self.journal.state().preflight_override.clone()
                    } else {
                        None
                    };
                    let Some(o) = lifted else {
                        batch.push(Record::GuardRefused {
                            step: id.clone(),
                            guard: c.name.clone(),
                            reason: reason.clone(),
                            figures,
                        });
                        batch.push(Record::RunPaused {
                            reason: format!("`{}` refused step `{id}`: {reason}", c.name),
                        });
                        self.append(batch)?;
                        return Ok(Some(Stop::GuardRefused));
                    };
                    // `--override-preflight`: the refusal is journaled as overridden, with the
                    // findings it overrode, and the findings become the step's outputs.
                    let findings = figures
                        .get("critical")
                        .and_then(serde_json::Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    batch.push(Record::PreflightOverride {
                        step: Some(id.clone()),
                        reason: o.reason.clone(),
                        by: o.by,
                        host: o.host,
                        findings,
                    });
                    result = figures;
                    batch.push(Record::ActionCompleted {
                        step: id.clone(),
                        attempt,
                        outputs: result.clone(),
                    });
                    if !pure {
                        self.append(std::mem::take(&mut batch))?;
                    }
                    self.message(
                        &id,
                        &format!(
                            "{reason}\n  OVERRIDDEN with --override-preflight: {}",
                            o.reason
                        ),
                    );
                }
                Err(e) if e.is_retryable() && step.idempotency != Idempotency::Idempotent => {
                    // A timeout, `Unavailable` or reset connection may have reached the
                    // cluster: the outcome is unknown, exactly as after a crash here. Settle
                    // it from the cluster before any retry (the step stays in doubt in the
                    // journal meanwhile, so a crash now is settled the same way on resume).
                    if !batch.is_empty() {
                        self.append(std::mem::take(&mut batch))?;
                    }
                    let error = self.redact.text(&e.to_string());
                    self.message(
                        &id,
                        &format!("`{}` failed and may have reached the cluster ({error}); checking whether it took effect", c.name),
                    );
                    let settlement =
                        self.resolve(step, attempt)
                            .await
                            .map_err(|source| Error::Settle {
                                step: id.clone(),
                                source,
                            })?;
                    match settlement.resolution {
                        InDoubtResolution::VerifiedDone => {
                            self.record_settlement(step, attempt, settlement)?;
                            let done = self
                                .journal
                                .state()
                                .step(&id)
                                .map(|r| matches!(r.state, StepState::ActionDone { .. }))
                                .unwrap_or(false);
                            if done {
                                self.finish_attempt(step, attempt, &Fields::new()).await?;
                            }
                        }
                        InDoubtResolution::VerifiedNotDone | InDoubtResolution::Rerun => {
                            let error = self.redact.text(&format!(
                                "{error} (checked: not done: {})",
                                settlement.evidence
                            ));
                            self.append(vec![Record::ActionFailed {
                                step: id,
                                attempt,
                                error,
                                retryable: true,
                            }])?;
                        }
                        InDoubtResolution::AskOperator | InDoubtResolution::Unknown => {
                            self.record_settlement(step, attempt, settlement)?;
                        }
                    }
                    return Ok(None);
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
        if pure || step.wait.is_none() {
            // Group commit: for an effect-free step, intent, verdicts, outcome and checkpoint
            // in one fsync; for a step with an effect and no wait, its outcome and checkpoint
            // in one (its intent went to disk alone, before the effect).
            batch.push(self.checkpoint(step, &result));
            self.append(batch)?;
            return Ok(None);
        }
        if self.batch_mode && step.wait.is_some() {
            // The batch waits for it together with the others (`exec::batch`).
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
        let after = self.journaled_wait(step, attempt).await?;
        self.after_wait(step, result, after)
    }

    /// The checkpoint (or failure) after a wait ended as `after`.
    pub(super) fn after_wait(
        &mut self,
        step: &Step,
        result: &Fields,
        after: AfterWait,
    ) -> Result<(), Error> {
        match after {
            AfterWait::Held => {
                let record = self.checkpoint(step, result);
                self.append(vec![record])
            }
            AfterWait::TimedOut => Ok(()),
            AfterWait::Failed(error) => self.append(vec![Record::StepFailed {
                step: step.id.clone(),
                error,
            }]),
        }
    }

    /// The step's wait for `attempt`, journaled as `wait-satisfied` or `wait-timed-out`
    /// (nothing when it has none, or this attempt's wait already held). A wait that could not
    /// run comes back as its redacted error, for the caller to record as its step's failure.
    /// Forward steps and rollbacks share it.
    pub(super) async fn journaled_wait(
        &mut self,
        step: &Step,
        attempt: u32,
    ) -> Result<AfterWait, Error> {
        let Some(wait) = &step.wait else {
            return Ok(AfterWait::Held);
        };
        let id = step.id.clone();
        let waited = self
            .journal
            .state()
            .step(&id)
            .and_then(|r| r.waits.last())
            .is_some_and(|w| w.attempt == attempt && w.satisfied);
        if waited {
            return Ok(AfterWait::Held);
        }
        let end = self.wait_for(step, wait).await;
        self.record_wait(step, attempt, end)
    }

    /// Journals how the wait of `attempt` ended.
    pub(super) fn record_wait(
        &mut self,
        step: &Step,
        attempt: u32,
        end: WaitEnd,
    ) -> Result<AfterWait, Error> {
        let Some(wait) = &step.wait else {
            return Ok(AfterWait::Held);
        };
        let id = step.id.clone();
        let condition = wait.condition.clone();
        match end {
            WaitEnd::Satisfied {
                elapsed_ms,
                figures,
            } => {
                self.append(vec![Record::WaitSatisfied {
                    step: id,
                    attempt,
                    condition,
                    elapsed_ms,
                    figures: self.redact.fields(figures),
                }])?;
                Ok(AfterWait::Held)
            }
            WaitEnd::TimedOut {
                elapsed_ms,
                figures,
                ..
            } => {
                self.append(vec![Record::WaitTimedOut {
                    step: id,
                    attempt,
                    condition,
                    elapsed_ms,
                    figures: self.redact.fields(figures),
                }])?;
                Ok(AfterWait::TimedOut)
            }
            WaitEnd::Error(error) => Ok(AfterWait::Failed(
                self.redact.text(&format!("wait `{condition}`: {error}")),
            )),
        }
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
            Guard::Named { name, args }
                if name == BOOTSTRAP_SAFE && self.bootstrap_recorded(step).is_some() =>
            {
                let (other, attempt, how) = self.bootstrap_recorded(step).unwrap_or_default();
                let mut figures = Fields::new();
                figures.insert("bootstrap_step".into(), other.clone().into());
                figures.insert("attempt".into(), attempt.into());
                let _ = args;
                let verdict = refuse(format!(
                    "this run {how} `talos.bootstrap` in step `{other}` (attempt {attempt}): a second bootstrap can create a second etcd cluster"
                ));
                (name.clone(), Verdict { figures, ..verdict })
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

    /// The journal half of `etcd.bootstrap-safe`: a `talos.bootstrap` attempt of this run,
    /// other than the one being guarded, whose intent was recorded and that was not settled
    /// as not sent (guard refused, action failed before or without reaching the node, or
    /// verified not done). Returns the step, the attempt and how it stands.
    pub(super) fn bootstrap_recorded(&self, current: &Step) -> Option<(String, u32, &'static str)> {
        #[derive(Clone, Copy, PartialEq)]
        enum Fate {
            MaybeSent,
            Sent,
            NotSent,
        }
        let is_bootstrap = |id: &str| {
            self.plan
                .step(id)
                .and_then(|s| s.action.as_ref())
                .is_some_and(|c| c.name == "talos.bootstrap")
        };
        let mut fates: Vec<(String, u32, Fate)> = Vec::new();
        fn set(
            fates: &mut [(String, u32, Fate)],
            step: &str,
            attempt: Option<u32>,
            fate: Fate,
            only_from: Option<Fate>,
        ) {
            if let Some(f) = fates
                .iter_mut()
                .rev()
                .find(|(s, a, _)| s == step && attempt.is_none_or(|n| n == *a))
                && only_from.is_none_or(|o| o == f.2)
            {
                f.2 = fate;
            }
        }
        for e in self.journal.records() {
            let f = &mut fates;
            match &e.record {
                Record::StepStarted { step, attempt, .. } if is_bootstrap(step) => {
                    f.push((step.clone(), *attempt, Fate::MaybeSent));
                }
                Record::GuardRefused { step, .. } => set(f, step, None, Fate::NotSent, None),
                Record::ActionFailed { step, attempt, .. } => {
                    set(f, step, Some(*attempt), Fate::NotSent, None);
                }
                Record::ActionCompleted { step, attempt, .. } => {
                    set(f, step, Some(*attempt), Fate::Sent, None);
                }
                Record::InDoubt {
                    step,
                    attempt,
                    resolution,
                } => {
                    let fate = match resolution {
                        InDoubtResolution::VerifiedNotDone => Fate::NotSent,
                        InDoubtResolution::VerifiedDone => Fate::Sent,
                        _ => Fate::MaybeSent,
                    };
                    set(f, step, Some(*attempt), fate, None);
                }
                // A person checked an in-doubt attempt by hand and approved running it again:
                // settled as not done.
                Record::Approved { step, .. } => {
                    set(f, step, None, Fate::NotSent, Some(Fate::MaybeSent));
                }
                // Failed after its intent without an action outcome: `when` could not be
                // evaluated, nothing was sent.
                Record::StepFailed { step, .. } => {
                    set(f, step, None, Fate::NotSent, Some(Fate::MaybeSent));
                }
                _ => {}
            }
        }
        let current_attempt = self
            .journal
            .state()
            .step(&current.id)
            .and_then(|r| matches!(r.state, StepState::Started { .. }).then_some(r.attempts));
        fates
            .into_iter()
            .filter(|(s, a, _)| !(s == &current.id && Some(*a) == current_attempt))
            .find_map(|(s, a, f)| match f {
                Fate::Sent => Some((s, a, "sent")),
                Fate::MaybeSent => Some((s, a, "may have sent")),
                Fate::NotSent => None,
            })
    }

    /// What the step's latest intent recorded before acting (empty if nothing).
    pub(super) fn recorded_pre_state(&self, step: &Step) -> Fields {
        self.journal
            .state()
            .steps
            .get(&step.id)
            .map(|r| r.pre_state.clone())
            .unwrap_or_default()
    }

    /// Polls `wait` until it holds or its timeout, which wraps the polling from outside.
    /// Polls become [`Event::WaitProgress`]; nothing here is journaled.
    ///
    /// Waits watch: when the effects offer a change signal ([`Effects::changes`]: the
    /// cluster's COSI and Kubernetes watch streams), a change wakes the wait for a fresh poll
    /// at once. The signal only wakes; every decision is a fresh poll. Without a change the
    /// wait polls again after [`FIRST_REPOLL`], doubling up to the wait's `interval` (what
    /// no stream shows, such as an etcd leader change, is still seen soon after an action).
    /// Effects without a change signal are polled every `interval`.
    pub(super) async fn wait_for(&self, step: &Step, wait: &Wait) -> WaitEnd {
        let args = match self.eval.args(step, self.journal.state(), &wait.args) {
            Ok(args) => args,
            Err(e) => return WaitEnd::Error(e.to_string()),
        };
        let pre_state = self.recorded_pre_state(step);
        let start = Instant::now();
        let timeout_ms = ms(wait.timeout);
        let mut last = Fields::new();
        let mut answered = false;
        let mut last_error: Option<String> = None;
        let mut changes = self.effects.changes(&wait.condition);
        // Without a change signal, every `interval`; with one, sooner at first (below).
        let mut pause = if changes.is_some() {
            FIRST_REPOLL.min(wait.interval)
        } else {
            wait.interval
        };
        let polling = async {
            loop {
                // Seen before the poll: a change during it wakes the next one.
                if let Some(rx) = changes.as_mut() {
                    rx.borrow_and_update();
                }
                let call = CheckCall {
                    step: &step.id,
                    name: &wait.condition,
                    args: &args,
                    pre_state: &pre_state,
                };
                let (satisfied, error) = match self.effects.poll(call).await {
                    Ok(p) => {
                        last = self.redact.fields(p.figures);
                        answered = true;
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
                    Err(e) => {
                        let text = self.redact.text(&e.to_string());
                        answered = false;
                        last_error = Some(text.clone());
                        (false, Some(text))
                    }
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
                let sleep = tokio::time::sleep(pause);
                let closed = match changes.as_mut() {
                    Some(rx) => tokio::select! {
                        () = sleep => false,
                        r = rx.changed() => r.is_err(),
                    },
                    None => {
                        sleep.await;
                        false
                    }
                };
                if closed {
                    changes = None;
                }
                pause = (pause * 2).min(wait.interval);
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
                answered,
                last_error,
            },
        }
    }
}
