//! etcd-quorum-recovery rehearsed end to end, as the operator would run it on their worst
//! night: against a simulator started apart (`runbook sim up`), with no params (the cluster
//! names the survivor, the nodes to wipe and the silent machines), each approval given with
//! `runbook approve` and the run continued with `runbook resume`. Each test checks the
//! simulator's call log and end state, not only the exit code: exactly one Bootstrap, no
//! Reset on a refusal, the voters at the end, which data source was used.

use std::path::PathBuf;
use std::process::Output;

use runbook::sim::Scenario;
use runbook::sim::scenario::{MAC_49, MAC_223, NUC_20};

use crate::run_harness::{Env, successful_calls, text};

/// Quorum is lost, so the Kubernetes API cannot hold the cluster lock: each session says so.
const NO_LOCK: [&str; 2] = [
    "--no-cluster-lock",
    "quorum lost: the Kubernetes API cannot answer",
];

struct Rehearsal {
    env: Env,
    rt: tokio::runtime::Runtime,
    handle: runbook::sim::SimHandle,
}

impl Rehearsal {
    fn start(scenario: Scenario) -> Rehearsal {
        let env = Env::new();
        let (rt, handle) = crate::run_harness::simulator(scenario, 200.0, env.path());
        Rehearsal { env, rt, handle }
    }

    fn sim(&self) -> PathBuf {
        self.env.path().join("sim")
    }

    /// The default `backup_dir` (`./etcd-backups`), relative to where the operator runs it.
    fn backups(&self) -> PathBuf {
        self.env.path().join("etcd-backups")
    }

    /// The temp directory the runs are given (`TMPDIR`), to check what they leave in it.
    fn tmp(&self) -> PathBuf {
        let t = self.env.path().join("tmp");
        std::fs::create_dir_all(&t).unwrap();
        t
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.env
            .cmd(args)
            .current_dir(self.env.path())
            .env("TMPDIR", self.tmp())
            .env_remove("RUNBOOK_TEST_KILL_IN_EFFECT")
            .output()
            .unwrap()
    }

    /// `runbook run etcd-quorum-recovery` with only the connection flags (and `extra`).
    fn run(&self, extra: &[&str]) -> Output {
        let (t, k, e) = (
            self.sim().join("talosconfig"),
            self.sim().join("kubeconfig"),
            self.sim().join("endpoints.json"),
        );
        let mut args = vec![
            "run",
            "etcd-quorum-recovery",
            "--output",
            "plain",
            "--talosconfig",
            t.to_str().unwrap(),
            "--kubeconfig",
            k.to_str().unwrap(),
            "--node-endpoints",
            e.to_str().unwrap(),
        ];
        args.extend(NO_LOCK);
        args.extend(extra);
        self.cli(&args)
    }

    fn id(&self) -> String {
        self.env.the_run().id().to_string()
    }

    /// Approves every step that waits, resumes, until the run stops otherwise; returns every
    /// output and the approved steps in order.
    fn drive(&self, first: Output) -> (Output, String, Vec<String>) {
        self.drive_killing(first, None)
    }

    /// As [`Rehearsal::drive`]; with `kill`, each resume runs with that
    /// `RUNBOOK_TEST_KILL_IN_EFFECT` hook until one dies inside it (then without).
    fn drive_killing(&self, first: Output, kill: Option<&str>) -> (Output, String, Vec<String>) {
        let mut kill = kill;
        let mut log = text(&first);
        let mut last = first;
        let mut approved = Vec::new();
        for _ in 0..8 {
            if last.status.code() != Some(5) {
                break;
            }
            let t = text(&last);
            let steps: Vec<String> = t
                .match_indices("approval needed for `")
                .filter_map(|(i, m)| {
                    let rest = &t[i + m.len()..];
                    rest.find('`').map(|end| rest[..end].to_string())
                })
                .collect();
            assert!(!steps.is_empty(), "exit 5 without an approval named: {t}");
            let id = self.id();
            for s in &steps {
                if approved.contains(s) {
                    continue;
                }
                let out = self.cli(&["approve", &id, s]);
                assert_eq!(out.status.code(), Some(0), "{}", text(&out));
                approved.push(s.clone());
            }
            let mut args = vec!["resume", id.as_str(), "--output", "plain"];
            args.extend(NO_LOCK);
            last = match kill {
                None => self.cli(&args),
                Some(hook) => {
                    let out = self
                        .env
                        .cmd(&args)
                        .current_dir(self.env.path())
                        .env("TMPDIR", self.tmp())
                        .env("RUNBOOK_TEST_KILL_IN_EFFECT", hook)
                        .output()
                        .unwrap();
                    if out.status.code().is_none() {
                        // Died inside the effect: resume again, without the hook.
                        kill = None;
                        log.push_str(&text(&out));
                        let out = self.cli(&args);
                        log.push_str(&text(&out));
                        last = out;
                        continue;
                    }
                    out
                }
            };
            log.push_str(&text(&last));
        }
        assert!(kill.is_none(), "never died inside {kill:?}: {log}");
        (last, log, approved)
    }

