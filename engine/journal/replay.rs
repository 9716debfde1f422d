//! Replay: the one pure function that turns journal records into the state of a run.
//!
//! The live executor and `runbook resume` must never disagree about where a run stands, so
//! neither computes state on its own: both feed records to [`apply`] (the journal does it on
//! every append, and [`fold`] does it on open). `apply` performs no I/O and no side effects; it
//! checks that the record is a legal next fact and updates [`RunState`] (restate's state
//! machine, without the actions).
//!
//! An illegal history (a `step-succeeded` for a step that never started, a second intent for a
//! step still in doubt, an intent stamped by a stale session) is an [`Error`] naming the
//! record's sequence number, never a panic: the journal on disk is input, and input can be
//! wrong. When `apply` fails, the state is left unchanged.
//!
//! # Step lifecycle
//!
//! ```text
//! Pending ─step-started─▶ Started ─action-completed / wait-satisfied─▶ ActionDone ─step-succeeded─▶ Succeeded
//!    │                     │  ├─guard-refused──▶ Refused                  │
//!    │                     │  ├─action-failed / wait-timed-out─▶ AttemptFailed ─retry-scheduled─▶ RetryScheduled ─step-started─▶ …
//!    │                     │  └─in-doubt (resume)─▶ InDoubtResolved ─step-started─▶ …   (verified-done ─▶ ActionDone)
//!    ├─approval-requested─▶ AwaitingApproval ─approved─▶ Approved ─step-started─▶ …
//!    └─step-skipped─▶ Skipped                              any live state ─step-failed─▶ Failed
//! rollback step:  Pending ─rollback-started─▶ RollingBack ─rollback-succeeded─▶ Succeeded (forward step: RolledBack)
//!                                                         └rollback-failed───▶ Failed    (forward step: RollbackFailed)
//! ```
//!
//! A step is **in doubt** while it is `Started` or `RollingBack`: its intent is durable and its
//! outcome is not, so its side effect may or may not have happened.

mod rollback;
mod state;
#[cfg(test)]
mod tests;

pub use state::{
    Approval, Error, GuardResult, InDoubtStep, PreflightOverride, RunState, Session, StepRecord,
    StepState, WaitResult,
};

use super::file::Entry;
use super::record::{Fields, InDoubtResolution, Record, RunHeader, RunOutcome};

/// Folds records, in order, into a fresh [`RunState`].
pub fn fold<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Result<RunState, Error> {
    let mut state = RunState::default();
    for entry in entries {
        apply(&mut state, entry)?;
    }
    Ok(state)
}

/// Applies one record to `state`, or explains why it cannot follow. Pure: no I/O.
///
/// On error, `state` is unchanged.
pub fn apply(state: &mut RunState, entry: &Entry) -> Result<(), Error> {
    // Snapshot only what one record can touch (its step, a rollback's forward step, and the
    // small run-level fields), not the whole state: replay stays O(1) per record, so resuming a
    // 10,000-record journal costs milliseconds, not a clone of every step per record.
    let undo = Undo::take(state, &entry.record);
    match apply_in_place(state, entry) {
        Ok(()) => {
            if let Some(rec) = entry.record.step().and_then(|id| state.steps.get_mut(id)) {
                rec.exposure = rec.exposure.after(&entry.record);
            }
            state.last_seq = entry.seq;
            Ok(())
        }
        Err(e) => {
            undo.restore(state);
            Err(e)
        }
    }
}

/// What [`apply_in_place`] may change, saved so a refused record leaves the state unchanged.
struct Undo {
    steps: Vec<(String, Option<StepRecord>)>,
    step_order: usize,
    sessions: usize,
    approvals: usize,
    header: Option<RunHeader>,
    started_ms: Option<u64>,
    paused: Option<String>,
    abort_requested: Option<String>,
    finished: Option<(RunOutcome, String)>,
    finished_ms: Option<u64>,
    preflight_override: Option<PreflightOverride>,
    preflight_overridden: usize,
}

impl Undo {
    fn take(state: &RunState, record: &Record) -> Self {
        let mut ids: Vec<&str> = record.step().into_iter().collect();
        if let Record::RollbackStarted { for_step, .. } = record {
            ids.push(for_step);
        }
        if let Record::RollbackSucceeded { step } | Record::RollbackFailed { step, .. } = record
            && let Some(for_step) = state.steps.get(step).and_then(|s| s.rollback_of.as_deref())
        {
            ids.push(for_step);
        }
        Undo {
            steps: ids
                .into_iter()
                .map(|id| (id.to_owned(), state.steps.get(id).cloned()))
                .collect(),
            step_order: state.step_order.len(),
            sessions: state.sessions.len(),
            approvals: state.approvals.len(),
            header: state.header.clone(),
            started_ms: state.started_ms,
            paused: state.paused.clone(),
            abort_requested: state.abort_requested.clone(),
            finished: state.finished.clone(),
            finished_ms: state.finished_ms,
            preflight_override: state.preflight_override.clone(),
            preflight_overridden: state.preflight_overridden.len(),
        }
    }

