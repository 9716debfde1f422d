//! The rollback path in-process with scripted cluster effects and tokio's paused clock: a
//! rollback applies exactly when its step's action may have taken effect, is guarded fresh
//! right before its side effect, is journaled attempt by attempt (so a crash never repeats
//! it), and `abort` settles in-doubt steps first and reports every effect it could not undo.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use runbook::compile::{Mode, compile_source};
use runbook::event::{Event, Report, Stop};
use runbook::exec::{
    ActionCall, ActionOutcome, Approver, CheckCall, EffectError, Effects, EventSink, LocalEffects,
    Options, Poll, Runner, Verdict,
};
use runbook::journal::{
    FORMAT_VERSION, Fields, InDoubtResolution, Journal, Record, RunDir, RunHeader, RunOutcome,
    SourceKind, StateDir,
};
use runbook::plan::Plan;
use runbook::source::{Format, Source};

/// How the scripted `talos.apply-config` ends.
#[derive(Clone, Copy, PartialEq)]
enum Apply {
    /// Completes.
    Ok,
    /// Sent, then the connection broke: may have taken effect.
    FailedAfterSending,
    /// Never sent: no connection for it.
    NotSent,
}

/// A replacement node: `talos.apply-config` installs it (it leaves maintenance, even when the
/// call then fails); it joins (`etcd.member`) only if `joins`; `talos.not-member` passes while
/// it is not a member; `talos.reset` fails `reset_failures` times (retryable) before it wipes
/// it back to maintenance. Every action call is logged.
struct Replacement {
    apply: Apply,
    joins: bool,
    installed: AtomicBool,
    member: AtomicBool,
    reset_failures: AtomicU32,
    /// The replacement's API does not answer: guards and polls about it error.
    unreachable: AtomicBool,
    calls: Mutex<Vec<String>>,
}

impl Replacement {
    fn new(apply: Apply, joins: bool) -> Self {
        Replacement {
            apply,
            joins,
            installed: AtomicBool::new(false),
            member: AtomicBool::new(false),
            reset_failures: AtomicU32::new(0),
            unreachable: AtomicBool::new(false),
            calls: Mutex::new(Vec::new()),
        }
    }

    fn calls(&self, name: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| *c == name)
            .count()
    }
}

impl Effects for Replacement {
    async fn perform(&self, call: ActionCall<'_>) -> Result<ActionOutcome, EffectError> {
        match call.name {
            "talos.apply-config" => match self.apply {
                Apply::NotSent => {
                    return Err(EffectError::NeedsCluster {
                        name: call.name.into(),
                    });
                }
                Apply::Ok => {
                    self.installed.store(true, Ordering::SeqCst);
                    if self.joins {
                        self.member.store(true, Ordering::SeqCst);
                    }
                }
                Apply::FailedAfterSending => {
                    self.installed.store(true, Ordering::SeqCst);
                    self.calls.lock().unwrap().push(call.name.into());
                    return Err(EffectError::Failed {
                        message: "connection reset by peer".into(),
                        retryable: false,
                    });
                }
            },
            "talos.reset" => {
                self.calls.lock().unwrap().push(call.name.into());
                if self
                    .reset_failures
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    return Err(EffectError::Failed {
                        message: "Unavailable: node rebooting".into(),
                        retryable: true,
                    });
                }
                self.member.store(false, Ordering::SeqCst);
                self.installed.store(false, Ordering::SeqCst);
                return Ok(ActionOutcome::default());
            }
            _ => return LocalEffects.perform(call).await,
        }
        self.calls.lock().unwrap().push(call.name.into());
        Ok(ActionOutcome::default())
    }

    async fn check_guard(&self, call: CheckCall<'_>) -> Result<Verdict, EffectError> {
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(EffectError::Failed {
                message: "192.168.2.50:50000: connection refused".into(),
                retryable: true,
            });
        }
        match call.name {
            "talos.not-member" => {
                let member = self.member.load(Ordering::SeqCst);
                Ok(Verdict {
                    passed: !member,
                    reason: if member {
                        "`192.168.2.50` is an etcd member (listed by 192.168.2.20)".into()
                    } else {
                        String::new()
                    },
                    figures: Fields::new(),
                })
            }
            other => Err(EffectError::NeedsCluster { name: other.into() }),
        }
    }

    async fn poll(&self, call: CheckCall<'_>) -> Result<Poll, EffectError> {
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(EffectError::Failed {
                message: "192.168.2.50:50000: connection refused".into(),
                retryable: false,
            });
        }
        let satisfied = match call.name {
            "etcd.member" => self.member.load(Ordering::SeqCst),
            "talos.maintenance" => !self.installed.load(Ordering::SeqCst),
            _ => false,
        };
        Ok(Poll {
            satisfied,
            figures: Fields::new(),
        })
    }

    async fn probe(&self, _call: ActionCall<'_>) -> Result<Option<bool>, EffectError> {
        Ok(None)
    }
}

