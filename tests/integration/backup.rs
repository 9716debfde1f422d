//! etcd backups you can restore (issue 12): encrypted snapshots with sidecars, `keep: N`
//! retention, restore drills, and the hostile cases (tampering, kills mid-stream and
//! mid-prune, corrupt snapshots), each driven through the `runbook` binary against one
//! simulator started from outside (`run_harness::simulator`). The real `age` and `age-keygen`
//! must be installed: these tests fail, never skip, without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use runbook::sim::Scenario;

use crate::run_harness::{BIN, simulator, text};

struct Setup {
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    handle: Option<runbook::sim::SimHandle>,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (rt, handle) = simulator(Scenario::Healthy, 200.0, dir.path());
        Setup {
            dir,
            rt,
            handle: Some(handle),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn backups(&self) -> PathBuf {
        self.path().join("backups")
    }

    /// `runbook ARGS` against the simulator, hermetic about HOME and the default configs.
    fn cmd(&self, args: &[&str]) -> Command {
        let sim = self.path().join("sim");
        let mut c = Command::new(BIN);
        c.args(args)
            .arg("--state-dir")
            .arg(self.path().join("state"))
            .env("HOME", self.path())
            .env_remove("TALOSCONFIG")
            .env_remove("KUBECONFIG")
            .env_remove("RUNBOOK_TEST_KILL_IN_EFFECT")
            .env_remove("RUNBOOK_TEST_KILL_AFTER_RECORD")
            .env("NO_COLOR", "1");
        if args.first() == Some(&"run") {
            c.arg("--talosconfig")
                .arg(sim.join("talosconfig"))
                .arg("--kubeconfig")
                .arg(sim.join("kubeconfig"))
                .arg("--node-endpoints")
                .arg(sim.join("endpoints.json"));
        }
        c
    }

    fn backup(&self, extra: &[&str]) -> Output {
        self.backup_cmd(extra).output().unwrap()
    }

    fn backup_cmd(&self, extra: &[&str]) -> Command {
        let dir = format!("dir={}", self.backups().display());
        let mut args = vec![
            "run",
            "etcd-backup",
            "--param",
            "node=192.168.2.223",
            "--param",
            &dir,
            "--output",
            "plain",
        ];
        for e in extra {
            args.push("--param");
            args.push(e);
        }
        self.cmd(&args)
    }

    fn snapshots(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.backups())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy().to_string();
                !n.ends_with(".json") && !n.ends_with(".partial")
            })
            .collect();
        v.sort();
        v
    }

    fn all_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.backups())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.rt.block_on(h.shutdown());
        }
    }
}

/// A new age key with `age-keygen`: (key file, recipient).
fn age_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("backup-key.txt");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .expect("age-keygen must be installed (apt-get install age)");
    assert!(out.status.success(), "{}", text(&out));
    let recipient = std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_string))
        .expect("age-keygen wrote no public key");
    assert!(recipient.starts_with("age1"), "{recipient}");
    (key, recipient)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn sidecar_json(snapshot: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(runbook::cluster::backup::sidecar_path(snapshot)).unwrap(),
    )
    .unwrap()
}