    fn calls(&self, method: &str) -> Vec<String> {
        successful_calls(self.handle.cluster(), method)
    }

    /// (voters, learners) of the etcd cluster `.20` serves, and whether it has a leader.
    fn etcd(&self) -> (usize, usize, bool) {
        self.handle.cluster().with(|c, now| {
            let members = c.etcd_member_list(NUC_20, true, now).unwrap_or_default();
            let leader = c.etcd_status(NUC_20, now).is_ok_and(|s| s.leader != 0);
            (
                members.iter().filter(|m| !m.is_learner).count(),
                members.iter().filter(|m| m.is_learner).count(),
                leader,
            )
        })
    }

    /// The key the scenarios write before the disaster is still there.
    fn data_survived(&self) -> bool {
        self.handle.cluster().with(|c, now| {
            c.etcd_clusters()
                .iter()
                .any(|e| e.kv().entries.contains_key("/registry/namespaces/default"))
                && c.etcd_status(NUC_20, now).is_ok()
        })
    }

    fn stop(self) {
        self.rt.block_on(self.handle.shutdown());
    }
}

#[test]
fn etcd_data_lost_recovers_three_voters_with_one_bootstrap_and_no_params() {
    let r = Rehearsal::start(Scenario::EtcdDataLost);
    let (out, log, approved) = r.drive(r.run(&[]));
    assert_eq!(out.status.code(), Some(0), "{log}");
    // Every node answers: nothing to attest, one approval for the wipe.
    assert_eq!(approved, ["lost"], "{log}");
    assert!(log.contains("192.168.2.223: no etcd data"), "{log}");
    assert!(log.contains("survivor: 192.168.2.20"), "{log}");
    assert!(
        log.contains("collected: a live snapshot of 192.168.2.20"),
        "{log}"
    );
    assert_eq!(
        r.calls("Bootstrap"),
        [NUC_20],
        "exactly one bootstrap\n{log}"
    );
    assert_eq!(r.calls("EtcdRecover"), [NUC_20], "{log}");
    // One wipe per reachable node, the survivor last.
    assert_eq!(r.calls("Reset"), [MAC_223, MAC_49, NUC_20], "{log}");
    assert_eq!(r.etcd(), (3, 0, true), "three healthy voters\n{log}");
    assert!(r.data_survived(), "{log}");
    assert!(
        !log.contains("node-replace --param"),
        "nothing to replace\n{log}"
    );
    r.stop();
}

