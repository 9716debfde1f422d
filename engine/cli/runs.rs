//! `runbook runs`: every run with its status, age and current step (read-only, no lock).

use std::fmt::Write as _;

use crate::cli::{Error, print_out, session};
use crate::journal::{Journal, RunStatus, StepState, time};

/// Lists runs.
pub fn run(state_dir: Option<&std::path::Path>) -> Result<(), Error> {
    let state = session::state_dir(state_dir)?;
    let runs = state.list_runs().map_err(Error::Journal)?;
    if runs.is_empty() {
        return print_out(&format!("no runs in `{}`\n", state.runs_dir().display()));
    }
    let now = time::now_ms();
    let mut out = format!(
        "{:<26} {:<22} {:<28} {:>8}  {}\n",
        "RUN", "RUNBOOK", "STATUS", "AGE", "CURRENT STEP"
    );
    for summary in runs {
        let snapshot = Journal::read(&summary.run).ok();
        let status = match &summary.status {
            RunStatus::NotStarted => "not started".to_owned(),
            RunStatus::Finished(o) => format!("finished: {o:?}").to_lowercase(),
            RunStatus::Unfinished { in_doubt } => {
                let paused = snapshot.as_ref().and_then(|s| s.state.paused.clone());
                match (paused, in_doubt) {
                    (Some(_), _) => "paused".to_owned(),
                    (None, 0) => "interrupted".to_owned(),
                    (None, n) => format!("interrupted ({n} in doubt)"),
                }
            }
            RunStatus::Unreadable(e) => format!("unreadable: {e}"),
        };
        let age = snapshot
            .as_ref()
            .and_then(|s| s.state.started_ms)
            .map(|ms| age(now.saturating_sub(ms)))
            .unwrap_or_default();
        let current = snapshot
            .as_ref()
            .and_then(|s| {
                if s.state.finished.is_some() {
                    return None;
                }
                s.state.step_order.iter().rev().find(|id| {
                    !matches!(
                        s.state.step_state(id),
                        StepState::Succeeded { .. } | StepState::Skipped { .. }
                    )
                })
            })
            .cloned()
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<26} {:<22} {:<28} {:>8}  {}",
            summary.run.id(),
            summary.runbook.as_deref().unwrap_or("?"),
            status,
            age,
            current
        );
    }
    print_out(&out)
}

fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}
