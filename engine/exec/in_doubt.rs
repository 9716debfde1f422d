//! Settling steps that were interrupted between their intent and their outcome.
//!
//! After a crash, a step with a durable `step-started` and no outcome may or may not have had
//! its effect. Before anything else runs, resume settles each such step with an `in-doubt`
//! record, by the step's idempotency (the stricter of the action's class and the runbook's
//! declaration):
//!
//! - `idempotent`: run it again (`rerun`);
//! - `verify`: ask the world: the step's `verify:` condition, else the action's built-in probe
//!   (`marker`: is the line in the file?), else its `wait:` condition. Holds: `verified-done`
//!   and the step continues after its action; does not hold: `verified-not-done` and it runs
//!   again. If the check itself cannot be made, the step stays in doubt and the run stops: a
//!   non-idempotent side effect is never repeated without its check;
//! - `confirm`: `ask-operator`; the step then waits for `runbook approve` (or a prompt).

use super::attempt::WaitEnd;
use super::effects::{ActionCall, EffectError, Effects};
use super::{Error, Runner};
use crate::dsl::ast::Idempotency;
use crate::journal::{Fields, InDoubtResolution, Record, StepState};
use crate::plan::Step;

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
        let resolution = self
            .resolve(step, attempt)
            .await
            .map_err(|source| Error::Settle {
                step: step.id.clone(),
                source,
            })?;
        tracing::info!(step = %step.id, attempt, ?resolution, "settled an in-doubt step");
        self.append(vec![Record::InDoubt {
            step: step.id.clone(),
            attempt,
            resolution,
        }])
    }

    pub(super) async fn resolve(
        &self,
        step: &Step,
        attempt: u32,
    ) -> Result<InDoubtResolution, EffectError> {
        let Some(call) = &step.action else {
            // A wait-only step has no side effect to repeat.
            return Ok(InDoubtResolution::Rerun);
        };
        match step.idempotency {
            Idempotency::Idempotent => Ok(InDoubtResolution::Rerun),
            Idempotency::Confirm => Ok(InDoubtResolution::AskOperator),
            Idempotency::Verify => {
                if let Some(verify) = &step.verify {
                    return self.verdict(step, verify).await;
                }
                let pre_state = match self.journal.state().step_state(&step.id) {
                    StepState::Started { pre_state, .. } => pre_state.clone(),
                    _ => Fields::new(),
                };
                let args = self
                    .eval
                    .args(step, self.journal.state(), &call.args)
                    .map_err(|e| EffectError::Failed {
                        message: e.to_string(),
                        retryable: false,
                    })?;
                let probe = self
                    .effects
                    .probe(ActionCall {
                        step: &step.id,
                        name: &call.name,
                        args: &args,
                        attempt,
                        pre_state: &pre_state,
                    })
                    .await?;
                match (probe, &step.wait) {
                    (Some(true), _) => Ok(InDoubtResolution::VerifiedDone),
                    (Some(false), _) => Ok(InDoubtResolution::VerifiedNotDone),
                    (None, Some(wait)) => self.verdict(step, wait).await,
                    (None, None) => Ok(InDoubtResolution::AskOperator),
                }
            }
        }
    }

    async fn verdict(
        &self,
        step: &Step,
        condition: &crate::plan::Wait,
    ) -> Result<InDoubtResolution, EffectError> {
        match self.wait_for(step, condition).await {
            WaitEnd::Satisfied { .. } => Ok(InDoubtResolution::VerifiedDone),
            WaitEnd::TimedOut { .. } => Ok(InDoubtResolution::VerifiedNotDone),
            WaitEnd::Error(message) => Err(EffectError::Failed {
                message,
                retryable: false,
            }),
        }
    }
}
