//! A run killed between starting its embedded simulator and creating its run directory leaves
//! `<state>/sim-staging/<pid>-<nanos>/` behind; the next `run --sim` sweeps it, and never a
//! staging directory whose owner still holds its lock.

use std::fs::File;

use crate::run_harness::{Env, text};

#[test]
fn the_next_sim_run_sweeps_a_killed_runs_staging_but_not_a_live_one() {
    let env = Env::new();
    let root = env.state().join("sim-staging");
    std::fs::create_dir_all(&root).unwrap();
    // What a SIGKILLed start leaves: its directory (a simulator's files) and its lock file,
    // now unlocked (pids above Linux's PID_MAX_LIMIT are never alive).
    let dead = root.join("4194400-000000001");
    std::fs::create_dir(&dead).unwrap();
    std::fs::write(dead.join("talosconfig"), "secret-ish").unwrap();
    File::create(root.join("4194400-000000001.lock")).unwrap();
    // A start in progress elsewhere: its lock is held (here, by this test process).
    let live = root.join("4194401-000000002");
    std::fs::create_dir(&live).unwrap();
    let held = File::create(root.join("4194401-000000002.lock")).unwrap();
    held.try_lock().unwrap();

    let snaps = env.path().join("snaps");
    let out = env.run(&[
        "run",
        "etcd-backup",
        "--sim",
        "--speed",
        "200",
        "--param",
        "node=192.168.2.223",
        "--param",
        &format!("dir={}", snaps.display()),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!dead.exists(), "the killed run's staging directory is left");
    assert!(!root.join("4194400-000000001.lock").exists());
    assert!(live.is_dir(), "a live staging directory was removed");
    assert!(root.join("4194401-000000002.lock").is_file());
    // This run's own staging moved into its run directory and left nothing beside it.
    let mut left: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["4194401-000000002", "4194401-000000002.lock"]);
    assert!(env.the_run().path().join("sim/calls.jsonl").is_file());
    drop(held);
}
