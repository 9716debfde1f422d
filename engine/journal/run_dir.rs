//! Run directories: where a run's journal, lock, parameters and runbook copy live.
//!
//! Resume must not depend on anything that can change after the run started: the runbook file
//! may be edited, the catalog upgraded. So each run gets its own directory holding everything
//! it needs, written durably:
//!
//! ```text
//! $XDG_STATE_HOME/runbook/runs/          (default ~/.local/state/runbook/runs/)
//!   20261124T203401Z-3fa9c1/             run id: UTC creation time, then 6 hex; sorts by time
//!     journal.jsonl                      the journal (see `file`)
//!     lock                               the run lock (see `lock`)
//!     runbook.yaml | runbook.rhai        the runbook source as compiled
//!     params.json                        the parameters, secrets redacted
//! ```
//!
//! An explicit state dir (e.g. `--state-dir X`) replaces `$XDG_STATE_HOME/runbook`: runs then
//! live in `X/runs/`. Files other than the journal are written atomically (temp file, fsync,
//! rename, directory fsync) by [`super::durable::write_atomic`].

use std::path::{Path, PathBuf};

use super::durable;
use super::error::{Error, Result};
use super::file;
use super::identity;
use super::lock;
use super::record::{Fields, RunOutcome};
use super::replay;

/// The parameters file's name inside a run directory.
pub const PARAMS_FILE: &str = "params.json";

/// The language of a runbook source, which decides the copy's file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A YAML runbook, copied as `runbook.yaml`.
    Yaml,
    /// A rhai runbook, copied as `runbook.rhai`.
    Rhai,
}

impl SourceKind {
    /// The copy's file name inside the run directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Yaml => "runbook.yaml",
            Self::Rhai => "runbook.rhai",
        }
    }
}

/// The root under which run directories are created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDir {
    runs: PathBuf,
}

/// One run's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    id: String,
    path: PathBuf,
}

/// Where a run stands, as far as a read-only look at its journal tells.
#[derive(Clone, Debug, PartialEq)]
pub enum RunStatus {
    /// No committed record: the run was created but never started.
    NotStarted,
    /// Started and not finished: resumable.
    Unfinished {
        /// How many steps are in doubt.
        in_doubt: usize,
    },
    /// Finished.
    Finished(RunOutcome),
    /// The journal cannot be read; the message says why (resume will report it in full).
    Unreadable(String),
}

/// A run directory with its status, as listed.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    /// The run directory.
    pub run: RunDir,
    /// The runbook's name, if the header could be read.
    pub runbook: Option<String>,
    /// Where the run stands.
    pub status: RunStatus,
}

impl StateDir {
    /// A state dir at an explicit path: runs live in `<dir>/runs/`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            runs: dir.into().join("runs"),
        }
    }

    /// The default state dir: `$XDG_STATE_HOME/runbook` if that is set to an absolute path,
    /// else `$HOME/.local/state/runbook`.
    pub fn from_env() -> Result<Self> {
        let var = |name| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let base = match var("XDG_STATE_HOME") {
            Some(xdg) => xdg,
            None => var("HOME")
                .ok_or(Error::NoStateDir)?
                .join(".local")
                .join("state"),
        };
        Ok(Self::new(base.join("runbook")))
    }

    /// The explicit state dir if given, else [`StateDir::from_env`].
    pub fn resolve(explicit: Option<&Path>) -> Result<Self> {
        explicit.map_or_else(Self::from_env, |dir| Ok(Self::new(dir)))
    }

    /// The directory holding one subdirectory per run.
    pub fn runs_dir(&self) -> &Path {
        &self.runs
    }

    /// Creates a new run directory with a fresh id, a durable copy of the runbook source and
    /// `params.json` (`params` must already be redacted). Does not create the journal: call
    /// `Journal::create` next, which takes the lock.
    pub fn create_run(&self, kind: SourceKind, source: &str, params: &Fields) -> Result<RunDir> {
        // Owner-only (0700) and durable: the parent of every new directory is fsynced, so a
        // power cut cannot lose the first run.
        durable::create_private_dir_all(&self.runs)?;
        let id = identity::new_run_id();
        let path = self.runs.join(&id);
        durable::create_private_dir(&path)?;
        let run = RunDir { id, path };
        durable::write_atomic(&run.path.join(kind.file_name()), source.as_bytes())?;
        let params = serde_json::to_vec_pretty(params).map_err(|source| Error::Serialize {
            record_type: "params",
            source,
        })?;
        durable::write_atomic(&run.params_path(), &params)?;
        Ok(run)
    }

    /// Opens the existing run `run_id`.
    pub fn open_run(&self, run_id: &str) -> Result<RunDir> {
        let not_found = || Error::RunNotFound {
            run_id: run_id.to_owned(),
            runs: self.runs.clone(),
        };
        if !is_run_id(run_id) {
            return Err(not_found());
        }
        let path = self.runs.join(run_id);
        if !path.is_dir() {
            return Err(not_found());
        }
        Ok(RunDir {
            id: run_id.to_owned(),
            path,
        })
    }

    /// Every run, oldest first, with its status (read-only: nothing is locked or truncated).
    pub fn list_runs(&self) -> Result<Vec<RunSummary>> {
        let entries = match std::fs::read_dir(&self.runs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &self.runs)(e)),
        };
        let mut runs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Error::io("list", &self.runs))?;
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if is_run_id(&id) && entry.path().is_dir() {
                runs.push(RunDir {
                    id,
                    path: entry.path(),
                });
            }
        }
        runs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(runs.into_iter().map(summarize).collect())
    }

    /// The most recent run that started and has not finished (an unreadable journal counts, so
    /// that resume reports its error instead of silently picking an older run).
    pub fn latest_unfinished(&self) -> Result<Option<RunSummary>> {
        Ok(self.list_runs()?.into_iter().rev().find(|r| {
            matches!(
                r.status,
                RunStatus::Unfinished { .. } | RunStatus::Unreadable(_)
            )
        }))
    }
}

