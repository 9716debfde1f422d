//! `runbook abort RUN_ID`: journal the abort, run the rollbacks of the completed steps (newest
//! first), and finish the run as aborted.

use crate::cli::Error;
use crate::cli::args::{ClusterArgs, OutputArg};
use crate::cli::reach::{Purpose, Reached};
use crate::cli::session::{self, Session, Target};
use crate::journal::Journal;

/// Aborts a run.
pub fn run(
    run_id: &str,
    params: Vec<(String, String)>,
    output: OutputArg,
    cluster: &ClusterArgs,
    state_dir: Option<&std::path::Path>,
) -> Result<(), Error> {
    let state = session::state_dir(state_dir)?;
    let run = state.open_run(run_id).map_err(Error::Journal)?;
    let plan = session::load_plan(&run, &params)?;
    let target = Target::for_resume(&run, cluster)?;
    // The cluster first (as `resume`): a refused abort appends nothing.
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
            yes: false,
            abort: true,
            lock: session::LockOptions::from_args(cluster),
        },
        &run,
    )
}
