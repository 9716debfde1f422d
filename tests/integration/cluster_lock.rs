//! The cluster-wide disruption lock, end to end: `runbook` child processes from separate
//! state directories (two operators) against one in-test simulator, the Lease read back
//! through kube-rs from the simulator's Kubernetes API.
//!
//! Waiting is bounded polling with a message saying what was awaited; no test asserts on
//! elapsed time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use runbook::sim::{Scenario, SimConfig, SimHandle, Simulator, Speed, Stage};

const SEED: &str = "nodes=192.168.2.20,192.168.2.223,192.168.2.49";

struct Sim {
    rt: tokio::runtime::Runtime,
    handle: SimHandle,
    dir: PathBuf,
}

impl Sim {
    fn start(dir: &Path, speed: f64) -> Sim {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let handle = rt
            .block_on(Simulator::start(SimConfig {
                scenario: Scenario::Healthy,
                speed: Speed::new(speed).unwrap(),
                dir: dir.join("sim"),
            }))
            .unwrap();
        Sim {
            rt,
            handle,
            dir: dir.join("sim"),
        }
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// `runbook ARGS --state-dir STATE` with this simulator's files, as a command.
    fn command(&self, state: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
        cmd.args(args)
            .args(["--talosconfig", &self.file("talosconfig")])
            .args(["--kubeconfig", &self.file("kubeconfig")])
            .args(["--node-endpoints", &self.file("endpoints.json")])
            .args(["--output", "plain", "--state-dir"])
            .arg(state)
            .env("NO_COLOR", "1")
            .env_remove("TALOSCONFIG")
            .env_remove("RUNBOOK_CLUSTER_LOCK_TTL")
            .env_remove("RUNBOOK_TEST_KILL_AFTER_RECORD");
        cmd
    }

    /// `runbook ARGS --state-dir STATE` without cluster flags (`unlock` uses the recorded ones).
    fn bare(&self, state: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
        cmd.args(args)
            .arg("--state-dir")
            .arg(state)
            .env("NO_COLOR", "1")
            .env_remove("TALOSCONFIG");
        cmd
    }

    fn lease(&self) -> Option<Lease> {
        let kubeconfig = std::fs::read_to_string(self.dir.join("kubeconfig")).unwrap();
        self.rt.block_on(async {
            let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig).unwrap();
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .unwrap();
            let client = kube::Client::try_from(config).unwrap();
            let api: Api<Lease> = Api::namespaced(client, "kube-system");
            api.get_opt("runbook-disruption").await.unwrap()
        })
    }

    fn holder(&self) -> Option<String> {
        self.lease()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    }

