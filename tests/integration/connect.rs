//! Connecting as talosctl and kubectl do, end to end through the `runbook` binary: `-e`/`-n`
//! override the context, connection errors name the node, the endpoint and the cause, a run
//! whose cluster does not answer leaves no run directory (exit 12), a kubeconfig fetched with
//! the Talos `Kubeconfig` call stays in memory, and the params the cluster knows default from
//! it (fail-closed). Every cluster is a loopback simulator or a loopback socket.

use std::path::{Path, PathBuf};

use runbook::cluster::talosconfig::Talosconfig;
use runbook::sim::Scenario;

use crate::run_harness::{Env, simulator, text};

const UNREACHABLE: i32 = 12;

fn out_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// No run directory in the state directory.
fn no_runs(env: &Env) {
    let runs = env.state().join("runs");
    let n = std::fs::read_dir(&runs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(n, 0, "a run directory was left in {}", runs.display());
}

/// The simulator's admin talosconfig, changed by `edit`, saved as `dir/name`.
fn talosconfig_with(
    sim: &Path,
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut runbook::cluster::talosconfig::Context),
) -> PathBuf {
    let mut tc = Talosconfig::load(&sim.join("talosconfig")).unwrap();
    let current = tc.context.clone();
    edit(tc.contexts.get_mut(&current).unwrap());
    let path = dir.join(name);
    tc.save(&path).unwrap();
    path
}

fn first_endpoint(sim: &Path) -> String {
    let tc = Talosconfig::load(&sim.join("talosconfig")).unwrap();
    tc.contexts[&tc.context].endpoints[0].clone()
}

/// `runbook run etcd-backup --talosconfig TC` (with its node given, so nothing but the
/// connection is in question).
fn backup_with(env: &Env, tc: &Path, extra: &[&str]) -> std::process::Output {
    let snaps = env.path().join("snaps");
    let mut args = vec![
        "run",
        "etcd-backup",
        "--talosconfig",
        tc.to_str().unwrap(),
        "--param",
        "node=192.168.2.223",
        "--output",
        "plain",
    ];
    let dir = format!("dir={}", snaps.display());
    args.extend(["--param", &dir]);
    args.extend(extra);
    env.cmd(&args)
        .env("RUNBOOK_CONNECT_TIMEOUT", "1")
        .output()
        .unwrap()
}