#[derive(Default)]
struct Collect(Mutex<Vec<Event>>);

impl EventSink for Collect {
    fn emit(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

/// node-replace in miniature: `apply` installs the replacement and waits for it to join;
/// `later` fails when `explode`; `reset` wipes the replacement, guarded like node-replace's
/// `reset_replacement`. `first` is an older step with its own rollback (a marker), to show the
/// path stops at a rollback that could not be undone.
fn plan(extra: &str, reset_retry: &str) -> Plan {
    plan_with(extra, reset_retry, &[])
}

fn plan_with(extra: &str, reset_retry: &str, params: &[(&str, &str)]) -> Plan {
    let text = format!(
        r#"apiVersion: runbook/v1
kind: Runbook
metadata: {{ name: t }}
params:
  explode: {{ type: bool, default: false }}
  skip_apply: {{ type: bool, default: false }}
  dir: {{ type: path, default: /nonexistent }}
steps:
  - id: first
    action: noop
    rollback: [undo_first]
  - id: apply
    needs: [first]
    when: "!params.skip_apply"
    action: talos.apply-config
    with: {{ node: 192.168.2.50, config: /dev/null, mode: auto, insecure: true }}
    guard: [talos.not-member]
    wait: {{ condition: etcd.member, timeout: 1m, interval: 1s }}
    rollback: [reset]
{extra}
rollbacks:
  - id: undo_first
    action: log
    with: {{ message: "first undone" }}
  - id: reset
    action: talos.reset
    with: {{ node: 192.168.2.50, graceful: false, reboot: true }}
    guard: [talos.not-member]
{reset_retry}
    verify: {{ condition: talos.maintenance }}
    wait: {{ condition: talos.maintenance, timeout: 1m, interval: 1s }}
"#
    );
    compile_source(
        &Source::new("t.yaml", Format::Yaml, text),
        &Mode::Plan(
            params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
    )
    .unwrap()
}

const LATER: &str = r#"  - id: later
    needs: [apply]
    when: params.explode
    action: fail
    with: { attempts: 100, message: "boom" }"#;

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

fn options() -> Options<'static> {
    Options {
        yes: false,
        approver: None,
        user: "tester",
    }
}

async fn run(plan: &Plan, journal: Journal, effects: &Replacement) -> Report {
    Runner::new(plan, journal, effects, &Collect::default(), options())
        .run()
        .await
        .unwrap()
}

async fn abort(plan: &Plan, run: &RunDir, effects: &Replacement, opts: Options<'_>) -> Report {
    let journal = Journal::open(run).unwrap().journal;
    let events = Collect::default();
    let mut runner = Runner::new(plan, journal, effects, &events, opts);
    runner.request_abort().unwrap();
    runner.run().await.unwrap()
}

fn types_of<'a>(recs: &'a [Record], step: &str) -> Vec<&'a str> {
    recs.iter()
        .filter(|r| r.step() == Some(step))
        .map(Record::type_name)
        .collect()
}

fn not_undone(report: &Report, step: &str) -> Option<String> {
    report
        .not_undone
        .iter()
        .find(|n| n.step == step)
        .map(|n| n.error.clone())
}

