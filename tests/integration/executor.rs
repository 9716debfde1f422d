//! The executor in-process with tokio's paused clock: retries with backoff, step timeouts,
//! waits (polls are events, only outcomes are journaled), guard refusals and their resume.
//! Time is virtual, so these tests assert exact delays without sleeping.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use runbook::compile::{Mode, compile_source};
use runbook::event::{Event, Stop};
use runbook::exec::{
    ActionCall, ActionOutcome, CheckCall, EffectError, Effects, EventSink, LocalEffects, Options,
    Poll, Runner, Verdict,
};
use runbook::journal::{
    FORMAT_VERSION, Fields, Journal, Record, RunDir, RunHeader, RunOutcome, SourceKind, StateDir,
};
use runbook::plan::Plan;
use runbook::source::{Format, Source};

/// Scripted cluster effects: `kube.ready` holds from the third poll, `talos.running` never
/// holds, `etcd.safe-down` refuses until `fixed`.
#[derive(Default)]
struct Scripted {
    polls: AtomicU32,
    cordons: AtomicU32,
    fixed: AtomicBool,
}

impl Effects for Scripted {
    async fn perform(&self, call: ActionCall<'_>) -> Result<ActionOutcome, EffectError> {
        if call.name == "kube.cordon" {
            self.cordons.fetch_add(1, Ordering::SeqCst);
            return Ok(ActionOutcome::default());
        }
        LocalEffects.perform(call).await
    }

    async fn check_guard(&self, _call: CheckCall<'_>) -> Result<Verdict, EffectError> {
        let healthy = if self.fixed.load(Ordering::SeqCst) {
            3
        } else {
            2
        };
        Ok(Verdict {
            passed: healthy == 3,
            reason: format!("only {healthy} of 3 voters healthy"),
            figures: fields(serde_json::json!({"healthy": healthy, "voters": 3})),
        })
    }

    async fn poll(&self, call: CheckCall<'_>) -> Result<Poll, EffectError> {
        let n = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Poll {
            satisfied: call.name == "kube.ready" && n >= 3,
            figures: fields(serde_json::json!({"polls": n})),
        })
    }

    async fn probe(&self, call: ActionCall<'_>) -> Result<Option<bool>, EffectError> {
        LocalEffects.probe(call).await
    }
}

#[derive(Default)]
struct Collect(Mutex<Vec<Event>>);