fn mint_client_cert(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn a_cluster_that_does_not_answer_leaves_no_run_directory_and_says_why() {
    let env = Env::new();
    let simdir = tempfile::tempdir().unwrap();
    let (rt, handle) = simulator(Scenario::Healthy, 100.0, simdir.path());
    let sim = simdir.path().join("sim");
    let good = first_endpoint(&sim);
    let port = good.rsplit_once(':').unwrap().1.to_owned();

    // Refused: a port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let tc = talosconfig_with(&sim, env.path(), "refused", |c| {
        c.endpoints = vec![closed.clone()]
    });
    let out = backup_with(&env, &tc, &[]);
    assert_eq!(out.status.code(), Some(UNREACHABLE), "{}", text(&out));
    let t = out_text(&out);
    assert!(
        t.contains(&format!(
            "node 127.0.0.1 at endpoint {closed}: connection refused"
        )),
        "{t}"
    );
    assert!(t.contains("nothing was written"), "{t}");
    no_runs(&env);

    // Timed out: a listener that accepts and never answers the handshake.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_ep = silent.local_addr().unwrap().to_string();
    let holder = std::thread::spawn(move || {
        let (s, _) = silent.accept().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(3));
        drop(s);
    });
    let tc = talosconfig_with(&sim, env.path(), "silent", |c| {
        c.endpoints = vec![silent_ep.clone()]
    });
    let out = backup_with(&env, &tc, &[]);
    assert_eq!(out.status.code(), Some(UNREACHABLE), "{}", text(&out));
    assert!(
        out_text(&out).contains(&format!("at endpoint {silent_ep}: timed out")),
        "{}",
        text(&out)
    );
    no_runs(&env);
    holder.join().unwrap();

    // Another CA: the server's certificate is not signed by the talosconfig's.
    let other = runbook::sim::pki::Ca::generate("another-cluster").unwrap();
    let tc = talosconfig_with(&sim, env.path(), "other-ca", |c| {
        c.ca_pem = other.cert_pem().to_owned()
    });
    let out = backup_with(&env, &tc, &[]);
    assert_eq!(out.status.code(), Some(UNREACHABLE), "{}", text(&out));
    assert!(
        out_text(&out).contains(&format!(
            "at endpoint {good}: the server's certificate is not signed by the talosconfig's CA"
        )),
        "{}",
        text(&out)
    );
    no_runs(&env);

    // A name the server's certificate does not carry.
    let by_name = format!("localhost:{port}");
    let tc = talosconfig_with(&sim, env.path(), "by-name", |c| {
        c.endpoints = vec![by_name.clone()]
    });
    let out = backup_with(&env, &tc, &[]);
    assert_eq!(out.status.code(), Some(UNREACHABLE), "{}", text(&out));
    assert!(
        out_text(&out).contains(&format!(
            "node localhost at endpoint {by_name}: the server's certificate is not valid for this endpoint's name"
        )),
        "{}",
        text(&out)
    );
    no_runs(&env);

    // An expired client certificate, and one not valid yet.
    for (name, validity, want) in [
        (
            "expired",
            ((2020, 1, 1), (2021, 1, 1)),
            "client certificate expired",
        ),
        (
            "future",
            ((2090, 1, 1), (2091, 1, 1)),
            "client certificate is not valid yet",
        ),
    ] {
        let (crt, key) = mint_client_cert(validity.0, validity.1);
        let tc = talosconfig_with(&sim, env.path(), name, |c| {
            c.crt_pem = crt;
            c.key_pem = runbook::secret::Secret::new(key);
        });
        let out = backup_with(&env, &tc, &[]);
        assert_eq!(out.status.code(), Some(UNREACHABLE), "{}", text(&out));
        assert!(
            out_text(&out).contains(&format!("at endpoint {good}: the talosconfig's {want}")),
            "{}",
            text(&out)
        );
        no_runs(&env);
    }
    rt.block_on(handle.shutdown());
}

