//! Exactly once in the executor, with scripted effects and tokio's paused clock: a failure
//! that may have reached the cluster is checked before any retry; a check that cannot answer
//! asks a person (and `--yes` never answers); a failed `pre_state` read sends nothing; a verify
//! condition nobody answered is "unknown", never "not done"; and the journal half of
//! `etcd.bootstrap-safe` refuses a second bootstrap in the same run.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use runbook::compile::{Mode, compile_source};
use runbook::event::Stop;
use runbook::exec::{
    ActionCall, ActionOutcome, CheckCall, EffectError, Effects, NoEvents, Options, Poll, Probe,
    Runner, Verdict,
};
use runbook::journal::{
    FORMAT_VERSION, Fields, InDoubtResolution, Journal, Record, RunDir, RunHeader, SourceKind,
    StateDir,
};
use runbook::plan::Plan;
use runbook::source::{Format, Source};

/// Scripted cluster: `perform` fails (retryably, as `Unavailable`) its first `failures`
/// calls; `check_effect` answers from `answers` (the last one repeats); `pre_state` fails when
/// `blind`; polls fail when `silent`; guards pass.
#[derive(Default)]
struct Scripted {
    sent: AtomicU32,
    failures: u32,
    answers: Mutex<Vec<Probe>>,
    checks: AtomicU32,
    blind: bool,
    silent: bool,
    /// The first calls fail before anything is sent (retryably, as a discovery that timed out).
    not_sent: u32,
}

impl Scripted {
    fn answering(answers: Vec<Probe>) -> Scripted {
        Scripted {
            answers: Mutex::new(answers),
            ..Scripted::default()
        }
    }
}

impl Effects for Scripted {
    async fn perform(&self, _call: ActionCall<'_>) -> Result<ActionOutcome, EffectError> {
        let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
        if n <= self.not_sent {
            return Err(EffectError::NotSent {
                message: "cannot reach the Kubernetes API (discovery): timed out".into(),
                retryable: true,
            });
        }
        if n <= self.failures {
            return Err(EffectError::Failed {
                message: "connection reset after sending (Unavailable)".into(),
                retryable: true,
            });
        }
        Ok(ActionOutcome::default())
    }

    async fn check_guard(&self, _call: CheckCall<'_>) -> Result<Verdict, EffectError> {
        Ok(Verdict {
            passed: true,
            reason: String::new(),
            figures: Fields::new(),
        })
    }

    async fn poll(&self, _call: CheckCall<'_>) -> Result<Poll, EffectError> {
        if self.silent {
            return Err(EffectError::Failed {
                message: "`n1` does not answer (Unavailable)".into(),
                retryable: true,
            });
        }
        Ok(Poll {
            satisfied: true,
            figures: Fields::new(),
        })
    }

    async fn probe(&self, _call: ActionCall<'_>) -> Result<Option<bool>, EffectError> {
        Ok(None)
    }

    async fn pre_state(&self, _call: ActionCall<'_>) -> Result<Fields, EffectError> {
        if self.blind {
            return Err(EffectError::Failed {
                message: "cannot read the boot id of `n1`: timed out".into(),
                retryable: true,
            });
        }
        let mut f = Fields::new();
        f.insert("boot_id".into(), "b1".into());
        Ok(f)
    }

    async fn check_effect(&self, _call: ActionCall<'_>, _waited: Duration) -> Probe {
        self.checks.fetch_add(1, Ordering::SeqCst);
        let mut answers = self.answers.lock().unwrap();
        if answers.len() > 1 {
            answers.remove(0)
        } else {
            answers.first().cloned().unwrap_or(Probe::NoProbe)
        }
    }
}

fn plan(steps: &str) -> Plan {
    let text =
        format!("apiVersion: runbook/v1\nkind: Runbook\nmetadata: {{ name: t }}\nsteps:\n{steps}");
    compile_source(
        &Source::new("t.yaml", Format::Yaml, text),
        &Mode::Plan(vec![]),
    )
    .unwrap()
}

