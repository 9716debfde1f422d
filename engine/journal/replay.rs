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

use std::collections::BTreeMap;

mod rollback;

use super::exposure::Exposure;
use super::file::Entry;
use super::record::{Fields, InDoubtResolution, Record, RunHeader, RunOutcome};

/// An illegal record: the history in the journal cannot have happened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("record seq {seq} (`{record_type}`{}): {reason}", step.as_ref().map(|s| format!(" of step `{s}`")).unwrap_or_default())]
pub struct Error {
    /// The record's sequence number (its line in `journal.jsonl`).
    pub seq: u64,
    /// The record's type.
    pub record_type: &'static str,
    /// The step it is about, if any.
    pub step: Option<String>,
    /// Why it is illegal.
    pub reason: String,
}

/// Where one step stands. See the [module docs](self#step-lifecycle).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum StepState {
    /// Nothing recorded yet.
    #[default]
    Pending,
    /// An intent with no outcome yet: in doubt if the process died here.
    Started {
        /// The attempt.
        attempt: u32,
        /// The session that declared it.
        session: String,
        /// Observations taken before acting.
        pre_state: Fields,
    },
    /// The action's effect is known to have happened; wait and checkpoint may follow.
    ActionDone {
        /// The attempt.
        attempt: u32,
        /// The action's outputs (empty if known only by verification).
        outputs: Fields,
    },
    /// The attempt failed (action failed or wait timed out); a retry or a failure follows.
    AttemptFailed {
        /// The attempt.
        attempt: u32,
        /// The error.
        error: String,
        /// Whether it may be retried.
        retryable: bool,
    },
    /// Another attempt is scheduled.
    RetryScheduled {
        /// The attempt that starts next.
        next_attempt: u32,
        /// The delay before it.
        delay_ms: u64,
    },
    /// Resume settled an in-doubt attempt; what may follow depends on the resolution.
    InDoubtResolved {
        /// The attempt that was in doubt.
        attempt: u32,
        /// How it was settled.
        resolution: InDoubtResolution,
    },
    /// Checkpointed: done for this run.
    Succeeded {
        /// The step's outputs.
        outputs: Fields,
    },
    /// Failed for good.
    Failed {
        /// The error.
        error: String,
    },
    /// Skipped.
    Skipped {
        /// Why.
        reason: String,
    },
    /// The guard refused; the action never ran.
    Refused {
        /// The guard.
        guard: String,
        /// Why.
        reason: String,
    },
    /// Waiting for an operator.
    AwaitingApproval {
        /// What the operator is asked.
        prompt: String,
    },
    /// An operator approved; the step may start.
    Approved {
        /// Who approved.
        by: String,
        /// When.
        at: String,
    },
    /// A rollback step's intent with no outcome yet: in doubt if the process died here.
    RollingBack {
        /// The forward step it undoes.
        for_step: String,
    },
    /// This forward step was undone by a rollback step.
    RolledBack,
    /// Undoing this forward step failed.
    RollbackFailed {
        /// The error.
        error: String,
    },
}

impl StepState {
    /// Whether the step has an intent and no outcome.
    pub fn is_in_doubt(&self) -> bool {
        matches!(self, Self::Started { .. } | Self::RollingBack { .. })
    }

    /// Whether nothing more can happen to the step in the forward path.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Succeeded { .. }
                | Self::Failed { .. }
                | Self::Skipped { .. }
                | Self::RolledBack
                | Self::RollbackFailed { .. }
        )
    }

    /// A short name for messages, e.g. `started`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Started { .. } => "started",
            Self::ActionDone { .. } => "action-done",
            Self::AttemptFailed { .. } => "attempt-failed",
            Self::RetryScheduled { .. } => "retry-scheduled",
            Self::InDoubtResolved { .. } => "in-doubt-resolved",
            Self::Succeeded { .. } => "succeeded",
            Self::Failed { .. } => "failed",
            Self::Skipped { .. } => "skipped",
            Self::Refused { .. } => "refused",
            Self::AwaitingApproval { .. } => "awaiting-approval",
            Self::Approved { .. } => "approved",
            Self::RollingBack { .. } => "rolling-back",
            Self::RolledBack => "rolled-back",
            Self::RollbackFailed { .. } => "rollback-failed",
        }
    }
}