#[test]
fn endpoints_and_nodes_override_the_context_as_in_talosctl() {
    let env = Env::new();
    let simdir = tempfile::tempdir().unwrap();
    let (rt, handle) = simulator(Scenario::Healthy, 100.0, simdir.path());
    let sim = simdir.path().join("sim");
    let tc = sim.join("talosconfig");
    let tc = tc.to_str().unwrap();
    let good = first_endpoint(&sim);
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    // Only a dead endpoint: nothing answers, and the error names it.
    let out = env.run(&["doctor", "--talosconfig", tc, "-e", &dead]);
    assert_eq!(out.status.code(), Some(UNREACHABLE), "{}", text(&out));
    assert!(out_text(&out).contains(&format!("at endpoint {dead}: connection refused")));
    // Repeated and comma-separated: the first that answers is used.
    let both = format!("{dead},{good}");
    let out = env.run(&["doctor", "--talosconfig", tc, "-e", &both]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = env.run(&[
        "doctor",
        "--talosconfig",
        tc,
        "-e",
        &dead,
        "--endpoints",
        &good,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The old meaning of `--endpoints FILE` (the per-node map) is named, not parsed as a host.
    let map = sim.join("endpoints.json");
    let out = env.run(&[
        "doctor",
        "--talosconfig",
        tc,
        "--endpoints",
        map.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        out_text(&out).contains("is `--node-endpoints FILE`"),
        "{}",
        text(&out)
    );
    // -n: only these nodes are observed.
    let out = env.run(&[
        "doctor",
        "--talosconfig",
        tc,
        "-n",
        "192.168.2.223",
        "--nodes",
        "192.168.2.49",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("\n192.168.2.223 "), "{}", text(&out));
    assert!(stdout.contains("\n192.168.2.49 "), "{}", text(&out));
    assert!(!stdout.contains("\n192.168.2.20 "), "{}", text(&out));
    // A kubeconfig context that does not exist is refused before any run directory.
    let kc = sim.join("kubeconfig");
    let out = env.run(&[
        "run",
        "etcd-backup",
        "--talosconfig",
        tc,
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--kube-context",
        "no-such-context",
        "--param",
        "node=192.168.2.223",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(out_text(&out).contains("no-such-context"), "{}", text(&out));
    no_runs(&env);
    rt.block_on(handle.shutdown());
}

/// Every file under `dir` (recursively).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_kubeconfig_fetched_from_the_cluster_stays_in_memory_and_works() {
    let env = Env::new();
    let simdir = tempfile::tempdir().unwrap();
    let (rt, handle) = simulator(Scenario::Healthy, 200.0, simdir.path());
    let sim = simdir.path().join("sim");
    let kube_ca = {
        let kc = std::fs::read_to_string(sim.join("kubeconfig")).unwrap();
        let line = kc
            .lines()
            .find(|l| l.contains("certificate-authority-data"))
            .unwrap()
            .to_owned();
        line.rsplit(' ').next().unwrap().to_owned()
    };
    // Only the talosconfig, as talosctl keeps it: no kubeconfig anywhere.
    std::fs::create_dir_all(env.path().join(".talos")).unwrap();
    std::fs::copy(sim.join("talosconfig"), env.path().join(".talos/config")).unwrap();
    // A disruptive runbook: the cluster lock (a Lease) and the cordon and drain go through
    // the Kubernetes API of the fetched kubeconfig.
    let out = env.run(&[
        "run",
        "reboot-verify",
        "--param",
        "nodes=192.168.2.223",
        "--output",
        "plain",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run = env.the_run();
    let journal = std::fs::read_to_string(run.path().join("journal.jsonl")).unwrap();
    assert!(journal.contains("\"taken\""), "{journal}");
    assert!(
        journal.contains("\"step\":\"verify[192.168.2.223].drain\""),
        "{journal}"
    );
    let target = std::fs::read_to_string(run.path().join("target.json")).unwrap();
    assert!(target.contains("\"kubeconfig_fetched\": true"), "{target}");
    assert!(target.contains("kube_ca_sha256"), "{target}");
    // Nowhere on disk under HOME, the state directory or the run: no kubeconfig, no CA data.
    for f in files(env.path()) {
        let bytes = std::fs::read(&f).unwrap();
        let t = String::from_utf8_lossy(&bytes);
        assert!(
            !t.contains("certificate-authority-data") && !t.contains(&kube_ca),
            "kubeconfig material in {}",
            f.display()
        );
        assert_ne!(f.file_name().unwrap(), "kubeconfig", "{}", f.display());
    }
    rt.block_on(handle.shutdown());
}

#[test]
fn a_role_that_may_not_fetch_the_kubeconfig_is_named() {
    let env = Env::new();
    let simdir = tempfile::tempdir().unwrap();
    let (rt, handle) = simulator(Scenario::Healthy, 100.0, simdir.path());
    let reader = handle.talosconfig_for(runbook::sim::pki::Role::Reader);
    let out = env.run(&["doctor", "--talosconfig", reader.to_str().unwrap()]);
    let t = out_text(&out);
    assert!(
        t.contains("the Talos Kubeconfig call through endpoint")
            && t.contains("the talosconfig's role is not allowed to make this call"),
        "{}",
        text(&out)
    );
    assert_ne!(out.status.code(), Some(UNREACHABLE), "{}", text(&out));
    rt.block_on(handle.shutdown());
}

#[test]
fn only_the_default_files_are_enough_for_doctor_and_etcd_backup() {
    let env = Env::new();
    let simdir = tempfile::tempdir().unwrap();
    let (rt, handle) = simulator(Scenario::Healthy, 100.0, simdir.path());
    let sim = simdir.path().join("sim");
    std::fs::create_dir_all(env.path().join(".talos")).unwrap();
    std::fs::create_dir_all(env.path().join(".kube")).unwrap();
    std::fs::copy(sim.join("talosconfig"), env.path().join(".talos/config")).unwrap();
    std::fs::copy(sim.join("kubeconfig"), env.path().join(".kube/config")).unwrap();
    let out = env.run(&["doctor"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // No flags, no params: `node` is a healthy non-leader member; `dir` has its default,
    // relative to the working directory.
    let out = env
        .cmd(&["run", "etcd-backup", "--output", "plain"])
        .current_dir(env.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = out_text(&out);
    assert!(
        t.contains("defaulted from the cluster: node = 192.168.2."),
        "{t}"
    );
    let run = env.the_run();
    let params = std::fs::read_to_string(run.path().join("params.json")).unwrap();
    let leader_free: serde_json::Value = serde_json::from_str(&params).unwrap();
    let node = leader_free["node"].as_str().unwrap().to_owned();
    assert!(t.contains(&format!(
        "node = {node} (a healthy etcd voter that is not the leader)"
    )));
    assert!(
        std::fs::read_dir(env.path().join("etcd-backups"))
            .unwrap()
            .count()
            > 0,
        "no snapshot written"
    );
    rt.block_on(handle.shutdown());
}

#[test]
fn node_params_default_from_an_embedded_simulator() {
    let env = Env::new();
    // $TALOSCONFIG is ignored by --sim; reboot-verify needs no param.
    let out = env
        .cmd(&[
            "run",
            "reboot-verify",
            "--sim",
            "--speed",
            "200",
            "--output",
            "plain",
        ])
        .env("TALOSCONFIG", "/nonexistent/talosconfig")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = out_text(&out);
    assert!(
        t.contains("defaulted from the cluster: nodes = ")
            && t.contains(", leader ")
            && t.contains(" last)"),
        "{t}"
    );
    // The resolved nodes are in params.json (and so in the plan hash resume checks); the
    // embedded simulator's files moved into the run directory.
    let run = env.the_run();
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("params.json")).unwrap())
            .unwrap();
    assert_eq!(params["nodes"].as_array().unwrap().len(), 3, "{params}");
    assert!(run.path().join("sim/calls.jsonl").is_file());
    assert!(!env.state().join("sim-staging").exists());

    let gpu = Env::new();
    let out = gpu
        .cmd(&[
            "run",
            "gpu-enable",
            "--sim",
            "--scenario",
            "gpu-modules-missing",
            "--yes",
            "--speed",
            "200",
            "--output",
            "plain",
        ])
        .output()
        .unwrap();
    assert!(
        out_text(&out).contains(
            "defaulted from the cluster: node = 192.168.2.20 (the only node with an NVIDIA PCI device)"
        ),
        "{}",
        text(&out)
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn defaults_refuse_when_the_cluster_cannot_tell_and_leave_nothing() {
    let env = Env::new();
    // A dead node could be a control-plane node: refused, naming the param to give.
    let out = env.run(&["run", "reboot-verify", "--sim", "--scenario", "node-dead"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = out_text(&out);
    assert!(
        t.contains("cannot default parameter `nodes` from the cluster (cluster.control-planes): node 192.168.2.49 did not answer")
            && t.contains("give it with `--param nodes=…`"),
        "{t}"
    );
    no_runs(&env);
    assert!(
        std::fs::read_dir(env.state().join("sim-staging"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
    // The dry run reads the cluster too, and says what it chose; it writes no run.
    let out = env.run(&["run", "etcd-backup", "--sim", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        out_text(&out).contains("defaulted from the cluster: node = "),
        "{}",
        text(&out)
    );
    no_runs(&env);
    // Without a cluster, there is nothing to default from (and nothing to run on).
    let out = env.run(&["run", "etcd-backup", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        out_text(&out).contains("`etcd-backup` needs a cluster: give --talosconfig PATH"),
        "{}",
        text(&out)
    );
    let out = env.run(&["plan", "reboot-verify"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        out_text(&out).contains("--param nodes=<nodes>"),
        "{}",
        text(&out)
    );
    // `plan` with a cluster reads them, says so on stderr, and keeps stdout the plan.
    let out = env.run(&["plan", "reboot-verify", "--sim", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("defaulted from the cluster: nodes = "),
        "{}",
        text(&out)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(plan.to_string().contains("192.168.2.223"), "{plan}");
    no_runs(&env);
}

#[test]
fn an_unknown_or_ill_typed_default_source_is_a_spanned_error() {
    let env = Env::new();
    let file = env.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata:\n  name: bad\nparams:\n  gpu:\n    type: node\n    default_from: cluster.gpu-nodes\n  all:\n    type: node\n    default_from: cluster.control-planes\n  both:\n    type: node\n    default: a\n    default_from: cluster.gpu-node\nsteps:\n  - id: s\n    action: noop\n",
    )
    .unwrap();
    let out = env.run(&["check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let t = out_text(&out);
    assert!(
        t.contains("unknown cluster default `cluster.gpu-nodes` for parameter `gpu`"),
        "{t}"
    );
    assert!(t.contains("cluster.gpu-node"), "{t}");
    assert!(t.contains("bad.yaml:8:19"), "{t}");
    assert!(
        t.contains("`cluster.control-planes` gives a nodes, but parameter `all` is node"),
        "{t}"
    );
    assert!(
        t.contains("parameter `both` has `default_from` and also `default`"),
        "{t}"
    );
}

#[test]
fn resume_fetches_the_kubeconfig_again_and_refuses_a_talosconfig_of_another_cluster() {
    let env = Env::new();
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let (rt_a, a) = simulator(Scenario::Healthy, 200.0, a_dir.path());
    let (rt_b, b) = simulator(Scenario::Healthy, 200.0, b_dir.path());
    let home_tc = env.path().join(".talos/config");
    std::fs::create_dir_all(env.path().join(".talos")).unwrap();
    std::fs::copy(a.talosconfig(), &home_tc).unwrap();
    // Killed mid-run (after the cluster lock was taken through the fetched kubeconfig).
    let out = env
        .cmd(&[
            "run",
            "reboot-verify",
            "--param",
            "nodes=192.168.2.223",
            "--output",
            "plain",
        ])
        .env("RUNBOOK_TEST_KILL_AFTER_RECORD", "5")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "not killed: {}", text(&out));
    let run = env.the_run();
    // The talosconfig at the recorded path now belongs to another cluster: refused, before
    // anything is sent to it or journaled.
    std::fs::copy(b.talosconfig(), &home_tc).unwrap();
    let before = std::fs::read_to_string(run.path().join("journal.jsonl")).unwrap();
    let out = env.run(&["resume", run.id(), "--output", "plain"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        out_text(&out).contains("now trusts another Talos CA than the one the run recorded"),
        "{}",
        text(&out)
    );
    let after = std::fs::read_to_string(run.path().join("journal.jsonl")).unwrap();
    assert_eq!(before, after, "the refused resume journaled something");
    // Other nodes than the run observed: refused too, journaling nothing.
    std::fs::copy(a.talosconfig(), &home_tc).unwrap();
    let out = env.run(&[
        "resume",
        run.id(),
        "--talosconfig",
        home_tc.to_str().unwrap(),
        "-n",
        "192.168.2.20",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        out_text(&out).contains("cannot change them on resume"),
        "{}",
        text(&out)
    );
    let after = std::fs::read_to_string(run.path().join("journal.jsonl")).unwrap();
    assert_eq!(before, after, "the refused resume journaled something");
    // Back to the run's cluster: the kubeconfig is fetched again (its CA matches the recorded
    // one) and the run finishes, still writing no kubeconfig.
    std::fs::copy(a.talosconfig(), &home_tc).unwrap();
    let out = env.run(&["resume", run.id(), "--output", "plain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        files(env.path()).iter().all(|f| {
            !String::from_utf8_lossy(&std::fs::read(f).unwrap())
                .contains("certificate-authority-data")
        }),
        "a kubeconfig reached the disk"
    );
    rt_a.block_on(a.shutdown());
    rt_b.block_on(b.shutdown());
}