/// The join wait times out after the config was applied: the replacement is installed, so its
/// reset runs (fresh guard: it is not a member), and the older step's rollback runs after it.
#[tokio::test(start_paused = true)]
async fn a_join_wait_that_times_out_rolls_back_the_applied_config() {
    let p = plan("", "");
    let tmp = tempfile::tempdir().unwrap();
    let (dir, journal) = create(&p, tmp.path());
    let fx = Replacement::new(Apply::Ok, false);
    let report = run(&p, journal, &fx).await;
    assert_eq!(report.stop, Stop::RolledBack, "{report:?}");
    assert_eq!(fx.calls("talos.reset"), 1);
    assert_eq!(report.rolled_back, ["reset@apply", "undo_first@first"]);
    assert_eq!(report.failed.as_ref().unwrap().step, "apply");
    assert!(report.not_undone.is_empty(), "{report:?}");
    let recs = records(&dir);
    assert_eq!(
        types_of(&recs, "reset@apply"),
        [
            "rollback-started",
            "step-started",
            "guard-passed",
            "action-completed",
            "wait-satisfied",
            "rollback-succeeded"
        ]
    );
}

/// The call was sent and the connection broke: the config may be on the node, so the reset
/// runs.
#[tokio::test(start_paused = true)]
async fn an_action_that_failed_after_sending_is_rolled_back() {
    let p = plan("", "");
    let tmp = tempfile::tempdir().unwrap();
    let (_dir, journal) = create(&p, tmp.path());
    let fx = Replacement::new(Apply::FailedAfterSending, false);
    let report = run(&p, journal, &fx).await;
    assert_eq!(report.stop, Stop::RolledBack, "{report:?}");
    assert_eq!(fx.calls("talos.apply-config"), 1);
    assert_eq!(fx.calls("talos.reset"), 1);
}

/// Never sent (no connection for it), skipped by `when`, or refused by its guard: nothing
/// happened, so nothing is undone, and no reset reaches the node.
#[tokio::test(start_paused = true)]
async fn nothing_is_undone_for_an_action_that_was_never_sent() {
    // Not sent.
    let p = plan("", "");
    let tmp = tempfile::tempdir().unwrap();
    let (dir, journal) = create(&p, tmp.path());
    let fx = Replacement::new(Apply::NotSent, false);
    let report = run(&p, journal, &fx).await;
    assert_eq!(fx.calls("talos.reset"), 0);
    assert!(
        types_of(&records(&dir), "apply").contains(&"action-not-sent"),
        "{:?}",
        records(&dir)
    );
    assert_eq!(report.rolled_back, ["undo_first@first"]);

    // Skipped by `when`, then a later step fails.
    let p = plan_with(LATER, "", &[("skip_apply", "true"), ("explode", "true")]);
    let tmp = tempfile::tempdir().unwrap();
    let (_dir, journal) = create(&p, tmp.path());
    let fx = Replacement::new(Apply::Ok, true);
    let report = run(&p, journal, &fx).await;
    assert_eq!(report.failed.as_ref().unwrap().step, "later");
    assert_eq!(fx.calls("talos.reset"), 0);
    assert_eq!(report.skipped, ["apply"]);

    // Refused by its own guard (already a member), then aborted.
    let p = plan("", "");
    let tmp = tempfile::tempdir().unwrap();
    let (dir, journal) = create(&p, tmp.path());
    let fx = Replacement::new(Apply::Ok, true);
    fx.member.store(true, Ordering::SeqCst);
    let report = run(&p, journal, &fx).await;
    assert_eq!(report.stop, Stop::GuardRefused);
    fx.member.store(false, Ordering::SeqCst);
    let report = abort(&p, &dir, &fx, options()).await;
    assert_eq!(report.stop, Stop::Aborted);
    assert_eq!(fx.calls("talos.apply-config"), 0);
    assert_eq!(fx.calls("talos.reset"), 0, "{:?}", records(&dir));
    assert!(not_undone(&report, "apply").is_none(), "{report:?}");
}

