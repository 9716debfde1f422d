//! The executor's events: the one channel from a run to whatever shows it.
//!
//! The executor never prints (only `cli/` and `report/` may); it emits typed [`Event`]s, and
//! reporters in [`crate::report`] turn them into progress bars, plain lines or JSON lines
//! (nextest's runner/reporter split). Every committed journal record becomes an
//! [`Event::Record`], so what an operator sees is exactly what the journal holds; wait polls,
//! which are deliberately not journaled, arrive as [`Event::WaitProgress`]. Events carry no
//! secret: the executor redacts free text before it reaches the journal or an event.
//!
//! The JSON form (`--output json`, one object per line, tagged by `event`) is documented in
//! `docs/cli.md` and is a stable interface for scripts.

use serde::Serialize;

use crate::journal::{Fields, Record, RunOutcome};

/// Something that happened during a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A process started (or resumed) driving a run.
    Session {
        /// The run id.
        run_id: String,
        /// The runbook's name.
        runbook: String,
        /// Main steps in the plan.
        steps: usize,
        /// Main steps already finished (succeeded or skipped) when this session started.
        done: usize,
        /// True for `runbook resume`, `approve` and `abort`.
        resumed: bool,
    },
    /// Opening the journal truncated a torn final record (a crash during a write).
    TornTail {
        /// What was truncated, for people.
        description: String,
    },
    /// A record was committed to the journal (fsynced).
    Record {
        /// Its sequence number.
        seq: u64,
        /// When, unix ms.
        at_ms: u64,
        /// The record.
        record: Record,
    },
    /// One poll of a wait condition (not journaled; only the outcome is).
    WaitProgress {
        /// The step.
        step: String,
        /// The condition.
        condition: String,
        /// Time waited so far.
        elapsed_ms: u64,
        /// The wait's timeout.
        timeout_ms: u64,
        /// What the poll observed.
        figures: Fields,
        /// Whether the condition held on this poll.
        satisfied: bool,
        /// A transient error of this poll, if any.
        error: Option<String>,
    },
    /// A message from an action (the `log` action, or a cluster action's notes).
    Message {
        /// The step.
        step: String,
        /// The text (redacted).
        text: String,
    },
    /// `--dry-run`: what one step would do.
    DryRun {
        /// The step.
        step: String,
        /// One line per thing it would do or check, in order.
        lines: Vec<String>,
    },
    /// The session stopped: the run finished, or paused for an operator.
    Stopped {
        /// The report.
        report: Report,
    },
}

/// Why a session stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stop {
    /// Finished: every step succeeded or was skipped.
    Succeeded,
    /// Finished: a step failed and no rollback could undo the work (or one failed).
    Failed,
    /// Finished: a step failed and the rollbacks ran.
    RolledBack,
    /// Finished: an operator aborted the run; rollbacks ran.
    Aborted,
    /// Paused at an approval gate (`runbook approve RUN STEP`, then `runbook resume`).
    AwaitingApproval,
    /// Paused: a guard refused a disruptive action; nothing unsafe was done.
    GuardRefused,
    /// `--dry-run` walked the plan; nothing was done.
    DryRun,
}

impl Stop {
    /// The finished outcome, if this stop finished the run.
    pub fn outcome(self) -> Option<RunOutcome> {
        match self {
            Stop::Succeeded => Some(RunOutcome::Succeeded),
            Stop::Failed => Some(RunOutcome::Failed),
            Stop::RolledBack => Some(RunOutcome::RolledBack),
            Stop::Aborted => Some(RunOutcome::Aborted),
            Stop::AwaitingApproval | Stop::GuardRefused | Stop::DryRun => None,
        }
    }

    /// The process exit code for this stop (see [`crate::exit_code`]).
    pub fn exit_code(self) -> i32 {
        use crate::exit_code as x;
        match self {
            Stop::Succeeded | Stop::DryRun => x::SUCCESS,
            Stop::Failed | Stop::RolledBack => x::RUN_FAILED,
            Stop::Aborted => x::ABORTED,
            Stop::AwaitingApproval => x::AWAITING_APPROVAL,
            Stop::GuardRefused => x::GUARD_REFUSED,
        }
    }
}

/// A step that failed, with why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepError {
    /// The step.
    pub step: String,
    /// The error (redacted).
    pub error: String,
}

/// What a session did and what the operator must do next: shown when a run stops.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The run id (empty for a dry run).
    pub run_id: String,
    /// The runbook's name.
    pub runbook: String,
    /// Why the session stopped.
    pub stop: Stop,
    /// Main steps that succeeded, in order (including ones later rolled back).
    pub done: Vec<String>,
    /// Main steps skipped by `when`.
    pub skipped: Vec<String>,
    /// The step that failed, if one did.
    pub failed: Option<StepError>,
    /// Rollback steps that succeeded, in the order they ran.
    pub rolled_back: Vec<String>,
    /// Rollback steps that failed.
    pub rollback_failed: Vec<StepError>,
    /// Every step whose action may have taken effect and was not undone, with why: no
    /// rollback declared, its rollback refused or failed, still in doubt, or the rollback path
    /// stopped before it.
    pub not_undone: Vec<StepError>,
    /// Steps interrupted with an unknown outcome that nothing settled.
    pub in_doubt: Vec<String>,
    /// Main steps that never ran.
    pub not_run: Vec<String>,
    /// What the operator should do next, one instruction per line.
    pub next: Vec<String>,
    /// Preflight refusals overridden with `--override-preflight`, one line each (who, where,
    /// why, which findings).
    pub preflight_overridden: Vec<String>,
}