    fn restore(self, state: &mut RunState) {
        for (id, rec) in self.steps.into_iter().rev() {
            match rec {
                Some(rec) => {
                    state.steps.insert(id, rec);
                }
                None => {
                    state.steps.remove(&id);
                }
            }
        }
        state.step_order.truncate(self.step_order);
        state.sessions.truncate(self.sessions);
        state.approvals.truncate(self.approvals);
        state.header = self.header;
        state.started_ms = self.started_ms;
        state.paused = self.paused;
        state.abort_requested = self.abort_requested;
        state.finished = self.finished;
        state.finished_ms = self.finished_ms;
        state.preflight_override = self.preflight_override;
        state
            .preflight_overridden
            .truncate(self.preflight_overridden);
    }
}

/// Like [`apply`] but may leave `state` half-updated on error.
fn apply_in_place(state: &mut RunState, entry: &Entry) -> Result<(), Error> {
    let record = &entry.record;
    let err = |reason: String| Error {
        seq: entry.seq,
        record_type: record.type_name(),
        step: record.step().map(str::to_owned),
        reason,
    };
    if entry.seq <= state.last_seq {
        return Err(err(format!("sequence number not after {}", state.last_seq)));
    }
    if let Some((outcome, _)) = &state.finished {
        return Err(err(format!("the run already finished ({outcome:?})")));
    }
    match (record, &state.header) {
        (Record::RunStarted(_), Some(_)) => return Err(err("the run already started".into())),
        (Record::RunStarted(_), None) => {}
        (_, None) => return Err(err("the first record must be `run-started`".into())),
        _ => {}
    }
    let at = entry.at_ms;
    let wrong = |s: &StepState| err(format!("not legal while the step is {}", s.name()));
    match record {
        Record::RunStarted(header) => {
            state.header = Some(header.clone());
            state.started_ms = Some(at);
        }
        Record::SessionStarted { session, pid, host } => {
            if state.sessions.iter().any(|s| &s.id == session) {
                return Err(err(format!("session `{session}` already started")));
            }
            state.sessions.push(Session {
                id: session.clone(),
                pid: *pid,
                host: host.clone(),
                seq: entry.seq,
            });
            state.paused = None;
        }
        Record::StepStarted {
            step,
            attempt,
            session,
            pre_state,
        } => {
            let current = state.current_session().map(|s| s.id.as_str());
            if current != Some(session.as_str()) {
                return Err(err(format!(
                    "intent stamped by session `{session}`, but the current session is {}",
                    current.map_or("none".to_owned(), |c| format!("`{c}`"))
                )));
            }
            let rec = step_mut(state, step);
            let ok = match &rec.state {
                // Refused: the guard kept the action from running; after the operator fixes
                // the cluster, `runbook resume` checks it again as a new attempt (format 1.0
                // readers written before the executor never saw this, so loosening is safe).
                StepState::Pending
                | StepState::Approved { .. }
                | StepState::AttemptFailed { .. }
                | StepState::Refused { .. } => true,
                // A declared rollback step runs its attempts like a forward step.
                StepState::RollingBack { .. } => rec.rollback_of.is_some(),
                StepState::RetryScheduled { next_attempt, .. } => next_attempt == attempt,
                StepState::InDoubtResolved { resolution, .. } => matches!(
                    resolution,
                    InDoubtResolution::Rerun | InDoubtResolution::VerifiedNotDone
                ),
                _ => false,
            };
            if !ok {
                let s = rec.state.clone();
                return Err(if s.is_in_doubt() {
                    err("the step is in doubt; an `in-doubt` resolution must come first".into())
                } else {
                    wrong(&s)
                });
            }
            if *attempt <= rec.attempts {
                return Err(err(format!(
                    "attempt {attempt} is not after attempt {}",
                    rec.attempts
                )));
            }
            rec.attempts = *attempt;
            rec.first_started_ms.get_or_insert(at);
            rec.ended_ms = None;
            rec.pre_state = pre_state.clone();
            rec.state = StepState::Started {
                attempt: *attempt,
                session: session.clone(),
                pre_state: pre_state.clone(),
            };
        }
        Record::GuardPassed {
            step,
            guard,
            figures,
        } => {
            let rec = existing(state, step, &err)?;
            if !matches!(rec.state, StepState::Started { .. }) {
                return Err(wrong(&rec.state));
            }
            rec.guards.push(GuardResult {
                guard: guard.clone(),
                passed: true,
                reason: None,
                figures: figures.clone(),
            });
        }
        Record::GuardRefused {
            step,
            guard,
            reason,
            figures,
        } => {
            let rec = existing(state, step, &err)?;
            if !matches!(rec.state, StepState::Started { .. }) {
                return Err(wrong(&rec.state));
            }
            rec.guards.push(GuardResult {
                guard: guard.clone(),
                passed: false,
                reason: Some(reason.clone()),
                figures: figures.clone(),
            });
            rec.state = StepState::Refused {
                guard: guard.clone(),
                reason: reason.clone(),
            };
            rec.ended_ms = Some(at);
        }
        Record::ActionCompleted {
            step,
            attempt,
            outputs,
        } => {
            let rec = existing(state, step, &err)?;
            match &rec.state {
                StepState::Started { attempt: a, .. } if a == attempt => {}
                s => return Err(attempt_mismatch(s, *attempt, &err)),
            }
            rec.state = StepState::ActionDone {
                attempt: *attempt,
                outputs: outputs.clone(),
            };
        }
        Record::ActionFailed {
            step,
            attempt,
            error,
            retryable,
        } => {
            let rec = existing(state, step, &err)?;
            match &rec.state {
                StepState::Started { attempt: a, .. } if a == attempt => {}
                s => return Err(attempt_mismatch(s, *attempt, &err)),
            }
            rec.state = StepState::AttemptFailed {
                attempt: *attempt,
                error: error.clone(),
                retryable: *retryable,
            };
        }
        Record::WaitSatisfied {
            step,
            attempt,
            condition,
            elapsed_ms,
            figures,
        }
        | Record::WaitTimedOut {
            step,
            attempt,
            condition,
            elapsed_ms,
            figures,
        } => {
            let satisfied = matches!(record, Record::WaitSatisfied { .. });
            let rec = existing(state, step, &err)?;
            let outputs = match &rec.state {
                StepState::Started { attempt: a, .. } if a == attempt => Fields::new(),
                StepState::ActionDone {
                    attempt: a,
                    outputs,
                } if a == attempt => outputs.clone(),
                s => return Err(attempt_mismatch(s, *attempt, &err)),
            };
            rec.waits.push(WaitResult {
                attempt: *attempt,
                condition: condition.clone(),
                satisfied,
                elapsed_ms: *elapsed_ms,
                figures: figures.clone(),
            });
            rec.state = if satisfied {
                StepState::ActionDone {
                    attempt: *attempt,
                    outputs,
                }
            } else {
                StepState::AttemptFailed {
                    attempt: *attempt,
                    error: format!("wait `{condition}` timed out after {elapsed_ms} ms"),
                    retryable: true,
                }
            };
        }
        Record::RetryScheduled {
            step,
            next_attempt,
            delay_ms,
        } => {
            let rec = existing(state, step, &err)?;
            match &rec.state {
                StepState::AttemptFailed { attempt, .. } if next_attempt > attempt => {}
                StepState::AttemptFailed { attempt, .. } => {
                    return Err(err(format!(
                        "next attempt {next_attempt} is not after attempt {attempt}"
                    )));
                }
                s => return Err(wrong(s)),
            }
            rec.state = StepState::RetryScheduled {
                next_attempt: *next_attempt,
                delay_ms: *delay_ms,
            };
        }
        Record::StepSucceeded { step, outputs } => {
            let rec = existing(state, step, &err)?;
            if !matches!(
                rec.state,
                StepState::Started { .. } | StepState::ActionDone { .. }
            ) {
                return Err(wrong(&rec.state));
            }
            rec.state = StepState::Succeeded {
                outputs: outputs.clone(),
            };
            rec.ended_ms = Some(at);
        }
        Record::StepFailed { step, error } => {
            let rec = existing(state, step, &err)?;
            if rec.state.is_terminal()
                || matches!(
                    rec.state,
                    StepState::Pending | StepState::RollingBack { .. }
                )
            {
                return Err(wrong(&rec.state));
            }
            rec.state = StepState::Failed {
                error: error.clone(),
            };
            rec.failure = Some(error.clone());
            rec.ended_ms = Some(at);
        }
        Record::StepSkipped { step, reason } => {
            let rec = step_mut(state, step);
            if !matches!(
                rec.state,
                StepState::Pending
                    | StepState::AwaitingApproval { .. }
                    | StepState::Approved { .. }
            ) {
                return Err(wrong(&rec.state));
            }
            rec.state = StepState::Skipped {
                reason: reason.clone(),
            };
            rec.ended_ms = Some(at);
        }
        Record::InDoubt {
            step,
            attempt,
            resolution,
        } => {
            let rec = existing(state, step, &err)?;
            match &rec.state {
                StepState::Started { attempt: a, .. } if a == attempt => {}
                s => return Err(attempt_mismatch(s, *attempt, &err)),
            }
            rec.state = match resolution {
                InDoubtResolution::VerifiedDone => StepState::ActionDone {
                    attempt: *attempt,
                    outputs: Fields::new(),
                },
                _ => StepState::InDoubtResolved {
                    attempt: *attempt,
                    resolution: *resolution,
                },
            };
        }
        Record::ApprovalRequested { step, prompt } => {
            let rec = step_mut(state, step);
            let ok = matches!(
                rec.state,
                StepState::Pending
                    | StepState::InDoubtResolved {
                        resolution: InDoubtResolution::AskOperator | InDoubtResolution::Unknown,
                        ..
                    }
            );
            if !ok {
                return Err(wrong(&rec.state));
            }
            rec.state = StepState::AwaitingApproval {
                prompt: prompt.clone(),
            };
        }
        Record::Approved { step, by, at: when } => {
            let rec = existing(state, step, &err)?;
            if !matches!(rec.state, StepState::AwaitingApproval { .. }) {
                return Err(wrong(&rec.state));
            }
            rec.state = StepState::Approved {
                by: by.clone(),
                at: when.clone(),
            };
            state.approvals.push(Approval {
                step: step.clone(),
                by: by.clone(),
                at: when.clone(),
            });
        }
        Record::RollbackStarted { step, for_step } => {
            rollback::declared(state, step, for_step, at, &err)?;
        }
        Record::RollbackSucceeded { step } | Record::RollbackFailed { step, .. } => {
            rollback::outcome(state, record, step, at, &err)?;
        }
        Record::RunPaused { reason } => state.paused = Some(reason.clone()),
        Record::AbortRequested { by } => state.abort_requested = Some(by.clone()),
        Record::RunFinished { outcome, summary } => {
            state.finished = Some((*outcome, summary.clone()));
            state.finished_ms = Some(at);
        }
        Record::ActionNotSent {
            step,
            attempt,
            error,
            retryable,
        } => {
            let rec = existing(state, step, &err)?;
            match &rec.state {
                StepState::Started { attempt: a, .. } if a == attempt => {}
                s => return Err(attempt_mismatch(s, *attempt, &err)),
            }
            rec.state = StepState::AttemptFailed {
                attempt: *attempt,
                error: error.clone(),
                retryable: *retryable,
            };
        }
        Record::ClusterLock { .. } => {}
        Record::PreflightOverride {
            step,
            reason,
            by,
            host,
            findings,
        } => match step {
            None => {
                // The first decision stands; a later session cannot widen or replace it.
                if state.preflight_override.is_none() {
                    state.preflight_override = Some(PreflightOverride {
                        reason: reason.clone(),
                        by: by.clone(),
                        host: host.clone(),
                    });
                }
            }
            Some(step) => {
                if state.preflight_override.is_none() {
                    return Err(err(
                        "a preflight was overridden without the run's override decision".into(),
                    ));
                }
                state
                    .preflight_overridden
                    .push((step.clone(), findings.clone()));
            }
        },
    }
    Ok(())
}

/// The step's record, created `Pending` if new.
fn step_mut<'a>(state: &'a mut RunState, step: &str) -> &'a mut StepRecord {
    if !state.steps.contains_key(step) {
        state.step_order.push(step.to_owned());
    }
    state.steps.entry(step.to_owned()).or_default()
}

/// The step's record, or an error if nothing was ever recorded for it.
fn existing<'a>(
    state: &'a mut RunState,
    step: &str,
    err: &impl Fn(String) -> Error,
) -> Result<&'a mut StepRecord, Error> {
    state
        .steps
        .get_mut(step)
        .ok_or_else(|| err("the step never started".into()))
}

/// The error for an attempt-scoped record that does not match the step's current attempt.
fn attempt_mismatch(state: &StepState, attempt: u32, err: &impl Fn(String) -> Error) -> Error {
    match state {
        StepState::Started { attempt: a, .. } | StepState::ActionDone { attempt: a, .. } => err(
            format!("attempt {attempt} does not match the current attempt {a}"),
        ),
        s => err(format!("not legal while the step is {}", s.name())),
    }
}
