//! `runbook resume [RUN_ID]`: continue an interrupted or paused run exactly where it stopped.
//!
//! Checks first without the lock (recompile the stored source with the stored params, compare
//! the plan hash), then opens the journal under the lock (a second resume is refused, naming
//! the holder), truncating a torn last record, and drives the run.

use crate::cli::Error;
use crate::cli::args::{ClusterArgs, OutputArg};
use crate::cli::reach::{Purpose, Reached};
use crate::cli::session::{self, Session, Target};
use crate::journal::Journal;

/// Resumes a run.
pub fn run(
    run_id: Option<&str>,
    params: Vec<(String, String)>,
    yes: bool,
    output: OutputArg,
    cluster: &ClusterArgs,
    state_dir: Option<&std::path::Path>,
) -> Result<(), Error> {
    let state = session::state_dir(state_dir)?;
    let run = match run_id {
        Some(id) => state.open_run(id).map_err(Error::Journal)?,
        None => {
            state
                .latest_unfinished()
                .map_err(Error::Journal)?
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "no unfinished run in `{}`",
                        state.runs_dir().display()
                    ))
                })?
                .run
        }
    };
    let plan = session::load_plan(&run, &params)?;
    let target = Target::for_resume(&run, cluster)?;
    // The cluster first (it answers, and is still the recorded one), then the journal: a
    // refused resume appends nothing.
    let reached = Reached::reach(&target, &run.path().join("sim"), Purpose::Resume)?;
    let opened = match Journal::open(&run) {
        Ok(o) => o,
        Err(e) => {
            reached.close();
            return Err(Error::Journal(e));
        }
    };
    let events = session::reporters(output);
    session::torn(&events, opened.torn.as_ref());
    reached.drive(
        Session {
            plan: &plan,
            journal: opened.journal,
            events: &events,
            output,
            yes,
            abort: false,
            lock: session::LockOptions::from_args(cluster),
        },
        &run,
    )
}
