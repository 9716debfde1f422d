//! `runbook check PATH...`: compile files and directories, print every diagnostic.

use std::path::{Path, PathBuf};

use crate::cli::{Error, print_diagnostics, print_out};
use crate::compile::{self, Mode};
use crate::library;
use crate::source::{Format, Source};

/// Checks every runbook under `paths`; fails if any does not compile.
pub fn run(paths: &[PathBuf]) -> Result<(), Error> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let found = library::files_in(p);
            if found.is_empty() {
                return Err(Error::Usage(format!(
                    "no runbook files in `{}`",
                    p.display()
                )));
            }
            files.extend(found);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            return Err(Error::Usage(format!("`{}` does not exist", p.display())));
        }
    }
    let mut failed = 0;
    let mut out = String::new();
    for f in &files {
        match check_file(f) {
            Ok(steps) => out.push_str(&format!("ok    {} ({steps} steps)\n", f.display())),
            Err(e) => {
                failed += 1;
                out.push_str(&format!("FAIL  {}\n", f.display()));
                match e {
                    Error::Diagnostics(d) => print_diagnostics(&d),
                    other => eprintln!("error: {other}"),
                }
            }
        }
    }
    print_out(&out)?;
    if failed > 0 {
        return Err(Error::CheckFailed {
            failed,
            total: files.len(),
        });
    }
    Ok(())
}

fn check_file(path: &Path) -> Result<usize, Error> {
    if Format::from_path(path).is_none() {
        return Err(Error::Usage(format!(
            "`{}` is not a runbook: expected .yaml, .yml or .rhai",
            path.display()
        )));
    }
    let source = Source::read(path).map_err(library::Error::from)?;
    let plan = compile::compile_source(&source, &Mode::Check).map_err(Error::Diagnostics)?;
    Ok(plan.len())
}