    fn count(&self, method: &str) -> usize {
        self.handle
            .cluster()
            .with(|c, _| c.call_log().iter().filter(|r| r.method == method).count())
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

fn run_dirs(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state.join("runs"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

fn only_run(state: &Path) -> (String, PathBuf) {
    let runs = run_dirs(state);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let id = runs[0].file_name().unwrap().to_str().unwrap().to_string();
    (id, runs[0].clone())
}

fn journal(run: &Path) -> String {
    std::fs::read_to_string(run.join("journal.jsonl")).unwrap_or_default()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

/// The issue's "done when": two operators start `reboot-verify` on one cluster at once. The
/// second is refused with exit 7 naming the first run; only the first reboots anything, and
/// at no sampled instant are two nodes down.
#[test]
fn cluster_lock_second_concurrent_reboot_verify_is_refused_and_never_two_nodes_down() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 100.0);
    let (state_a, state_b) = (dir.path().join("state-a"), dir.path().join("state-b"));

    // Sample every node's stage while the runs go on.
    let done = Arc::new(AtomicBool::new(false));
    let worst = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, worst) = (done.clone(), worst.clone());
        let cluster = sim.handle.cluster().clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let down = cluster.with(|c, _| {
                    c.nodes()
                        .iter()
                        .filter(|n| n.stage() != Stage::Running)
                        .count()
                });
                worst.fetch_max(down, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let first = sim
        .command(&state_a, &["run", "reboot-verify", "--param", SEED])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the first run to take the cluster lock", || {
        sim.holder().is_some()
    });
    let (id_a, run_a) = only_run(&state_a);
    assert_eq!(
        sim.holder().unwrap(),
        format!("{id_a}@{}", runbook::journal::identity::host_name())
    );

    let second = sim
        .command(&state_b, &["run", "reboot-verify", "--param", SEED])
        .output()
        .unwrap();
    let t = text(&second);
    assert_eq!(second.status.code(), Some(7), "{t}");
    assert!(
        t.contains(&format!("run `{id_a}`")),
        "names the holder: {t}"
    );
    assert!(t.contains("since "), "says since when: {t}");
    assert!(
        t.contains(&runbook::journal::identity::host_name()),
        "names the host: {t}"
    );
    let (id_b, run_b) = only_run(&state_b);
    assert!(
        !journal(&run_b).contains("step-started"),
        "the refused run did nothing: {}",
        journal(&run_b)
    );

    let first = finish(first);
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(
        sim.count("Reboot"),
        3,
        "only the first run rebooted, once per node"
    );
    assert!(
        worst.load(Ordering::Relaxed) <= 1,
        "{} nodes were down at once",
        worst.load(Ordering::Relaxed)
    );
    assert!(journal(&run_a).contains(r#""event":"taken""#));
    // Released at the end: the refused run now goes ahead with `resume`.
    assert_eq!(sim.holder(), None);
    let resumed = sim.command(&state_b, &["resume", &id_b]).output().unwrap();
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert_eq!(sim.count("Reboot"), 6);
    sim.stop();
}

/// A holder SIGKILLed right after it took the lock (before any side effect) keeps the
/// cluster locked: another run is refused naming it; `unlock` of the wrong run is refused;
/// `unlock RUN --reason` releases it, journaled in RUN's journal; then the other run goes.
#[test]
fn cluster_lock_of_a_killed_holder_is_released_by_unlock_with_the_reason_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 200.0);
    let node = crate::harness::root().join("tests/fixtures/runbooks/reboot-one.yaml");
    let node = node.to_str().unwrap();
    let (state_a, state_b) = (dir.path().join("state-a"), dir.path().join("state-b"));

    // Records 1-3: run-started, session-started, cluster-lock taken. Die there.
    let killed = sim
        .command(&state_a, &["run", node, "--param", "node=192.168.2.223"])
        .env("RUNBOOK_TEST_KILL_AFTER_RECORD", "3")
        .output()
        .unwrap();
    assert_ne!(killed.status.code(), Some(0), "{}", text(&killed));
    let (id_a, run_a) = only_run(&state_a);
    assert!(
        journal(&run_a).contains(r#""event":"taken""#),
        "{}",
        journal(&run_a)
    );
    assert!(sim.holder().unwrap().starts_with(&format!("{id_a}@")));
    assert_eq!(sim.count("Reboot"), 0);

    let refused = sim
        .command(&state_b, &["run", node, "--param", "node=192.168.2.49"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(7), "{}", text(&refused));
    assert!(
        text(&refused).contains(&format!("run `{id_a}`")),
        "{}",
        text(&refused)
    );
    let (id_b, run_b) = only_run(&state_b);

    // `--no-cluster-lock` is for a lock that cannot be asked, not for one that answers.
    let still = sim
        .command(
            &dir.path().join("state-x"),
            &[
                "run",
                node,
                "--param",
                "node=192.168.2.49",
                "--no-cluster-lock",
                "in a hurry",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(still.status.code(), Some(7), "{}", text(&still));
    assert!(
        text(&still).contains(&format!("run `{id_a}`")),
        "{}",
        text(&still)
    );

    // B's unlock does not release A's lock without naming A.
    let wrong = sim
        .bare(&state_b, &["unlock", &id_b, "--reason", "mine?"])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(7), "{}", text(&wrong));
    assert!(
        text(&wrong).contains(&format!("--holder {id_a}")),
        "{}",
        text(&wrong)
    );
    assert!(sim.holder().is_some());
    assert!(!journal(&run_b).contains("unlocked"));

    let unlocked = sim
        .bare(
            &state_a,
            &["unlock", &id_a, "--reason", "operator killed it by mistake"],
        )
        .output()
        .unwrap();
    assert_eq!(unlocked.status.code(), Some(0), "{}", text(&unlocked));
    assert_eq!(sim.holder(), None);
    let j = journal(&run_a);
    assert!(j.contains(r#""event":"unlocked""#), "{j}");
    assert!(j.contains("operator killed it by mistake"), "{j}");

    let resumed = sim.command(&state_b, &["resume", &id_b]).output().unwrap();
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert_eq!(sim.count("Reboot"), 1);
    sim.stop();
}

/// A holder SIGKILLed with a short TTL: once `renewTime + leaseDurationSeconds` is past,
/// another run takes the lock over and journals whom it took it from. The killed run's own
/// resume then waits its turn (refused while the other one holds it).
#[test]
fn cluster_lock_of_a_killed_holder_is_taken_over_after_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 200.0);
    let node = crate::harness::root().join("tests/fixtures/runbooks/reboot-one.yaml");
    let node = node.to_str().unwrap();
    let (state_a, state_c) = (dir.path().join("state-a"), dir.path().join("state-c"));

    let killed = sim
        .command(&state_a, &["run", node, "--param", "node=192.168.2.223"])
        .env("RUNBOOK_TEST_KILL_AFTER_RECORD", "3")
        .env("RUNBOOK_CLUSTER_LOCK_TTL", "2")
        .output()
        .unwrap();
    assert_ne!(killed.status.code(), Some(0), "{}", text(&killed));
    let (id_a, _) = only_run(&state_a);
    let lease = sim.lease().unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.lease_duration_seconds, Some(2));
    let expires = spec
        .renew_time
        .unwrap()
        .0
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(2))
        .unwrap();
    wait_for("the killed holder's lease to expire", || {
        k8s_openapi::jiff::Timestamp::now() > expires
    });

    let taken = sim
        .command(&state_c, &["run", node, "--param", "node=192.168.2.49"])
        .output()
        .unwrap();
    assert_eq!(taken.status.code(), Some(0), "{}", text(&taken));
    let (_, run_c) = only_run(&state_c);
    let j = journal(&run_c);
    assert!(j.contains(r#""event":"taken-over""#), "{j}");
    assert!(j.contains(&format!("run `{id_a}`")), "names whom: {j}");
    assert_eq!(sim.count("Reboot"), 1);
    // C released it at its end; A's resume takes it and finishes A's reboot.
    let resumed = sim.command(&state_a, &["resume", &id_a]).output().unwrap();
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert_eq!(sim.count("Reboot"), 2);
    sim.stop();
}

/// A resumed run whose earlier session was killed holding the lock takes its own lock back
/// at once (same run, same host), without waiting for the TTL.
#[test]
fn cluster_lock_resume_of_the_killed_holder_takes_its_own_lock_back() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 200.0);
    let node = crate::harness::root().join("tests/fixtures/runbooks/reboot-one.yaml");
    let state = dir.path().join("state");
    let killed = sim
        .command(
            &state,
            &[
                "run",
                node.to_str().unwrap(),
                "--param",
                "node=192.168.2.20",
            ],
        )
        .env("RUNBOOK_TEST_KILL_AFTER_RECORD", "3")
        .output()
        .unwrap();
    assert_ne!(killed.status.code(), Some(0), "{}", text(&killed));
    let (id, run) = only_run(&state);
    let resumed = sim.command(&state, &["resume", &id]).output().unwrap();
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert!(journal(&run).contains(r#""event":"taken-over""#));
    assert_eq!(sim.count("Reboot"), 1);
    assert_eq!(sim.holder(), None, "released at the end");
    sim.stop();
}

const APPROVE_THEN_REBOOT: &str = r#"apiVersion: runbook/v1
kind: Runbook
metadata:
  name: approve-then-reboot
  description: An approval gate, then one guarded reboot
params:
  node: { type: node, required: true }
steps:
  - id: confirm
    approval: "Reboot the node?"
  - id: reboot
    needs: [confirm]
    action: talos.reboot
    with: { node: "${{ params.node }}" }
    guard: [etcd.safe-down]
"#;

/// The second finding of the issue: a run started on cluster A, paused at an approval, and
/// resumed with cluster B's talosconfig (by flag, or by `$TALOSCONFIG`) must not touch B. It
/// is refused naming both, B's call log stays empty, and the run still finishes on A.
#[test]
fn resume_with_another_clusters_talosconfig_is_refused_and_sends_nothing_there() {
    let dir = tempfile::tempdir().unwrap();
    let a = Sim::start(&dir.path().join("a"), 200.0);
    let b = Sim::start(&dir.path().join("b"), 200.0);
    let file = dir.path().join("approve-then-reboot.yaml");
    std::fs::write(&file, APPROVE_THEN_REBOOT).unwrap();
    let state = dir.path().join("state");
    let paused = a
        .command(
            &state,
            &[
                "run",
                file.to_str().unwrap(),
                "--param",
                "node=192.168.2.223",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(paused.status.code(), Some(5), "{}", text(&paused));
    let (id, run) = only_run(&state);
    let target = std::fs::read_to_string(run.join("target.json")).unwrap();
    assert!(target.contains("\"ca_sha256\""), "{target}");
    let approved = a
        .bare(&state, &["approve", &id, "confirm"])
        .output()
        .unwrap();
    assert_eq!(approved.status.code(), Some(0), "{}", text(&approved));
    b.handle.cluster().with(|c, _| c.clear_call_log());

    // B's files by flag: refused, naming both talosconfigs.
    let by_flag = b.command(&state, &["resume", &id]).output().unwrap();
    let t = text(&by_flag);
    assert_eq!(by_flag.status.code(), Some(2), "{t}");
    assert!(
        t.contains(&a.file("talosconfig")),
        "names the recorded one: {t}"
    );
    assert!(
        t.contains(&b.file("talosconfig")),
        "names the given one: {t}"
    );
    assert!(t.contains("another Talos CA"), "{t}");

    // B's talosconfig through $TALOSCONFIG (as `sim up` suggests exporting): refused too.
    let by_env = a
        .bare(&state, &["resume", &id, "--output", "plain"])
        .env("TALOSCONFIG", b.file("talosconfig"))
        .output()
        .unwrap();
    let t = text(&by_env);
    assert_eq!(by_env.status.code(), Some(2), "{t}");
    assert!(t.contains("$TALOSCONFIG"), "{t}");
    // abort is bound the same way.
    let abort = a
        .bare(&state, &["abort", &id, "--output", "plain"])
        .env("TALOSCONFIG", b.file("talosconfig"))
        .output()
        .unwrap();
    assert_eq!(abort.status.code(), Some(2), "{}", text(&abort));

    let sent_to_b = b.handle.cluster().with(|c, _| c.call_log().len());
    assert_eq!(sent_to_b, 0, "nothing reached cluster B");
    assert_eq!(b.count("Reboot"), 0);

    // A copy of A's talosconfig elsewhere is the same cluster (same CA, same Talos cluster
    // id, read from A): accepted, and the recorded kubeconfig and endpoints are kept.
    assert!(target.contains("\"cluster_id\""), "{target}");
    let copy = dir.path().join("copy-of-a-talosconfig");
    std::fs::copy(a.file("talosconfig"), &copy).unwrap();
    // ... but not with B's kubeconfig: the lock and the Kubernetes actions would go to B.
    let mixed = a
        .bare(&state, &["resume", &id, "--output", "plain"])
        .args(["--talosconfig", copy.to_str().unwrap()])
        .args(["--kubeconfig", &b.file("kubeconfig")])
        .output()
        .unwrap();
    let t = text(&mixed);
    assert_eq!(mixed.status.code(), Some(2), "{t}");
    assert!(t.contains("kubeconfig of another cluster CA"), "{t}");
    assert_eq!(b.handle.cluster().with(|c, _| c.call_log().len()), 0);
    let resumed = a
        .bare(&state, &["resume", &id, "--output", "plain"])
        .env("TALOSCONFIG", &copy)
        .output()
        .unwrap();
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert_eq!(a.count("Reboot"), 1);
    assert_eq!(b.count("Reboot"), 0);
    a.stop();
    b.stop();
}

/// Someone takes the lease over while a run drives (here: a write through kube-rs, as a
/// second tool that ignores the TTL would): the run's next renewal sees the conflict, the run
/// stops before its next side effect with exit 7, journals `lost` naming the new holder, and
/// never writes the lease back; `resume` is then refused while the other holder has it.
#[test]
fn cluster_lock_taken_over_mid_run_stops_the_run_before_its_next_side_effect() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 60.0);
    let state = dir.path().join("state");
    let child = sim
        .command(&state, &["run", "reboot-verify", "--param", SEED])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the run to take the cluster lock", || {
        sim.holder().is_some()
    });
    wait_for("the first reboot", || sim.count("Reboot") >= 1);
    // Take it over: a CAS write from the version just read (read again if the run renewed
    // in between, as any well-behaved writer would).
    let kubeconfig = std::fs::read_to_string(sim.dir.join("kubeconfig")).unwrap();
    sim.rt.block_on(async {
        let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        let api: Api<Lease> =
            Api::namespaced(kube::Client::try_from(config).unwrap(), "kube-system");
        for _ in 0..100 {
            let mut lease = api.get("runbook-disruption").await.unwrap();
            let spec = lease.spec.as_mut().unwrap();
            spec.holder_identity = Some("intruder@elsewhere".into());
            spec.lease_duration_seconds = Some(3600);
            match api
                .replace("runbook-disruption", &Default::default(), &lease)
                .await
            {
                Ok(_) => return,
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => panic!("taking the lease over: {e}"),
            }
        }
        panic!("the lease kept changing");
    });
    let out = finish(child);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(7), "{t}");
    assert!(t.contains("stopped before its next side effect"), "{t}");
    assert!(t.contains("intruder"), "{t}");
    let (id, run) = only_run(&state);
    let j = journal(&run);
    assert!(j.contains(r#""event":"lost""#), "{j}");
    assert!(!j.contains("run-finished"), "{j}");
    assert!(sim.count("Reboot") < 3, "the run did not go on rebooting");
    assert_eq!(
        sim.holder().as_deref(),
        Some("intruder@elsewhere"),
        "never written back"
    );
    let refused = sim.command(&state, &["resume", &id]).output().unwrap();
    assert_eq!(refused.status.code(), Some(7), "{}", text(&refused));
    assert!(
        text(&refused).contains("run `intruder` on host `elsewhere`"),
        "{}",
        text(&refused)
    );
    sim.stop();
}

/// Without a kubeconfig the lock cannot be taken: a disruptive run is refused (exit 7) and
/// says how to go on; with `--no-cluster-lock REASON` it goes on, the reason journaled.
#[test]
fn cluster_lock_without_a_kubeconfig_needs_no_cluster_lock_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 200.0);
    let node = crate::harness::root().join("tests/fixtures/runbooks/reboot-one.yaml");
    let node = node.to_str().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let kubeconfig = std::fs::read_to_string(sim.file("kubeconfig")).unwrap();
    let dead_api = dir.path().join("kubeconfig-dead-api");
    let rewritten: String = kubeconfig
        .lines()
        .map(|l| match l.split_once("server: ") {
            Some((indent, _)) => format!("{indent}server: https://{closed}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&dead_api, rewritten).unwrap();
    let run = |state: &Path, extra: &[&str]| {
        sim.bare(
            state,
            &[
                "run",
                node,
                "--param",
                "node=192.168.2.20",
                "--output",
                "plain",
            ],
        )
        .args(["--talosconfig", &sim.file("talosconfig")])
        // A kubeconfig whose API server does not answer (without one, a kubeconfig would be
        // fetched from the cluster with the Talos Kubeconfig call).
        .args(["--kubeconfig", dead_api.to_str().unwrap()])
        .args(["--node-endpoints", &sim.file("endpoints.json")])
        .args(extra)
        .output()
        .unwrap()
    };
    let refused = run(&dir.path().join("s1"), &[]);
    let t = text(&refused);
    assert_eq!(refused.status.code(), Some(7), "{t}");
    assert!(t.contains("--no-cluster-lock"), "{t}");
    assert!(t.contains("cannot take the cluster lock"), "{t}");
    assert_eq!(sim.count("Reboot"), 0);

    let state = dir.path().join("s2");
    let went = run(
        &state,
        &["--no-cluster-lock", "no kubeconfig on this laptop"],
    );
    assert_eq!(went.status.code(), Some(0), "{}", text(&went));
    let (_, run_dir) = only_run(&state);
    let j = journal(&run_dir);
    assert!(j.contains(r#""event":"skipped""#), "{j}");
    assert!(j.contains("no kubeconfig on this laptop"), "{j}");
    assert_eq!(sim.count("Reboot"), 1);
    assert_eq!(sim.holder(), None, "no lease was written");
    sim.stop();
}

/// A run recorded without a cluster is never continued on one, however the flags ask.
#[test]
fn resume_of_a_local_run_with_a_talosconfig_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 200.0);
    let file = dir.path().join("local.yaml");
    std::fs::write(
        &file,
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: local-gate, description: local }\nsteps:\n  - id: confirm\n    approval: \"go?\"\n  - id: note\n    needs: [confirm]\n    action: log\n    with: { message: done }\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let paused = sim
        .bare(
            &state,
            &["run", file.to_str().unwrap(), "--output", "plain"],
        )
        .output()
        .unwrap();
    assert_eq!(paused.status.code(), Some(5), "{}", text(&paused));
    let (id, _) = only_run(&state);
    let refused = sim.command(&state, &["resume", &id]).output().unwrap();
    let t = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{t}");
    assert!(t.contains("recorded without a cluster"), "{t}");
    sim.stop();
}