impl RunDir {
    /// A run directory at an explicit path; its id is the directory's name.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let id = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self { id, path }
    }

    /// The run id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal's path.
    pub fn journal_path(&self) -> PathBuf {
        self.path.join(file::FILE_NAME)
    }

    /// The lock file's path.
    pub fn lock_path(&self) -> PathBuf {
        self.path.join(lock::FILE_NAME)
    }

    /// The parameters file's path.
    pub fn params_path(&self) -> PathBuf {
        self.path.join(PARAMS_FILE)
    }

    /// The runbook copy and its kind, if present.
    pub fn source(&self) -> Option<(SourceKind, PathBuf)> {
        [SourceKind::Yaml, SourceKind::Rhai]
            .into_iter()
            .map(|k| (k, self.path.join(k.file_name())))
            .find(|(_, p)| p.is_file())
    }

    /// Reads `params.json`.
    pub fn read_params(&self) -> Result<Fields> {
        let path = self.params_path();
        let bytes = std::fs::read(&path).map_err(Error::io("read", &path))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path,
            line: e.line() as u64,
            offset: 0,
            reason: e.to_string(),
        })
    }
}

/// Whether `s` looks like a run id (also keeps path separators and `..` out of paths).
fn is_run_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Reads a run's journal without locking and tells where it stands.
fn summarize(run: RunDir) -> RunSummary {
    let path = run.journal_path();
    if !path.exists() {
        return RunSummary {
            run,
            runbook: None,
            status: RunStatus::NotStarted,
        };
    }
    let folded = file::read(&path).and_then(|c| {
        replay::fold(&c.entries).map_err(|source| Error::Replay {
            path: path.clone(),
            source,
        })
    });
    let (runbook, status) = match folded {
        Ok(state) => {
            let runbook = state.header.as_ref().map(|h| h.runbook.clone());
            let status = match (&state.header, state.outcome()) {
                (None, _) => RunStatus::NotStarted,
                (Some(_), Some(outcome)) => RunStatus::Finished(outcome),
                (Some(_), None) => RunStatus::Unfinished {
                    in_doubt: state.in_doubt_steps().len(),
                },
            };
            (runbook, status)
        }
        Err(e) => (None, RunStatus::Unreadable(error_chain(&e))),
    };
    RunSummary {
        run,
        runbook,
        status,
    }
}

/// `error: cause: cause` in one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn create_run_writes_source_and_params_and_lists_it() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        let params = json!({"node": "n1", "key": "<redacted>"})
            .as_object()
            .unwrap()
            .clone();
        let run = state
            .create_run(SourceKind::Yaml, "name: reboot-verify\n", &params)
            .unwrap();
        assert!(run.path().starts_with(tmp.path().join("runs")));
        assert_eq!(run.source().unwrap().0, SourceKind::Yaml);
        assert_eq!(
            std::fs::read_to_string(run.source().unwrap().1).unwrap(),
            "name: reboot-verify\n"
        );
        assert_eq!(run.read_params().unwrap(), params);
        assert_eq!(state.open_run(run.id()).unwrap(), run);
        assert!(matches!(
            state.open_run("../etc"),
            Err(Error::RunNotFound { .. })
        ));
        assert!(matches!(
            state.open_run("nope"),
            Err(Error::RunNotFound { .. })
        ));
        let listed = state.list_runs().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].status, RunStatus::NotStarted);
        assert_eq!(state.latest_unfinished().unwrap(), None);
    }

    #[test]
    fn run_ids_sort_by_creation_time() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        let a = state
            .create_run(SourceKind::Rhai, "", &Fields::new())
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let b = state
            .create_run(SourceKind::Rhai, "", &Fields::new())
            .unwrap();
        assert!(a.id() < b.id());
        let ids: Vec<_> = state
            .list_runs()
            .unwrap()
            .into_iter()
            .map(|s| s.run.id)
            .collect();
        assert_eq!(ids, vec![a.id().to_owned(), b.id().to_owned()]);
    }

    #[test]
    fn missing_runs_dir_lists_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(
            StateDir::new(tmp.path().join("absent"))
                .list_runs()
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            StateDir::resolve(Some(tmp.path())).unwrap().runs_dir(),
            tmp.path().join("runs")
        );
    }
}
