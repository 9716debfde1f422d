//! `runbook list`: every runbook that can be named, with where it comes from and one line
//! (`--output json` for scripts).

use std::fmt::Write as _;

use crate::cli::args::DataFormat;
use crate::cli::{Error, print_json, print_out};
use crate::dsl;
use crate::library::{self, Origin};

/// One runbook that can be named.
#[derive(Debug, serde::Serialize)]
struct Row {
    name: String,
    description: String,
    /// `built-in`, or the file it comes from.
    origin: String,
    /// Whether it parses (a file that does not is still listed, with a hint).
    parses: bool,
}

/// Prints the table or the JSON document.
pub fn run(output: DataFormat) -> Result<(), Error> {
    let rows: Vec<Row> = library::all()
        .iter()
        .map(|e| {
            let parsed = dsl::parse(&e.source);
            Row {
                name: e.name.clone(),
                parses: parsed.is_ok(),
                description: match parsed {
                    Ok(rb) => rb.description,
                    Err(_) => format!("(does not parse: run `runbook check {}`)", e.source.name),
                },
                origin: match &e.origin {
                    Origin::Builtin => "built-in".to_string(),
                    Origin::File(p) => p.display().to_string(),
                },
            }
        })
        .collect();
    if output == DataFormat::Json {
        return print_json(&serde_json::json!({ "runbooks": rows }));
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let mut out = String::new();
    for r in &rows {
        let _ = writeln!(out, "{:<width$}  {}  [{}]", r.name, r.description, r.origin);
    }
    print_out(&out)
}
