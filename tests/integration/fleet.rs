//! The fleet preset and `foreach … parallel: K`: compile-time batch rules, batches of workers
//! rebooted K at a time against a simulated fleet (sampled: never more than K workers or more
//! than one control plane down), and a crash with several reboots in flight, resumed with
//! exactly one Reboot per node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use runbook::diagnostic::Code;
use runbook::journal::{Journal, RunDir, StepState};
use runbook::sim::scenario::{NUC_20, worker_label};
use runbook::sim::{Preset, Scenario, SimConfig, SimHandle, Simulator, Speed, Stage};

use crate::harness::{HEAD, plan_yaml, summary};

const CPS: &str = "192.168.2.20,192.168.2.223,192.168.2.49";

struct Fleet {
    rt: tokio::runtime::Runtime,
    handle: SimHandle,
    dir: PathBuf,
}

impl Fleet {
    fn start(dir: &Path, workers: u16, speed: f64) -> Fleet {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let handle = rt
            .block_on(Simulator::start_with(
                SimConfig {
                    scenario: Scenario::Healthy,
                    speed: Speed::new(speed).unwrap(),
                    dir: dir.join("sim"),
                },
                Preset::Fleet { workers },
            ))
            .unwrap();
        Fleet {
            rt,
            handle,
            dir: dir.join("sim"),
        }
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// `runbook ARGS` against this simulator, hermetic about the environment.
    fn command(&self, state: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
        cmd.args(args)
            .args(["--talosconfig", &self.file("talosconfig")])
            .args(["--kubeconfig", &self.file("kubeconfig")])
            .args(["--node-endpoints", &self.file("endpoints.json")])
            .args(["--output", "plain", "--state-dir"])
            .arg(state)
            .env("NO_COLOR", "1")
            .env("HOME", state)
            .env_remove("TALOSCONFIG")
            .env_remove("KUBECONFIG")
            .env_remove("RUNBOOK_CLUSTER_LOCK_TTL")
            .env_remove("RUNBOOK_TEST_KILL_AFTER_RECORD")
            .env_remove("RUNBOOK_TEST_KILL_IN_EFFECT");
        cmd
    }

    /// Reboot calls per node label.
    fn reboots(&self) -> BTreeMap<String, usize> {
        self.handle.cluster().with(|c, _| {
            let mut m = BTreeMap::new();
            for r in c.call_log().iter().filter(|r| r.method == "Reboot") {
                *m.entry(r.node.clone()).or_insert(0) += 1;
            }
            m
        })
    }

    fn stop(self) {
        self.rt.block_on(self.handle.shutdown());
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn workers(n: u16) -> String {
    (1..=n).map(worker_label).collect::<Vec<_>>().join(",")
}

fn only_run(state: &Path) -> RunDir {
    let runs = runbook::journal::StateDir::new(state).list_runs().unwrap();
    assert_eq!(runs.len(), 1, "expected exactly one run");
    runs[0].run.clone()
}

/// Samples the model: the most workers and the most control planes not `running` at once.
struct Sampler {
    done: Arc<AtomicBool>,
    workers: Arc<AtomicUsize>,
    cps: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start(fleet: &Fleet) -> Sampler {
        let done = Arc::new(AtomicBool::new(false));
        let (workers, cps) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let cluster = fleet.handle.cluster().clone();
        let thread = {
            let (done, workers, cps) = (done.clone(), workers.clone(), cps.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let (w, c) = cluster.with(|c, _| {
                        let down = |cp: bool| {
                            c.nodes()
                                .iter()
                                .filter(|n| n.is_control_plane() == cp)
                                .filter(|n| n.stage() != Stage::Running)
                                .count()
                        };
                        (down(false), down(true))
                    });
                    workers.fetch_max(w, Ordering::Relaxed);
                    cps.fetch_max(c, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Sampler {
            done,
            workers,
            cps,
            thread,
        }
    }

    /// (most workers down, most control planes down).
    fn finish(self) -> (usize, usize) {
        self.done.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        (
            self.workers.load(Ordering::Relaxed),
            self.cps.load(Ordering::Relaxed),
        )
    }
}

/// A disruptive worker body without the batch guard.
const UNGUARDED_BATCH: &str = "steps:
  - id: ws
    foreach: '[\"w1\", \"w2\", \"w3\"]'
    parallel: 2
    steps:
      - id: reboot
        action: talos.reboot
        with: { node: \"${{ node }}\" }
        guard: [etcd.safe-down]
";

#[test]
fn fleet_parallel_refuses_a_disruptive_body_without_the_batch_guard() {
    let r = plan_yaml(&format!("{HEAD}{UNGUARDED_BATCH}"), &[]);
    let d = r.unwrap_err();
    let s = summary(&d);
    assert_eq!(s.len(), 1, "{s:#?}");
    assert_eq!(s[0].0, Code::UnguardedDisruptive);
    // The `action:` value of the nested step.
    assert_eq!(s[0].1, "14:17", "{s:#?}");
    assert!(
        s[0].2.contains("runs up to 2 at a time") && s[0].2.contains("kube.batch-safe"),
        "{s:#?}"
    );
    // `unguarded:` does not excuse a batch.
    let excused =
        UNGUARDED_BATCH.replace("guard: [etcd.safe-down]", "unguarded: the operator said so");
    let s = summary(&plan_yaml(&format!("{HEAD}{excused}"), &[]).unwrap_err());
    assert!(
        s.iter()
            .any(|d| d.0 == Code::UnguardedDisruptive && d.2.contains("batch")),
        "{s:#?}"
    );
    // With the batch guard it compiles, into batches of two, the guard inheriting the batch.
    let guarded = UNGUARDED_BATCH.replace("[etcd.safe-down]", "[kube.batch-safe]");
    let plan = plan_yaml(&format!("{HEAD}{guarded}"), &[]).unwrap();
    let batches: Vec<(String, Vec<String>, u32)> = plan
        .steps()
        .map(|s| {
            let b = s.batch.clone().unwrap();
            (b.id, b.nodes, b.size)
        })
        .collect();
    assert_eq!(
        batches,
        [
            ("ws#1".to_string(), vec!["w1".to_string(), "w2".into()], 2),
            ("ws#1".to_string(), vec!["w1".to_string(), "w2".into()], 2),
            ("ws#2".to_string(), vec!["w3".to_string()], 2),
        ]
    );
    let step = |id: &str| plan.steps().find(|s| s.id == id).unwrap();
    // Elements of one batch do not wait for each other; the next batch waits for all.
    assert!(step("ws[w2].reboot").needs.is_empty());
    assert_eq!(
        step("ws[w3].reboot").needs,
        ["ws[w1].reboot", "ws[w2].reboot"]
    );
    let runbook::plan::Guard::Named { args, .. } = &step("ws[w1].reboot").guards[0] else {
        panic!("named guard");
    };
    assert_eq!(
        args["nodes"],
        runbook::plan::Value::Literal(serde_json::json!(["w1", "w2"]))
    );
    assert_eq!(
        args["max_unavailable"],
        runbook::plan::Value::Literal(serde_json::json!(2))
    );
}

#[test]
fn fleet_parallel_needs_foreach_a_plan_time_size_and_one_level() {
    let no_foreach = "steps:\n  - id: a\n    action: noop\n    parallel: 2\n";
    let s = summary(&plan_yaml(&format!("{HEAD}{no_foreach}"), &[]).unwrap_err());
    assert_eq!(s[0].0, Code::InvalidValue);
    assert!(s[0].2.contains("`parallel` but no `foreach`"), "{s:#?}");
    for bad in ["0", "-1", "'\"x\"'", "1000"] {
        let src = format!(
            "{HEAD}steps:\n  - id: a\n    foreach: '[\"x\", \"y\"]'\n    parallel: {bad}\n    action: noop\n"
        );
        let s = summary(&plan_yaml(&src, &[]).unwrap_err());
        assert!(
            s.iter()
                .any(|d| d.2.contains("`parallel` must be an integer")),
            "{bad}: {s:#?}"
        );
    }
    let nested = format!(
        "{HEAD}steps:\n  - id: a\n    foreach: '[\"x\"]'\n    parallel: 2\n    steps:\n      - id: b\n        foreach: '[\"y\"]'\n        parallel: 2\n        action: noop\n"
    );
    let s = summary(&plan_yaml(&nested, &[]).unwrap_err());
    assert!(
        s.iter().any(|d| d.2.contains("inside the body of another")),
        "{s:#?}"
    );
    // Outside a batch, the batch guard needs its arguments.
    let lone = format!(
        "{HEAD}steps:\n  - id: a\n    action: talos.reboot\n    with: {{ node: w1 }}\n    guard: [kube.batch-safe]\n"
    );
    let s = summary(&plan_yaml(&lone, &[]).unwrap_err());
    assert!(
        s.iter()
            .any(|d| d.0 == Code::MissingArgument && d.2.contains("max_unavailable")),
        "{s:#?}"
    );
}

#[test]
fn fleet_sim_serves_control_planes_and_workers_with_their_own_ports() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 5, 100.0);
    assert_eq!(fleet.handle.nodes().len(), 8);
    let endpoints: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fleet.dir.join("endpoints.json")).unwrap())
            .unwrap();
    let ports: std::collections::BTreeSet<String> = fleet
        .handle
        .nodes()
        .keys()
        .map(|l| endpoints[l]["endpoint"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ports.len(), 8, "one port per node: {endpoints}");
    let inventory = std::fs::read_to_string(fleet.dir.join("cluster.yaml")).unwrap();
    assert!(inventory.contains("name: 192.168.3.5"), "{inventory}");
    // The talosconfig's endpoints are the control planes only.
    let tc = std::fs::read_to_string(fleet.dir.join("talosconfig")).unwrap();
    assert!(
        !tc.contains(&fleet.handle.endpoint("192.168.3.1").unwrap()),
        "{tc}"
    );
    assert!(tc.contains(&fleet.handle.endpoint(NUC_20).unwrap()), "{tc}");
    // A batch with a control plane in it is refused before anything is sent.
    let state = dir.path().join("state");
    let mixed = dir.path().join("mixed.yaml");
    std::fs::write(
        &mixed,
        format!(
            "{HEAD}steps:\n  - id: ns\n    foreach: params.nodes\n    parallel: 2\n    steps:\n      - id: cordon\n        action: kube.cordon\n        with: {{ node: \"${{{{ node }}}}\" }}\n        guard: [kube.batch-safe]\n"
        ),
    )
    .unwrap();
    let o = fleet
        .command(
            &state,
            &[
                "run",
                mixed.to_str().unwrap(),
                "--param",
                &format!("nodes=192.168.3.1,{NUC_20}"),
            ],
        )
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(4), "{t}");
    assert!(t.contains("control plane"), "{t}");
    let cordons = fleet.handle.cluster().with(|c, _| {
        c.call_log()
            .iter()
            .filter(|r| r.method == "PatchNode")
            .count()
    });
    assert_eq!(cordons, 0, "nothing was cordoned");

    // Three workers at once would evict three `apps/web` pods; its budget (minAvailable 3 of
    // 5) allows two: refused before any cordon or eviction is sent.
    let state = dir.path().join("state-pdb");
    let drain = dir.path().join("drain.yaml");
    std::fs::write(
        &drain,
        format!(
            "{HEAD}steps:\n  - id: ns\n    foreach: params.nodes\n    parallel: 3\n    steps:\n      - id: cordon\n        action: kube.cordon\n        with: {{ node: \"${{{{ node }}}}\" }}\n        guard: [kube.batch-safe]\n      - id: drain\n        action: kube.drain\n        with: {{ node: \"${{{{ node }}}}\" }}\n        guard: [kube.batch-safe]\n"
        ),
    )
    .unwrap();
    let o = fleet
        .command(
            &state,
            &[
                "run",
                drain.to_str().unwrap(),
                "--param",
                &format!("nodes={}", workers(3)),
            ],
        )
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(4), "{t}");
    assert!(t.contains("PodDisruptionBudget `apps/web`"), "{t}");
    let sent = fleet.handle.cluster().with(|c, _| {
        c.call_log()
            .iter()
            .filter(|r| r.method == "PatchNode" || r.method == "EvictPod")
            .count()
    });
    assert_eq!(sent, 0, "nothing was cordoned or evicted");
    fleet.stop();
}

/// Workers of the "done when" test: the 50-node fleet (3 control planes and 47
/// workers). One of the slowest tests of the suite (about two minutes in a debug build on two
/// cores, mostly observing 50 nodes), and the only one that proves the batch bounds at the
/// size the issue names.
const DONE_WHEN_WORKERS: u16 = 47;

/// The "done when" on a fleet: reboot-verify with a worker batch of 5 completes; a
/// sampler never sees more than 5 workers or more than one control plane down at once; each
/// batch's reboots were in flight together (every one sent before any finished, per the
/// journal); the call log has exactly one Reboot per node.
#[test]
fn fleet_reboot_verify_batches_of_five() {
    let dir = tempfile::tempdir().unwrap();
    let n = DONE_WHEN_WORKERS;
    let fleet = Fleet::start(dir.path(), n, 100.0);
    let sampler = Sampler::start(&fleet);
    let state = dir.path().join("state");
    let o = fleet
        .command(
            &state,
            &[
                "run",
                "reboot-verify",
                "--param",
                &format!("nodes={CPS}"),
                "--param",
                &format!("workers={}", workers(n)),
                "--param",
                "batch=5",
            ],
        )
        .output()
        .unwrap();
    let (w, c) = sampler.finish();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(w <= 5, "{w} workers were down at once");
    assert!(c <= 1, "{c} control planes were down at once");
    let reboots = fleet.reboots();
    assert_eq!(reboots.len(), usize::from(n) + 3, "{reboots:?}");
    assert!(reboots.values().all(|k| *k == 1), "{reboots:?}");
    // In flight together: within each batch, every reboot's action completed before the
    // first of them was checkpointed; and no reboot of the second batch before the first
    // batch's last step.
    let journal = std::fs::read_to_string(only_run(&state).path().join("journal.jsonl")).unwrap();
    let seq_of = |kind: &str, step: &str| -> u64 {
        journal
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["rec"]["type"] == kind && v["rec"]["step"] == step)
            .and_then(|v| v["seq"].as_u64())
            .unwrap_or_else(|| panic!("no {kind} for {step}"))
    };
    let reboot = |i: u16| format!("workers[{}].w_reboot", worker_label(i));
    for batch in [1..=5u16, 6..=10] {
        let last_sent = batch
            .clone()
            .map(|i| seq_of("action-completed", &reboot(i)))
            .max()
            .unwrap();
        let first_done = batch
            .clone()
            .map(|i| seq_of("step-succeeded", &reboot(i)))
            .min()
            .unwrap();
        assert!(
            last_sent < first_done,
            "batch {batch:?}: reboots were not in flight together"
        );
    }
    let first_batch_end = (1..=5u16)
        .map(|i| {
            seq_of(
                "step-succeeded",
                &format!("workers[{}].w_uncordon", worker_label(i)),
            )
        })
        .max()
        .unwrap();
    assert!(
        seq_of(
            "step-started",
            &format!("workers[{}].w_record_boot", worker_label(6))
        ) > first_batch_end
    );
    fleet.stop();
}

/// Killed inside the Reboot of the second worker of a batch (after the call returned, before
/// its outcome was journaled), with the first worker's reboot in flight: resume settles both
/// (the in-doubt one by its boot id, the other by its wait) and reboots each node once.
#[test]
fn fleet_crash_with_reboots_in_flight_resumes_with_one_reboot_per_node() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 4, 300.0);
    let state = dir.path().join("state");
    let args = [
        "run".to_string(),
        "reboot-verify".into(),
        "--param".into(),
        format!("nodes={CPS}"),
        "--param".into(),
        format!("workers={}", workers(4)),
        "--param".into(),
        "batch=2".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Reboots 1-3 are the control planes; the 5th is the second worker of the first batch.
    let killed = fleet
        .command(&state, &args)
        .env("RUNBOOK_TEST_KILL_IN_EFFECT", "talos.reboot:5:after")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_ne!(killed.status.code(), Some(0), "{}", text(&killed));
    let run = only_run(&state);
    let journal = Journal::read(&run).unwrap().state;
    let w1 = "workers[192.168.3.1].w_reboot";
    let w2 = "workers[192.168.3.2].w_reboot";
    assert!(
        matches!(journal.step_state(w1), StepState::ActionDone { .. }),
        "{w1}: {:?}",
        journal.step_state(w1)
    );
    assert!(
        matches!(journal.step_state(w2), StepState::Started { .. }),
        "{w2}: {:?}",
        journal.step_state(w2)
    );
    assert_eq!(fleet.reboots().values().sum::<usize>(), 5);

    let resumed = fleet
        .command(&state, &["resume", run.id()])
        .output()
        .unwrap();
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    let reboots = fleet.reboots();
    assert_eq!(reboots.len(), 7, "{reboots:?}");
    assert!(reboots.values().all(|n| *n == 1), "{reboots:?}");
    let journal = Journal::read(&run).unwrap().state;
    for step in [w1, w2] {
        assert!(
            matches!(journal.step_state(step), StepState::Succeeded { .. }),
            "{step}: {:?}",
            journal.step_state(step)
        );
    }
    fleet.stop();
}

