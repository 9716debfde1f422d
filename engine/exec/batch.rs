//! A `foreach … parallel: K` batch: the steps of up to K elements in flight at once.
//!
//! The runner stays one task with one journal. A batch is driven in rounds: every step of the
//! batch whose dependencies are done is driven, one after another, up to its wait (intent,
//! guards fresh right before the side effect, the action, `action-completed`: exactly what a
//! serial step journals); then the waits of every step that reached one are polled
//! concurrently, and each outcome is journaled when all of that round's waits ended. So the
//! side effects themselves stay serial (each guard sees the batch's earlier actions), while
//! the slow part, waiting for K nodes to reboot, overlaps. Several steps are in flight in the
//! journal at once (an intent or an `action-completed` without a checkpoint); on resume each
//! one is settled as a lone step would be (`in_doubt`: probes for the in-doubt ones, the wait
//! again for those whose action completed), because replay keeps state per step.
//!
//! A step that fails stops the batch from starting more actions; the waits already due still
//! end (and are journaled) before the run turns to its rollback path.

use super::attempt::WaitEnd;
use super::schedule::is_done;
use super::{Effects, Error, Runner};
use crate::event::Stop;
use crate::journal::{Fields, StepState};
use crate::plan::{Batch, Step};

impl<E: Effects> Runner<'_, E> {
    /// When `step` stands before its wait: the attempt and the action's outputs.
    pub(super) fn waiting(&self, step: &Step) -> Option<(u32, Fields)> {
        step.wait.as_ref()?;
        match &self.journal.state().step(&step.id)?.state {
            StepState::ActionDone { attempt, outputs } => Some((*attempt, outputs.clone())),
            // A step without an action waits right after its intent and guards.
            StepState::Started { attempt, .. } if step.action.is_none() && self.batch_mode => {
                Some((*attempt, Fields::new()))
            }
            _ => None,
        }
    }

    /// Drives batch `batch` until every step of it finished (`None`), one failed (`None`: the
    /// caller turns to the rollback path), or the run must pause.
    pub(super) async fn drive_batch(&mut self, batch: &Batch) -> Result<Option<Stop>, Error> {
        let plan = self.plan;
        let members: Vec<&Step> = plan
            .steps()
            .filter(|s| s.batch.as_ref().is_some_and(|b| b.id == batch.id))
            .collect();
        loop {
            let failed = |r: &Self| {
                members.iter().any(|s| {
                    matches!(
                        r.journal.state().step_state(&s.id),
                        StepState::Failed { .. }
                    )
                })
            };
            if failed(self) {
                return Ok(None);
            }
            let state = self.journal.state();
            let ready: Vec<&Step> = members
                .iter()
                .copied()
                .filter(|s| {
                    !is_done(state.step_state(&s.id))
                        && s.needs.iter().all(|n| is_done(state.step_state(n)))
                })
                .collect();
            if ready.is_empty() {
                return Ok(None);
            }
            // Up to the wait, one after another.
            self.batch_mode = true;
            let mut due: Vec<(&Step, u32, Fields)> = Vec::new();
            for s in ready {
                let driven = self.drive_step(s).await;
                match driven {
                    Ok(None) => {}
                    other => {
                        self.batch_mode = false;
                        return other;
                    }
                }
                if let Some((attempt, outputs)) = self.waiting(s) {
                    due.push((s, attempt, outputs));
                }
                if failed(self) {
                    break;
                }
            }
            self.batch_mode = false;
            // A wait of this attempt that already held (journaled before a crash) needs no
            // new poll: checkpoint it.
            let mut polls = Vec::new();
            for (s, attempt, outputs) in due {
                let held = self
                    .journal
                    .state()
                    .step(&s.id)
                    .and_then(|r| r.waits.last())
                    .is_some_and(|w| w.attempt == attempt && w.satisfied);
                if held {
                    self.after_wait(s, &outputs, super::attempt::AfterWait::Held)?;
                } else {
                    polls.push((s, attempt, outputs));
                }
            }
            if polls.is_empty() {
                continue;
            }
            // Every due wait at once.
            let ends: Vec<WaitEnd> = {
                let this = &*self;
                futures::future::join_all(polls.iter().map(|(s, _, _)| async move {
                    match &s.wait {
                        Some(w) => this.wait_for(s, w).await,
                        None => WaitEnd::Error("no wait".into()),
                    }
                }))
                .await
            };
            for ((s, attempt, outputs), end) in polls.into_iter().zip(ends) {
                let after = self.record_wait(s, attempt, end)?;
                self.after_wait(s, &outputs, after)?;
            }
        }
    }
}
