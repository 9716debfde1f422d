//! `runbook plan NAME|PATH`: compile with parameters and render the plan.

use crate::cli::args::PlanFormat;
use crate::cli::{Error, print_out};
use crate::compile::{self, Mode};
use crate::library;
use crate::plan::render;

/// Compiles and prints. Params that default from the cluster are read from it when the
/// cluster flags (or `$TALOSCONFIG`, or `--sim`) name one, and said on stderr.
pub fn run(
    name: &str,
    mut params: Vec<(String, String)>,
    format: PlanFormat,
    cluster: &crate::cli::args::ClusterArgs,
) -> Result<(), Error> {
    let entry = library::find(name)?;
    for (k, v) in crate::inventory::param_defaults(&entry.source, &params).map_err(Error::Usage)? {
        eprintln!("defaulted from the inventory: {k} = {v}");
        params.push((k, v));
    }
    let wanted = compile::params::cluster_defaults(&entry.source, &params);
    if !wanted.is_empty()
        && let Some(target) = crate::cli::session::Target::from_args(cluster)?
    {
        use crate::cli::reach::{Purpose, Reached};
        let dir = std::env::temp_dir().join(format!("runbook-plan-{}", std::process::id()));
        let reached = Reached::reach(&target, &dir, Purpose::Run)?;
        let resolved = reached.resolve(&wanted);
        reached.close();
        let _ = std::fs::remove_dir_all(&dir);
        for r in resolved? {
            eprintln!(
                "defaulted from the cluster: {} = {} ({})",
                r.param, r.text, r.why
            );
            params.push((r.param, r.text));
        }
    }
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