/// The replacement joined and is a healthy voter; a later step fails. The reset's guard is
/// checked fresh and refuses: no reset, the refusal is journaled and reported as not undone,
/// and the path stops there (the older step's rollback does not run on top of it).
#[tokio::test(start_paused = true)]
async fn a_rollback_refused_by_its_guard_never_wipes_a_voter_and_stops_the_path() {
    let p = plan_with(LATER, "", &[("explode", "true")]);
    let tmp = tempfile::tempdir().unwrap();
    let (dir, journal) = create(&p, tmp.path());
    let fx = Replacement::new(Apply::Ok, true);
    let report = run(&p, journal, &fx).await;
    assert_eq!(report.stop, Stop::Failed, "{report:?}");
    assert_eq!(fx.calls("talos.reset"), 0);
    let recs = records(&dir);
    assert_eq!(
        types_of(&recs, "reset@apply"),
        [
            "rollback-started",
            "step-started",
            "guard-refused",
            "rollback-failed"
        ]
    );
    assert_eq!(types_of(&recs, "undo_first@first"), Vec::<&str>::new());
    let reason = not_undone(&report, "apply").unwrap();
    assert!(
        reason.starts_with("rollback `reset@apply` refused: guard `talos.not-member` refused"),
        "{reason}"
    );
    assert!(
        not_undone(&report, "first").is_some_and(|r| r.contains("not attempted")),
        "{report:?}"
    );
    assert!(
        not_undone(&report, "later").is_some_and(|r| r.contains("no rollback declared")),
        "{report:?}"
    );
    assert!(
        report
            .next
            .iter()
            .any(|l| l.contains("the rollback path stopped at `reset@apply`")),
        "{:?}",
        report.next
    );
    assert!(matches!(
        recs.last(),
        Some(Record::RunFinished {
            outcome: RunOutcome::Failed,
            ..
        })
    ));
}

/// A rollback's retries are journaled per attempt; a crash after its action completed
/// resumes at the wait and never sends the reset again.
#[tokio::test(start_paused = true)]
async fn rollback_attempts_are_journaled_and_a_crash_never_repeats_the_reset() {
    let p = plan("", "    retry: { attempts: 3, backoff: fixed, delay: 2s }");
    let tmp = tempfile::tempdir().unwrap();
    let (dir, journal) = create(&p, tmp.path());
    let fx = Replacement::new(Apply::Ok, false);
    fx.reset_failures.store(1, Ordering::SeqCst);
    let report = run(&p, journal, &fx).await;
    assert_eq!(report.stop, Stop::RolledBack, "{report:?}");
    assert_eq!(fx.calls("talos.reset"), 2);
    let recs = records(&dir);
    assert_eq!(
        types_of(&recs, "reset@apply"),
        [
            "rollback-started",
            "step-started",
            "guard-passed",
            "action-failed",
            "retry-scheduled",
            "step-started",
            "guard-passed",
            "action-completed",
            "wait-satisfied",
            "rollback-succeeded"
        ]
    );

    // Replay the same run up to the completed reset (as if killed right after it), resume.
    let tmp = tempfile::tempdir().unwrap();
    let (dir2, mut journal) = create(&p, tmp.path());
    let cut = recs
        .iter()
        .rposition(|r| matches!(r, Record::ActionCompleted { step, .. } if step == "reset@apply"))
        .unwrap();
    let session = journal.session().to_owned();
    for r in &recs[2..=cut] {
        let r = match r.clone() {
            Record::StepStarted {
                step,
                attempt,
                pre_state,
                ..
            } => Record::StepStarted {
                step,
                attempt,
                session: session.clone(),
                pre_state,
            },
            other => other,
        };
        journal.append(r).unwrap();
    }
    drop(journal);
    let fx = Replacement::new(Apply::Ok, false);
    let journal = Journal::open(&dir2).unwrap().journal;
    let report = run(&p, journal, &fx).await;
    assert_eq!(report.stop, Stop::RolledBack, "{report:?}");
    assert_eq!(
        fx.calls("talos.reset"),
        0,
        "the completed reset is not sent again"
    );
    assert_eq!(fx.calls("talos.apply-config"), 0);
}

