//! The terminal reporter, seen as an operator sees it: the run under a pseudo-terminal
//! (`script` from util-linux), so stderr is a TTY and the progress bars and wait spinners are
//! drawn. Skipped, with a visible message, where `script` is not installed.

use std::process::Command;

fn script_available() -> bool {
    Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn progress_bar_and_wait_spinner_on_a_terminal() {
    if !script_available() {
        eprintln!("`script` (util-linux) not found: skipping the terminal progress test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cmd = format!(
        "{} run etcd-backup --sim --speed 200 --param node=192.168.2.20 --param dir={} --state-dir {}",
        env!("CARGO_BIN_EXE_runbook"),
        dir.path().join("snaps").display(),
        dir.path().join("state").display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let screen = String::from_utf8_lossy(&out.stdout);
    // The overall bar counts steps; the wait shows its condition, elapsed time and timeout.
    assert!(screen.contains("0/2 steps check"), "{screen}");
    assert!(screen.contains("2/2 steps snapshot"), "{screen}");
    assert!(
        screen.contains("check: waiting for `etcd.healthy` 0s / 60s"),
        "{screen}"
    );
    // Lines for the record stay above the bars.
    assert!(screen.contains("guard `etcd.quorum` passed"), "{screen}");
    assert!(
        screen.contains("finished: Succeeded (2 steps done)"),
        "{screen}"
    );
}
