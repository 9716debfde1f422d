//! Drives one built-in runbook against a simulator that lives outside the `runbook` process:
//! `runbook run`, then `runbook resume` until the journal says the run finished, approving the
//! gates its row lists, killing sessions with SIGKILL where a [`Kill`] says. The simulator runs
//! in the test process on its own runtime, so its state and call log survive every kill; the
//! `runbook` processes are children that die whole (`Child::kill` is SIGKILL, or the
//! in-effect hook, which SIGKILLs itself).

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use runbook::journal::{Journal, Record, RunDir, RunOutcome, Snapshot, StateDir, StepState};
use runbook::sim::{Scenario, SimHandle};

use super::state;

/// One built-in runbook's rehearsal: what `runbook run` is given.
pub(crate) struct Row {
    /// The built-in runbook's name.
    pub(crate) runbook: &'static str,
    /// Its rehearsal scenario, by name (`runbook sim scenarios`).
    pub(crate) scenario: &'static str,
    /// Simulator speed factor.
    pub(crate) speed: f64,
    /// `--param` values; `{sim}` is the simulator's directory, `{out}` the case's output
    /// directory (its files are part of the end state).
    pub(crate) params: &'static [&'static str],
    /// Approval gates a person answers with `runbook approve` (every other gate fails the
    /// test).
    pub(crate) approvals: &'static [&'static str],
    /// `--yes` on every session (gates that declare `allow_yes`).
    pub(crate) yes: bool,
    /// `--no-cluster-lock REASON` on `run` (the Kubernetes API is down from the start).
    pub(crate) run_no_lock: Option<&'static str>,
    /// `--no-cluster-lock REASON` on every `resume` (the run takes the API down).
    pub(crate) resume_no_lock: Option<&'static str>,
    /// Work done before the run (outside the crash test), returning extra `--param` values.
    pub(crate) setup: Option<fn(&Case) -> Vec<String>>,
    /// The outcome the uninterrupted run must have.
    pub(crate) outcome: RunOutcome,
    /// A known product gap a kill can land in (stated, not hidden; see [`Gap`]).
    pub(crate) gap: Option<Gap>,
}

/// A window in which a killed run cannot be resumed to the end today (a product gap the
/// crash test found, stated here rather than hidden). When a session exits with `exit`, the
/// simulator is in the window (`when`) and the session's output says `refusal`, the driver
/// stops the case there (its calls so far are still checked); the test asserts the gap is
/// hit, so the row must be updated once the gap is fixed.
pub(crate) struct Gap {
    pub(crate) exit: i32,
    pub(crate) when: fn(&runbook::sim::SharedCluster) -> bool,
    pub(crate) refusal: &'static str,
    pub(crate) why: &'static str,
}

impl Row {
    fn scenario(&self) -> Scenario {
        self.scenario
            .parse()
            .unwrap_or_else(|e| panic!("{}: scenario `{}`: {e}", self.runbook, self.scenario))
    }
}

/// Where and how a session is killed.
#[derive(Clone, Debug)]
pub(crate) enum Kill {
    /// SIGKILL once this much session time has passed, counted from the start of the first
    /// session this kill applies to (a session that pauses for approval passes it on).
    After(Duration),
    /// SIGKILL as soon as the journal holds the `nth` (from 1) record of type `kind` for
    /// `step`: the record after which a wait starts.
    OnRecord {
        kind: String,
        step: String,
        nth: usize,
    },
    /// `RUNBOOK_TEST_KILL_IN_EFFECT=ACTION:1:after`: the session kills itself right after
    /// its first call of `ACTION` returned, before the outcome is journaled.
    AfterCall(String),
}

/// What happened to one session.
#[derive(Debug)]
enum Ended {
    Exited(i32),
    Killed,
}

