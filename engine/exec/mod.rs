//! The durable executor: walks a [`Plan`], one step at a time, so that the process can be
//! killed at any instant and `runbook resume` continues exactly where it stopped.
//!
//! The journal is the only state. The [`Runner`] never keeps its own idea of where a run
//! stands: every decision reads the [`RunState`](crate::journal::RunState) that the journal
//! folds with the same pure `replay::apply` on append and on open, so a live run and a resumed
//! run cannot disagree. The protocol for each step (see `docs/design/executor.md`):
//!
//! ```text
//! when ─▶ [approval] ─▶ step-started (intent, fsynced) ─▶ guards (fresh) ─▶ action (timeout)
//!      ─▶ wait (timeout outside the condition; polls are events, only the outcome is journaled)
//!      ─▶ step-succeeded (the checkpoint)
//! ```
//!
//! Failures go through the retry policy ([`retry`]); a failure retries do not fix turns to the
//! rollback path ([`rollback`]); a resumed run first settles in-doubt steps ([`in_doubt`]).
//! Any journal error stops the run before its next side effect.
//!
//! Pieces, one idea per file: [`schedule`] (pure next step), [`attempt`] (one attempt),
//! [`batch`] (the steps of a `parallel` batch in flight together),
//! [`retry`], [`rollback`], [`in_doubt`], [`eval`] (rhai at run time), [`effects`] (the side
//! effect trait) and [`local`] (the local actions), [`redact`] (secrets), [`dry_run()`] and
//! [`summary`] (the report when a run stops).

pub mod attempt;
pub mod batch;
pub mod command;
pub mod dry_run;
pub mod effects;
pub mod eval;
pub mod in_doubt;
pub mod local;
pub mod redact;
pub mod retry;
pub mod rollback;
pub mod schedule;
pub mod summary;

use crate::event::{Event, Report, Stop};
use crate::journal::{self, Journal, Record, RunOutcome};
use crate::plan::Plan;

pub use dry_run::dry_run;
pub use effects::{
    ActionCall, ActionOutcome, CheckCall, EffectError, Effects, Poll, Probe, Verdict,
};
pub use eval::{EvalError, Evaluator};
pub use local::LocalEffects;
pub use redact::Redactor;

/// Receives the executor's events. Implementations must not fail the run: a reporter that
/// cannot write drops its output (see [`crate::report`]).
pub trait EventSink {
    /// Handles one event.
    fn emit(&self, event: &Event);
}

/// An [`EventSink`] that discards everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _event: &Event) {}
}

/// Asks an operator, interactively, to approve a step (the CLI offers one on a terminal).
pub trait Approver {
    /// Shows `prompt` for `step` and returns whether the operator approved.
    fn ask(&self, step: &str, prompt: &str) -> bool;
}

/// How a session runs.
#[derive(Clone, Copy, Default)]
pub struct Options<'a> {
    /// `--yes`: pre-approve approval gates that declare `allow_yes: true` (never others).
    pub yes: bool,
    /// Asks an operator at approval gates; without one the run pauses (exit 5).
    pub approver: Option<&'a dyn Approver>,
    /// Who approves, for the journal (`approved.by`, `abort-requested.by`).
    pub user: &'a str,
}

/// Why a session stopped without a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The journal could not be written (or refused a record): the run stopped before its next
    /// side effect; `runbook resume` continues it.
    #[error("journal failure; the run stopped before its next side effect")]
    Journal(#[from] journal::Error),
    /// An interrupted step could not be settled, so nothing after it may run.
    #[error("cannot settle interrupted step `{step}`")]
    Settle {
        /// The step in doubt.
        step: String,
        /// Why.
        #[source]
        source: EffectError,
    },
    /// The journal names a step the plan does not have.
    #[error("the journal names step `{step}`, which the plan does not have")]
    UnknownStep {
        /// The step.
        step: String,
    },
}