impl EventSink for Collect {
    fn emit(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

fn fields(v: serde_json::Value) -> Fields {
    v.as_object().cloned().unwrap()
}

fn plan(steps: &str) -> Plan {
    let text = format!(
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {{ name: t }}\nparams:\n  x: {{ type: int, default: 1 }}\nsteps:\n{steps}"
    );
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

fn options() -> Options<'static> {
    Options {
        yes: false,
        approver: None,
        user: "tester",
    }
}

#[tokio::test(start_paused = true)]
async fn step_timeout_and_exponential_backoff_in_virtual_time() {
    let p = plan(
        "  - id: slow\n    action: sleep\n    with: { duration: 10m }\n    timeout: 1s\n    retry: { attempts: 3, backoff: exponential, delay: 2s, max_delay: 10s }\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let (run, journal) = create(&p, tmp.path());
    let effects = Scripted::default();
    let start = tokio::time::Instant::now();
    let report = Runner::new(&p, journal, &effects, &Collect::default(), options())
        .run()
        .await
        .unwrap();
    // Three 1 s timeouts and the 2 s and 4 s backoff delays.
    assert_eq!(start.elapsed(), Duration::from_secs(9));
    assert_eq!(report.stop, Stop::Failed);
    let recs = records(&run);
    let delays: Vec<u64> = recs
        .iter()
        .filter_map(|r| match r {
            Record::RetryScheduled { delay_ms, .. } => Some(*delay_ms),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [2000, 4000]);
    let failures = recs
        .iter()
        .filter(|r| matches!(r, Record::ActionFailed { error, retryable: true, .. } if error == "`sleep` timed out after 1s"))
        .count();
    assert_eq!(failures, 3);
    assert!(matches!(
        recs.last(),
        Some(Record::RunFinished {
            outcome: RunOutcome::Failed,
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn waits_poll_outside_the_journal_and_time_out_from_outside() {
    let p = plan(
        "  - id: ready\n    wait: { condition: kube.ready, with: { node: n1 }, timeout: 10s, interval: 1s }\n  - id: stuck\n    wait: { condition: talos.running, with: { node: n1 }, timeout: 5s, interval: 1s }\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let (run, journal) = create(&p, tmp.path());
    let effects = Scripted::default();
    let events = Collect::default();
    let start = tokio::time::Instant::now();
    let report = Runner::new(&p, journal, &effects, &events, options())
        .run()
        .await
        .unwrap();
    assert_eq!(report.stop, Stop::Failed);
    assert_eq!(start.elapsed(), Duration::from_secs(7));
    let recs = records(&run);
    let ready: Vec<&str> = recs
        .iter()
        .filter(|r| r.step() == Some("ready"))
        .map(Record::type_name)
        .collect();
    assert_eq!(ready, ["step-started", "wait-satisfied", "step-succeeded"]);
    assert!(recs.iter().any(|r| matches!(r,
        Record::WaitSatisfied { elapsed_ms: 2000, figures, .. } if figures["polls"] == 3)));
    assert!(recs.iter().any(|r| matches!(r,
        Record::WaitTimedOut { step, elapsed_ms: 5000, .. } if step == "stuck")));
    let polls = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::WaitProgress { step, .. } if step == "ready"))
        .count();
    assert_eq!(polls, 3, "every poll is an event, none is a record");
}

#[tokio::test(start_paused = true)]
async fn a_guard_refusal_pauses_and_resume_checks_it_again() {
    let p = plan(
        "  - id: cordon\n    action: kube.cordon\n    with: { node: n1 }\n    guard: [{ expr: \"params.x == 1\", message: \"x must be 1\" }, etcd.safe-down]\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let (run, journal) = create(&p, tmp.path());
    let effects = Scripted::default();
    let report = Runner::new(&p, journal, &effects, &Collect::default(), options())
        .run()
        .await
        .unwrap();
    assert_eq!(report.stop, Stop::GuardRefused);
    assert_eq!(effects.cordons.load(Ordering::SeqCst), 0, "no side effect");
    assert!(
        report
            .failed
            .unwrap()
            .error
            .contains("only 2 of 3 voters healthy")
    );
    let recs = records(&run);
    assert!(
        recs.iter()
            .any(|r| matches!(r, Record::GuardPassed { guard, .. } if guard == "params.x == 1"))
    );
    assert!(recs.iter().any(|r| matches!(r,
        Record::GuardRefused { figures, .. } if figures["healthy"] == 2)));

    // The operator fixes the cluster and resumes: the guard is checked again, fresh.
    effects.fixed.store(true, Ordering::SeqCst);
    let opened = Journal::open(&run).unwrap();
    let report = Runner::new(&p, opened.journal, &effects, &Collect::default(), options())
        .run()
        .await
        .unwrap();
    assert_eq!(report.stop, Stop::Succeeded);
    assert_eq!(effects.cordons.load(Ordering::SeqCst), 1);
    let state = Journal::read(&run).unwrap().state;
    assert_eq!(state.step("cordon").unwrap().attempts, 2);
}

/// Declares an intent for `step` in a fresh journal and "crashes" (drops the journal).
fn crash_after_intent(p: &Plan, dir: &Path, step: &str) -> RunDir {
    let (run, mut journal) = create(p, dir);
    let session = journal.session().to_owned();
    journal
        .append(Record::StepStarted {
            step: step.to_owned(),
            attempt: 1,
            session,
            pre_state: Fields::new(),
        })
        .unwrap();
    run
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_confirm_step_waits_for_a_person_not_for_yes() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("markers");
    let p = plan(&format!(
        "  - id: wipe\n    action: marker\n    with: {{ path: \"{}\", text: wiped }}\n    idempotency: confirm\n",
        marker.display()
    ));
    let run = crash_after_intent(&p, tmp.path(), "wipe");
    let effects = Scripted::default();
    let yes = Options {
        yes: true,
        ..options()
    };
    let opened = Journal::open(&run).unwrap();
    let report = Runner::new(&p, opened.journal, &effects, &Collect::default(), yes)
        .run()
        .await
        .unwrap();
    assert_eq!(
        report.stop,
        Stop::AwaitingApproval,
        "--yes never confirms an in-doubt step"
    );
    assert!(
        report.next[0].contains("interrupted with an unknown outcome"),
        "{:?}",
        report.next
    );
    assert!(!marker.exists(), "nothing was repeated");

    let mut journal = Journal::open(&run).unwrap().journal;
    journal
        .append(Record::Approved {
            step: "wipe".into(),
            by: "alice".into(),
            at: "2026-01-01T00:00:00.000Z".into(),
        })
        .unwrap();
    let report = Runner::new(&p, journal, &effects, &Collect::default(), options())
        .run()
        .await
        .unwrap();
    assert_eq!(report.stop, Stop::Succeeded);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "wiped\n");
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_verify_step_is_settled_by_its_condition_not_repeated() {
    let p = plan(
        "  - id: cordon\n    action: kube.cordon\n    with: { node: n1 }\n    idempotency: verify\n    verify: { condition: kube.ready, with: { node: n1 }, timeout: 10s, interval: 1s }\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let run = crash_after_intent(&p, tmp.path(), "cordon");
    let effects = Scripted::default();
    let opened = Journal::open(&run).unwrap();
    let report = Runner::new(&p, opened.journal, &effects, &Collect::default(), options())
        .run()
        .await
        .unwrap();
    assert_eq!(report.stop, Stop::Succeeded);
    assert_eq!(
        effects.cordons.load(Ordering::SeqCst),
        0,
        "verified done: not repeated"
    );
    assert!(records(&run).iter().any(|r| matches!(
        r,
        Record::InDoubt {
            resolution: runbook::journal::InDoubtResolution::VerifiedDone,
            ..
        }
    )));
}
