//! The command-line front: parse arguments, run one subcommand, render any error once, and
//! turn it into an exit code from [`crate::exit_code`].
//!
//! Only this module (and the reporters) write to the terminal: data to stdout, diagnostics,
//! progress and errors to stderr.

pub mod actions;
pub mod args;
pub mod check;
pub mod list;
pub mod plan;
pub mod sim;

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
            Error::Output(_) => exit_code::INTERNAL,
        }
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
    let result = match args.command {
        args::Command::List => list::run(),
        args::Command::Check { paths } => check::run(&paths),
        args::Command::Plan {
            runbook,
            params,
            format,
        } => plan::run(&runbook, params, format),
        args::Command::Actions => actions::run(),
        args::Command::Sim { command } => match command {
            args::SimCommand::Up {
                preset,
                scenario,
                speed,
                dir,
            } => sim::up(sim::UpOptions {
                preset,
                scenario,
                speed,
                dir,
            }),
            args::SimCommand::Scenarios => sim::scenarios(),
        },
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
