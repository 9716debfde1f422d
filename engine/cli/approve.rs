//! `runbook approve RUN_ID STEP`: append a durable approval for a step that waits for one.
//! The paused run's process has exited (releasing the lock); `runbook resume` continues it.

use crate::cli::{Error, print_out, session};
use crate::journal::{Journal, Record, StepState, time};

/// Approves a step.
pub fn run(run_id: &str, step: &str, state_dir: Option<&std::path::Path>) -> Result<(), Error> {
    let state = session::state_dir(state_dir)?;
    let run = state.open_run(run_id).map_err(Error::Journal)?;
    let mut journal = Journal::open(&run).map_err(Error::Journal)?.journal;
    match journal.state().step_state(step) {
        StepState::AwaitingApproval { .. } => {}
        other => {
            let waiting: Vec<&str> = journal
                .state()
                .steps
                .iter()
                .filter(|(_, r)| matches!(r.state, StepState::AwaitingApproval { .. }))
                .map(|(id, _)| id.as_str())
                .collect();
            let help = if waiting.is_empty() {
                "no step of this run waits for approval".to_owned()
            } else {
                format!("waiting for approval: {}", waiting.join(", "))
            };
            return Err(Error::Usage(format!(
                "step `{step}` is not waiting for approval (it is {}); {help}",
                other.name()
            )));
        }
    }
    journal
        .append(Record::Approved {
            step: step.to_owned(),
            by: session::user(),
            at: time::now_rfc3339(),
        })
        .map_err(Error::Journal)?;
    print_out(&format!(
        "approved `{step}`; continue with `runbook resume {run_id}`\n"
    ))
}
