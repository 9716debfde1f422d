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
    // A wait that cannot hold at once: a reboot taking about three seconds (speed 20).
    let file = dir.path().join("reboot.yaml");
    std::fs::write(
        &file,
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: reboot }\nsteps:\n  - id: boot\n    action: talos.read-boot-id\n    with: { node: 192.168.2.223 }\n  - id: reboot\n    action: talos.reboot\n    with: { node: 192.168.2.223 }\n    guard: [etcd.safe-down]\n    wait: { condition: talos.rebooted, interval: 500ms, timeout: 2m }\n",
    )
    .unwrap();
    let cmd = format!(
        "{} run {} --sim --speed 20 --state-dir {}",
        env!("CARGO_BIN_EXE_runbook"),
        file.display(),
        dir.path().join("state").display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    // The overall bar counts steps; the wait shows its condition, elapsed time and timeout.
    assert!(screen.contains("0/2 steps boot"), "{screen}");
    assert!(screen.contains("2/2 steps reboot"), "{screen}");
    assert!(
        screen.contains("reboot: waiting for `talos.rebooted`"),
        "{screen}"
    );
    assert!(screen.contains("/ 120s"), "{screen}");
    // Lines for the record stay above the bars.
    assert!(screen.contains("guard `etcd.safe-down` passed"), "{screen}");
    assert!(
        screen.contains("finished: Succeeded (2 steps done)"),
        "{screen}"
    );
}