#[test]
fn healthy_cluster_is_refused_before_any_reset() {
    let r = Rehearsal::start(Scenario::Healthy);
    let out = r.run(&[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(
        t.contains("quorum is not lost") && t.contains("node-replace"),
        "says to use node-replace or bring the voter back: {t}"
    );
    assert!(r.calls("Reset").is_empty(), "{t}");
    assert!(r.calls("Bootstrap").is_empty(), "{t}");
    r.stop();
}

#[test]
fn quorum_lost_ends_with_one_voter_and_next_steps_name_node_replace_for_each_dead_node() {
    let r = Rehearsal::start(Scenario::QuorumLost);
    let (out, log, approved) = r.drive(r.run(&[]));
    assert_eq!(out.status.code(), Some(0), "{log}");
    // The silent machines are attested one by one, by name, before the wipe.
    assert_eq!(
        approved,
        ["attest[192.168.2.223]", "attest[192.168.2.49]", "lost"],
        "{log}"
    );
    assert_eq!(r.calls("Bootstrap"), [NUC_20], "{log}");
    assert_eq!(
        r.calls("Reset"),
        [NUC_20],
        "only the reachable node is wiped\n{log}"
    );
    assert_eq!(r.etcd(), (1, 0, true), "{log}");
    let t = text(&out);
    let json = r.cli(&["status", &r.id(), "--output", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let next = doc.to_string();
    for dead in [MAC_223, MAC_49] {
        assert!(
            next.contains(&format!("replace {dead} with node-replace")),
            "status JSON names it: {next}"
        );
        let line = format!("next: replace {dead} with node-replace");
        assert!(t.contains(&line), "the run's report names it: {t}");
        let status = r.cli(&["status", &r.id()]);
        assert!(
            text(&status).contains(&format!("replace {dead} with node-replace")),
            "{}",
            text(&status)
        );
    }
    // The rescue snapshot and the first of the recovered cluster, both verified.
    let files: Vec<_> = std::fs::read_dir(r.backups())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "db"))
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        runbook::cluster::backup::verify(f).unwrap();
    }
    r.stop();
}

#[test]
fn a_survivor_that_cannot_serve_a_snapshot_is_copied_raw_and_restored_with_the_hash_check_skipped()
{
    let r = Rehearsal::start(Scenario::QuorumLost);
    r.handle
        .cluster()
        .with(|c, _| c.fail_next("EtcdSnapshot", Some(NUC_20), 1));
    let (out, log, _) = r.drive(r.run(&[]));
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(
        log.contains("not used: live snapshot of 192.168.2.20"),
        "{log}"
    );
    assert!(
        log.contains("collected: a raw copy of 192.168.2.20:/var/lib/etcd/member/snap/db"),
        "{log}"
    );
    // The simulator's etcd refuses a raw copy unless the hash check is skipped: it restored.
    assert_eq!(r.calls("Bootstrap"), [NUC_20], "{log}");
    assert_eq!(r.etcd(), (1, 0, true), "{log}");
    assert!(r.data_survived(), "{log}");
    let raw: Vec<_> = std::fs::read_dir(r.backups().join("raw"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "db"))
        .collect();
    assert_eq!(raw.len(), 1, "{raw:?}");
    runbook::cluster::backup::verify(&raw[0]).unwrap();
    r.stop();
}

#[test]
fn with_neither_snapshot_nor_copy_the_newest_verified_backup_is_restored_and_its_age_said() {
    use runbook::cluster::backup::{Sidecar, store};
    use sha2::Digest;
    let r = Rehearsal::start(Scenario::QuorumLost);
    // A verified snapshot of two hours ago in the backup directory, and an older one.
    let snap = r
        .handle
        .cluster()
        .with(|c, now| c.etcd_snapshot(NUC_20, now))
        .unwrap();
    std::fs::create_dir_all(r.backups()).unwrap();
    let now = runbook::journal::time::now_ms();
    for (name, ago_h) in [("older.db", 30u64), ("newest.db", 2)] {
        let at = runbook::journal::time::rfc3339(now - ago_h * 3_600_000);
        store(
            &r.backups().join(name),
            &snap,
            &Sidecar {
                node: NUC_20.into(),
                revision: None,
                sha256: hex::encode(sha2::Sha256::digest(&snap)),
                size: snap.len() as u64,
                talos_version: None,
                cluster_id: None,
                taken_at: at,
                encrypted: false,
                drill: None,
            },
        )
        .unwrap();
    }
    r.handle.cluster().with(|c, _| {
        c.fail_next("EtcdSnapshot", Some(NUC_20), 1);
        c.fail_next("Copy", Some(NUC_20), 1);
    });
    let (out, log, _) = r.drive(r.run(&[]));
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("not used: raw copy of 192.168.2.20"), "{log}");
    assert!(
        log.contains("collected: the newest verified snapshot of")
            && log.contains("newest.db")
            && log.contains("2h00m old"),
        "{log}"
    );
    assert_eq!(r.calls("Bootstrap"), [NUC_20], "{log}");
    assert_eq!(r.etcd(), (1, 0, true), "{log}");
    assert!(r.data_survived(), "{log}");
    r.stop();
}

