//! What `run`, `resume` and `abort` share: loading a run's plan back from its directory,
//! choosing the reporter, prompting for approvals on a terminal, and driving the runner on a
//! tokio runtime.

use std::io::{BufRead, IsTerminal, Write};

use crate::cli::Error;
use crate::cli::args::OutputArg;
use crate::compile::{self, Mode};
use crate::event::{Event, Stop};
use crate::exec::{self, Approver, EventSink, LocalEffects, Options, Runner};
use crate::journal::{Journal, RunDir, SourceKind, StateDir};
use crate::plan::Plan;
use crate::report::{Output, Reporters};
use crate::secret::REDACTED;
use crate::source::{Format, Source};

/// The operator's name for the journal (`$USER`, else `unknown`).
pub fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The reporters for `--output`.
pub fn reporters(output: OutputArg) -> Reporters {
    let output = match output {
        OutputArg::Auto => Output::Auto,
        OutputArg::Plain => Output::Plain,
        OutputArg::Json => Output::Json,
    };
    Reporters::for_output(output, std::io::stderr().is_terminal())
}

/// Asks on the terminal: `approve step X? [y/N]`.
struct TerminalApprover;

impl Approver for TerminalApprover {
    fn ask(&self, step: &str, prompt: &str) -> bool {
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\napproval needed for `{step}`: {prompt}\napprove? [y/N] "
        );
        let _ = err.flush();
        drop(err);
        let mut answer = String::new();
        if std::io::stdin().lock().read_line(&mut answer).is_err() {
            return false;
        }
        matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
    }
}

/// A prompt when stdin and stderr are terminals and the output is for people.
fn approver(output: OutputArg) -> Option<&'static dyn Approver> {
    static TERMINAL: TerminalApprover = TerminalApprover;
    let interactive = output != OutputArg::Json
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal();
    interactive.then_some(&TERMINAL as &dyn Approver)
}

/// The state directory from `--state-dir` or the environment.
pub fn state_dir(explicit: Option<&std::path::Path>) -> Result<StateDir, Error> {
    StateDir::resolve(explicit).map_err(Error::Journal)
}

/// Recompiles a run's stored source with its stored params (secrets given again in
/// `given`), and checks the plan hash against the journal's header.
pub fn load_plan(run: &RunDir, given: &[(String, String)]) -> Result<Plan, Error> {
    let snapshot = Journal::read(run).map_err(Error::Journal)?;
    let header = snapshot
        .state
        .header
        .ok_or_else(|| Error::Usage(format!("run `{}` has no `run-started` record", run.id())))?;
    let (kind, path) = run
        .source()
        .ok_or_else(|| Error::Usage(format!("run `{}` has no stored runbook source", run.id())))?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::Journal(crate::journal::Error::Io {
            op: "read",
            path: path.clone(),
            source: e,
        })
    })?;
    let format = match kind {
        SourceKind::Yaml => Format::Yaml,
        SourceKind::Rhai => Format::Rhai,
    };
    let source = Source::new(header.source_file.clone(), format, text);
    let mut params = Vec::new();
    for (key, value) in &header.params {
        let given_value = given.iter().rev().find(|(k, _)| k == key);
        match (value, given_value) {
            (serde_json::Value::String(s), Some((_, v))) if s == REDACTED => {
                params.push((key.clone(), v.clone()));
            }
            (serde_json::Value::String(s), None) if s == REDACTED => {
                return Err(Error::Usage(format!(
                    "parameter `{key}` is secret and was never stored: give it again with `--param {key}=…`"
                )));
            }
            (_, Some(_)) => {
                return Err(Error::Usage(format!(
                    "parameter `{key}` is fixed for run `{}`; only secret parameters are given again",
                    run.id()
                )));
            }
            (v, None) => params.push((key.clone(), param_text(v))),
        }
    }
    if let Some((k, _)) = given.iter().find(|(k, _)| !header.params.contains_key(k)) {
        return Err(Error::Usage(format!(
            "run `{}` has no parameter `{k}`",
            run.id()
        )));
    }
    let plan = compile::compile_source(&source, &Mode::Plan(params)).map_err(Error::Diagnostics)?;
    if plan.hash != header.plan_hash {
        return Err(Error::PlanChanged {
            run: run.id().to_owned(),
            stored: header.plan_hash,
            now: plan.hash,
        });
    }
    Ok(plan)
}

/// A stored param value back as `--param` text.
fn param_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => {
            items.iter().map(param_text).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

/// Drives a session to its stop and turns the stop into the exit status.
pub fn drive(
    plan: &Plan,
    journal: Journal,
    events: &Reporters,
    output: OutputArg,
    yes: bool,
    abort: bool,
) -> Result<(), Error> {
    let user = user();
    let options = Options {
        yes,
        approver: approver(output),
        user: &user,
    };
    let effects = LocalEffects;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let report = runtime.block_on(async {
        let mut runner = Runner::new(plan, journal, &effects, events, options);
        if abort {
            runner.request_abort().map_err(Error::Exec)?;
        }
        runner.run().await.map_err(Error::Exec)
    })?;
    stop(report.stop)
}

/// The exit status of a stop (the reporter already showed the report).
pub fn stop(stop: Stop) -> Result<(), Error> {
    match stop.exit_code() {
        0 => Ok(()),
        code => Err(Error::Stopped(code)),
    }
}

/// Emits a torn-tail notice.
pub fn torn(events: &dyn EventSink, torn: Option<&crate::journal::TornTail>) {
    if let Some(t) = torn {
        events.emit(&Event::TornTail {
            description: t.to_string(),
        });
    }
}

/// Re-exported for `run --dry-run`.
pub use exec::dry_run;
