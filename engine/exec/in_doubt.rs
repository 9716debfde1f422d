//! Settling steps that were interrupted between their intent and their outcome.
//!
//! After a crash, a step with a durable `step-started` and no outcome may or may not have had
//! its effect. Before anything else runs, resume settles each such step with an `in-doubt`
//! record, by the step's idempotency (the stricter of the action's class and the runbook's
//! declaration):
//!
//! - `idempotent`: run it again (`rerun`);
//! - `verify`: ask the world: the step's `verify:` condition, else the action's built-in probe
//!   (boot id and stage for a reboot, member list for a removal, marker line in the file...),
//!   else its `wait:` condition. Holds: `verified-done` and the step continues after its
//!   action; the cluster *answered* that it does not hold: `verified-not-done` and it runs
//!   again. A probe that cannot answer (node silent where silence is ambiguous, permission
//!   denied, errors) is asked again until the step's probe window ends ([`probe_window`]), then
//!   it is `unknown` and a person decides: never "not done". A condition that timed out with
//!   no answer is `unknown` too;
//! - `confirm`: `ask-operator`; the step then waits for `runbook approve` (or a prompt).
//!
//! The same settlement runs in a live session when a non-idempotent action failed in a way
//! that may have reached the cluster (a timeout, `Unavailable`, a reset connection): see
//! `attempt.rs` and `docs/design/exactly-once.md`.

use std::time::Duration;

use tokio::time::Instant;

use super::attempt::{IN_DOUBT_PROMPT, WaitEnd};
use super::effects::{ActionCall, EffectError, Effects, Probe};
use super::{Error, Runner};
use crate::dsl::ast::Idempotency;
use crate::journal::{InDoubtResolution, Record, StepState};
use crate::plan::Step;

/// How long an action's probe is asked when the step declares neither a `timeout` nor a
/// `wait:` (whose timeout is used otherwise).
pub const DEFAULT_PROBE_WINDOW: Duration = Duration::from_secs(300);

/// How often an action's probe is asked when the step has no `wait:` (whose interval is used
/// otherwise).
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How long a step's action probe may keep answering "unknown" before a person is asked: the
/// step's `timeout`, else its wait's timeout, else [`DEFAULT_PROBE_WINDOW`].
pub fn probe_window(step: &Step) -> Duration {
    step.timeout
        .or(step.wait.as_ref().map(|w| w.timeout))
        .unwrap_or(DEFAULT_PROBE_WINDOW)
}

fn probe_interval(step: &Step) -> Duration {
    step.wait
        .as_ref()
        .map_or(DEFAULT_PROBE_INTERVAL, |w| w.interval)
        .max(Duration::from_millis(50))
}

/// The approval prompt for an attempt a person must settle (`--yes` never answers it).
pub(super) fn in_doubt_prompt(step: &str, attempt: u32, evidence: &str) -> String {
    let evidence = if evidence.is_empty() {
        String::new()
    } else {
        format!(" ({evidence})")
    };
    format!(
        "{IN_DOUBT_PROMPT}: attempt {attempt} of `{step}` may or may not have taken effect{evidence}, and its action cannot be checked automatically. Check by hand; approve to run it again."
    )
}

/// A settlement and the evidence it rests on (for the operator; not journaled by itself).
pub(super) struct Settlement {
    pub resolution: InDoubtResolution,
    pub evidence: String,
}

impl Settlement {
    fn new(resolution: InDoubtResolution, evidence: impl Into<String>) -> Settlement {
        Settlement {
            resolution,
            evidence: evidence.into(),
        }
    }
}