/// Killed between a rollback's intent and its outcome: `talos.reset` is not idempotent and
/// has no probe, so resume checks the rollback's wait (the node is back in maintenance) and
/// never sends a second reset.
#[tokio::test(start_paused = true)]
async fn an_in_doubt_rollback_is_verified_not_repeated() {
    let p = plan("", "");
    let tmp = tempfile::tempdir().unwrap();
    let (dir, journal) = create(&p, tmp.path());
    let fx = Replacement::new(Apply::Ok, false);
    run(&p, journal, &fx).await;
    let recs = records(&dir);
    let cut = recs
        .iter()
        .position(|r| matches!(r, Record::GuardPassed { step, .. } if step == "reset@apply"))
        .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let (dir2, mut journal) = create(&p, tmp.path());
    let session = journal.session().to_owned();
    for r in &recs[2..=cut] {
        let r = match r.clone() {
            Record::StepStarted {
                step,
                attempt,
                pre_state,
                ..
            } => Record::StepStarted {
                step,
                attempt,
                session: session.clone(),
                pre_state,
            },
            other => other,
        };
        journal.append(r).unwrap();
    }
    drop(journal);
    let opened = Journal::open(&dir2).unwrap();
    assert_eq!(opened.journal.state().in_doubt_steps().len(), 1);
    assert_eq!(
        opened.journal.state().in_doubt_steps()[0]
            .rollback_of
            .as_deref(),
        Some("apply")
    );
    // The world: the reset went through before the crash.
    let fx = Replacement::new(Apply::Ok, false);
    let report = run(&p, opened.journal, &fx).await;
    assert_eq!(report.stop, Stop::RolledBack, "{report:?}");
    assert_eq!(fx.calls("talos.reset"), 0);
    assert!(records(&dir2).iter().any(|r| matches!(
        r,
        Record::InDoubt { step, resolution: InDoubtResolution::VerifiedDone, .. } if step == "reset@apply"
    )));
}

struct Yes;
impl Approver for Yes {
    fn ask(&self, _step: &str, _prompt: &str) -> bool {
        true
    }
}

/// `abort` of a run killed inside a step that can be neither repeated nor checked: the abort
/// settles it first, stops and names the step that needs `runbook approve` (never `--yes`);
/// once approved, the next abort rolls it back (guarded) and reports the rest.
#[tokio::test(start_paused = true)]
async fn abort_settles_an_in_doubt_step_first_and_waits_for_an_operator() {
    let p = plan(
        r#"  - id: wipe
    needs: [apply]
    action: talos.reset
    with: { node: 192.168.2.50, graceful: false }
    guard: [talos.not-member]
    idempotency: confirm"#,
        "",
    );
    let tmp = tempfile::tempdir().unwrap();
    let (dir, journal) = create(&p, tmp.path());
    // `apply` succeeded (the replacement joined, then left again); `wipe` was interrupted
    // after its intent.
    let fx = Replacement::new(Apply::Ok, true);
    let mut journal = journal;
    let session = journal.session().to_owned();
    for r in [
        Record::StepStarted {
            step: "first".into(),
            attempt: 1,
            session: session.clone(),
            pre_state: Fields::new(),
        },
        Record::StepSucceeded {
            step: "first".into(),
            outputs: Fields::new(),
        },
        Record::StepStarted {
            step: "apply".into(),
            attempt: 1,
            session: session.clone(),
            pre_state: Fields::new(),
        },
        Record::ActionCompleted {
            step: "apply".into(),
            attempt: 1,
            outputs: Fields::new(),
        },
        Record::StepSucceeded {
            step: "apply".into(),
            outputs: Fields::new(),
        },
        Record::StepStarted {
            step: "wipe".into(),
            attempt: 1,
            session,
            pre_state: Fields::new(),
        },
    ] {
        journal.append(r).unwrap();
    }
    drop(journal);

    let yes = Options {
        yes: true,
        ..options()
    };
    let report = abort(&p, &dir, &fx, yes).await;
    assert_eq!(report.stop, Stop::AwaitingApproval, "{report:?}");
    assert_eq!(
        fx.calls("talos.reset"),
        0,
        "nothing is undone before it is settled"
    );
    assert!(
        report
            .next
            .iter()
            .any(|l| l.contains("runbook approve") && l.contains("wipe")),
        "{:?}",
        report.next
    );
    assert!(
        not_undone(&report, "wipe").is_some_and(|r| r.contains("still in doubt")),
        "{report:?}"
    );
    let recs = records(&dir);
    assert!(recs.iter().any(|r| matches!(
        r,
        Record::InDoubt { step, resolution: InDoubtResolution::AskOperator, .. } if step == "wipe"
    )));

    // The operator checks by hand and approves (interactively); the abort continues: `wipe`
    // has no rollback (reported), `apply`'s reset is guarded fresh and the node (installed)
    // is no longer a member, so it runs; `first` is undone last.
    fx.installed.store(true, Ordering::SeqCst);
    fx.member.store(false, Ordering::SeqCst);
    let report = abort(
        &p,
        &dir,
        &fx,
        Options {
            approver: Some(&Yes),
            ..options()
        },
    )
    .await;
    assert_eq!(report.stop, Stop::Aborted, "{report:?}");
    assert_eq!(fx.calls("talos.reset"), 1);
    assert_eq!(report.rolled_back, ["reset@apply", "undo_first@first"]);
    assert!(
        not_undone(&report, "wipe").is_some_and(|r| r.contains("no rollback declared")),
        "{report:?}"
    );
    assert!(matches!(
        records(&dir).last(),
        Some(Record::RunFinished {
            outcome: RunOutcome::Aborted,
            ..
        })
    ));
}

