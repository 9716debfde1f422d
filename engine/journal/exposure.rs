//! Whether a step's action may have taken effect, decided from its journal records alone.
//!
//! A rollback must undo what *may* have happened, not only what is known to have succeeded: a
//! `talos.apply-config` whose join wait timed out has still installed the node, and an attempt
//! interrupted by a crash may have reached the cluster. But a rollback must not run for an
//! action that was never sent (a guard refused it, its arguments could not be evaluated, it was
//! skipped): undoing something that did not happen can be the most harmful call of the run.
//!
//! [`Exposure::after`] is the one pure transition that folds a step's records, in journal
//! order, into that answer; `replay::apply` calls it for every record about a step, so the
//! live run, a resumed run and `runbook status` agree. The rules, per attempt (a new
//! `step-started` keeps what earlier attempts may have done):
//!
//! | record (in this attempt)                                  | this attempt's effect |
//! |-----------------------------------------------------------|-----------------------|
//! | `step-started` (intent, no outcome yet)                   | possible (in doubt)   |
//! | `guard-refused`                                           | none                  |
//! | `action-not-sent` (arguments failed, no connection)       | none                  |
//! | `action-failed` (the call was sent)                       | possible              |
//! | `action-completed`                                        | done                  |
//! | wait outcome right after the intent (a step with no action) | none                |
//! | `step-failed` right after the intent (`when` failed, a wait-only step's wait failed) | none |
//! | `in-doubt` `verified-done` / `verified-not-done`          | done / none           |
//! | `in-doubt` `rerun` / `ask-operator`                       | possible              |
//! | `step-succeeded`                                          | done                  |
//!
//! A step never started (pending, skipped, awaiting its first approval) has no effect.

use super::record::{InDoubtResolution, Record};

/// How much of a step's effect may be in the world.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effect {
    /// No attempt sent its action: there is nothing to undo.
    #[default]
    None,
    /// An attempt sent its action (or may have: it is in doubt) without a known success.
    Possible,
    /// An attempt's action completed (or was verified done), or the step succeeded.
    Done,
}

/// What one attempt is known to have done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Attempt {
    /// No attempt yet.
    #[default]
    Nothing,
    /// The intent is durable; nothing after it yet.
    Intent,
    /// Settled as unknown (`rerun` or `ask-operator`): may have happened.
    Unknown,
    /// Known not to have been sent (or to have had no effect).
    NotSent,
    /// Sent and failed: may have happened.
    Sent,
    /// Completed, verified done, or the step succeeded.
    Done,
}

impl Attempt {
    fn effect(self) -> Effect {
        match self {
            Attempt::Nothing | Attempt::NotSent => Effect::None,
            Attempt::Intent | Attempt::Unknown | Attempt::Sent => Effect::Possible,
            Attempt::Done => Effect::Done,
        }
    }
}

/// The folded answer for one step. Build it with [`Exposure::after`] (or [`exposure`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exposure {
    /// The most any earlier attempt may have done.
    earlier: Effect,
    /// The latest attempt.
    attempt: Attempt,
}

impl Exposure {
    /// The most any attempt may have done.
    pub fn effect(self) -> Effect {
        self.earlier.max(self.attempt.effect())
    }

    /// Whether the step's action may have taken effect, so its rollback applies.
    pub fn may_have_acted(self) -> bool {
        self.effect() != Effect::None
    }

    /// The exposure after `record`, a record about this step. Pure.
    #[must_use]
    pub fn after(self, record: &Record) -> Exposure {
        let attempt = match record {
            Record::StepStarted { .. } => {
                return Exposure {
                    earlier: self.effect(),
                    attempt: Attempt::Intent,
                };
            }
            Record::GuardRefused { .. } | Record::ActionNotSent { .. } => Attempt::NotSent,
            Record::ActionFailed { .. } => Attempt::Sent,
            Record::ActionCompleted { .. } | Record::StepSucceeded { .. } => Attempt::Done,
            // An action's outcome is always journaled before its wait, so a wait outcome (or a
            // failure) right after the intent belongs to a step that sent nothing.
            Record::WaitSatisfied { .. }
            | Record::WaitTimedOut { .. }
            | Record::StepFailed { .. }
                if self.attempt == Attempt::Intent =>
            {
                Attempt::NotSent
            }
            Record::InDoubt { resolution, .. } => match resolution {
                InDoubtResolution::VerifiedDone => Attempt::Done,
                InDoubtResolution::VerifiedNotDone => Attempt::NotSent,
                InDoubtResolution::Rerun
                | InDoubtResolution::AskOperator
                | InDoubtResolution::Unknown => Attempt::Unknown,
            },
            _ => self.attempt,
        };
        Exposure {
            earlier: self.earlier,
            attempt,
        }
    }
}