impl<E: Effects> Runner<'_, E> {
    /// Settles every in-doubt main step (rollback steps are settled by the rollback path).
    pub(super) async fn settle_in_doubt(&mut self) -> Result<(), Error> {
        for d in self.journal.state().in_doubt_steps() {
            if d.rollback_of.is_some() {
                continue;
            }
            let plan = self.plan;
            let step = plan.step(&d.step).ok_or_else(|| Error::UnknownStep {
                step: d.step.clone(),
            })?;
            self.settle(step, d.attempt).await?;
        }
        Ok(())
    }

    /// Settles attempt `attempt` of `step`, which is in doubt.
    pub(super) async fn settle(&mut self, step: &Step, attempt: u32) -> Result<(), Error> {
        let settlement = self
            .resolve(step, attempt)
            .await
            .map_err(|source| Error::Settle {
                step: step.id.clone(),
                source,
            })?;
        self.record_settlement(step, attempt, settlement)
    }

    /// Journals a settlement; one a person must decide comes with its approval request in
    /// the same commit, so the prompt carries the evidence.
    pub(super) fn record_settlement(
        &mut self,
        step: &Step,
        attempt: u32,
        settlement: Settlement,
    ) -> Result<(), Error> {
        let Settlement {
            resolution,
            evidence,
        } = settlement;
        tracing::info!(step = %step.id, attempt, ?resolution, %evidence, "settled an in-doubt step");
        if !evidence.is_empty() {
            self.message(&step.id, &format!("attempt {attempt}: {evidence}"));
        }
        let mut batch = vec![Record::InDoubt {
            step: step.id.clone(),
            attempt,
            resolution,
        }];
        if matches!(
            resolution,
            InDoubtResolution::AskOperator | InDoubtResolution::Unknown
        ) {
            batch.push(Record::ApprovalRequested {
                step: step.id.clone(),
                prompt: self
                    .redact
                    .text(&in_doubt_prompt(&step.id, attempt, &evidence)),
            });
        }
        self.append(batch)
    }

    /// Decides whether attempt `attempt` of `step` took effect, from the cluster.
    pub(super) async fn resolve(
        &self,
        step: &Step,
        attempt: u32,
    ) -> Result<Settlement, EffectError> {
        let Some(call) = &step.action else {
            // A wait-only step has no side effect to repeat.
            return Ok(Settlement::new(InDoubtResolution::Rerun, ""));
        };
        match step.idempotency {
            Idempotency::Idempotent => Ok(Settlement::new(InDoubtResolution::Rerun, "")),
            Idempotency::Confirm => Ok(Settlement::new(InDoubtResolution::AskOperator, "")),
            Idempotency::Verify => {
                if let Some(verify) = &step.verify {
                    return self.verdict(step, verify).await;
                }
                let pre_state = match self.journal.state().step_state(&step.id) {
                    StepState::Started { pre_state, .. } => pre_state.clone(),
                    _ => self.recorded_pre_state(step),
                };
                let args = self
                    .eval
                    .args(step, self.journal.state(), &call.args)
                    .map_err(|e| EffectError::Failed {
                        message: e.to_string(),
                        retryable: false,
                    })?;
                let call = ActionCall {
                    step: &step.id,
                    name: &call.name,
                    args: &args,
                    attempt,
                    pre_state: &pre_state,
                };
                let window = probe_window(step);
                let interval = probe_interval(step);
                let start = Instant::now();
                let mut said = String::new();
                loop {
                    let waited = start.elapsed();
                    match self.effects.check_effect(call, waited).await {
                        Probe::Done(e) => {
                            return Ok(Settlement::new(InDoubtResolution::VerifiedDone, e));
                        }
                        Probe::NotDone(e) => {
                            return Ok(Settlement::new(InDoubtResolution::VerifiedNotDone, e));
                        }
                        Probe::NoProbe => break,
                        Probe::Unknown(e) => {
                            if waited >= window {
                                let e = format!(
                                    "{e}; still unknown after {}",
                                    crate::dsl::duration::format(window)
                                );
                                return Ok(Settlement::new(InDoubtResolution::Unknown, e));
                            }
                            if e != said {
                                self.message(&step.id, &format!("checking attempt {attempt}: {e}"));
                                said = e;
                            }
                            tokio::time::sleep(interval).await;
                        }
                    }
                }
                match &step.wait {
                    Some(wait) => self.verdict(step, wait).await,
                    None => Ok(Settlement::new(InDoubtResolution::AskOperator, "")),
                }
            }
        }
    }

    async fn verdict(
        &self,
        step: &Step,
        condition: &crate::plan::Wait,
    ) -> Result<Settlement, EffectError> {
        match self.wait_for(step, condition).await {
            WaitEnd::Satisfied { .. } => Ok(Settlement::new(
                InDoubtResolution::VerifiedDone,
                format!("`{}` holds", condition.condition),
            )),
            WaitEnd::TimedOut { answered: true, .. } => Ok(Settlement::new(
                InDoubtResolution::VerifiedNotDone,
                format!("`{}` answered and does not hold", condition.condition),
            )),
            WaitEnd::TimedOut {
                answered: false,
                last_error,
                ..
            } => Ok(Settlement::new(
                InDoubtResolution::Unknown,
                format!(
                    "`{}` could not be checked: {}",
                    condition.condition,
                    last_error.unwrap_or_else(|| "nothing answered".into())
                ),
            )),
            WaitEnd::Error(message) => Err(EffectError::Failed {
                message,
                retryable: false,
            }),
        }
    }
}
