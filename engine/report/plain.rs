//! Plain lines, one per event, for logs, CI and pipes (no colour, no cursor movement).
//!
//! [`line()`] is also what the progress reporter prints above its bars, so both tell the same
//! story in the same words.

use std::fmt::Write as _;

use super::{Reporter, Sink};
use crate::event::{Event, Report, Stop};
use crate::journal::{Fields, Record};

/// Plain-text reporter.
pub struct Plain {
    out: Sink,
}

impl Plain {
    /// Writes to `out`.
    pub fn new(out: Sink) -> Self {
        Plain { out }
    }
}

impl Reporter for Plain {
    fn report(&mut self, event: &Event) -> std::io::Result<()> {
        if let Some(text) = line(event) {
            writeln!(self.out, "{text}")?;
            self.out.flush()?;
        }
        Ok(())
    }
}

fn figures(f: &Fields) -> String {
    if f.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = f.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(" [{}]", parts.join(" "))
    }
}

fn secs(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// The text for one event, or `None` for events plain output leaves out (wait polls).
pub fn line(event: &Event) -> Option<String> {
    Some(match event {
        Event::Session {
            run_id,
            runbook,
            steps,
            done,
            resumed,
        } => {
            let verb = if *resumed { "resuming" } else { "starting" };
            format!("{verb} run {run_id}: `{runbook}`, {done} of {steps} steps done")
        }
        Event::TornTail { description } => format!("journal: {description}"),
        Event::Record { record, .. } => return record_line(record),
        Event::WaitProgress { .. } => return None,
        Event::Message { step, text } => format!("  {step}: {text}"),
        Event::DryRun { step, lines } => {
            let mut s = format!("step {step}");
            for l in lines {
                let _ = write!(s, "\n  {l}");
            }
            s
        }
        Event::Stopped { report } => report_text(report),
    })
}

fn record_line(record: &Record) -> Option<String> {
    Some(match record {
        Record::RunStarted(_) | Record::SessionStarted { .. } => return None,
        Record::StepStarted { step, attempt, .. } => {
            if *attempt == 1 {
                format!("start    {step}")
            } else {
                format!("start    {step} (attempt {attempt})")
            }
        }
        Record::GuardPassed {
            guard, figures: f, ..
        } => format!("  guard `{guard}` passed{}", figures(f)),
        Record::GuardRefused {
            guard,
            reason,
            figures: f,
            ..
        } => format!("  guard `{guard}` REFUSED: {reason}{}", figures(f)),
        Record::ActionCompleted { .. } => return None,
        Record::ActionFailed {
            attempt,
            error,
            retryable,
            ..
        } => {
            let tail = if *retryable { "" } else { " (not retryable)" };
            format!("  attempt {attempt} failed: {error}{tail}")
        }
        Record::WaitSatisfied {
            condition,
            elapsed_ms,
            figures: f,
            ..
        } => format!(
            "  wait `{condition}` held after {}{}",
            secs(*elapsed_ms),
            figures(f)
        ),
        Record::WaitTimedOut {
            condition,
            elapsed_ms,
            figures: f,
            ..
        } => format!(
            "  wait `{condition}` TIMED OUT after {}{}",
            secs(*elapsed_ms),
            figures(f)
        ),
        Record::RetryScheduled {
            next_attempt,
            delay_ms,
            ..
        } => format!(
            "  retrying as attempt {next_attempt} in {}",
            secs(*delay_ms)
        ),
        Record::StepSucceeded { step, .. } => format!("ok       {step}"),
        Record::StepFailed { step, error } => format!("FAILED   {step}: {error}"),
        Record::StepSkipped { step, reason } => format!("skipped  {step}: {reason}"),
        Record::InDoubt {
            step,
            attempt,
            resolution,
        } => format!(
            "in doubt {step} (attempt {attempt} was interrupted): {}",
            serde_json::to_value(resolution)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        ),
        Record::ApprovalRequested { step, prompt } => format!("approval {step}: {prompt}"),
        Record::Approved { step, by, .. } => format!("approved {step} by {by}"),
        Record::RollbackStarted { step, for_step } => format!("undo     {for_step} with {step}"),
        Record::RollbackSucceeded { step } => format!("undone   {step}"),
        Record::RollbackFailed { step, error } => format!("UNDO FAILED {step}: {error}"),
        Record::RunPaused { reason } => format!("paused: {reason}"),
        Record::AbortRequested { by } => format!("abort requested by {by}"),
        Record::RunFinished { outcome, summary } => {
            format!("finished: {outcome:?} ({summary})")
        }
        Record::ActionNotSent { attempt, error, .. } => {
            format!("  attempt {attempt} not sent: {error}")
        }
        Record::ClusterLock {
            event,
            lease,
            holder,
            detail,
            ..
        } => format!("cluster lock {lease} {event:?} ({holder}): {detail}"),
        Record::PreflightOverride {
            step: None,
            reason,
            by,
            host,
            ..
        } => format!("preflight override granted by {by} on {host}: {reason}"),
        Record::PreflightOverride {
            step: Some(step),
            reason,
            findings,
            ..
        } => format!(
            "  preflight `{step}` OVERRIDDEN ({reason}): {} critical finding(s) not refusing",
            findings.len()
        ),
    })
}

/// The final report as text.
pub fn report_text(r: &Report) -> String {
    let head = match r.stop {
        Stop::Succeeded => "succeeded",
        Stop::Failed => "FAILED",
        Stop::RolledBack => "FAILED and rolled back",
        Stop::Aborted => "aborted",
        Stop::AwaitingApproval => "paused: waiting for approval",
        Stop::GuardRefused => "paused: a guard refused",
        Stop::DryRun => "dry run",
    };
    let mut s = if r.run_id.is_empty() {
        format!("\n`{}`: {head}", r.runbook)
    } else {
        format!("\nrun {} (`{}`): {head}", r.run_id, r.runbook)
    };
    let list = |s: &mut String, label: &str, items: &[String]| {
        if !items.is_empty() {
            let _ = write!(s, "\n  {label}: {}", items.join(", "));
        }
    };
    list(&mut s, "done", &r.done);
    list(&mut s, "skipped", &r.skipped);
    list(&mut s, "rolled back", &r.rolled_back);
    list(&mut s, "in doubt", &r.in_doubt);
    for n in &r.not_undone {
        let _ = write!(s, "\n  not undone: {}: {}", n.step, n.error);
    }
    if r.stop != Stop::DryRun {
        list(&mut s, "not run", &r.not_run);
    }
    for line in &r.preflight_overridden {
        let _ = write!(s, "\n  preflight overridden: {line}");
    }
    for line in &r.next {
        let _ = write!(s, "\n  next: {line}");
    }
    s
}
