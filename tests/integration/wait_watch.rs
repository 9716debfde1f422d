//! Waits that watch: a change signal wakes a wait at once, even with a 10-minute poll
//! interval; the signal alone never satisfies a wait (a fresh poll decides); and the cluster
//! effects' signal fires when the simulator changes state (its COSI Watch pushes).
//! The executor tests run on tokio's paused clock, so delays are exact, not measured.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use runbook::compile::{Mode, compile_source};
use runbook::exec::{
    ActionCall, ActionOutcome, CheckCall, EffectError, Effects, LocalEffects, NoEvents, Options,
    Poll, Runner, Verdict,
};
use runbook::journal::{
    FORMAT_VERSION, Fields, Journal, Record, RunDir, RunHeader, SourceKind, StateDir,
};
use runbook::plan::Plan;
use runbook::source::{Format, Source};
use tokio::sync::watch;

/// A cluster whose condition holds once `ready` is set; `changes` is its change signal.
struct Watched {
    ready: AtomicBool,
    polls: AtomicU32,
    changes: Mutex<Option<watch::Receiver<u64>>>,
}

impl Effects for Watched {
    async fn perform(&self, call: ActionCall<'_>) -> Result<ActionOutcome, EffectError> {
        LocalEffects.perform(call).await
    }

    async fn check_guard(&self, _call: CheckCall<'_>) -> Result<Verdict, EffectError> {
        Ok(Verdict {
            passed: true,
            reason: String::new(),
            figures: Fields::new(),
        })
    }

    async fn poll(&self, _call: CheckCall<'_>) -> Result<Poll, EffectError> {
        let n = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
        let mut figures = Fields::new();
        figures.insert("polls".into(), n.into());
        Ok(Poll {
            satisfied: self.ready.load(Ordering::SeqCst),
            figures,
        })
    }

    async fn probe(&self, call: ActionCall<'_>) -> Result<Option<bool>, EffectError> {
        LocalEffects.probe(call).await
    }