/// A guard's verdict, kept for reports.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardResult {
    /// The guard's name.
    pub guard: String,
    /// Whether it passed.
    pub passed: bool,
    /// Why it refused, if it did.
    pub reason: Option<String>,
    /// The figures it decided on.
    pub figures: Fields,
}

/// A wait's result, kept for reports.
#[derive(Clone, Debug, PartialEq)]
pub struct WaitResult {
    /// The attempt.
    pub attempt: u32,
    /// The condition's name.
    pub condition: String,
    /// Whether it held (false: timed out).
    pub satisfied: bool,
    /// How long it took.
    pub elapsed_ms: u64,
    /// The last observation.
    pub figures: Fields,
}

/// Everything known about one step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepRecord {
    /// Where it stands.
    pub state: StepState,
    /// The highest attempt started (0: never started).
    pub attempts: u32,
    /// When its first attempt started, unix ms.
    pub first_started_ms: Option<u64>,
    /// When it reached its current terminal or stopping state, unix ms.
    pub ended_ms: Option<u64>,
    /// Guard verdicts, in order.
    pub guards: Vec<GuardResult>,
    /// Wait results, in order.
    pub waits: Vec<WaitResult>,
    /// For a rollback step: the forward step it undoes.
    pub rollback_of: Option<String>,
    /// The observations journaled with the latest intent (e.g. the boot id before a reboot),
    /// kept after the action so its wait condition can compare against them.
    pub pre_state: Fields,
    /// Whether its action may have taken effect (so its rollback applies), folded from its
    /// records by [`Exposure::after`].
    pub exposure: Exposure,
    /// Why the step failed for good (`step-failed`), kept after a rollback undoes it.
    pub failure: Option<String>,
}

/// A process that drove the run (one per `session-started`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The fencing id.
    pub id: String,
    /// The process id.
    pub pid: u32,
    /// The host.
    pub host: String,
    /// The `session-started` record's sequence number.
    pub seq: u64,
}

/// A durable approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    /// The step approved.
    pub step: String,
    /// Who approved.
    pub by: String,
    /// When.
    pub at: String,
}

/// A step whose intent is durable but whose outcome is not.
#[derive(Clone, Debug, PartialEq)]
pub struct InDoubtStep {
    /// The step id.
    pub step: String,
    /// The attempt in doubt (0 for a rollback step).
    pub attempt: u32,
    /// The session that declared the intent (empty for a rollback step).
    pub session: String,
    /// The observations taken before acting.
    pub pre_state: Fields,
    /// For a rollback step: the forward step it undoes.
    pub rollback_of: Option<String>,
}

/// The state of a run, as folded from its journal. Built only by [`apply`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunState {
    /// The run header, from `run-started`.
    pub header: Option<RunHeader>,
    /// When the run started, unix ms.
    pub started_ms: Option<u64>,
    /// Every session that drove the run, in order; the last one is current.
    pub sessions: Vec<Session>,
    /// Per-step state, by step id.
    pub steps: BTreeMap<String, StepRecord>,
    /// Step ids in the order they first appeared in the journal.
    pub step_order: Vec<String>,
    /// Approvals, in order.
    pub approvals: Vec<Approval>,
    /// Why the run is paused, if the last thing it did was pause.
    pub paused: Option<String>,
    /// Who asked to abort, if anyone did.
    pub abort_requested: Option<String>,
    /// How the run finished, with its summary.
    pub finished: Option<(RunOutcome, String)>,
    /// When the run finished, unix ms.
    pub finished_ms: Option<u64>,
    /// The last applied sequence number.
    pub last_seq: u64,
    /// `--override-preflight`: the operator's decision for this run (from the first
    /// `preflight-override` record without a step), honoured by every later session.
    pub preflight_override: Option<PreflightOverride>,
    /// Every preflight refusal that was overridden: `(step, findings overridden)`.
    pub preflight_overridden: Vec<(String, Vec<serde_json::Value>)>,
}

/// The operator's `--override-preflight` decision, as journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightOverride {
    /// The reason given.
    pub reason: String,
    /// Who decided.
    pub by: String,
    /// On which host.
    pub host: String,
}

impl RunState {
    /// The record of a step, if anything was recorded about it.
    pub fn step(&self, id: &str) -> Option<&StepRecord> {
        self.steps.get(id)
    }