#[test]
fn fleet_cli_flags_refuse_nonsense_and_run_sim_serves_the_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let env = crate::run_harness::Env::new();
    let sim_dir = dir.path().join("sim");
    let sim_dir = sim_dir.to_str().unwrap();
    for (args, needle) in [
        (
            vec![
                "sim",
                "up",
                "--preset",
                "fleet",
                "--workers",
                "0",
                "--dir",
                sim_dir,
            ],
            "--workers must be between 1 and 254",
        ),
        (
            vec!["sim", "up", "--workers", "3", "--dir", sim_dir],
            "--workers needs --preset fleet",
        ),
        (
            vec![
                "sim",
                "up",
                "--preset",
                "fleet",
                "--scenario",
                "quorum-lost",
                "--dir",
                sim_dir,
            ],
            "does not apply to the fleet preset",
        ),
        (
            vec!["sim", "up", "--preset", "huge", "--dir", sim_dir],
            "unknown preset",
        ),
    ] {
        let o = env.run(&args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
        assert!(t.contains(needle), "{args:?}: {t}");
    }
    // `run --sim --preset fleet`: a guard over every node sees the workers too.
    let rb = dir.path().join("all.yaml");
    std::fs::write(
        &rb,
        format!("{HEAD}steps:\n  - id: a\n    action: noop\n    guard: [talos.all-running]\n"),
    )
    .unwrap();
    let o = env.run(&[
        "run",
        rb.to_str().unwrap(),
        "--sim",
        "--preset",
        "fleet",
        "--workers",
        "2",
        "--output",
        "plain",
        "--no-cluster-lock",
        "a test without Kubernetes writes",
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("all 5 nodes running"), "{t}");
    // Without --sim the fleet flags are refused by the parser.
    let o = env.run(&["run", rb.to_str().unwrap(), "--preset", "fleet"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
