//! `runbook plan NAME|PATH`: compile with parameters and render the plan.

use crate::cli::args::PlanFormat;
use crate::cli::{Error, print_out};
use crate::compile::{self, Mode};
use crate::library;
use crate::plan::render;

/// Compiles and prints.
pub fn run(name: &str, params: Vec<(String, String)>, format: PlanFormat) -> Result<(), Error> {
    let entry = library::find(name)?;
    let plan =
        compile::compile_source(&entry.source, &Mode::Plan(params)).map_err(Error::Diagnostics)?;
    let text = match format {
        PlanFormat::Text => render::text(&plan),
        PlanFormat::Dot => render::dot(&plan),
        PlanFormat::Mermaid => render::mermaid(&plan),
        PlanFormat::Json => render::json(&plan),
    };
    print_out(&text)
}
