//! Unit tests of the replay state machine, split out of `replay.rs`: legal and illegal
//! histories for every record kind, and the helpers (`run`, `start`, `started`, `with`) that
//! `replay/rollback.rs`'s tests reuse.

use serde_json::json;

use super::*;
use crate::journal::record::tests::header;

pub(super) const S: &str = "reboot[192.168.2.20].wait";

pub(super) fn run(records: Vec<Record>) -> Result<RunState, Error> {
    let entries: Vec<Entry> = records
        .into_iter()
        .enumerate()
        .map(|(i, record)| Entry {
            seq: i as u64 + 1,
            at_ms: 1000 * (i as u64 + 1),
            offset: 0,
            record,
        })
        .collect();
    fold(&entries)
}

pub(super) fn start() -> Vec<Record> {
    vec![
        Record::RunStarted(header("r1")),
        Record::SessionStarted {
            session: "s-1".into(),
            pid: 1,
            host: "h".into(),
        },
    ]
}

pub(super) fn started(step: &str, attempt: u32) -> Record {
    Record::StepStarted {
        step: step.into(),
        attempt,
        session: "s-1".into(),
        pre_state: json!({"boot_id": "a"}).as_object().unwrap().clone(),
    }
}

pub(super) fn with(mut base: Vec<Record>, more: impl IntoIterator<Item = Record>) -> Vec<Record> {
    base.extend(more);
    base
}

#[test]
fn happy_path_reaches_succeeded_with_timings() {
    let state = run(with(
        start(),
        [
            started(S, 1),
            Record::GuardPassed {
                step: S.into(),
                guard: "quorum".into(),
                figures: Fields::new(),
            },
            Record::ActionCompleted {
                step: S.into(),
                attempt: 1,
                outputs: Fields::new(),
            },
            Record::WaitSatisfied {
                step: S.into(),
                attempt: 1,
                condition: "stage_is(running)".into(),
                elapsed_ms: 900,
                figures: Fields::new(),
            },
            Record::StepSucceeded {
                step: S.into(),
                outputs: Fields::new(),
            },
            Record::RunFinished {
                outcome: RunOutcome::Succeeded,
                summary: "1 step".into(),
            },
        ],
    ))
    .unwrap();
    let rec = state.step(S).unwrap();
    assert!(matches!(rec.state, StepState::Succeeded { .. }));
    assert_eq!(
        (rec.attempts, rec.first_started_ms, rec.ended_ms),
        (1, Some(3000), Some(7000))
    );
    assert_eq!(rec.guards.len(), 1);
    assert!(rec.waits[0].satisfied);
    assert_eq!(state.outcome(), Some(RunOutcome::Succeeded));
    assert!(state.in_doubt_steps().is_empty());
    assert_eq!(state.last_seq, 8);
    assert_eq!(state.current_session().unwrap().id, "s-1");
}

#[test]
fn intent_without_outcome_is_in_doubt_until_resolved() {
    let base = with(
        start(),
        [
            started(S, 1),
            Record::GuardPassed {
                step: S.into(),
                guard: "g".into(),
                figures: Fields::new(),
            },
            Record::SessionStarted {
                session: "s-2".into(),
                pid: 2,
                host: "h".into(),
            },
        ],
    );
    let state = run(base.clone()).unwrap();
    let doubt = state.in_doubt_steps();
    assert_eq!(doubt.len(), 1);
    assert_eq!(
        (
            doubt[0].step.as_str(),
            doubt[0].attempt,
            doubt[0].session.as_str()
        ),
        (S, 1, "s-1")
    );
    assert_eq!(doubt[0].pre_state["boot_id"], "a");

    // The new session may not re-declare the intent before resolving the doubt.
    let restart = Record::StepStarted {
        step: S.into(),
        attempt: 2,
        session: "s-2".into(),
        pre_state: Fields::new(),
    };
    let err = run(with(base.clone(), [restart.clone()])).unwrap_err();
    assert_eq!(err.seq, 6);
    assert!(err.reason.contains("in doubt"), "{err}");

    // Idempotent: rerun as attempt 2.
    let state = run(with(
        base.clone(),
        [
            Record::InDoubt {
                step: S.into(),
                attempt: 1,
                resolution: InDoubtResolution::Rerun,
            },
            restart,
        ],
    ))
    .unwrap();
    assert!(matches!(
        state.step_state(S),
        StepState::Started { attempt: 2, .. }
    ));

    // Verify: the effect happened, continue after the action.
    let state = run(with(
        base.clone(),
        [
            Record::InDoubt {
                step: S.into(),
                attempt: 1,
                resolution: InDoubtResolution::VerifiedDone,
            },
            Record::StepSucceeded {
                step: S.into(),
                outputs: Fields::new(),
            },
        ],
    ))
    .unwrap();
    assert!(matches!(state.step_state(S), StepState::Succeeded { .. }));

    // Confirm: ask an operator, durable approval, then start again.
    let state = run(with(
        base,
        [
            Record::InDoubt {
                step: S.into(),
                attempt: 1,
                resolution: InDoubtResolution::AskOperator,
            },
            Record::ApprovalRequested {
                step: S.into(),
                prompt: "did n1 reboot?".into(),
            },
            Record::Approved {
                step: S.into(),
                by: "alice".into(),
                at: "t".into(),
            },
        ],
    ))
    .unwrap();
    assert!(matches!(state.step_state(S), StepState::Approved { .. }));
    assert_eq!(state.approvals[0].by, "alice");
}

