//! `runbook runs`: every run with its status, age and current step (read-only, no lock;
//! `--output json` for scripts).

use std::fmt::Write as _;

use crate::cli::args::DataFormat;
use crate::cli::{Error, print_json, print_out, session};
use crate::journal::{Journal, RunStatus, StepState, time};

/// One run, as both renderings show it.
#[derive(Debug, serde::Serialize)]
struct Row {
    id: String,
    runbook: Option<String>,
    /// `not started`, `finished: <outcome>`, `paused`, `interrupted`, `unreadable: …`.
    status: String,
    /// Steps started with no outcome (interrupted runs).
    in_doubt: usize,
    /// Why it paused, when it did.
    paused: Option<String>,
    started_ms: Option<u64>,
    age_ms: Option<u64>,
    /// The newest step that has not succeeded or been skipped (unfinished runs).
    current_step: Option<String>,
}

fn row(summary: &crate::journal::RunSummary, now: u64) -> Row {
    let snapshot = Journal::read(&summary.run).ok();
    let paused = snapshot.as_ref().and_then(|s| s.state.paused.clone());
    let mut in_doubt = 0;
    let status = match &summary.status {
        RunStatus::NotStarted => "not started".to_owned(),
        RunStatus::Finished(o) => format!("finished: {o:?}").to_lowercase(),
        RunStatus::Unfinished { in_doubt: n } => {
            in_doubt = *n;
            match (&paused, n) {
                (Some(_), _) => "paused".to_owned(),
                (None, 0) => "interrupted".to_owned(),
                (None, n) => format!("interrupted ({n} in doubt)"),
            }
        }
        RunStatus::Unreadable(e) => format!("unreadable: {e}"),
    };
    let started_ms = snapshot.as_ref().and_then(|s| s.state.started_ms);
    let current_step = snapshot.as_ref().and_then(|s| {
        if s.state.finished.is_some() {
            return None;
        }
        s.state
            .step_order
            .iter()
            .rev()
            .find(|id| {
                !matches!(
                    s.state.step_state(id),
                    StepState::Succeeded { .. } | StepState::Skipped { .. }
                )
            })
            .cloned()
    });
    Row {
        id: summary.run.id().to_owned(),
        runbook: summary.runbook.clone(),
        status,
        in_doubt,
        paused,
        started_ms,
        age_ms: started_ms.map(|ms| now.saturating_sub(ms)),
        current_step,
    }
}

/// Lists runs.
pub fn run(state_dir: Option<&std::path::Path>, output: DataFormat) -> Result<(), Error> {
    let state = session::state_dir(state_dir)?;
    let runs = state.list_runs().map_err(Error::Journal)?;
    let now = time::now_ms();
    let rows: Vec<Row> = runs.iter().map(|s| row(s, now)).collect();
    if output == DataFormat::Json {
        return print_json(&serde_json::json!({
            "state_dir": state.runs_dir().display().to_string(),
            "runs": rows,
        }));
    }
    if rows.is_empty() {
        return print_out(&format!("no runs in `{}`\n", state.runs_dir().display()));
    }
    let mut out = format!(
        "{:<26} {:<22} {:<28} {:>8}  {}\n",
        "RUN", "RUNBOOK", "STATUS", "AGE", "CURRENT STEP"
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "{:<26} {:<22} {:<28} {:>8}  {}",
            r.id,
            r.runbook.as_deref().unwrap_or("?"),
            r.status,
            r.age_ms.map(age).unwrap_or_default(),
            r.current_step.as_deref().unwrap_or_default()
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
