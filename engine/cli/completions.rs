//! `runbook completions SHELL` and `runbook man`: shell completions and a man page, generated
//! from the clap definitions in [`crate::cli::args`], so they can never drift from the real
//! flags (clap_complete and clap_mangen do the generating).

use clap::CommandFactory;

use crate::cli::args::Args;
use crate::cli::{Error, print_out};

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), Error> {
    let mut cmd = Args::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "runbook", &mut buf);
    print_out(&String::from_utf8_lossy(&buf))
}

/// Prints the man page (roff) on stdout.
pub fn man() -> Result<(), Error> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Args::command())
        .render(&mut buf)
        .map_err(Error::Output)?;
    print_out(&String::from_utf8_lossy(&buf))
}
