//! `runbook status RUN_ID`: each step's state, attempts, timing and outcome, with the guard
//! verdicts and wait figures it saw (read-only, no lock).

use std::fmt::Write as _;

use crate::cli::{Error, print_out, session};
use crate::journal::{Fields, Journal, RunOutcome, StepState, time};

fn figures(f: &Fields) -> String {
    let parts: Vec<String> = f.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" [{}]", parts.join(" "))
    }
}

/// Shows a run.
pub fn run(run_id: &str, state_dir: Option<&std::path::Path>) -> Result<(), Error> {
    let state = session::state_dir(state_dir)?;
    let run = state.open_run(run_id).map_err(Error::Journal)?;
    let snapshot = Journal::read(&run).map_err(Error::Journal)?;
    let s = &snapshot.state;
    let mut out = String::new();
    if let Some(h) = &s.header {
        let _ = writeln!(
            out,
            "run {} (`{}`), started {}",
            h.run_id, h.runbook, h.started_at
        );
        let _ = writeln!(
            out,
            "  params: {}",
            serde_json::Value::Object(h.params.clone())
        );
        let _ = writeln!(out, "  plan: {}", h.plan_hash);
    }
    let status = match (&s.finished, &s.paused) {
        (Some((o, summary)), _) => format!("finished: {o:?} ({summary})"),
        (None, Some(reason)) => format!("paused: {reason}"),
        (None, None) => "unfinished (interrupted, or being driven)".to_owned(),
    };
    let _ = writeln!(out, "  status: {status}");
    let _ = writeln!(out, "  sessions: {}", s.sessions.len());
    if let Some(t) = &snapshot.contents.torn {
        let _ = writeln!(out, "  journal: {t}");
    }
    for id in &s.step_order {
        let Some(rec) = s.step(id) else { continue };
        let timing = match (rec.first_started_ms, rec.ended_ms) {
            (Some(a), Some(b)) => format!(", {} ms", b.saturating_sub(a)),
            (Some(a), None) => format!(", started {}", time::rfc3339(a)),
            _ => String::new(),
        };
        let outcome = match &rec.state {
            StepState::Failed { error } | StepState::RollbackFailed { error } => {
                format!(": {error}")
            }
            StepState::Skipped { reason } => format!(": {reason}"),
            StepState::Refused { guard, reason } => format!(": guard `{guard}`: {reason}"),
            StepState::AwaitingApproval { prompt } => format!(": {prompt}"),
            StepState::Succeeded { outputs } => figures(outputs),
            StepState::RolledBack => rec
                .failure
                .as_ref()
                .map(|e| format!(": failed ({e}), then undone"))
                .unwrap_or_default(),
            _ => String::new(),
        };
        let of = rec
            .rollback_of
            .as_ref()
            .map(|f| format!(" (undoes `{f}`)"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{id}{of}: {} ({} attempt(s){timing}){outcome}",
            rec.state.name(),
            rec.attempts
        );
        for g in &rec.guards {
            let verdict = if g.passed { "passed" } else { "refused" };
            let reason = g
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  guard `{}` {verdict}{reason}{}",
                g.guard,
                figures(&g.figures)
            );
        }
        for w in &rec.waits {
            let verdict = if w.satisfied { "held" } else { "timed out" };
            let _ = writeln!(
                out,
                "  wait `{}` (attempt {}) {verdict} after {} ms{}",
                w.condition,
                w.attempt,
                w.elapsed_ms,
                figures(&w.figures)
            );
        }
    }
    // Steps the journal never mentions: from the stored runbook copy (secret values are not
    // needed to know the steps: they are never folded into the plan).
    let placeholders: Vec<(String, String)> = s
        .header
        .iter()
        .flat_map(|h| h.params.iter())
        .filter(|(_, v)| v.as_str() == Some(crate::secret::REDACTED))
        .map(|(k, _)| (k.clone(), crate::secret::REDACTED.to_owned()))
        .collect();
    if let Ok(plan) = session::load_plan(&run, &placeholders) {
        let pending: Vec<&str> = plan
            .steps()
            .map(|st| st.id.as_str())
            .filter(|id| !s.step_order.iter().any(|o| o == id))
            .collect();
        if !pending.is_empty() {
            let _ = writeln!(
                out,
                "not started ({}): {}",
                pending.len(),
                pending.join(", ")
            );
        }
        let rolling_back = s.abort_requested.is_some()
            || matches!(
                s.outcome(),
                Some(RunOutcome::Failed | RunOutcome::RolledBack | RunOutcome::Aborted)
            );
        if rolling_back {
            for n in crate::exec::summary::not_undone_all(&plan, s) {
                let _ = writeln!(out, "not undone: {}: {}", n.step, n.error);
            }
        }
    }
    print_out(&out)
}
