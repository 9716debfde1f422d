//! Progress on a terminal (indicatif): one bar for the run's steps, and a spinner for each
//! wait showing the condition, the time waited and the timeout. Step lines print above the
//! bars with the same words as [`super::plain`].

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Reporter;
use super::plain;
use crate::event::Event;
use crate::journal::Record;

/// Terminal progress reporter (stderr).
pub struct Progress {
    multi: MultiProgress,
    overall: Option<ProgressBar>,
    wait: Option<(String, ProgressBar)>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Draws on stderr.
    pub fn new() -> Self {
        Progress {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            overall: None,
            wait: None,
        }
    }

    fn end_wait(&mut self) {
        if let Some((_, bar)) = self.wait.take() {
            bar.finish_and_clear();
        }
    }
}

impl Reporter for Progress {
    fn report(&mut self, event: &Event) -> std::io::Result<()> {
        match event {
            Event::Session { steps, done, .. } => {
                let bar = self.multi.add(ProgressBar::new(*steps as u64));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:.bold} [{bar:30}] {pos}/{len} steps {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_prefix("runbook");
                bar.set_position(*done as u64);
                self.overall = Some(bar);
            }
            Event::WaitProgress {
                step,
                condition,
                elapsed_ms,
                timeout_ms,
                ..
            } => {
                let stale = self.wait.as_ref().is_none_or(|(s, _)| s != step);
                if stale {
                    self.end_wait();
                    let bar = self.multi.add(ProgressBar::new_spinner());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    self.wait = Some((step.clone(), bar));
                }
                if let Some((_, bar)) = &self.wait {
                    bar.set_message(format!(
                        "{step}: waiting for `{condition}` {:.0}s / {:.0}s",
                        *elapsed_ms as f64 / 1000.0,
                        *timeout_ms as f64 / 1000.0
                    ));
                }
            }
            Event::Record { record, .. } => {
                if matches!(
                    record,
                    Record::WaitSatisfied { .. } | Record::WaitTimedOut { .. }
                ) {
                    self.end_wait();
                }
                if let Some(bar) = &self.overall {
                    match record {
                        Record::StepSucceeded { .. } | Record::StepSkipped { .. } => bar.inc(1),
                        Record::StepStarted { step, .. } => bar.set_message(step.clone()),
                        _ => {}
                    }
                }
                if let Some(text) = plain::line(event) {
                    self.multi.println(text)?;
                }
            }
            Event::Stopped { .. } => {
                self.end_wait();
                if let Some(bar) = self.overall.take() {
                    bar.finish_and_clear();
                }
                if let Some(text) = plain::line(event) {
                    eprintln!("{text}");
                }
            }
            other => {
                if let Some(text) = plain::line(other) {
                    self.multi.println(text)?;
                }
            }
        }
        Ok(())
    }
}