/// Drives one session of a run: from its journal's current state to a stop.
pub struct Runner<'a, E: Effects> {
    plan: &'a Plan,
    journal: Journal,
    effects: &'a E,
    events: &'a dyn EventSink,
    eval: Evaluator,
    redact: Redactor,
    options: Options<'a>,
    /// Driving a `parallel` batch: steps stop before their wait (see [`batch`]).
    batch_mode: bool,
}

impl<'a, E: Effects> Runner<'a, E> {
    /// A runner for `plan` over an open `journal` (created by `runbook run`, opened by
    /// `resume`, `approve` or `abort`).
    pub fn new(
        plan: &'a Plan,
        journal: Journal,
        effects: &'a E,
        events: &'a dyn EventSink,
        options: Options<'a>,
    ) -> Self {
        let redact = Redactor::new(plan);
        Runner {
            plan,
            eval: Evaluator::new(plan).sharing(redact.derived()),
            redact,
            journal,
            effects,
            events,
            options,
            batch_mode: false,
        }
    }

    /// The journal (for tests and the CLI).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Appends `abort-requested` (unless one is already journaled), so that [`Runner::run`]
    /// runs the rollback path and finishes the run as aborted.
    pub fn request_abort(&mut self) -> Result<(), Error> {
        if self.journal.state().abort_requested.is_none() {
            let by = self.options.user.to_owned();
            self.append(vec![Record::AbortRequested { by }])?;
        }
        Ok(())
    }

    /// Runs until the run finishes or pauses, emits [`Event::Stopped`] and returns the report.
    /// Consumes the runner: the journal (and the run lock) is released when it returns.
    pub async fn run(mut self) -> Result<Report, Error> {
        let state = self.journal.state();
        let done = self
            .plan
            .steps()
            .filter(|s| schedule::is_done(state.step_state(&s.id)))
            .count();
        self.events.emit(&Event::Session {
            run_id: state
                .header
                .as_ref()
                .map(|h| h.run_id.clone())
                .unwrap_or_default(),
            runbook: self.plan.runbook.clone(),
            steps: self.plan.len(),
            done,
            resumed: state.sessions.len() > 1,
        });
        for s in state.in_doubt_steps() {
            if self.plan.step(&s.step).is_none() {
                return Err(Error::UnknownStep { step: s.step });
            }
        }
        let stop = self.drive().await?;
        let report = summary::build(self.plan, self.journal.state(), stop, &self.redact);
        self.events.emit(&Event::Stopped {
            report: report.clone(),
        });
        Ok(report)
    }

    async fn drive(&mut self) -> Result<Stop, Error> {
        if self.journal.state().abort_requested.is_none() {
            self.settle_in_doubt().await?;
        }
        loop {
            match schedule::next(self.plan, self.journal.state()) {
                schedule::Next::Finished => {
                    let summary = format!("{} steps done", self.plan.len());
                    self.append(vec![Record::RunFinished {
                        outcome: RunOutcome::Succeeded,
                        summary,
                    }])?;
                    return Ok(Stop::Succeeded);
                }
                schedule::Next::RollBack => return self.roll_back().await,
                schedule::Next::Step(step) => {
                    let stop = match &step.batch {
                        Some(b) if b.size > 1 => self.drive_batch(b).await?,
                        _ => self.drive_step(step).await?,
                    };
                    if let Some(stop) = stop {
                        return Ok(stop);
                    }
                }
            }
        }
    }

    /// Appends records as one group commit and emits them as events.
    fn append(&mut self, records: Vec<Record>) -> Result<(), Error> {
        let entries = self.journal.append_batch(records)?;
        for e in entries {
            self.events.emit(&Event::Record {
                seq: e.seq,
                at_ms: e.at_ms,
                record: e.record.clone(),
            });
        }
        Ok(())
    }

    fn message(&self, step: &str, text: &str) {
        self.events.emit(&Event::Message {
            step: step.to_owned(),
            text: self.redact.text(text),
        });
    }
}
