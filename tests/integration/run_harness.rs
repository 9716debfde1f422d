//! The run harness: a temporary state directory, the `runbook` binary as a child process, and
//! readers for the journal and the marker file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use runbook::journal::{Journal, RunDir, RunState, StateDir};

/// The `runbook` binary built for this test run.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_runbook");

/// A fixture file under `tests/fixtures/`.
pub(crate) fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// One scratch area: `state/` for runs, the rest for marker files.
pub(crate) struct Env {
    pub(crate) dir: tempfile::TempDir,
}

impl Env {
    pub(crate) fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    /// `runbook ARGS --state-dir STATE`, with no test hook unless the caller adds one.
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .arg("--state-dir")
            .arg(self.state())
            .env_remove("RUNBOOK_TEST_KILL_AFTER_RECORD")
            .env_remove("RUNBOOK_TEST_KILL_IN_MARKER")
            .env_remove("RUST_LOG")
            // Hermetic: never the developer's ~/.talos/config, ~/.kube/config or exported ones.
            .env("HOME", self.path())
            .env_remove("TALOSCONFIG")
            .env_remove("KUBECONFIG")
            .env("NO_COLOR", "1");
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// The only run in the state directory.
    pub(crate) fn the_run(&self) -> RunDir {
        let runs = StateDir::new(self.state()).list_runs().unwrap();
        assert_eq!(runs.len(), 1, "expected exactly one run");
        runs[0].run.clone()
    }

    pub(crate) fn state_of(&self, run: &RunDir) -> RunState {
        Journal::read(run).unwrap().state
    }

    /// The marker file's lines.
    pub(crate) fn markers(&self) -> Vec<String> {
        match std::fs::read_to_string(self.path().join("markers")) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        }
    }
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Copies a directory tree.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A simulator of `scenario` at `speed` on its own runtime, its files in `dir/sim`, for tests
/// that drive the `runbook` binary against it from outside (as an operator does with
/// `runbook sim up`). Shut it down with `rt.block_on(handle.shutdown())`.
pub(crate) fn simulator(
    scenario: runbook::sim::Scenario,
    speed: f64,
    dir: &Path,
) -> (tokio::runtime::Runtime, runbook::sim::SimHandle) {
    use runbook::sim::{SimConfig, Simulator, Speed};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let handle = rt
        .block_on(Simulator::start(SimConfig {
            scenario,
            speed: Speed::new(speed).unwrap(),
            dir: dir.join("sim"),
        }))
        .unwrap();
    (rt, handle)
}

/// The nodes (or object keys) of every successful `method` call in the simulator's call log,
/// in order.
pub(crate) fn successful_calls(shared: &runbook::sim::SharedCluster, method: &str) -> Vec<String> {
    shared.with(|c, _| {
        c.call_log()
            .iter()
            .filter(|r| r.method == method && r.result.is_ok())
            .map(|r| r.node.clone())
            .collect()
    })
}

/// The real kubectl against the simulator under `dir` (`dir/sim/kubeconfig`), with its cache
/// and HOME inside `dir`; a missing kubectl fails the test rather than skipping it.
pub(crate) fn kubectl(dir: &Path, args: &[&str]) -> Output {
    let path = std::env::var_os("PATH").expect("PATH is set");
    let bin = std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
        .expect("kubectl must be installed for this test (it fails rather than skips)");
    std::process::Command::new(bin)
        .arg("--kubeconfig")
        .arg(dir.join("sim/kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.join("kcache"))
        .args(args)
        .env("HOME", dir)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run kubectl")
}
