//! The state a journal folds into, split out of `replay.rs`: [`RunState`] and what it holds
//! per step ([`StepRecord`], [`StepState`]), per session and per approval, and the replay
//! [`Error`]. Only `replay::apply` builds or changes these; everything else reads them.

use std::collections::BTreeMap;

use crate::journal::exposure::Exposure;
use crate::journal::record::{Fields, InDoubtResolution, RunHeader, RunOutcome};

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

/// Where one step stands. See the [module docs](super#step-lifecycle).
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

/// The state of a run, as folded from its journal. Built only by [`apply`](super::apply).
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
