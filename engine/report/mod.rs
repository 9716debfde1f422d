//! Reporters: the consumers of the executor's [`Event`]s, and with `cli/` the only code that
//! writes to the terminal.
//!
//! Three renderings of one stream (nextest's reporter split): [`progress`] (indicatif bars and a
//! spinner per wait, on a terminal), [`plain`] (one line per event, for CI and pipes) and
//! [`json`] (one JSON object per line, `--output json`, documented in `docs/cli.md`).
//! [`Reporters`] fans events out and isolates failures: a reporter that errors or panics is
//! dropped with a warning in the log, and the run carries on. The reverse rule holds for the
//! journal, which stops the run on any failure.

pub mod json;
pub mod plain;
pub mod progress;

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use crate::event::Event;
use crate::exec::EventSink;

/// One consumer of events.
pub trait Reporter: Send {
    /// Renders one event. An error disables this reporter for the rest of the session.
    fn report(&mut self, event: &Event) -> std::io::Result<()>;
}

/// Which reporter `--output` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Progress bars on a terminal, plain lines otherwise.
    Auto,
    /// Plain lines.
    Plain,
    /// JSON lines on stdout.
    Json,
}

/// Fans events out to reporters; a failing reporter never affects the run.
#[derive(Default)]
pub struct Reporters {
    inner: Mutex<Vec<Option<Box<dyn Reporter>>>>,
}

impl std::fmt::Debug for Reporters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reporters")
    }
}

impl Reporters {
    /// No reporters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a reporter.
    pub fn with(self, reporter: Box<dyn Reporter>) -> Self {
        if let Ok(mut inner) = self.inner.lock() {
            inner.push(Some(reporter));
        }
        self
    }

    /// The reporter for `output`: human reporters write to stderr, JSON to stdout.
    pub fn for_output(output: Output, stderr_is_terminal: bool) -> Self {
        let reporter: Box<dyn Reporter> = match output {
            Output::Json => Box::new(json::Json::new(Box::new(std::io::stdout()))),
            Output::Auto if stderr_is_terminal => Box::new(progress::Progress::new()),
            Output::Auto | Output::Plain => {
                Box::new(plain::Plain::new(Box::new(std::io::stderr())))
            }
        };
        Self::new().with(reporter)
    }
}

impl EventSink for Reporters {
    fn emit(&self, event: &Event) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        for slot in inner.iter_mut() {
            let Some(reporter) = slot else { continue };
            let outcome = catch_unwind(AssertUnwindSafe(|| reporter.report(event)));
            let problem = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("the reporter panicked".to_owned()),
            };
            if let Some(problem) = problem {
                tracing::warn!(%problem, "a reporter failed; the run continues without it");
                *slot = None;
            }
        }
    }
}

/// A writer shared by a reporter; a closed pipe ends that reporter's output only.
pub type Sink = Box<dyn Write + Send>;