#[test]
fn a_survivor_without_data_is_refused_before_any_reset() {
    // The operator names a node that lost its data: the diagnosis refuses, nothing is wiped.
    let r = Rehearsal::start(Scenario::EtcdDataLost);
    let out = r.run(&["--param", "survivor=192.168.2.223"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(
        t.contains("192.168.2.223 is not a reachable member holding etcd data"),
        "{t}"
    );
    assert!(r.calls("Reset").is_empty(), "{t}");
    r.stop();
}

/// Runs to the wipe approval, approves it, then resumes with `hook` so the process dies inside
/// that effect; resumes until the run ends. No in-doubt question may reach a person: the
/// probes settle every interrupted call from the cluster.
fn killed_inside(hook: &str) -> (Rehearsal, String) {
    let r = Rehearsal::start(Scenario::EtcdDataLost);
    let first = r.run(&[]);
    assert_eq!(first.status.code(), Some(5), "{}", text(&first));
    let id = r.id();
    let out = r.cli(&["approve", &id, "lost"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut args = vec!["resume", id.as_str(), "--output", "plain"];
    args.extend(NO_LOCK);
    let killed = r
        .env
        .cmd(&args)
        .current_dir(r.env.path())
        .env("RUNBOOK_TEST_KILL_IN_EFFECT", hook)
        .output()
        .unwrap();
    assert_eq!(
        killed.status.code(),
        None,
        "must die inside {hook}: {}",
        text(&killed)
    );
    let mut log = text(&killed);
    let mut last = None;
    for _ in 0..4 {
        let out = r.cli(&args);
        log.push_str(&text(&out));
        assert!(
            !text(&out).contains("interrupted with an unknown outcome"),
            "the probe must settle it: {log}"
        );
        let code = out.status.code();
        last = code;
        if code != Some(1) && code != Some(5) {
            break;
        }
    }
    assert_eq!(last, Some(0), "{hook}: {log}");
    (r, log)
}

#[test]
fn killed_right_after_the_bootstrap_is_sent_resumes_without_a_second_bootstrap() {
    let (r, log) = killed_inside("talos.bootstrap:1:after");
    assert_eq!(r.calls("Bootstrap"), [NUC_20], "{log}");
    assert_eq!(r.etcd(), (3, 0, true), "{log}");
    r.stop();
}

#[test]
fn killed_right_after_the_survivors_reset_resumes_with_one_reset_each_and_one_bootstrap() {
    // The third Reset is the survivor's: after it no etcd holds data but the rescue copy.
    let (r, log) = killed_inside("talos.reset:3:after");
    assert_eq!(r.calls("Reset"), [MAC_223, MAC_49, NUC_20], "{log}");
    assert_eq!(r.calls("Bootstrap"), [NUC_20], "{log}");
    assert_eq!(r.etcd(), (3, 0, true), "{log}");
    assert!(r.data_survived(), "{log}");
    r.stop();
}

#[test]
fn killed_right_after_the_first_reset_resumes_without_resetting_it_again() {
    let (r, log) = killed_inside("talos.reset:1:after");
    assert_eq!(r.calls("Reset"), [MAC_223, MAC_49, NUC_20], "{log}");
    assert_eq!(r.calls("Bootstrap"), [NUC_20], "{log}");
    assert_eq!(r.etcd(), (3, 0, true), "{log}");
    r.stop();
}

#[test]
fn a_silent_machine_nobody_attested_refuses_before_any_reset() {
    // The operator names only one dead machine: the other's silence could be a network split.
    let r = Rehearsal::start(Scenario::QuorumLost);
    let out = r.run(&["--param", "down=192.168.2.223"]);
    let (out, log, approved) = r.drive(out);
    assert_eq!(out.status.code(), Some(4), "{log}");
    assert!(
        log.contains("guard `talos.no-init` REFUSED: cannot decide: 192.168.2.49 did not answer"),
        "{log}"
    );
    assert!(
        approved.is_empty(),
        "nothing to approve: {approved:?}\n{log}"
    );
    assert!(r.calls("Reset").is_empty(), "{log}");
    assert!(r.calls("Bootstrap").is_empty(), "{log}");
    r.stop();
}

#[test]
fn override_preflight_does_not_lift_the_diagnosis() {
    // `--override-preflight` lifts the preflight's findings only, never the diagnosis.
    let r = Rehearsal::start(Scenario::EtcdDataLost);
    let out = r.run(&[
        "--param",
        "survivor=192.168.2.223",
        "--override-preflight",
        "I know better",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(
        t.contains("not a reachable member holding etcd data"),
        "{t}"
    );
    assert!(!t.contains("OVERRIDDEN"), "{t}");
    assert!(r.calls("Reset").is_empty(), "{t}");
    r.stop();
}

/// Issue 12: an operator who encrypted their backups (etcd-backup's `age_recipient`) can
/// restore from them. Only an encrypted backup is in the backup directory and the survivor can
/// serve neither a snapshot nor a Copy: without `age_identity` the recovery refuses before any
/// Reset, naming the encrypted file it skipped; with it, the backup is decrypted in memory,
/// verified and restored, and the final backup is encrypted too (`age_recipient`). No
/// plaintext snapshot is left on disk, and the key never reaches the run directory.
#[test]
fn an_encrypted_backup_is_restored_with_age_identity_and_refused_naming_it_without() {
    use crate::encrypted_restore::{
        age_key, assert_no_plaintext, assert_secret_absent, store_encrypted,
    };
    let fail_both = |r: &Rehearsal| {
        r.handle.cluster().with(|c, _| {
            c.fail_next("EtcdSnapshot", Some(NUC_20), 1);
            c.fail_next("Copy", Some(NUC_20), 1);
        })
    };
    let keys = tempfile::tempdir().unwrap();
    let (key, recipient, secret) = age_key(keys.path(), "backup-key.txt");

    // Without the identity: refused before any wipe, the skipped file named.
    let r = Rehearsal::start(Scenario::QuorumLost);
    let snap = r
        .handle
        .cluster()
        .with(|c, now| c.etcd_snapshot(NUC_20, now))
        .unwrap();
    std::fs::create_dir_all(r.backups()).unwrap();
    let backup = r.backups().join("newest.db.age");
    store_encrypted(&backup, &snap, &recipient, NUC_20, 2);
    fail_both(&r);
    let out = r.run(&[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("no valid etcd data could be collected off the cluster; nothing was wiped")
            && t.contains("age-encrypted and no `age_identity` was given")
            && t.contains("newest.db.age"),
        "{t}"
    );
    assert!(r.calls("Reset").is_empty(), "{t}");
    assert!(r.calls("Bootstrap").is_empty(), "{t}");
    r.stop();

    // With it: restored, one Bootstrap, the data back, nothing plain on disk.
    let r = Rehearsal::start(Scenario::QuorumLost);
    let snap = r
        .handle
        .cluster()
        .with(|c, now| c.etcd_snapshot(NUC_20, now))
        .unwrap();
    std::fs::create_dir_all(r.backups()).unwrap();
    let backup = r.backups().join("newest.db.age");
    store_encrypted(&backup, &snap, &recipient, NUC_20, 2);
    fail_both(&r);
    let id_param = format!("age_identity={}", key.display());
    let rcpt_param = format!("age_recipient={recipient}");
    let (out, log, _) = r.drive(r.run(&["--param", &id_param, "--param", &rcpt_param]));
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("not used: raw copy of 192.168.2.20"), "{log}");
    assert!(
        log.contains("collected: the newest verified snapshot of")
            && log.contains("decrypted in memory with `age_identity`")
            && log.contains("newest.db.age")
            && log.contains("2h00m old"),
        "{log}"
    );
    assert_eq!(r.calls("Bootstrap"), [NUC_20], "{log}");
    assert_eq!(r.etcd(), (1, 0, true), "{log}");
    assert!(r.data_survived(), "{log}");
    // The final backup is encrypted as well: two `.db.age` files and their sidecars only.
    let mut stored: Vec<String> = std::fs::read_dir(r.backups())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".json") && n != "raw")
        .collect();
    stored.sort();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(stored.iter().all(|n| n.ends_with(".db.age")), "{stored:?}");
    let read = assert_no_plaintext(&[&r.backups(), &r.env.state(), &r.tmp()]);
    assert!(read >= 4, "{read} files read");
    assert_secret_absent(&r.env.state(), &secret, &log);
    r.stop();
}

/// A kill right after the Bootstrap that followed the in-memory decryption and upload of an
/// encrypted backup: the resume's probe settles it from the cluster, so neither the upload nor
/// the Bootstrap is sent again, and still no plaintext is left behind.
#[test]
fn killed_right_after_the_bootstrap_from_an_encrypted_backup_resumes_without_a_second_upload() {
    use crate::encrypted_restore::{age_key, assert_no_plaintext, store_encrypted};
    let keys = tempfile::tempdir().unwrap();
    let (key, recipient, _) = age_key(keys.path(), "backup-key.txt");
    let r = Rehearsal::start(Scenario::QuorumLost);
    let snap = r
        .handle
        .cluster()
        .with(|c, now| c.etcd_snapshot(NUC_20, now))
        .unwrap();
    std::fs::create_dir_all(r.backups()).unwrap();
    store_encrypted(
        &r.backups().join("newest.db.age"),
        &snap,
        &recipient,
        NUC_20,
        1,
    );
    r.handle.cluster().with(|c, _| {
        c.fail_next("EtcdSnapshot", Some(NUC_20), 1);
        c.fail_next("Copy", Some(NUC_20), 1);
    });
    let id_param = format!("age_identity={}", key.display());
    let rcpt_param = format!("age_recipient={recipient}");
    let first = r.run(&["--param", &id_param, "--param", &rcpt_param]);
    let (out, log, _) = r.drive_killing(first, Some("talos.bootstrap:1:after"));
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(
        !log.contains("interrupted with an unknown outcome"),
        "the probe must settle it: {log}"
    );
    assert_eq!(r.calls("EtcdRecover"), [NUC_20], "{log}");
    assert_eq!(r.calls("Bootstrap"), [NUC_20], "{log}");
    assert_eq!(r.etcd(), (1, 0, true), "{log}");
    assert!(r.data_survived(), "{log}");
    assert_no_plaintext(&[&r.backups(), &r.env.state(), &r.tmp()]);
    r.stop();
}
