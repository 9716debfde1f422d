//! Authoring front ends: what the author wrote → a spanned AST, no semantics yet.
//!
//! ```text
//!  *.yaml ──yaml::parse──┐
//!                        ├─▶ doc::Node ──ast_build::build──▶ ast::Runbook
//!  *.rhai ──script::parse┘
//! ```

pub mod ast;
pub mod ast_build;
pub mod doc;
pub mod duration;
pub mod script;
pub mod span;
pub mod yaml;

use crate::diagnostic::Diagnostics;
use crate::source::{Format, Source};

/// Parses a source with the front end its format calls for.
pub fn parse(source: &Source) -> Result<ast::Runbook, Diagnostics> {
    let tree = tree(source)?;
    ast_build::build(source, &tree)
}

/// Parses as much as possible: the AST (if the document has a runbook's shape) and every field
/// error. A syntax error is fatal (`Err`).
pub fn parse_lenient(source: &Source) -> Result<(Option<ast::Runbook>, Diagnostics), Diagnostics> {
    let tree = tree(source)?;
    Ok(ast_build::build_lenient(source, &tree))
}

fn tree(source: &Source) -> Result<doc::Node, Diagnostics> {
    match source.format {
        Format::Yaml => yaml::parse(source),
        Format::Rhai => script::parse(source),
    }
}
