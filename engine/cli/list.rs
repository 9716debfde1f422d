//! `runbook list`: every runbook that can be named, with where it comes from and one line.

use std::fmt::Write as _;

use crate::cli::{Error, print_out};
use crate::dsl;
use crate::library::{self, Origin};

/// Prints the table.
pub fn run() -> Result<(), Error> {
    let entries = library::all();
    let width = entries
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = String::new();
    for e in &entries {
        let description = match dsl::parse(&e.source) {
            Ok(rb) => rb.description,
            Err(_) => format!("(does not parse: run `runbook check {}`)", e.source.name),
        };
        let origin = match &e.origin {
            Origin::Builtin => "built-in".to_string(),
            Origin::File(p) => p.display().to_string(),
        };
        let _ = writeln!(out, "{:<width$}  {description}  [{origin}]", e.name);
    }
    print_out(&out)
}