/// Folds a step's records, in journal order, into its exposure.
pub fn exposure<'a>(records: impl IntoIterator<Item = &'a Record>) -> Exposure {
    records
        .into_iter()
        .fold(Exposure::default(), |e, r| e.after(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Fields;

    const S: &str = "apply";

    fn started(attempt: u32) -> Record {
        Record::StepStarted {
            step: S.into(),
            attempt,
            session: "s".into(),
            pre_state: Fields::new(),
        }
    }
    fn completed(attempt: u32) -> Record {
        Record::ActionCompleted {
            step: S.into(),
            attempt,
            outputs: Fields::new(),
        }
    }
    fn failed_call(attempt: u32) -> Record {
        Record::ActionFailed {
            step: S.into(),
            attempt,
            error: "connection reset".into(),
            retryable: true,
        }
    }
    fn not_sent(attempt: u32) -> Record {
        Record::ActionNotSent {
            step: S.into(),
            attempt,
            error: "argument `node`: not a node".into(),
            retryable: false,
        }
    }
    fn refused() -> Record {
        Record::GuardRefused {
            step: S.into(),
            guard: "talos.not-member".into(),
            reason: "member".into(),
            figures: Fields::new(),
        }
    }
    fn wait(satisfied: bool, attempt: u32) -> Record {
        let (step, condition, elapsed_ms, figures) = (S.into(), "c".into(), 1, Fields::new());
        if satisfied {
            Record::WaitSatisfied {
                step,
                attempt,
                condition,
                elapsed_ms,
                figures,
            }
        } else {
            Record::WaitTimedOut {
                step,
                attempt,
                condition,
                elapsed_ms,
                figures,
            }
        }
    }
    fn step_failed() -> Record {
        Record::StepFailed {
            step: S.into(),
            error: "x".into(),
        }
    }
    fn in_doubt(resolution: InDoubtResolution) -> Record {
        Record::InDoubt {
            step: S.into(),
            attempt: 1,
            resolution,
        }
    }
    fn succeeded() -> Record {
        Record::StepSucceeded {
            step: S.into(),
            outputs: Fields::new(),
        }
    }
    fn effect(records: &[Record]) -> Effect {
        exposure(records).effect()
    }

    #[test]
    fn never_started_or_skipped_has_no_effect() {
        assert_eq!(effect(&[]), Effect::None);
        let skipped = Record::StepSkipped {
            step: S.into(),
            reason: "when".into(),
        };
        assert_eq!(effect(&[skipped]), Effect::None);
        let asked = Record::ApprovalRequested {
            step: S.into(),
            prompt: "p".into(),
        };
        assert!(!exposure(&[asked]).may_have_acted());
    }

    #[test]
    fn success_is_done() {
        assert_eq!(
            effect(&[started(1), completed(1), succeeded()]),
            Effect::Done
        );
        // A step with no action that succeeded still counts as done (it succeeded).
        assert_eq!(
            effect(&[started(1), wait(true, 1), succeeded()]),
            Effect::Done
        );
    }

    #[test]
    fn a_failure_after_the_call_was_sent_may_have_acted() {
        assert_eq!(
            effect(&[started(1), failed_call(1), step_failed()]),
            Effect::Possible
        );
        // The join wait timed out after the action completed: its effect is there.
        assert_eq!(
            effect(&[started(1), completed(1), wait(false, 1), step_failed()]),
            Effect::Done
        );
    }

    #[test]
    fn an_interrupted_attempt_may_have_acted_until_settled() {
        assert_eq!(effect(&[started(1)]), Effect::Possible);
        let verified = |r| effect(&[started(1), in_doubt(r)]);
        assert_eq!(verified(InDoubtResolution::VerifiedDone), Effect::Done);
        assert_eq!(verified(InDoubtResolution::VerifiedNotDone), Effect::None);
        assert_eq!(verified(InDoubtResolution::Rerun), Effect::Possible);
        assert_eq!(verified(InDoubtResolution::AskOperator), Effect::Possible);
        // Asked, then failed by hand: still unknown, never "not sent".
        assert_eq!(
            effect(&[
                started(1),
                in_doubt(InDoubtResolution::AskOperator),
                step_failed()
            ]),
            Effect::Possible
        );
    }

    #[test]
    fn refused_or_not_sent_or_failed_before_the_action_has_no_effect() {
        assert_eq!(effect(&[started(1), refused()]), Effect::None);
        assert_eq!(
            effect(&[started(1), not_sent(1), step_failed()]),
            Effect::None
        );
        // `when` could not be evaluated: intent and step-failed in one commit.
        assert_eq!(effect(&[started(1), step_failed()]), Effect::None);
        // A wait-only step whose wait timed out sent nothing.
        assert_eq!(
            effect(&[started(1), wait(false, 1), step_failed()]),
            Effect::None
        );
    }

    #[test]
    fn earlier_attempts_count_after_a_later_one_sends_nothing() {
        let retried = [
            started(1),
            failed_call(1),
            Record::RetryScheduled {
                step: S.into(),
                next_attempt: 2,
                delay_ms: 10,
            },
            started(2),
            refused(),
        ];
        assert_eq!(effect(&retried), Effect::Possible);
        let first_refused = [started(1), refused(), started(2), completed(2)];
        assert_eq!(effect(&first_refused), Effect::Done);
        let probed_away = [started(1), completed(1), started(2), not_sent(2)];
        assert_eq!(effect(&probed_away), Effect::Done);
    }
}