fn create(plan: &Plan, dir: &Path) -> (RunDir, Journal) {
    let run = StateDir::new(dir)
        .create_run(SourceKind::Yaml, "", &Fields::new())
        .unwrap();
    let header = RunHeader {
        format_version: FORMAT_VERSION,
        run_id: run.id().to_owned(),
        runbook: plan.runbook.clone(),
        source_file: "t.yaml".into(),
        plan_hash: plan.hash.clone(),
        params: Fields::new(),
        host: "test".into(),
        pid: 1,
        started_at: "2026-01-01T00:00:00.000Z".into(),
    };
    let journal = Journal::create(&run, header).unwrap();
    (run, journal)
}

fn records(run: &RunDir) -> Vec<Record> {
    Journal::read(run)
        .unwrap()
        .contents
        .entries
        .into_iter()
        .map(|e| e.record)
        .collect()
}

fn options(yes: bool) -> Options<'static> {
    Options {
        yes,
        approver: None,
        user: "tester",
    }
}

/// Runs `p` against `effects` in a new run of a temporary state directory, `--yes` or not:
/// where it stopped, and every record it journaled.
async fn run_fresh(p: &Plan, effects: &Scripted, yes: bool) -> (Stop, Vec<Record>) {
    let tmp = tempfile::tempdir().unwrap();
    let (run, journal) = create(p, tmp.path());
    let report = Runner::new(p, journal, effects, &NoEvents, options(yes))
        .run()
        .await
        .unwrap();
    (report.stop, records(&run))
}

const REBOOT: &str = "  - id: reboot\n    action: talos.reboot\n    with: { node: n1 }\n    guard: [etcd.safe-down]\n    timeout: 10s\n    retry: { attempts: 3, delay: 1s }\n";