/// One simulator, state directory and output directory, driven through sessions.
pub(crate) struct Case {
    pub(crate) row: &'static Row,
    dir: tempfile::TempDir,
    rt: Option<tokio::runtime::Runtime>,
    pub(crate) handle: Option<SimHandle>,
    extra: Vec<String>,
    /// Session wall time, summed.
    pub(crate) busy: Duration,
    pub(crate) sessions: usize,
    pub(crate) kills: Vec<String>,
    /// The simulator's speed.
    speed: f64,
    /// Whether the last [`Kill::OnRecord`] killed before its wait was satisfied.
    pub(crate) mid_wait: Vec<bool>,
    /// How long each session took and how it ended.
    pub(crate) timings: Vec<String>,
}

impl Case {
    pub(crate) fn new(row: &'static Row) -> Case {
        Case::at_speed(row, row.speed)
    }

    /// A case whose simulator runs at `speed` instead of the row's.
    pub(crate) fn at_speed(row: &'static Row, speed: f64) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let (rt, handle) = crate::run_harness::simulator(row.scenario(), speed, dir.path());
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        let mut case = Case {
            row,
            dir,
            rt: Some(rt),
            handle: Some(handle),
            extra: Vec::new(),
            speed,
            busy: Duration::ZERO,
            sessions: 0,
            kills: Vec::new(),
            mid_wait: Vec::new(),
            timings: Vec::new(),
        };
        if let Some(setup) = row.setup {
            case.extra = setup(&case);
        }
        case
    }

    pub(crate) fn sim_dir(&self) -> PathBuf {
        self.dir.path().join("sim")
    }

    pub(crate) fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub(crate) fn shared(&self) -> &runbook::sim::SharedCluster {
        self.handle.as_ref().unwrap().cluster()
    }

    /// `{sim}` and `{out}` filled in.
    pub(crate) fn fill(&self, template: &str) -> String {
        template
            .replace("{sim}", self.sim_dir().to_str().unwrap())
            .replace("{out}", self.out().to_str().unwrap())
    }

    /// The cluster flags of the simulator.
    pub(crate) fn cluster_args(&self) -> Vec<String> {
        let s = |f: &str| self.sim_dir().join(f).display().to_string();
        vec![
            "--talosconfig".into(),
            s("talosconfig"),
            "--kubeconfig".into(),
            s("kubeconfig"),
            "--node-endpoints".into(),
            s("endpoints.json"),
        ]
    }

    /// The `runbook` binary, hermetic: no developer config, no inherited test hook.
    pub(crate) fn bin(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_runbook"));
        c.current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env_remove("TALOSCONFIG")
            .env_remove("KUBECONFIG")
            .env_remove("RUST_LOG")
            .env_remove(runbook::test_hook::KILL_AFTER_RECORD)
            .env_remove(runbook::test_hook::KILL_IN_MARKER)
            .env_remove(runbook::test_hook::KILL_IN_EFFECT);
        c
    }

    /// The run, once its journal holds its `run-started` record. A session killed between
    /// creating the run directory and that record leaves a directory `resume` cannot
    /// continue (nothing was sent yet): the operator runs again, and so does the driver.
    pub(crate) fn run_dir(&self) -> Option<RunDir> {
        let runs = StateDir::new(self.state()).list_runs().ok()?;
        let started: Vec<RunDir> = runs
            .into_iter()
            .map(|r| r.run)
            .filter(|r| Journal::read(r).is_ok_and(|j| j.state.header.is_some()))
            .collect();
        assert!(
            started.len() <= 1,
            "one run per case, found {}",
            started.len()
        );
        started.into_iter().next()
    }

    pub(crate) fn journal(&self) -> Option<Snapshot> {
        Journal::read(&self.run_dir()?).ok()
    }