#[test]
fn retry_path_and_attempt_numbers() {
    let state = run(with(
        start(),
        [
            started(S, 1),
            Record::ActionFailed {
                step: S.into(),
                attempt: 1,
                error: "refused".into(),
                retryable: true,
            },
            Record::RetryScheduled {
                step: S.into(),
                next_attempt: 2,
                delay_ms: 10,
            },
            started(S, 2),
            Record::WaitTimedOut {
                step: S.into(),
                attempt: 2,
                condition: "c".into(),
                elapsed_ms: 5,
                figures: Fields::new(),
            },
            Record::StepFailed {
                step: S.into(),
                error: "gave up".into(),
            },
        ],
    ))
    .unwrap();
    let rec = state.step(S).unwrap();
    assert_eq!(rec.attempts, 2);
    assert!(matches!(rec.state, StepState::Failed { .. }));
    assert!(!rec.waits[0].satisfied);

    let err = run(with(
        start(),
        [
            started(S, 1),
            Record::ActionCompleted {
                step: S.into(),
                attempt: 2,
                outputs: Fields::new(),
            },
        ],
    ))
    .unwrap_err();
    assert!(err.reason.contains("does not match"), "{err}");
    let err = run(with(
        start(),
        [
            started(S, 1),
            Record::ActionFailed {
                step: S.into(),
                attempt: 1,
                error: "x".into(),
                retryable: true,
            },
            Record::RetryScheduled {
                step: S.into(),
                next_attempt: 3,
                delay_ms: 0,
            },
            started(S, 2),
        ],
    ))
    .unwrap_err();
    assert_eq!(err.seq, 6);
}

#[test]
fn illegal_transitions_name_the_sequence_number() {
    let err = run(with(
        start(),
        [Record::StepSucceeded {
            step: S.into(),
            outputs: Fields::new(),
        }],
    ))
    .unwrap_err();
    assert_eq!(
        (err.seq, err.record_type, err.step.as_deref()),
        (3, "step-succeeded", Some(S))
    );
    assert!(
        err.to_string()
            .starts_with("record seq 3 (`step-succeeded` of step"),
        "{err}"
    );

    let err = run(vec![Record::AbortRequested { by: "a".into() }]).unwrap_err();
    assert!(err.reason.contains("first record"));
    let err = run(with(start(), [Record::RunStarted(header("r1"))])).unwrap_err();
    assert_eq!(err.seq, 3);
    // Stale session (fencing).
    let err = run(with(
        start(),
        [Record::StepStarted {
            step: S.into(),
            attempt: 1,
            session: "s-old".into(),
            pre_state: Fields::new(),
        }],
    ))
    .unwrap_err();
    assert!(err.reason.contains("s-old"), "{err}");
    // Nothing after run-finished.
    let err = run(with(
        start(),
        [
            Record::RunFinished {
                outcome: RunOutcome::Aborted,
                summary: String::new(),
            },
            started(S, 1),
        ],
    ))
    .unwrap_err();
    assert_eq!(err.seq, 4);
    // Rollback of something that never ran.
    let err = run(with(
        start(),
        [Record::RollbackStarted {
            step: "undo".into(),
            for_step: S.into(),
        }],
    ))
    .unwrap_err();
    assert!(err.reason.contains("nothing to roll back"), "{err}");
}

#[test]
fn failed_apply_leaves_state_unchanged() {
    let mut state = run(with(start(), [started(S, 1)])).unwrap();
    let before = state.clone();
    let bad = Entry {
        seq: 4,
        at_ms: 0,
        offset: 0,
        record: Record::RetryScheduled {
            step: S.into(),
            next_attempt: 2,
            delay_ms: 0,
        },
    };
    assert!(apply(&mut state, &bad).is_err());
    assert_eq!(state, before);
}

/// The undo snapshot of `apply` must cover everything any record can touch: try every
/// record type against states where most of them are illegal.
#[test]
fn every_refused_record_leaves_state_unchanged() {
    let bases = [
        run(start()).unwrap(),
        run(with(start(), [started(S, 1)])).unwrap(),
        run(with(
            start(),
            [
                started(S, 1),
                Record::StepSucceeded {
                    step: S.into(),
                    outputs: Fields::new(),
                },
            ],
        ))
        .unwrap(),
    ];
    let mut refused = 0;
    for base in &bases {
        for (i, record) in crate::journal::record::tests::one_of_each()
            .into_iter()
            .enumerate()
        {
            let mut state = base.clone();
            let entry = Entry {
                seq: base.last_seq + 1 + i as u64,
                at_ms: 1,
                offset: 0,
                record,
            };
            if apply(&mut state, &entry).is_err() {
                assert_eq!(&state, base, "{:?}", entry.record);
                refused += 1;
            }
        }
    }
    assert!(refused > 20, "{refused}");
}

#[test]
fn guard_refusal_skip_pause_abort() {
    let state = run(with(
        start(),
        [
            started(S, 1),
            Record::GuardRefused {
                step: S.into(),
                guard: "quorum".into(),
                reason: "1 of 3 left".into(),
                figures: Fields::new(),
            },
            Record::StepSkipped {
                step: "later".into(),
                reason: "dependency refused".into(),
            },
            Record::RunPaused {
                reason: "operator".into(),
            },
            Record::AbortRequested { by: "bob".into() },
        ],
    ))
    .unwrap();
    assert!(matches!(state.step_state(S), StepState::Refused { .. }));
    assert!(state.in_doubt_steps().is_empty());
    assert_eq!(state.paused.as_deref(), Some("operator"));
    assert_eq!(state.abort_requested.as_deref(), Some("bob"));
    assert_eq!(state.step_order, vec![S.to_owned(), "later".to_owned()]);
}