#[tokio::test(start_paused = true)]
async fn a_failure_that_may_have_reached_the_node_is_checked_and_never_resent_when_done() {
    let p = plan(REBOOT);
    let effects = Scripted {
        failures: 1,
        ..Scripted::answering(vec![Probe::Done("`n1` is rebooting".into())])
    };
    let (stop, recs) = run_fresh(&p, &effects, false).await;
    assert_eq!(stop, Stop::Succeeded);
    assert_eq!(effects.sent.load(Ordering::SeqCst), 1, "never sent again");
    assert!(recs.iter().any(|r| matches!(
        r,
        Record::InDoubt {
            resolution: InDoubtResolution::VerifiedDone,
            attempt: 1,
            ..
        }
    )));
    assert!(
        !recs.iter().any(|r| matches!(
            r,
            Record::RetryScheduled { .. } | Record::ActionFailed { .. }
        )),
        "no retry without the check saying not done"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_checked_not_done_is_retried_by_the_policy_and_a_settled_bootstrap_does_not_block_its_retry()
 {
    let p = plan(
        "  - id: boot\n    action: talos.bootstrap\n    with: { node: n1 }\n    guard: [etcd.bootstrap-safe]\n    timeout: 10s\n    retry: { attempts: 2, delay: 3s }\n",
    );
    let effects = Scripted {
        failures: 1,
        ..Scripted::answering(vec![
            Probe::Unknown("etcd on `n1` still waits; not done only if that lasts 1s".into()),
            Probe::NotDone("etcd on `n1` still waits for a bootstrap for 1s".into()),
        ])
    };
    let start = tokio::time::Instant::now();
    let (stop, recs) = run_fresh(&p, &effects, false).await;
    assert_eq!(stop, Stop::Succeeded);
    assert_eq!(effects.sent.load(Ordering::SeqCst), 2);
    assert_eq!(effects.checks.load(Ordering::SeqCst), 2);
    // One probe interval (1 s) while unknown, then the 3 s backoff of the policy.
    assert_eq!(start.elapsed(), Duration::from_secs(4));
    assert!(recs.iter().any(|r| matches!(
        r,
        Record::ActionFailed { attempt: 1, retryable: true, error, .. }
            if error.contains("checked: not done: etcd on `n1` still waits")
    )));
    assert!(recs.iter().any(|r| matches!(
        r,
        Record::RetryScheduled {
            next_attempt: 2,
            delay_ms: 3000,
            ..
        }
    )));
}

/// An effect that failed before sending anything (`EffectError::NotSent`) is `action-not-sent`:
/// retried by the policy without settling, since nothing can be in doubt.
#[tokio::test(start_paused = true)]
async fn a_retryable_failure_before_sending_is_retried_without_any_settling() {
    let p = plan(REBOOT);
    let effects = Scripted {
        not_sent: 1,
        ..Scripted::answering(vec![Probe::Unknown("must not be asked".into())])
    };
    let (stop, recs) = run_fresh(&p, &effects, false).await;
    assert_eq!(stop, Stop::Succeeded);
    assert_eq!(effects.sent.load(Ordering::SeqCst), 2);
    assert_eq!(
        effects.checks.load(Ordering::SeqCst),
        0,
        "nothing to settle"
    );
    assert!(recs.iter().any(|r| matches!(
        r,
        Record::ActionNotSent {
            attempt: 1,
            retryable: true,
            ..
        }
    )));
    assert!(
        recs.iter().any(|r| matches!(
            r,
            Record::RetryScheduled {
                next_attempt: 2,
                ..
            }
        )),
        "{recs:#?}"
    );
    assert!(
        !recs
            .iter()
            .any(|r| matches!(r, Record::InDoubt { .. } | Record::ActionFailed { .. })),
        "{recs:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_check_that_cannot_answer_asks_a_person_and_yes_never_answers() {
    let p = plan(REBOOT);
    let effects = Scripted {
        failures: 1,
        ..Scripted::answering(vec![Probe::Unknown(
            "cannot read the boot id of `n1`: permission denied (PermissionDenied)".into(),
        )])
    };
    let start = tokio::time::Instant::now();
    let (stop, recs) = run_fresh(&p, &effects, true).await;
    assert_eq!(stop, Stop::AwaitingApproval);
    // Asked until the step's timeout (the probe window), once a second.
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(effects.checks.load(Ordering::SeqCst), 11);
    assert_eq!(effects.sent.load(Ordering::SeqCst), 1);
    assert!(recs.iter().any(|r| matches!(
        r,
        Record::InDoubt {
            resolution: InDoubtResolution::Unknown,
            ..
        }
    )));
    assert!(recs.iter().any(|r| matches!(
        r,
        Record::ApprovalRequested { prompt, .. }
            if prompt.starts_with(runbook::exec::attempt::IN_DOUBT_PROMPT) && prompt.contains("PermissionDenied")
    )));
    assert!(!recs.iter().any(|r| matches!(r, Record::Approved { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_failed_pre_state_read_sends_nothing() {
    let p = plan(REBOOT);
    let effects = Scripted {
        blind: true,
        ..Scripted::default()
    };
    let (stop, recs) = run_fresh(&p, &effects, false).await;
    assert_eq!(stop, Stop::Failed);
    assert_eq!(effects.sent.load(Ordering::SeqCst), 0, "never sent blind");
    let failed: Vec<_> = recs
        .into_iter()
        .filter_map(|r| match r {
            // Recorded as never sent, so no rollback treats it as possibly done.
            Record::ActionNotSent {
                error, retryable, ..
            } => Some((error, retryable)),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 3, "retryable: every attempt tried to read it");
    assert!(failed[0].1);
    assert!(
        failed[0]
            .0
            .contains("cannot record what verifies `talos.reboot` before sending it"),
        "{failed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_verify_condition_nobody_answered_is_unknown_not_verified_not_done() {
    let p = plan(
        "  - id: reboot\n    action: talos.reboot\n    with: { node: n1 }\n    guard: [etcd.safe-down]\n    verify: { condition: talos.rebooted, with: { node: n1 }, timeout: 5s, interval: 1s }\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let (run, mut journal) = create(&p, tmp.path());
    // The killed run: its intent is durable, its outcome is not.
    let session = journal.session().to_owned();
    journal
        .append(Record::StepStarted {
            step: "reboot".into(),
            attempt: 1,
            session,
            pre_state: Fields::new(),
        })
        .unwrap();
    drop(journal);
    let journal = Journal::open(&run).unwrap().journal;
    let effects = Scripted {
        silent: true,
        ..Scripted::default()
    };
    let report = Runner::new(&p, journal, &effects, &NoEvents, options(true))
        .run()
        .await
        .unwrap();
    assert_eq!(report.stop, Stop::AwaitingApproval);
    assert_eq!(effects.sent.load(Ordering::SeqCst), 0);
    let recs = records(&run);
    assert!(recs.iter().any(|r| matches!(
        r,
        Record::InDoubt {
            resolution: InDoubtResolution::Unknown,
            ..
        }
    )));
    assert!(!recs.iter().any(|r| matches!(
        r,
        Record::InDoubt {
            resolution: InDoubtResolution::VerifiedNotDone,
            ..
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn bootstrap_safe_refuses_a_second_bootstrap_of_the_same_run_and_names_the_first() {
    let p = plan(
        "  - id: first\n    action: talos.bootstrap\n    with: { node: n1 }\n    guard: [etcd.bootstrap-safe]\n  - id: second\n    action: talos.bootstrap\n    with: { node: n2 }\n    guard: [etcd.bootstrap-safe]\n",
    );
    let effects = Scripted::default();
    let (stop, recs) = run_fresh(&p, &effects, true).await;
    assert_eq!(stop, Stop::GuardRefused);
    assert_eq!(effects.sent.load(Ordering::SeqCst), 1);
    let refused: Vec<_> = recs
        .into_iter()
        .filter_map(|r| match r {
            Record::GuardRefused {
                step,
                reason,
                figures,
                ..
            } => Some((step, reason, figures)),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, "second");
    assert!(
        refused[0]
            .1
            .contains("this run sent `talos.bootstrap` in step `first`"),
        "{}",
        refused[0].1
    );
    assert_eq!(refused[0].2["bootstrap_step"], "first");
}

#[tokio::test(start_paused = true)]
async fn an_in_doubt_bootstrap_a_person_approved_again_runs_once_and_still_blocks_a_second() {
    let p = plan(
        "  - id: first\n    action: talos.bootstrap\n    with: { node: n1 }\n    guard: [etcd.bootstrap-safe]\n    idempotency: confirm\n  - id: second\n    action: talos.bootstrap\n    with: { node: n2 }\n    guard: [etcd.bootstrap-safe]\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let (run, mut journal) = create(&p, tmp.path());
    let session = journal.session().to_owned();
    journal
        .append(Record::StepStarted {
            step: "first".into(),
            attempt: 1,
            session,
            pre_state: Fields::new(),
        })
        .unwrap();
    drop(journal);
    // Resumed: a `confirm` step asks; the operator checked by hand and approved a re-run.
    let mut journal = Journal::open(&run).unwrap().journal;
    journal
        .append_batch(vec![
            Record::InDoubt {
                step: "first".into(),
                attempt: 1,
                resolution: InDoubtResolution::AskOperator,
            },
            Record::ApprovalRequested {
                step: "first".into(),
                prompt: "interrupted with an unknown outcome: ...".into(),
            },
            Record::Approved {
                step: "first".into(),
                by: "alice".into(),
                at: "2026-01-01T00:00:00.000Z".into(),
            },
        ])
        .unwrap();
    let effects = Scripted::default();
    let report = Runner::new(&p, journal, &effects, &NoEvents, options(true))
        .run()
        .await
        .unwrap();
    assert_eq!(report.stop, Stop::GuardRefused);
    assert_eq!(effects.sent.load(Ordering::SeqCst), 1);
    let refused: Vec<_> = records(&run)
        .into_iter()
        .filter_map(|r| match r {
            Record::GuardRefused { step, reason, .. } => Some((step, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, "second");
    assert!(
        refused[0].1.contains("step `first` (attempt 2)"),
        "{}",
        refused[0].1
    );
}