/// The compiler keeps the hazard ⇒ guard rule for rollback steps: a wipe in a rollback needs a
/// guard that protects against member removal, `unguarded:` needs a reason, and node-replace's
/// `reset_replacement` is guarded by `talos.not-member` on the replacement, not unguarded.
#[test]
fn rollback_steps_need_guards_like_forward_steps() {
    use runbook::diagnostic::Code;
    let compile = |rollback: &str| {
        let text = format!(
            "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {{ name: t }}\nsteps:\n  - id: a\n    action: noop\n    rollback: [wipe]\nrollbacks:\n  - id: wipe\n    action: talos.reset\n    with: {{ node: 192.168.2.50, graceful: false }}\n    wait: {{ condition: talos.maintenance }}\n{rollback}"
        );
        compile_source(&Source::new("t.yaml", Format::Yaml, text), &Mode::Check)
    };
    let unguarded = |r: Result<Plan, runbook::diagnostic::Diagnostics>| {
        r.expect_err("must not compile")
            .0
            .iter()
            .any(|d| d.code == Code::UnguardedDisruptive)
    };
    assert!(unguarded(compile("")));
    assert!(unguarded(compile("    unguarded: \"  \"\n")));
    assert!(unguarded(compile("    guard: [etcd.quorum]\n")));
    assert!(compile("    unguarded: a lab machine, nothing to lose\n").is_ok());
    let guarded = compile("    guard: [talos.not-member]\n").unwrap();
    assert_eq!(guarded.rollbacks[0].guards.len(), 1);

    let src = Source::new(
        "node-replace.yaml",
        Format::Yaml,
        include_str!("../../runbooks/node-replace.yaml"),
    );
    let params = [
        ("node", "192.168.2.49"),
        ("member", "mac-49"),
        ("survivor", "192.168.2.20"),
        ("replacement", "192.168.2.50"),
        ("config", "/dev/null"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let p = compile_source(&src, &Mode::Plan(params)).unwrap();
    let reset = p
        .rollbacks
        .iter()
        .find(|r| r.id.starts_with("reset_replacement@"))
        .unwrap();
    assert_eq!(reset.unguarded, None);
    let named: Vec<String> = reset
        .guards
        .iter()
        .map(|g| match g {
            runbook::plan::Guard::Named { name, args } => {
                format!("{name}({})", serde_json::to_string(args).unwrap())
            }
            runbook::plan::Guard::Expr { expr, .. } => expr.expr.clone(),
        })
        .collect();
    assert_eq!(named.len(), 1, "{named:?}");
    assert!(named[0].starts_with("talos.not-member("), "{named:?}");
    assert_eq!(
        named[0], r#"talos.not-member({"node":"192.168.2.50"})"#,
        "{named:?}"
    );
}

/// The replacement stops answering after it was installed: the reset's guard cannot be
/// checked, so it refuses (fails closed): no reset, reported as not undone with the reason.
#[tokio::test(start_paused = true)]
async fn a_rollback_whose_guard_cannot_be_checked_is_refused() {
    let p = plan("", "");
    let tmp = tempfile::tempdir().unwrap();
    let (_dir, journal) = create(&p, tmp.path());
    let fx = Replacement::new(Apply::Ok, false);
    // The join wait times out (nothing joins); then the node goes silent before the rollback.
    struct Silent<'a>(&'a Replacement);
    impl Effects for Silent<'_> {
        async fn perform(&self, call: ActionCall<'_>) -> Result<ActionOutcome, EffectError> {
            let out = self.0.perform(call).await;
            if call.name == "talos.apply-config" {
                self.0.unreachable.store(true, Ordering::SeqCst);
            }
            out
        }
        async fn check_guard(&self, call: CheckCall<'_>) -> Result<Verdict, EffectError> {
            if call.step == "apply" {
                // The forward guard ran before the node went silent.
                return Ok(Verdict {
                    passed: true,
                    reason: String::new(),
                    figures: Fields::new(),
                });
            }
            self.0.check_guard(call).await
        }
        async fn poll(&self, call: CheckCall<'_>) -> Result<Poll, EffectError> {
            Ok(Poll {
                satisfied: call.name == "never",
                figures: Fields::new(),
            })
        }
        async fn probe(&self, call: ActionCall<'_>) -> Result<Option<bool>, EffectError> {
            self.0.probe(call).await
        }
    }
    let silent = Silent(&fx);
    let report = Runner::new(&p, journal, &silent, &Collect::default(), options())
        .run()
        .await
        .unwrap();
    assert_eq!(report.stop, Stop::Failed, "{report:?}");
    assert_eq!(fx.calls("talos.reset"), 0);
    let reason = not_undone(&report, "apply").unwrap();
    assert!(
        reason.contains("refused")
            && reason.contains("cannot check")
            && reason.contains("connection refused"),
        "{reason}"
    );
}

