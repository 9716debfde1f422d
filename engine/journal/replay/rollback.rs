//! The rollback transitions of the replay state machine, split out of `replay.rs`: declaring
//! a rollback step for a forward step (`rollback-started`) and its outcome
//! (`rollback-succeeded` / `rollback-failed`), which also marks the forward step. Between the
//! two, a rollback step's attempts fold through the ordinary forward transitions
//! (`step-started`, guards, action, retry, wait, in-doubt), so they are not repeated here.

use super::{Error, RunState, StepState, existing, step_mut};
use crate::journal::record::{Fields, Record};

/// `rollback-started {step, for_step}`: `step` will undo `for_step`, which must have had an
/// effect (see `journal::exposure`).
pub(super) fn declared(
    state: &mut RunState,
    step: &str,
    for_step: &str,
    at: u64,
    err: &impl Fn(String) -> Error,
) -> Result<(), Error> {
    let wrong = |s: &StepState| err(format!("not legal while the step is {}", s.name()));
    if step == for_step {
        return Err(err("a step cannot roll itself back".into()));
    }
    // Only what may have taken effect is undone (see `journal::exposure`); a step
    // that declares several rollbacks keeps its exposure and is undone by each in turn.
    let undoable = state
        .step(for_step)
        .is_some_and(|t| t.exposure.may_have_acted());
    if !undoable {
        return Err(err(format!(
            "step `{for_step}` is {} and sent no action: there is nothing to roll back",
            state.step_state(for_step).name()
        )));
    }
    let rec = step_mut(state, step);
    let ok = match &rec.state {
        StepState::Pending | StepState::Failed { .. } => true,
        // Re-declaring an in-doubt rollback: rollback actions are idempotent.
        StepState::RollingBack { for_step: f } => f == for_step,
        _ => false,
    };
    if !ok {
        return Err(wrong(&rec.state));
    }
    rec.rollback_of = Some(for_step.to_owned());
    rec.first_started_ms.get_or_insert(at);
    rec.ended_ms = None;
    rec.state = StepState::RollingBack {
        for_step: for_step.to_owned(),
    };
    Ok(())
}