    fn session_command(&self) -> Command {
        let row = self.row;
        let mut c = self.bin();
        if self.run_dir().is_none() {
            c.arg("run").arg(row.runbook).args(self.cluster_args());
            for p in row.params {
                c.args(["--param", &self.fill(p)]);
            }
            for p in &self.extra {
                c.args(["--param", p]);
            }
            if let Some(reason) = row.run_no_lock {
                c.args(["--no-cluster-lock", reason]);
            }
        } else {
            c.arg("resume");
            if let Some(reason) = row.resume_no_lock.or(row.run_no_lock) {
                c.args(["--no-cluster-lock", reason]);
            }
        }
        if row.yes {
            c.arg("--yes");
        }
        c.args(["--output", "plain", "--state-dir"])
            .arg(self.state());
        c
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("session-{n}.log"))
    }

    /// Every session's output, for failure messages.
    pub(crate) fn logs(&self) -> String {
        (1..=self.sessions)
            .map(|n| {
                let text = std::fs::read_to_string(self.log_path(n)).unwrap_or_default();
                format!("----- session {n}\n{text}")
            })
            .chain(std::iter::once(self.timings.join("\n")))
            .collect()
    }

    /// One session, killed as `kill` says; returns how it ended and how long it ran.
    fn session(&mut self, kill: Option<&Kill>, budget: Duration) -> (Ended, Duration) {
        self.sessions += 1;
        let log = File::create(self.log_path(self.sessions)).unwrap();
        let mut cmd = self.session_command();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(Kill::AfterCall(action)) = kill {
            cmd.env(
                runbook::test_hook::KILL_IN_EFFECT,
                format!("{action}:1:after"),
            );
        }
        let start = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let mut seen = 0;
        let status: ExitStatus = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            let fire = match kill {
                Some(Kill::After(_)) => start.elapsed() >= budget,
                Some(Kill::OnRecord { kind, step, nth }) => {
                    self.has_record(kind, step, *nth, &mut seen)
                }
                _ => false,
            };
            if fire {
                // SIGKILL: the process cannot catch it, flush or clean up.
                child.kill().unwrap();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let took = start.elapsed();
        self.busy += took;
        self.timings.push(format!(
            "session {}: {:.1} s, {}",
            self.sessions,
            took.as_secs_f64(),
            status
        ));
        let ended = match status.code() {
            Some(code) => Ended::Exited(code),
            None => {
                assert_eq!(
                    status.signal(),
                    Some(9),
                    "session {} died of another signal:\n{}",
                    self.sessions,
                    self.logs()
                );
                Ended::Killed
            }
        };
        (ended, took)
    }

    fn has_record(&self, kind: &str, step: &str, nth: usize, seen: &mut u64) -> bool {
        let len = self
            .run_dir()
            .and_then(|r| std::fs::metadata(r.journal_path()).ok())
            .map_or(0, |m| m.len());
        if len == *seen {
            return false;
        }
        *seen = len;
        let Some(journal) = self.journal() else {
            return false;
        };
        journal
            .contents
            .entries
            .iter()
            .filter(|e| record_is(&e.record, kind, step))
            .count()
            >= nth
    }

    /// Approves every gate the run waits at; a gate the row does not list fails the test.
    fn approve_waiting(&self) -> usize {
        let Some(journal) = self.journal() else {
            return 0;
        };
        let run = self.run_dir().unwrap();
        let mut approved = 0;
        for (id, rec) in &journal.state.steps {
            if !matches!(rec.state, StepState::AwaitingApproval { .. }) {
                continue;
            }
            assert!(
                self.row.approvals.contains(&id.as_str()),
                "{}: step `{id}` waits for a person, and the row does not approve it:\n{}",
                self.row.runbook,
                self.logs()
            );
            let out = self
                .bin()
                .args(["approve", run.id(), id, "--state-dir"])
                .arg(self.state())
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                crate::run_harness::text(&out)
            );
            approved += 1;
        }
        approved
    }

    /// Sessions until the run finished, applying `kills` in order (each to the sessions after
    /// the previous one fired); returns the outcome, or `None` when a kill left the run in
    /// the row's known [`Gap`].
    pub(crate) fn drive(&mut self, kills: &[Kill]) -> Option<RunOutcome> {
        const UNREACHABLE: i32 = runbook::exit_code::UNREACHABLE;
        let mut next = 0;
        let mut spent = Duration::ZERO;
        let mut sessions = 0;
        let mut unreachable = 0;
        while sessions < 24 {
            if let Some(outcome) = self.journal().and_then(|j| j.state.outcome()) {
                return Some(outcome);
            }
            let kill = kills.get(next);
            let budget = match kill {
                Some(Kill::After(d)) => d.saturating_sub(spent),
                _ => Duration::ZERO,
            };
            let (ended, took) = self.session(kill, budget);
            if let (Ended::Exited(code), Some(gap)) = (&ended, &self.row.gap)
                && *code == gap.exit
                && (gap.when)(self.shared())
                && std::fs::read_to_string(self.log_path(self.sessions))
                    .unwrap_or_default()
                    .contains(gap.refusal)
            {
                return None;
            }
            match ended {
                Ended::Killed => {
                    let kill = kill
                        .unwrap_or_else(|| panic!("killed with no kill point:\n{}", self.logs()));
                    if let Kill::OnRecord { step, .. } = kill {
                        let satisfied = self.journal().is_some_and(|j| {
                            j.contents
                                .entries
                                .iter()
                                .any(|e| record_is(&e.record, "wait-satisfied", step))
                        });
                        self.mid_wait.push(!satisfied);
                    }
                    self.kills
                        .push(format!("{kill:?} (session {})", self.sessions));
                    next += 1;
                    spent = Duration::ZERO;
                }
                Ended::Exited(5) => {
                    spent += took;
                    if self.approve_waiting() == 0 {
                        panic!(
                            "{}: the run paused and no gate waits for approval (a person must settle it):\n{}",
                            self.row.runbook,
                            self.logs()
                        );
                    }
                }
                Ended::Exited(UNREACHABLE) => {
                    // The cluster does not answer yet (the only node that is up reboots after
                    // a Reset): an operator waits and resumes again; so does the driver, for
                    // at most a minute.
                    spent += took;
                    unreachable += 1;
                    assert!(
                        unreachable <= 300,
                        "{}: the cluster did not answer for a minute:\n{}",
                        self.row.runbook,
                        self.logs()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                Ended::Exited(_) => spent += took,
            }
            sessions += 1;
        }
        panic!(
            "{}: the run did not finish in 24 sessions:\n{}",
            self.row.runbook,
            self.logs()
        );
    }

    /// Waits until the simulator's end state stops changing (a run may end while a node is
    /// still finishing its boot): unchanged for 150 simulated seconds, at most 20 s.
    pub(crate) fn settle(&self) -> Vec<String> {
        let window = Duration::from_secs_f64((150.0 / self.speed).max(0.3));
        let start = Instant::now();
        let mut last = state::sim_digest(self.shared());
        let mut since = Instant::now();
        while since.elapsed() < window && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
            let now = state::sim_digest(self.shared());
            if now != last {
                last = now;
                since = Instant::now();
            }
        }
        last
    }

    pub(crate) fn stop(mut self) {
        if let (Some(rt), Some(handle)) = (self.rt.take(), self.handle.take()) {
            rt.block_on(handle.shutdown());
        }
    }
}

/// Whether `record` is of type `kind` (its journal name, e.g. `action-completed`) for `step`.
pub(crate) fn record_is(record: &Record, kind: &str, step: &str) -> bool {
    let (k, s) = kind_and_step(record);
    k == kind && s.as_deref() == Some(step)
}

/// A record's journal type name and step, read from its JSON form (so new record kinds need
/// no change here).
pub(crate) fn kind_and_step(record: &Record) -> (String, Option<String>) {
    let v = serde_json::to_value(record).unwrap_or_default();
    let kind = v["type"].as_str().unwrap_or_default().to_owned();
    let step = v["step"].as_str().map(str::to_owned);
    (kind, step)
}

/// The run directory's recompiled plan (the stored source with the stored params).
pub(crate) fn plan_of(run: &RunDir) -> runbook::plan::Plan {
    runbook::cli::session::load_plan(run, &[])
        .unwrap_or_else(|e| panic!("recompile the run's plan: {e}"))
}

/// A directory of the case, for setups.
pub(crate) fn path_in(case: &Case, rel: &str) -> PathBuf {
    case.dir.path().join(rel)
}