/// `abort` of a run killed inside a `verify` step whose check cannot be made now (the node
/// does not answer): the abort does not guess; it pauses with the reason and names the step.
#[tokio::test(start_paused = true)]
async fn abort_pauses_when_an_in_doubt_step_cannot_be_checked() {
    let p = plan(
        r#"  - id: wipe
    needs: [apply]
    action: talos.reset
    with: { node: 192.168.2.50, graceful: false }
    guard: [talos.not-member]
    wait: { condition: talos.maintenance, timeout: 1m }"#,
        "",
    );
    let tmp = tempfile::tempdir().unwrap();
    let (dir, mut journal) = create(&p, tmp.path());
    let session = journal.session().to_owned();
    for r in [
        Record::StepStarted {
            step: "first".into(),
            attempt: 1,
            session: session.clone(),
            pre_state: Fields::new(),
        },
        Record::StepSucceeded {
            step: "first".into(),
            outputs: Fields::new(),
        },
        Record::StepStarted {
            step: "apply".into(),
            attempt: 1,
            session: session.clone(),
            pre_state: Fields::new(),
        },
        Record::ActionCompleted {
            step: "apply".into(),
            attempt: 1,
            outputs: Fields::new(),
        },
        Record::StepSucceeded {
            step: "apply".into(),
            outputs: Fields::new(),
        },
        Record::StepStarted {
            step: "wipe".into(),
            attempt: 1,
            session,
            pre_state: Fields::new(),
        },
    ] {
        journal.append(r).unwrap();
    }
    drop(journal);
    let fx = Replacement::new(Apply::Ok, true);
    fx.unreachable.store(true, Ordering::SeqCst);
    let report = abort(&p, &dir, &fx, options()).await;
    assert_eq!(report.stop, Stop::AwaitingApproval, "{report:?}");
    assert_eq!(fx.calls("talos.reset"), 0);
    let prompt = records(&dir)
        .into_iter()
        .find_map(|r| match r {
            Record::ApprovalRequested { step, prompt } if step == "wipe" => Some(prompt),
            _ => None,
        })
        .unwrap();
    assert!(
        prompt.starts_with("interrupted with an unknown outcome")
            && prompt.contains("connection refused"),
        "{prompt}"
    );
    assert!(
        report
            .next
            .iter()
            .any(|l| l.contains("runbook approve") && l.contains("wipe")),
        "{:?}",
        report.next
    );
}