    fn changes(&self, _condition: &str) -> Option<watch::Receiver<u64>> {
        self.changes.lock().unwrap().clone()
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

fn create(plan: &Plan, dir: &std::path::Path) -> (RunDir, Journal) {
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

fn options() -> Options<'static> {
    Options {
        yes: false,
        approver: None,
        user: "tester",
    }
}

const TEN_MINUTE_INTERVAL: &str = "  - id: w\n    wait: { condition: kube.ready, with: { node: n1 }, timeout: 1h, interval: 10m }\n";

fn satisfied_after(run: &RunDir) -> Option<u64> {
    Journal::read(run)
        .unwrap()
        .contents
        .entries
        .into_iter()
        .find_map(|e| match e.record {
            Record::WaitSatisfied { elapsed_ms, .. } => Some(elapsed_ms),
            _ => None,
        })
}

#[tokio::test(start_paused = true)]
async fn a_change_wakes_a_wait_with_a_ten_minute_interval_at_once() {
    let p = plan(TEN_MINUTE_INTERVAL);
    let tmp = tempfile::tempdir().unwrap();
    let (run, journal) = create(&p, tmp.path());
    let (tx, rx) = watch::channel(0u64);
    let effects = Watched {
        ready: AtomicBool::new(false),
        polls: AtomicU32::new(0),
        changes: Mutex::new(Some(rx)),
    };
    let cluster = async {
        // The cluster changes 90 s (virtual) into the wait, between two fallback polls
        // (51.1 s and 102.3 s), long before the 10-minute interval.
        tokio::time::sleep(Duration::from_secs(90)).await;
        effects.ready.store(true, Ordering::SeqCst);
        tx.send_modify(|n| *n += 1);
    };
    let start = tokio::time::Instant::now();
    let (report, ()) = tokio::join!(
        Runner::new(&p, journal, &effects, &NoEvents, options()).run(),
        cluster
    );
    assert_eq!(report.unwrap().stop, runbook::event::Stop::Succeeded);
    assert_eq!(start.elapsed(), Duration::from_secs(90));
    assert_eq!(satisfied_after(&run), Some(90_000));
}

#[tokio::test(start_paused = true)]
async fn a_change_alone_never_satisfies_a_wait_a_fresh_poll_decides() {
    let p = plan(TEN_MINUTE_INTERVAL);
    let tmp = tempfile::tempdir().unwrap();
    let (run, journal) = create(&p, tmp.path());
    let (tx, rx) = watch::channel(0u64);
    let effects = Watched {
        ready: AtomicBool::new(false),
        polls: AtomicU32::new(0),
        changes: Mutex::new(Some(rx)),
    };
    let cluster = async {
        // A stream that chatters: changes that change nothing the condition reads.
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tx.send_modify(|n| *n += 1);
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        effects.ready.store(true, Ordering::SeqCst);
        // No signal for this one: the fallback poll finds it.
    };
    let start = tokio::time::Instant::now();
    let (report, ()) = tokio::join!(
        Runner::new(&p, journal, &effects, &NoEvents, options()).run(),
        cluster
    );
    assert_eq!(report.unwrap().stop, runbook::event::Stop::Succeeded);
    // Each change woke a poll that found it false; the fallback poll after 60 s finds it.
    let at = satisfied_after(&run).unwrap();
    assert!(
        at >= 60_000,
        "satisfied at {at} ms, before the cluster was ready"
    );
    assert!(start.elapsed() >= Duration::from_secs(60));
    assert!(effects.polls.load(Ordering::SeqCst) > 50);
}

#[tokio::test(start_paused = true)]
async fn without_a_change_signal_a_wait_polls_at_its_interval() {
    let p = plan(
        "  - id: w\n    wait: { condition: kube.ready, with: { node: n1 }, timeout: 1h, interval: 10m }\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let (run, journal) = create(&p, tmp.path());
    let effects = Watched {
        ready: AtomicBool::new(false),
        polls: AtomicU32::new(0),
        changes: Mutex::new(None),
    };
    let cluster = async {
        tokio::time::sleep(Duration::from_secs(90)).await;
        effects.ready.store(true, Ordering::SeqCst);
    };
    let (report, ()) = tokio::join!(
        Runner::new(&p, journal, &effects, &NoEvents, options()).run(),
        cluster
    );
    assert_eq!(report.unwrap().stop, runbook::event::Stop::Succeeded);
    assert_eq!(satisfied_after(&run), Some(600_000));
    assert_eq!(effects.polls.load(Ordering::SeqCst), 2);
}

/// The cluster effects against the simulator: their change signal fires when the simulated
/// cluster changes state (a reboot), through the COSI Watch and Kubernetes watch streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_change_signal_fires_when_the_simulator_changes_state() {
    use runbook::sim::{Scenario, SimConfig, Simulator, Speed};
    let dir = tempfile::tempdir().unwrap();
    let h = Simulator::start(SimConfig {
        scenario: Scenario::Healthy,
        speed: Speed::new(60.0).unwrap(),
        dir: dir.path().join("sim"),
    })
    .await
    .unwrap();
    let conn = runbook::cluster::connection::Connection::for_simulator(&h);
    let effects = conn.open_in(Some(dir.path())).await.unwrap();
    let mut rx = effects
        .changes("talos.rebooted")
        .expect("cluster effects offer a change signal");
    assert!(
        effects.changes("exec.succeeds").is_none(),
        "a local program is polled at its interval"
    );
    // The streams connect (each connection counts as a change); let them settle.
    let settled = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            rx.borrow_and_update();
            if tokio::time::timeout(Duration::from_millis(300), rx.changed())
                .await
                .is_err()
            {
                return;
            }
        }
    })
    .await;
    assert!(settled.is_ok(), "the streams never went quiet");
    rx.borrow_and_update();
    h.cluster()
        .with(|c, now| {
            c.reboot(
                "192.168.2.223",
                runbook::sim::node::RebootMode::Default,
                now,
            )
        })
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), rx.changed())
        .await
        .expect("a change after the reboot")
        .unwrap();
    h.shutdown().await;
}