    /// The state of a step (`Pending` if nothing was recorded).
    pub fn step_state(&self, id: &str) -> &StepState {
        static PENDING: StepState = StepState::Pending;
        self.steps.get(id).map_or(&PENDING, |s| &s.state)
    }

    /// The session currently driving the run.
    pub fn current_session(&self) -> Option<&Session> {
        self.sessions.last()
    }

    /// Steps with an intent but no outcome, in journal order.
    pub fn in_doubt_steps(&self) -> Vec<InDoubtStep> {
        self.step_order
            .iter()
            .filter_map(|id| {
                let rec = self.steps.get(id)?;
                match &rec.state {
                    StepState::Started {
                        attempt,
                        session,
                        pre_state,
                    } => Some(InDoubtStep {
                        step: id.clone(),
                        attempt: *attempt,
                        session: session.clone(),
                        pre_state: pre_state.clone(),
                        rollback_of: rec.rollback_of.clone(),
                    }),
                    StepState::RollingBack { for_step } => Some(InDoubtStep {
                        step: id.clone(),
                        attempt: 0,
                        session: String::new(),
                        pre_state: Fields::new(),
                        rollback_of: Some(for_step.clone()),
                    }),
                    _ => None,
                }
            })
            .collect()
    }

    /// How the run finished, if it did.
    pub fn outcome(&self) -> Option<RunOutcome> {
        self.finished.as_ref().map(|(o, _)| *o)
    }
}

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::journal::record::tests::header;

    pub(super) const S: &str = "reboot[192.168.2.20].wait";

    pub(super) fn run(records: Vec<Record>) -> Result<RunState, Error> {
        let entries: Vec<Entry> = records
            .into_iter()
            .enumerate()
            .map(|(i, record)| Entry {
                seq: i as u64 + 1,
                at_ms: 1000 * (i as u64 + 1),
                offset: 0,
                record,
            })
            .collect();
        fold(&entries)
    }

    pub(super) fn start() -> Vec<Record> {
        vec![
            Record::RunStarted(header("r1")),
            Record::SessionStarted {
                session: "s-1".into(),
                pid: 1,
                host: "h".into(),
            },
        ]
    }

    pub(super) fn started(step: &str, attempt: u32) -> Record {
        Record::StepStarted {
            step: step.into(),
            attempt,
            session: "s-1".into(),
            pre_state: json!({"boot_id": "a"}).as_object().unwrap().clone(),
        }
    }

    pub(super) fn with(
        mut base: Vec<Record>,
        more: impl IntoIterator<Item = Record>,
    ) -> Vec<Record> {
        base.extend(more);
        base
    }

    #[test]
    fn happy_path_reaches_succeeded_with_timings() {
        let state = run(with(
            start(),
            [
                started(S, 1),
                Record::GuardPassed {
                    step: S.into(),
                    guard: "quorum".into(),
                    figures: Fields::new(),
                },
                Record::ActionCompleted {
                    step: S.into(),
                    attempt: 1,
                    outputs: Fields::new(),
                },
                Record::WaitSatisfied {
                    step: S.into(),
                    attempt: 1,
                    condition: "stage_is(running)".into(),
                    elapsed_ms: 900,
                    figures: Fields::new(),
                },
                Record::StepSucceeded {
                    step: S.into(),
                    outputs: Fields::new(),
                },
                Record::RunFinished {
                    outcome: RunOutcome::Succeeded,
                    summary: "1 step".into(),
                },
            ],
        ))
        .unwrap();
        let rec = state.step(S).unwrap();
        assert!(matches!(rec.state, StepState::Succeeded { .. }));
        assert_eq!(
            (rec.attempts, rec.first_started_ms, rec.ended_ms),
            (1, Some(3000), Some(7000))
        );
        assert_eq!(rec.guards.len(), 1);
        assert!(rec.waits[0].satisfied);
        assert_eq!(state.outcome(), Some(RunOutcome::Succeeded));
        assert!(state.in_doubt_steps().is_empty());
        assert_eq!(state.last_seq, 8);
        assert_eq!(state.current_session().unwrap().id, "s-1");
    }

    #[test]
    fn intent_without_outcome_is_in_doubt_until_resolved() {
        let base = with(
            start(),
            [
                started(S, 1),
                Record::GuardPassed {
                    step: S.into(),
                    guard: "g".into(),
                    figures: Fields::new(),
                },
                Record::SessionStarted {
                    session: "s-2".into(),
                    pid: 2,
                    host: "h".into(),
                },
            ],
        );
        let state = run(base.clone()).unwrap();
        let doubt = state.in_doubt_steps();
        assert_eq!(doubt.len(), 1);
        assert_eq!(
            (
                doubt[0].step.as_str(),
                doubt[0].attempt,
                doubt[0].session.as_str()
            ),
            (S, 1, "s-1")
        );
        assert_eq!(doubt[0].pre_state["boot_id"], "a");

        // The new session may not re-declare the intent before resolving the doubt.
        let restart = Record::StepStarted {
            step: S.into(),
            attempt: 2,
            session: "s-2".into(),
            pre_state: Fields::new(),
        };
        let err = run(with(base.clone(), [restart.clone()])).unwrap_err();
        assert_eq!(err.seq, 6);
        assert!(err.reason.contains("in doubt"), "{err}");

        // Idempotent: rerun as attempt 2.
        let state = run(with(
            base.clone(),
            [
                Record::InDoubt {
                    step: S.into(),
                    attempt: 1,
                    resolution: InDoubtResolution::Rerun,
                },
                restart,
            ],
        ))
        .unwrap();
        assert!(matches!(
            state.step_state(S),
            StepState::Started { attempt: 2, .. }
        ));

        // Verify: the effect happened, continue after the action.
        let state = run(with(
            base.clone(),
            [
                Record::InDoubt {
                    step: S.into(),
                    attempt: 1,
                    resolution: InDoubtResolution::VerifiedDone,
                },
                Record::StepSucceeded {
                    step: S.into(),
                    outputs: Fields::new(),
                },
            ],
        ))
        .unwrap();
        assert!(matches!(state.step_state(S), StepState::Succeeded { .. }));

        // Confirm: ask an operator, durable approval, then start again.
        let state = run(with(
            base,
            [
                Record::InDoubt {
                    step: S.into(),
                    attempt: 1,
                    resolution: InDoubtResolution::AskOperator,
                },
                Record::ApprovalRequested {
                    step: S.into(),
                    prompt: "did n1 reboot?".into(),
                },
                Record::Approved {
                    step: S.into(),
                    by: "alice".into(),
                    at: "t".into(),
                },
            ],
        ))
        .unwrap();
        assert!(matches!(state.step_state(S), StepState::Approved { .. }));
        assert_eq!(state.approvals[0].by, "alice");
    }

    #[test]
    fn retry_path_and_attempt_numbers() {
        let state = run(with(
            start(),
            [
                started(S, 1),
                Record::ActionFailed {
                    step: S.into(),
                    attempt: 1,
                    error: "refused".into(),
                    retryable: true,
                },
                Record::RetryScheduled {
                    step: S.into(),
                    next_attempt: 2,
                    delay_ms: 10,
                },
                started(S, 2),
                Record::WaitTimedOut {
                    step: S.into(),
                    attempt: 2,
                    condition: "c".into(),
                    elapsed_ms: 5,
                    figures: Fields::new(),
                },
                Record::StepFailed {
                    step: S.into(),
                    error: "gave up".into(),
                },
            ],
        ))
        .unwrap();
        let rec = state.step(S).unwrap();
        assert_eq!(rec.attempts, 2);
        assert!(matches!(rec.state, StepState::Failed { .. }));
        assert!(!rec.waits[0].satisfied);

        let err = run(with(
            start(),
            [
                started(S, 1),
                Record::ActionCompleted {
                    step: S.into(),
                    attempt: 2,
                    outputs: Fields::new(),
                },
            ],
        ))
        .unwrap_err();
        assert!(err.reason.contains("does not match"), "{err}");
        let err = run(with(
            start(),
            [
                started(S, 1),
                Record::ActionFailed {
                    step: S.into(),
                    attempt: 1,
                    error: "x".into(),
                    retryable: true,
                },
                Record::RetryScheduled {
                    step: S.into(),
                    next_attempt: 3,
                    delay_ms: 0,
                },
                started(S, 2),
            ],
        ))
        .unwrap_err();
        assert_eq!(err.seq, 6);
    }

    #[test]
    fn illegal_transitions_name_the_sequence_number() {
        let err = run(with(
            start(),
            [Record::StepSucceeded {
                step: S.into(),
                outputs: Fields::new(),
            }],
        ))
        .unwrap_err();
        assert_eq!(
            (err.seq, err.record_type, err.step.as_deref()),
            (3, "step-succeeded", Some(S))
        );
        assert!(
            err.to_string()
                .starts_with("record seq 3 (`step-succeeded` of step"),
            "{err}"
        );

        let err = run(vec![Record::AbortRequested { by: "a".into() }]).unwrap_err();
        assert!(err.reason.contains("first record"));
        let err = run(with(start(), [Record::RunStarted(header("r1"))])).unwrap_err();
        assert_eq!(err.seq, 3);
        // Stale session (fencing).
        let err = run(with(
            start(),
            [Record::StepStarted {
                step: S.into(),
                attempt: 1,
                session: "s-old".into(),
                pre_state: Fields::new(),
            }],
        ))
        .unwrap_err();
        assert!(err.reason.contains("s-old"), "{err}");
        // Nothing after run-finished.
        let err = run(with(
            start(),
            [
                Record::RunFinished {
                    outcome: RunOutcome::Aborted,
                    summary: String::new(),
                },
                started(S, 1),
            ],
        ))
        .unwrap_err();
        assert_eq!(err.seq, 4);
        // Rollback of something that never ran.
        let err = run(with(
            start(),
            [Record::RollbackStarted {
                step: "undo".into(),
                for_step: S.into(),
            }],
        ))
        .unwrap_err();
        assert!(err.reason.contains("nothing to roll back"), "{err}");
    }

    #[test]
    fn failed_apply_leaves_state_unchanged() {
        let mut state = run(with(start(), [started(S, 1)])).unwrap();
        let before = state.clone();
        let bad = Entry {
            seq: 4,
            at_ms: 0,
            offset: 0,
            record: Record::RetryScheduled {
                step: S.into(),
                next_attempt: 2,
                delay_ms: 0,
            },
        };
        assert!(apply(&mut state, &bad).is_err());
        assert_eq!(state, before);
    }

    /// The undo snapshot of `apply` must cover everything any record can touch: try every
    /// record type against states where most of them are illegal.
    #[test]
    fn every_refused_record_leaves_state_unchanged() {
        let bases = [
            run(start()).unwrap(),
            run(with(start(), [started(S, 1)])).unwrap(),
            run(with(
                start(),
                [
                    started(S, 1),
                    Record::StepSucceeded {
                        step: S.into(),
                        outputs: Fields::new(),
                    },
                ],
            ))
            .unwrap(),
        ];
        let mut refused = 0;
        for base in &bases {
            for (i, record) in crate::journal::record::tests::one_of_each()
                .into_iter()
                .enumerate()
            {
                let mut state = base.clone();
                let entry = Entry {
                    seq: base.last_seq + 1 + i as u64,
                    at_ms: 1,
                    offset: 0,
                    record,
                };
                if apply(&mut state, &entry).is_err() {
                    assert_eq!(&state, base, "{:?}", entry.record);
                    refused += 1;
                }
            }
        }
        assert!(refused > 20, "{refused}");
    }

    #[test]
    fn guard_refusal_skip_pause_abort() {
        let state = run(with(
            start(),
            [
                started(S, 1),
                Record::GuardRefused {
                    step: S.into(),
                    guard: "quorum".into(),
                    reason: "1 of 3 left".into(),
                    figures: Fields::new(),
                },
                Record::StepSkipped {
                    step: "later".into(),
                    reason: "dependency refused".into(),
                },
                Record::RunPaused {
                    reason: "operator".into(),
                },
                Record::AbortRequested { by: "bob".into() },
            ],
        ))
        .unwrap();
        assert!(matches!(state.step_state(S), StepState::Refused { .. }));
        assert!(state.in_doubt_steps().is_empty());
        assert_eq!(state.paused.as_deref(), Some("operator"));
        assert_eq!(state.abort_requested.as_deref(), Some("bob"));
        assert_eq!(state.step_order, vec![S.to_owned(), "later".to_owned()]);
    }
}