/// A rollback whose action keeps failing gives up under its retry policy: journaled, reported
/// as not undone with its error, and the path stops before older steps.
#[tokio::test(start_paused = true)]
async fn a_rollback_that_fails_is_reported_and_stops_the_path() {
    let p = plan("", "    retry: { attempts: 2, backoff: fixed, delay: 1s }");
    let tmp = tempfile::tempdir().unwrap();
    let (dir, journal) = create(&p, tmp.path());
    let fx = Replacement::new(Apply::Ok, false);
    fx.reset_failures.store(100, Ordering::SeqCst);
    let report = run(&p, journal, &fx).await;
    assert_eq!(report.stop, Stop::Failed, "{report:?}");
    assert_eq!(fx.calls("talos.reset"), 2);
    let reason = not_undone(&report, "apply").unwrap();
    assert_eq!(
        reason,
        "rollback `reset@apply` failed: Unavailable: node rebooting (after 2 attempts)"
    );
    assert!(
        not_undone(&report, "first").is_some_and(|r| r.contains("not attempted")),
        "{report:?}"
    );
    assert_eq!(report.rollback_failed[0].step, "reset@apply");
    let recs = records(&dir);
    assert_eq!(
        types_of(&recs, "reset@apply")
            .iter()
            .filter(|t| **t == "step-started")
            .count(),
        2
    );
    assert_eq!(types_of(&recs, "undo_first@first"), Vec::<&str>::new());
}

/// Killed right after `apply`'s intent, then aborted: the abort settles it from the cluster
/// (done), so its reset applies; but the reset's `verify:` (the replacement is in
/// maintenance) already holds, so nothing is wiped.
#[tokio::test(start_paused = true)]
async fn a_rollback_whose_effect_is_already_there_does_not_act() {
    let p = plan("", "");
    let tmp = tempfile::tempdir().unwrap();
    let (dir, mut journal) = create(&p, tmp.path());
    let session = journal.session().to_owned();
    for r in [
        Record::StepStarted {
            step: "first".into(),
            attempt: 1,
            session: session.clone(),
            pre_state: Fields::new(),
        },
        Record::StepSucceeded {
            step: "first".into(),
            outputs: Fields::new(),
        },
        Record::StepStarted {
            step: "apply".into(),
            attempt: 1,
            session,
            pre_state: Fields::new(),
        },
    ] {
        journal.append(r).unwrap();
    }
    drop(journal);
    let fx = Replacement::new(Apply::Ok, true);
    // The interrupted apply is checked (`talos.apply-config` is `verify`): its join wait holds,
    // so it took effect and its rollback applies; the reset's own `verify:` (the replacement
    // is in maintenance) holds too, so nothing is wiped.
    fx.member.store(true, Ordering::SeqCst);
    let report = abort(&p, &dir, &fx, options()).await;
    assert_eq!(report.stop, Stop::Aborted, "{report:?}");
    assert_eq!(fx.calls("talos.reset"), 0);
    assert_eq!(fx.calls("talos.apply-config"), 0);
    assert_eq!(report.rolled_back, ["reset@apply", "undo_first@first"]);
    let recs = records(&dir);
    assert!(recs.iter().any(|r| matches!(
        r,
        Record::InDoubt { step, resolution: InDoubtResolution::VerifiedDone, .. } if step == "apply"
    )));
    assert_eq!(
        types_of(&recs, "reset@apply"),
        ["rollback-started", "rollback-succeeded"]
    );
}
