//! What to do next, decided purely from the plan and the journal state.
//!
//! The executor is deliberately serial: one step, and so at most one disruptive action, at a
//! time. The plan's `order` is already dependencies first with ties in declaration order, so the
//! next step is the first main step that has not finished. Because the decision reads only the
//! [`RunState`] folded from the journal, a resumed run picks exactly the step the killed run
//! would have picked. The rollback path is scheduled here too: newest completed step first.

use crate::journal::{RunState, StepState};
use crate::plan::{Plan, Step};

/// The runner's next move.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next<'a> {
    /// Drive this main step (from whatever state the journal left it in).
    Step(&'a Step),
    /// A step failed for good or an abort was requested: run the rollback path.
    RollBack,
    /// Every main step succeeded or was skipped.
    Finished,
}

/// Whether a main step is finished in the forward path.
pub fn is_done(state: &StepState) -> bool {
    matches!(
        state,
        StepState::Succeeded { .. } | StepState::Skipped { .. }
    )
}

/// The next move for `plan` in `state`.
pub fn next<'a>(plan: &'a Plan, state: &RunState) -> Next<'a> {
    if state.abort_requested.is_some() {
        return Next::RollBack;
    }
    let mut first = None;
    for step in plan.steps() {
        let s = state.step_state(&step.id);
        if matches!(
            s,
            StepState::Failed { .. } | StepState::RolledBack | StepState::RollbackFailed { .. }
        ) {
            return Next::RollBack;
        }
        if first.is_none() && !is_done(s) {
            first = Some(step);
        }
    }
    first.map_or(Next::Finished, Next::Step)
}

/// The rollback path's next move.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RollbackNext<'a> {
    /// Run (or settle) `rollback`, which undoes `forward`.
    Run {
        /// The completed forward step.
        forward: &'a Step,
        /// Its rollback step.
        rollback: &'a Step,
    },
    /// A rollback failed: stop, the operator takes over.
    Blocked {
        /// The rollback step that failed.
        rollback: &'a Step,
    },
    /// Every rollback of every completed step succeeded.
    Done,
}

/// The next rollback to run: steps whose action may have taken effect (they succeeded, failed
/// after sending their call, or are in doubt: `journal::exposure`), newest first (the reverse
/// of the serial order in which they ran); a step's own rollbacks in the order declared. A
/// step that was skipped, refused by its guard or failed before sending has nothing to undo.
pub fn next_rollback<'a>(plan: &'a Plan, state: &RunState) -> RollbackNext<'a> {
    for forward in plan.steps().collect::<Vec<_>>().into_iter().rev() {
        if !state
            .step(&forward.id)
            .is_some_and(|r| r.exposure.may_have_acted())
        {
            continue;
        }
        for id in &forward.rollback {
            let Some(rollback) = plan.rollbacks.iter().find(|r| &r.id == id) else {
                continue;
            };
            match state.step_state(id) {
                StepState::Succeeded { .. } => {}
                StepState::Failed { .. } => return RollbackNext::Blocked { rollback },
                _ => return RollbackNext::Run { forward, rollback },
            }
        }
    }
    RollbackNext::Done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{Mode, compile_source};
    use crate::journal::exposure::exposure;
    use crate::journal::replay::{StepRecord, fold};
    use crate::journal::{Entry, Fields, Record};
    use crate::source::{Format, Source};

    fn plan() -> Plan {
        let text = r#"
apiVersion: runbook/v1
kind: Runbook
metadata: { name: t }
steps:
  - { id: a, action: noop, rollback: [undo_a] }
  - { id: b, action: noop, rollback: [undo_b1, undo_b2] }
  - { id: c, action: noop, needs: [a] }
rollbacks:
  - { id: undo_a, action: noop }
  - { id: undo_b1, action: noop }
  - { id: undo_b2, action: noop }
"#;
        compile_source(
            &Source::new("t.yaml", Format::Yaml, text),
            &Mode::Plan(vec![]),
        )
        .unwrap()
    }

    /// A state where each listed step has `state`; steps that succeeded (or were rolled back)
    /// carry the exposure of a completed action, the others none.
    fn with(states: &[(&str, StepState)]) -> RunState {
        let mut state = fold(std::iter::empty::<&Entry>()).unwrap();
        for (id, s) in states {
            let acted = [
                Record::StepStarted {
                    step: (*id).to_owned(),
                    attempt: 1,
                    session: "s".into(),
                    pre_state: Fields::new(),
                },
                Record::StepSucceeded {
                    step: (*id).to_owned(),
                    outputs: Fields::new(),
                },
            ];
            let exposure = match s {
                StepState::Succeeded { .. }
                | StepState::RolledBack
                | StepState::RollbackFailed { .. } => exposure(&acted),
                _ => exposure(&[]),
            };
            state.steps.insert(
                (*id).to_owned(),
                StepRecord {
                    state: s.clone(),
                    exposure,
                    ..Default::default()
                },
            );
        }
        state
    }

    fn ok() -> StepState {
        StepState::Succeeded {
            outputs: Fields::new(),
        }
    }

    #[test]
    fn steps_run_in_plan_order_and_failure_turns_to_rollback() {
        let p = plan();
        let ids: Vec<_> = p.steps().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert!(matches!(next(&p, &with(&[])), Next::Step(s) if s.id == "a"));
        assert!(matches!(next(&p, &with(&[("a", ok())])), Next::Step(s) if s.id == "b"));
        let skipped = StepState::Skipped { reason: "x".into() };
        assert_eq!(
            next(&p, &with(&[("a", ok()), ("b", skipped), ("c", ok())])),
            Next::Finished
        );
        let failed = StepState::Failed { error: "x".into() };
        assert_eq!(
            next(&p, &with(&[("a", ok()), ("b", failed)])),
            Next::RollBack
        );
        let mut aborted = with(&[]);
        aborted.abort_requested = Some("op".into());
        assert_eq!(next(&p, &aborted), Next::RollBack);
        let _ = Record::RunPaused {
            reason: String::new(),
        };
    }

    #[test]
    fn rollbacks_run_newest_first_and_stop_at_a_failure() {
        let p = plan();
        let failed = || StepState::Failed { error: "x".into() };
        let s = with(&[("a", ok()), ("b", ok()), ("c", failed())]);
        let order = |s: &RunState| match next_rollback(&p, s) {
            RollbackNext::Run { forward, rollback } => format!("{}<-{}", forward.id, rollback.id),
            RollbackNext::Blocked { rollback } => format!("blocked {}", rollback.id),
            RollbackNext::Done => "done".into(),
        };
        assert_eq!(order(&s), "b<-undo_b1@b");
        let s = with(&[
            ("a", ok()),
            ("b", StepState::RolledBack),
            ("undo_b1@b", ok()),
        ]);
        assert_eq!(order(&s), "b<-undo_b2@b");
        let s = with(&[
            ("a", ok()),
            ("b", StepState::RolledBack),
            ("undo_b1@b", ok()),
            ("undo_b2@b", ok()),
        ]);
        assert_eq!(order(&s), "a<-undo_a@a");
        let s = with(&[
            ("a", ok()),
            ("b", StepState::RollbackFailed { error: "x".into() }),
            ("undo_b1@b", failed()),
        ]);
        assert_eq!(order(&s), "blocked undo_b1@b");
        let s = with(&[("a", StepState::RolledBack), ("undo_a@a", ok())]);
        assert_eq!(order(&s), "done");
    }
}