/// Issue 12's done-when: three `etcd-backup` runs with `age_recipient` and `keep=2` leave two
/// encrypted snapshots whose sidecars' sha256 match, and the real `age -d` decrypts each to a
/// snapshot the simulator's etcd accepts.
#[test]
fn three_encrypted_backups_with_keep_two_leave_two_that_age_decrypts() {
    let s = Setup::new();
    let (key, recipient) = age_key(s.path());
    let r = format!("age_recipient={recipient}");
    let mut taken = Vec::new();
    for _ in 0..3 {
        let out = s.backup(&[&r, "keep=2"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        taken.push(s.snapshots().into_iter().max().unwrap());
    }
    let snaps = s.snapshots();
    assert_eq!(snaps.len(), 2, "{:?}", s.all_files());
    assert!(!snaps.contains(&taken[0]), "the oldest was not pruned");
    assert_eq!(snaps, taken[1..].to_vec());
    for snap in &snaps {
        assert!(
            snap.to_string_lossy().ends_with(".db.age"),
            "{}",
            snap.display()
        );
        let bytes = std::fs::read(snap).unwrap();
        let json = sidecar_json(snap);
        assert_eq!(json["sha256"], sha256_hex(&bytes), "{json}");
        assert_eq!(json["size"], bytes.len(), "{json}");
        assert_eq!(json["encrypted"], true, "{json}");
        assert!(
            json["cluster_id"].as_str().is_some_and(|c| !c.is_empty()),
            "{json}"
        );
        assert!(json["revision"].as_u64().is_some(), "{json}");
        assert!(json.get("drill").is_none(), "no drill ran: {json}");
        let sidecar = runbook::cluster::backup::verify(snap).unwrap();
        assert!(sidecar.encrypted);
        // No plaintext: the etcd data never appears in the file.
        assert!(bytes.starts_with(b"age-encryption.org/v1"));
        assert!(!bytes.windows(8).any(|w| w == b"SIMETCD1"));
        // The real age decrypts it to a snapshot the simulator's etcd would restore.
        let out = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&key)
            .arg(snap)
            .output()
            .expect("age must be installed (apt-get install age)");
        assert!(out.status.success(), "{}", text(&out));
        let kv = runbook::sim::etcd::verify_snapshot(&out.stdout, false).unwrap();
        assert!(
            kv.entries.contains_key("/registry/namespaces/default"),
            "{kv:?}"
        );
    }
    // Nothing else is left behind: two snapshots, two sidecars, no partial file.
    assert_eq!(s.all_files().len(), 4, "{:?}", s.all_files());
    // The third run journaled what it deleted.
    let journals = journal_texts(&s.path().join("state"));
    assert!(
        journals.iter().any(|j| j.contains("will_delete")
            && j.contains(&*taken[0].file_name().unwrap().to_string_lossy())),
        "no journal names the pruned file"
    );
}

fn journal_texts(state: &Path) -> Vec<String> {
    runbook::journal::StateDir::new(state)
        .list_runs()
        .unwrap()
        .iter()
        .map(|r| {
            let mut all = String::new();
            for e in std::fs::read_dir(r.run.path()).unwrap() {
                let p = e.unwrap().path();
                if p.is_file() {
                    all.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
                }
            }
            all
        })
        .collect()
}

#[test]
fn a_tampered_snapshot_is_not_counted_as_verified_and_not_pruned() {
    let s = Setup::new();
    for _ in 0..2 {
        let out = s.backup(&[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let oldest = s.snapshots()[0].clone();
    let mut bytes = std::fs::read(&oldest).unwrap();
    bytes[40] ^= 0xff;
    std::fs::write(&oldest, &bytes).unwrap();
    assert!(runbook::cluster::backup::verify(&oldest).is_err());
    let out = s.backup(&["keep=1"]);
    // The backup itself succeeded; retention refused to delete anything and said why.
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("nothing pruned"), "{}", text(&out));
    assert!(text(&out).contains("do not verify"), "{}", text(&out));
    let snaps = s.snapshots();
    assert_eq!(snaps.len(), 3, "{:?}", s.all_files());
    assert!(
        oldest.exists(),
        "the tampered file must be left for a person"
    );
    let (newest, problems) = runbook::cluster::backup::newest_verified(&s.backups()).unwrap();
    assert_eq!(newest.unwrap().0, snaps[2]);
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].to_string().contains("sha256"),
        "{}",
        problems[0]
    );
}

#[test]
fn a_run_killed_mid_stream_leaves_no_file_newest_verified_trusts() {
    let s = Setup::new();
    let (_, recipient) = age_key(s.path());
    let r = format!("age_recipient={recipient}");
    let out = s.backup(&[&r]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let good = s.snapshots()[0].clone();
    let out = s
        .backup_cmd(&[&r, "keep=1"])
        .env(
            "RUNBOOK_TEST_KILL_IN_EFFECT",
            "etcd.snapshot/stream:1:after",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "not killed: {}", text(&out));
    let files = s.all_files();
    assert!(files.iter().any(|f| f.ends_with(".partial")), "{files:?}");
    let (newest, problems) = runbook::cluster::backup::newest_verified(&s.backups()).unwrap();
    assert_eq!(newest.unwrap().0, good, "{files:?}");
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(s.snapshots(), vec![good.clone()]);
    // Resumed, the snapshot is taken again and retention keeps the newest verified one.
    let out = s.cmd(&["resume", "--output", "plain"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let snaps = s.snapshots();
    assert_eq!(snaps.len(), 1, "{:?}", s.all_files());
    assert_ne!(snaps[0], good);
    runbook::cluster::backup::verify(&snaps[0]).unwrap();
}

#[test]
fn a_kill_mid_prune_resumes_and_never_deletes_more_than_keep_allows() {
    let s = Setup::new();
    for _ in 0..3 {
        let out = s.backup(&[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let first_two: Vec<String> = s.snapshots()[..2]
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    // Fourth run, keep=2: two to delete; killed between the first file and its sidecar.
    let out = s
        .backup_cmd(&["keep=2"])
        .env("RUNBOOK_TEST_KILL_IN_EFFECT", "backup.prune/delete:1:after")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "not killed: {}", text(&out));
    assert_eq!(s.snapshots().len(), 3, "{:?}", s.all_files());
    let newest_two: Vec<PathBuf> = s.snapshots()[1..].to_vec();
    let out = s.cmd(&["resume", "--output", "plain"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(s.snapshots(), newest_two, "{:?}", s.all_files());
    // The orphan sidecar the kill left is gone too: two snapshots, two sidecars.
    assert_eq!(s.all_files().len(), 4, "{:?}", s.all_files());
    let (good, problems) = runbook::cluster::backup::verify_all(&s.backups()).unwrap();
    assert_eq!(good.len(), 2);
    assert!(problems.is_empty(), "{problems:?}");
    // The plan journaled before the kill names both files the prune deleted.
    let journals = journal_texts(&s.path().join("state"));
    assert!(
        journals
            .iter()
            .any(|j| j.contains("will_delete") && first_two.iter().all(|f| j.contains(f.as_str()))),
        "no journaled plan names {first_two:?}"
    );
}

#[test]
fn an_encrypted_backup_with_a_drill_records_a_passed_drill_and_fresh_can_require_it() {
    let s = Setup::new();
    let (key, recipient) = age_key(s.path());
    let r = format!("age_recipient={recipient}");
    let k = format!("age_identity={}", key.display());
    let out = s.backup(&[&r, "drill=true", &k]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let snap = s.snapshots()[0].clone();
    let json = sidecar_json(&snap);
    assert_eq!(json["drill"]["ok"], true, "{json}");
    assert!(
        json["drill"]["detail"]
            .as_str()
            .unwrap()
            .contains("1 healthy voter"),
        "{json}"
    );
    // The drill record keeps the sidecar verifiable and is what `backup.fresh` reads.
    runbook::cluster::backup::verify(&snap).unwrap();
    let v = runbook::cluster::backup::fresh_with(
        &s.backups(),
        std::time::Duration::from_secs(3600),
        true,
        std::time::SystemTime::now(),
    );
    assert!(v.holds, "{}", v.reason);
    // The key's content never reaches the journal.
    let secret = std::fs::read_to_string(&key).unwrap();
    let secret = secret
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    for j in journal_texts(&s.path().join("state")) {
        assert!(!j.contains(secret), "the age key reached the journal");
    }
    // Drilled again without the key: it fails, and the sidecar says so.
    let snapshot = format!("snapshot={}", snap.display());
    let out = s
        .cmd(&[
            "run",
            "etcd-restore-drill",
            "--param",
            &snapshot,
            "--output",
            "plain",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("give `age_identity`"), "{}", text(&out));
    let json = sidecar_json(&snap);
    assert_eq!(json["drill"]["ok"], false, "{json}");
    let v = runbook::cluster::backup::fresh_with(
        &s.backups(),
        std::time::Duration::from_secs(3600),
        true,
        std::time::SystemTime::now(),
    );
    assert!(!v.holds);
    assert!(v.reason.contains("restore drill failed"), "{}", v.reason);
    // Without `drilled`, the snapshot still counts as a verified backup.
    assert!(
        runbook::cluster::backup::fresh(
            &s.backups(),
            std::time::Duration::from_secs(3600),
            std::time::SystemTime::now()
        )
        .holds
    );
}

/// A snapshot whose file and sidecar agree but whose database is garbage (the sha256 trailer
/// is right): only a restore shows it is useless. The drill fails and records it.
#[test]
fn a_drill_of_a_corrupt_snapshot_fails_and_records_it() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let mut body = b"NOTETCD\n".to_vec();
    body.resize(1024, b'x');
    let sum = sha2::Sha256::digest(&body);
    body.extend_from_slice(&sum);
    let snap = backups.join("corrupt.db");
    let side =
        runbook::cluster::backup::describe("192.168.2.20", &body, Some(3), None, 1_795_552_441_000);
    runbook::cluster::backup::store(&snap, &body, &side).unwrap();
    // A tampered one too: its bytes no longer match the sidecar.
    let tampered = backups.join("tampered.db");
    let good = body.clone();
    let side =
        runbook::cluster::backup::describe("192.168.2.20", &good, Some(3), None, 1_795_552_441_000);
    runbook::cluster::backup::store(&tampered, &good, &side).unwrap();
    let mut evil = good.clone();
    evil[0] ^= 1;
    std::fs::write(&tampered, &evil).unwrap();
    let env = crate::run_harness::Env::new();
    for (file, why) in [
        (&snap, "failed to recover etcd from snapshot"),
        (&tampered, "does not verify"),
    ] {
        let arg = format!("snapshot={}", file.display());
        let out = env.run(&[
            "run",
            "etcd-restore-drill",
            "--param",
            &arg,
            "--output",
            "plain",
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(why), "{why}: {}", text(&out));
        let json = sidecar_json(file);
        assert_eq!(json["drill"]["ok"], false, "{json}");
        assert!(
            json["drill"]["detail"].as_str().unwrap().contains(why),
            "{json}"
        );
    }
    // A snapshot with no sidecar cannot be drilled (nowhere to record it) and says so.
    let bare = backups.join("bare.db");
    std::fs::write(&bare, &good).unwrap();
    let arg = format!("snapshot={}", bare.display());
    let out = env.run(&[
        "run",
        "etcd-restore-drill",
        "--param",
        &arg,
        "--output",
        "plain",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is missing"), "{}", text(&out));
}

/// An `os:etcd:backup` certificate may stream a snapshot and read etcd but nothing else (as
/// Talos's role table): the sidecar has the raft index (EtcdStatus) and says what is unknown
/// (`null`: Version and the cluster id need os:reader), and retention, unable to tell whose
/// snapshot it is, prunes nothing rather than guess.
#[test]
fn a_backup_only_role_gets_a_snapshot_but_no_prune_without_a_cluster_id() {
    let s = Setup::new();
    let fixture = crate::run_harness::fixture("runbooks/backup-role.yaml");
    let dir = format!("dir={}", s.backups().display());
    let run = |talosconfig: &str| {
        let sim = s.path().join("sim");
        Command::new(BIN)
            .args([
                "run",
                fixture.to_str().unwrap(),
                "--param",
                &dir,
                "--output",
                "plain",
            ])
            .arg("--state-dir")
            .arg(s.path().join("state"))
            .arg("--talosconfig")
            .arg(sim.join(talosconfig))
            .arg("--kubeconfig")
            .arg(sim.join("kubeconfig"))
            .arg("--node-endpoints")
            .arg(sim.join("endpoints.json"))
            .env("HOME", s.path())
            .env_remove("TALOSCONFIG")
            .env_remove("KUBECONFIG")
            .env_remove("RUNBOOK_TEST_KILL_IN_EFFECT")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let out = run("talosconfig");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let first = s.snapshots()[0].clone();
    assert!(sidecar_json(&first)["cluster_id"].is_string());
    let out = run("talosconfig-etcd-backup");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("cluster id is unknown"),
        "{}",
        text(&out)
    );
    let snaps = s.snapshots();
    assert_eq!(snaps.len(), 2, "{:?}", s.all_files());
    let json = sidecar_json(&snaps[1]);
    for unknown in ["cluster_id", "talos_version"] {
        assert!(json[unknown].is_null(), "{unknown}: {json}");
    }
    assert!(json["revision"].is_u64(), "EtcdStatus is readable: {json}");
    runbook::cluster::backup::verify(&snaps[1]).unwrap();
}

/// Two operators back up into one directory at once, each with `keep=1`: neither run replaces
/// or half-deletes the other's snapshot, and what is left all verifies, the newest included.
#[test]
fn two_operators_backing_up_at_once_leave_only_verified_snapshots() {
    let s = Setup::new();
    let out = s.backup(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut children: Vec<_> = (0..2)
        .map(|_| {
            let mut c = s.backup_cmd(&["keep=1"]);
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .drain(..)
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outs {
        // Succeeded, or refused by the other's cluster lock: never a failure.
        assert!(matches!(o.status.code(), Some(0 | 7)), "{}", text(o));
    }
    assert!(outs.iter().any(|o| o.status.success()));
    let (good, problems) = runbook::cluster::backup::verify_all(&s.backups()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert!((1..=2).contains(&good.len()), "{:?}", s.all_files());
    assert!(
        !s.all_files().iter().any(|f| f.ends_with(".partial")),
        "{:?}",
        s.all_files()
    );
    // Every file left is a snapshot with its sidecar.
    assert_eq!(s.all_files().len(), 2 * good.len(), "{:?}", s.all_files());
}
