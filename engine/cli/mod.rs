//! The command-line front: parse arguments, run one subcommand, render any error once, and
//! turn it into an exit code from [`crate::exit_code`].
//!
//! Only this module (and the reporters) write to the terminal: data to stdout, diagnostics,
//! progress and errors to stderr.

pub mod abort;
pub mod actions;
pub mod approve;
pub mod args;
pub mod check;
pub mod completions;
pub mod doctor;
pub mod lint;
pub mod list;
pub mod param_value;
pub mod plan;
pub mod preflight;
pub mod reach;
pub mod resume;
pub mod run;
pub mod runs;
pub mod session;
pub mod sim;
pub mod sim_staging;
pub mod status;
pub mod unlock;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

use crate::diagnostic::Diagnostics;
use crate::exit_code;

/// A failure a subcommand reports to the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Runbooks that do not compile.
    #[error("{count} problem(s) found", count = .0.0.len())]
    Diagnostics(Diagnostics),
    /// Some files failed `runbook check`; their diagnostics were already printed.
    #[error("{failed} of {total} runbook(s) do not compile")]
    CheckFailed {
        /// How many failed.
        failed: usize,
        /// How many were checked.
        total: usize,
    },
    /// Looking a runbook up failed.
    #[error(transparent)]
    Library(#[from] crate::library::Error),
    /// A command-line problem found after parsing.
    #[error("{0}")]
    Usage(String),
    /// Writing the output failed.
    #[error("cannot write output")]
    Output(#[source] std::io::Error),
    /// Reading, writing or locking a run's journal failed.
    #[error(transparent)]
    Journal(crate::journal::Error),
    /// The executor stopped without finishing its session.
    #[error(transparent)]
    Exec(crate::exec::Error),
    /// The stored runbook no longer compiles to the plan the run started with.
    #[error(
        "the plan of run `{run}` changed (journal: {stored}, now: {now}); refusing to resume a different procedure"
    )]
    PlanChanged {
        /// The run.
        run: String,
        /// The hash in the journal.
        stored: String,
        /// The hash of the recompiled plan.
        now: String,
    },
    /// The async runtime could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// The cluster-wide disruption lock is held by another run, could not be taken, or was
    /// lost while the run drove (exit 7).
    #[error("{0}")]
    ClusterLock(String),
    /// The cluster does not answer (exit 12); nothing was written.
    #[error("{0}")]
    Unreachable(String),
    /// A session stopped with this exit code; the reporter already showed why.
    #[error("the run stopped with exit code {0}")]
    Stopped(i32),
}

impl Error {
    /// The exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Diagnostics(d) if d.0.iter().all(|d| d.code.is_param_error()) => {
                exit_code::USAGE
            }
            Error::Diagnostics(_) | Error::CheckFailed { .. } => exit_code::INVALID_RUNBOOK,
            Error::Library(crate::library::Error::NotFound { .. }) => exit_code::USAGE,
            Error::Library(_) | Error::Usage(_) => exit_code::USAGE,
            Error::Output(_) | Error::Runtime(_) => exit_code::INTERNAL,
            Error::Journal(e) | Error::Exec(crate::exec::Error::Journal(e)) => journal_code(e),
            Error::Exec(crate::exec::Error::Settle { .. }) => exit_code::RUN_FAILED,
            Error::Exec(crate::exec::Error::UnknownStep { .. }) => exit_code::JOURNAL,
            Error::PlanChanged { .. } => exit_code::INVALID_RUNBOOK,
            Error::Stopped(code) => *code,
            Error::ClusterLock(_) => exit_code::LOCKED,
            Error::Unreachable(_) => exit_code::UNREACHABLE,
        }
    }
}

fn journal_code(e: &crate::journal::Error) -> i32 {
    use crate::journal::Error as J;
    match e {
        J::Locked { .. } => exit_code::LOCKED,
        J::RunNotFound { .. } | J::Finished { .. } | J::NoStateDir => exit_code::USAGE,
        _ => exit_code::JOURNAL,
    }
}

/// True when stderr is a terminal that wants colour.
pub fn color_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Renders diagnostics to stderr.
pub fn print_diagnostics(d: &Diagnostics) {
    let text = d.render(!color_stderr());
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
}

/// Writes data to stdout; a closed pipe (e.g. `| head`) is not an error.
pub fn print_out(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(Error::Output),
    }
}

/// Prints one JSON document (pretty, with a final newline) on stdout.
pub fn print_json(value: &serde_json::Value) -> Result<(), Error> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| Error::Output(e.into()))?;
    text.push('\n');
    print_out(&text)
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "runbook=debug",
        _ => "runbook=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color_stderr())
        .try_init();
}

/// Entry point of the `runbook` binary.
pub fn main() -> ExitCode {
    let args = args::Args::parse();
    init_tracing(args.verbose);
    let state_dir = args.state_dir.as_deref();
    let result = match args.command {
        args::Command::List { output } => list::run(output),
        args::Command::Check { paths } => check::run(&paths),
        args::Command::Plan {
            runbook,
            params,
            format,
            cluster,
        } => plan::run(&runbook, params, format, &cluster),
        args::Command::Actions { output } => actions::run(output),
        args::Command::Sim { command } => match command {
            args::SimCommand::Up {
                preset,
                workers,
                scenario,
                speed,
                dir,
            } => sim::up(sim::UpOptions {
                preset,
                workers,
                scenario,
                speed,
                dir,
            }),
            args::SimCommand::Scenarios => sim::scenarios(),
        },
        args::Command::Run {
            runbook,
            params,
            dry_run,
            yes,
            output,
            cluster,
            override_preflight,
        } => run::run(
            &runbook,
            params,
            dry_run,
            yes,
            output,
            &cluster,
            state_dir,
            override_preflight.as_deref(),
        ),
        args::Command::Resume {
            run,
            params,
            yes,
            output,
            cluster,
        } => resume::run(run.as_deref(), params, yes, output, &cluster, state_dir),
        args::Command::Approve { run, step } => approve::run(&run, &step, state_dir),
        args::Command::Runs { output } => runs::run(state_dir, output),
        args::Command::Status { run, output } => status::run(&run, state_dir, output),
        args::Command::Completions { shell } => completions::completions(shell),
        args::Command::Man => completions::man(),
        args::Command::Doctor {
            cluster,
            backup_dir,
            output,
        } => doctor::run(&cluster, backup_dir.as_deref(), output),
        args::Command::Lint {
            inventory,
            configs,
            output,
            live,
            cluster,
        } => lint::run(
            inventory.as_deref(),
            &configs,
            output,
            live.then_some(&cluster),
        ),
        args::Command::Unlock {
            run,
            reason,
            holder,
        } => unlock::run(&run, &reason, holder.as_deref(), state_dir),
        args::Command::Abort {
            run,
            params,
            output,
            cluster,
        } => abort::run(&run, params, output, &cluster, state_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

fn report(e: &Error) {
    match e {
        Error::Diagnostics(d) => print_diagnostics(d),
        Error::CheckFailed { .. } => eprintln!("error: {e}"),
        Error::Stopped(_) => {}
        Error::Library(crate::library::Error::NotFound { help, .. }) => {
            eprintln!("error: {e}\n  help: {help}");
        }
        other => {
            let mut msg = format!("error: {other}");
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("{msg}");
        }
    }
}