/// `rollback-succeeded` / `rollback-failed` of the rollback step `step`.
pub(super) fn outcome(
    state: &mut RunState,
    record: &Record,
    step: &str,
    at: u64,
    err: &impl Fn(String) -> Error,
) -> Result<(), Error> {
    let wrong = |s: &StepState| err(format!("not legal while the step is {}", s.name()));
    let rec = existing(state, step, &err)?;
    let Some(for_step) = rec.rollback_of.clone() else {
        return Err(err("the step is not a declared rollback".into()));
    };
    let succeeded = matches!(record, Record::RollbackSucceeded { .. });
    let live = match &rec.state {
        // Declared (format 1.0: the whole rollback's intent), or an attempt that
        // finished its action (and wait) or needs none.
        StepState::RollingBack { .. }
        | StepState::Started { .. }
        | StepState::ActionDone { .. } => true,
        // Gave up: retries exhausted, guard refused, in doubt and not settled.
        StepState::AttemptFailed { .. }
        | StepState::RetryScheduled { .. }
        | StepState::Refused { .. }
        | StepState::InDoubtResolved { .. }
        | StepState::AwaitingApproval { .. }
        | StepState::Approved { .. } => !succeeded,
        _ => false,
    };
    if !live {
        return Err(wrong(&rec.state));
    }
    let (own, target) = match record {
        Record::RollbackFailed { error, .. } => (
            StepState::Failed {
                error: error.clone(),
            },
            StepState::RollbackFailed {
                error: error.clone(),
            },
        ),
        _ => (
            StepState::Succeeded {
                outputs: Fields::new(),
            },
            StepState::RolledBack,
        ),
    };
    rec.state = own;
    rec.ended_ms = Some(at);
    let forward = step_mut(state, &for_step);
    forward.state = target;
    forward.ended_ms = Some(at);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{S, run, start, started, with};
    use super::*;
    use crate::journal::record::RunOutcome;

    #[test]
    fn rollback_marks_both_steps_and_is_in_doubt_until_done() {
        let base = with(
            start(),
            [
                started("cordon[n1]", 1),
                Record::StepSucceeded {
                    step: "cordon[n1]".into(),
                    outputs: Fields::new(),
                },
                started(S, 1),
                Record::ActionFailed {
                    step: S.into(),
                    attempt: 1,
                    error: "x".into(),
                    retryable: false,
                },
                Record::StepFailed {
                    step: S.into(),
                    error: "x".into(),
                },
                Record::RollbackStarted {
                    step: "uncordon[n1]".into(),
                    for_step: "cordon[n1]".into(),
                },
            ],
        );
        let state = run(base.clone()).unwrap();
        let doubt = state.in_doubt_steps();
        assert_eq!(doubt[0].rollback_of.as_deref(), Some("cordon[n1]"));
        let state = run(with(
            base.clone(),
            [
                Record::RollbackStarted {
                    step: "uncordon[n1]".into(),
                    for_step: "cordon[n1]".into(),
                },
                Record::RollbackSucceeded {
                    step: "uncordon[n1]".into(),
                },
                Record::RunFinished {
                    outcome: RunOutcome::RolledBack,
                    summary: String::new(),
                },
            ],
        ))
        .unwrap();
        assert_eq!(state.step_state("cordon[n1]"), &StepState::RolledBack);
        assert!(matches!(
            state.step_state("uncordon[n1]"),
            StepState::Succeeded { .. }
        ));
        assert!(state.in_doubt_steps().is_empty());
        let state = run(with(
            base,
            [Record::RollbackFailed {
                step: "uncordon[n1]".into(),
                error: "e".into(),
            }],
        ))
        .unwrap();
        assert!(matches!(
            state.step_state("cordon[n1]"),
            StepState::RollbackFailed { .. }
        ));
    }

    /// A rollback step runs attempts like a forward step (intent, guards, action, retry); its
    /// outcome marks the forward step; a forward step that sent nothing cannot be rolled back.
    #[test]
    fn rollback_attempts_fold_like_forward_steps() {
        const U: &str = "reset@apply";
        let declared = with(
            start(),
            [
                started("apply", 1),
                Record::ActionCompleted {
                    step: "apply".into(),
                    attempt: 1,
                    outputs: Fields::new(),
                },
                Record::WaitTimedOut {
                    step: "apply".into(),
                    attempt: 1,
                    condition: "etcd.member".into(),
                    elapsed_ms: 5,
                    figures: Fields::new(),
                },
                Record::StepFailed {
                    step: "apply".into(),
                    error: "join timed out".into(),
                },
                Record::RollbackStarted {
                    step: U.into(),
                    for_step: "apply".into(),
                },
                started(U, 1),
            ],
        );
        let state = run(declared.clone()).unwrap();
        let doubt = state.in_doubt_steps();
        assert_eq!(doubt.len(), 1);
        assert_eq!(
            (doubt[0].step.as_str(), doubt[0].attempt),
            (U, 1),
            "{doubt:?}"
        );
        assert_eq!(doubt[0].rollback_of.as_deref(), Some("apply"));

        // Retried, then succeeded: the forward step is rolled back and keeps its failure.
        let state = run(with(
            declared.clone(),
            [
                Record::ActionFailed {
                    step: U.into(),
                    attempt: 1,
                    error: "unavailable".into(),
                    retryable: true,
                },
                Record::RetryScheduled {
                    step: U.into(),
                    next_attempt: 2,
                    delay_ms: 1,
                },
                started(U, 2),
                Record::ActionCompleted {
                    step: U.into(),
                    attempt: 2,
                    outputs: Fields::new(),
                },
                Record::RollbackSucceeded { step: U.into() },
            ],
        ))
        .unwrap();
        assert_eq!(state.step_state("apply"), &StepState::RolledBack);
        assert_eq!(
            state.step("apply").unwrap().failure.as_deref(),
            Some("join timed out")
        );
        assert_eq!(state.step(U).unwrap().attempts, 2);

        // Refused by its guard: the refusal is final for the rollback.
        let refused = with(
            declared.clone(),
            [Record::GuardRefused {
                step: U.into(),
                guard: "talos.not-member".into(),
                reason: "a voter".into(),
                figures: Fields::new(),
            }],
        );
        let err = run(with(
            refused.clone(),
            [Record::RollbackSucceeded { step: U.into() }],
        ))
        .unwrap_err();
        assert!(err.reason.contains("refused"), "{err}");
        let state = run(with(
            refused,
            [Record::RollbackFailed {
                step: U.into(),
                error: "guard refused".into(),
            }],
        ))
        .unwrap();
        assert!(matches!(
            state.step_state("apply"),
            StepState::RollbackFailed { .. }
        ));

        // A forward step refused by its guard sent nothing: no rollback may be declared.
        let err = run(with(
            start(),
            [
                started("apply", 1),
                Record::GuardRefused {
                    step: "apply".into(),
                    guard: "talos.not-member".into(),
                    reason: "member".into(),
                    figures: Fields::new(),
                },
                Record::RollbackStarted {
                    step: U.into(),
                    for_step: "apply".into(),
                },
            ],
        ))
        .unwrap_err();
        assert!(err.reason.contains("sent no action"), "{err}");
        // Not sent: the same.
        let err = run(with(
            start(),
            [
                started("apply", 1),
                Record::ActionNotSent {
                    step: "apply".into(),
                    attempt: 1,
                    error: "no connection".into(),
                    retryable: false,
                },
                Record::StepFailed {
                    step: "apply".into(),
                    error: "no connection".into(),
                },
                Record::RollbackStarted {
                    step: U.into(),
                    for_step: "apply".into(),
                },
            ],
        ))
        .unwrap_err();
        assert!(err.reason.contains("sent no action"), "{err}");
    }
}
