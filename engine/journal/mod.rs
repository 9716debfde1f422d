//! The durable journal of a run: the single source of truth for `runbook resume`.
//!
//! An operator must be able to kill Runbook at any instant (SIGKILL, power loss) and resume
//! exactly where it stopped, never repeating a side effect and never losing a committed record.
//! This module provides that guarantee, in pieces that each do one thing:
//!
//! - [`record`]: what can be said about a run ([`Record`]) and the format version rule;
//! - [`file`](mod@file): `journal.jsonl` on disk: framing, checksums, fsync, torn-tail repair;
//! - [`lock`]: one driving process per run;
//! - [`run_dir`]: where runs live and what each run directory holds;
//! - [`replay`]: the pure `apply(state, record)` shared by the live run and resume;
//! - [`Journal`] (here): all of the above for one run, as the executor uses it.
//!
//! The protocol the executor follows (see `docs/journal-format.md`):
//!
//! 1. [`Journal::create`] or [`Journal::open`] takes the lock and appends `session-started`.
//! 2. Before any side effect, append `step-started` (the intent). [`Journal::append`] returns
//!    only once the record is fsynced; on **any** error the executor must stop before the next
//!    side effect, because the journal no longer describes what happened.
//! 3. Append the outcome records; `step-succeeded` is the checkpoint.
//! 4. On resume, [`RunState::in_doubt_steps`] lists intents with no outcome, to be settled by
//!    an `in-doubt` record according to the action's idempotency before anything else runs.
//!
//! Nothing here prints: problems are returned as values ([`TornTail`], [`Error`]) and logged
//! through `tracing`.

pub mod checksum;
pub mod durable;
pub mod error;
pub mod exposure;
pub mod file;
pub mod identity;
pub mod lock;
pub mod record;
pub mod replay;
pub mod run_dir;
pub mod time;

use std::path::Path;

pub use error::{Error, Result};
pub use file::{Contents, Entry, SkippedRecord, TornTail};
pub use lock::{LockHolder, RunLock};
pub use record::{
    ClusterLockEvent, FORMAT_VERSION, Fields, FormatVersion, InDoubtResolution, Record, RunHeader,
    RunOutcome,
};
pub use replay::{PreflightOverride, RunState, StepState};
pub use run_dir::{RunDir, RunStatus, RunSummary, SourceKind, StateDir};

use file::JournalFile;

/// A run's journal, open for appending, with the run lock held and the state folded.
#[derive(Debug)]
pub struct Journal {
    file: JournalFile,
    lock: RunLock,
    entries: Vec<Entry>,
    state: RunState,
    session: String,
}

/// A journal opened for resume, with what opening it found.
#[derive(Debug)]
pub struct Opened {
    /// The journal, ready to append (a `session-started` for this process is already in it).
    pub journal: Journal,
    /// The torn final record that was truncated, if any: show it to the operator.
    pub torn: Option<TornTail>,
    /// Records of unknown, skippable types that were ignored.
    pub skipped: Vec<SkippedRecord>,
}

/// A read-only view of a journal (no lock, no truncation): for `status` and listing.
#[derive(Debug)]
pub struct Snapshot {
    /// What the file holds; a torn tail is reported in `contents.torn` but left in place.
    pub contents: Contents,
    /// The folded state.
    pub state: RunState,
}

impl Journal {
    /// Starts the journal of a new run in `run` (made by [`StateDir::create_run`]): takes the
    /// lock, creates `journal.jsonl`, and appends `run-started` and `session-started`.
    pub fn create(run: &RunDir, header: RunHeader) -> Result<Self> {
        if header.run_id != run.id() {
            return Err(Error::RunIdMismatch {
                header: header.run_id,
                dir: run.id().to_owned(),
            });
        }
        let lock = RunLock::acquire(run.path())?;
        let file = JournalFile::create(&run.journal_path())?;
        let mut journal = Self {
            file,
            lock,
            entries: Vec::new(),
            state: RunState::default(),
            session: identity::new_session_id(),
        };
        journal.append(Record::RunStarted(header))?;
        journal.start_session()?;
        Ok(journal)
    }

    /// Opens an existing run for resume: takes the lock, reads and checks the journal,
    /// truncates a torn final record (reported in [`Opened::torn`]), folds the state, and
    /// appends this process's `session-started`.
    ///
    /// Fails on a corrupt or illegal journal, a journal with no committed record, and a run
    /// that already finished.
    pub fn open(run: &RunDir) -> Result<Opened> {
        let lock = RunLock::acquire(run.path())?;
        let (file, contents) = JournalFile::open(&run.journal_path())?;
        let path = file.path().to_owned();
        if contents.entries.is_empty() {
            return Err(Error::NotStarted { path });
        }
        let state = replay::fold(&contents.entries).map_err(|source| Error::Replay {
            path: path.clone(),
            source,
        })?;
        if let Some(outcome) = state.outcome() {
            return Err(Error::Finished { path, outcome });
        }
        if let Some(h) = &state.header
            && h.format_version > FORMAT_VERSION
        {
            tracing::warn!(
                path = %path.display(), written = %h.format_version, reader = %FORMAT_VERSION,
                "journal was written by a newer minor format version"
            );
        }
        let mut journal = Self {
            file,
            lock,
            entries: contents.entries,
            state,
            session: identity::new_session_id(),
        };
        journal.start_session()?;
        Ok(Opened {
            journal,
            torn: contents.torn,
            skipped: contents.skipped,
        })
    }

    /// Reads a run's journal without locking or modifying it, and folds its state.
    pub fn read(run: &RunDir) -> Result<Snapshot> {
        let path = run.journal_path();
        let contents = file::read(&path)?;
        let state = replay::fold(&contents.entries).map_err(|source| Error::Replay {
            path: path.clone(),
            source,
        })?;
        Ok(Snapshot { contents, state })
    }

    /// Appends a record: checks it is a legal next fact ([`replay::apply`]), writes and fsyncs
    /// it, then updates the state. Returns the committed entry.
    ///
    /// An illegal record is refused before anything is written. Any error means the caller
    /// must stop before its next side effect; after an I/O error every later append fails.
    pub fn append(&mut self, record: Record) -> Result<&Entry> {
        self.append_batch(vec![record])?;
        self.entries.last().ok_or_else(|| Error::NotStarted {
            path: self.file.path().to_owned(),
        })
    }

    /// Appends several records with a single write and fsync (a group commit). Each is checked
    /// in turn by [`replay::apply`] before anything is written; all or none are committed.
    ///
    /// The executor uses it only where no side effect sits between the records (a step whose
    /// action has no effect outside the journal, e.g. `noop`), so durability is unchanged:
    /// every side effect still has its intent fsynced before it.
    pub fn append_batch(&mut self, records: Vec<Record>) -> Result<&[Entry]> {
        let at_ms = time::now_ms();
        for (i, (seq, record)) in (self.file.next_seq()..).zip(&records).enumerate() {
            let entry = Entry {
                seq,
                at_ms,
                offset: 0,
                record: record.clone(),
            };
            if let Err(source) = replay::apply(&mut self.state, &entry) {
                // `apply` undid the refused record; undo the batch's earlier ones (cold path).
                if i > 0 {
                    self.refold();
                }
                return Err(Error::Replay {
                    path: self.file.path().to_owned(),
                    source,
                });
            }
        }
        let refs: Vec<&Record> = records.iter().collect();
        let written = match self.file.append_batch_at(&refs, at_ms) {
            Ok(written) => written,
            Err(e) => {
                // Nothing was committed (and the file is now poisoned): forget the batch.
                self.refold();
                return Err(e);
            }
        };
        let first = self.entries.len();
        for entry in written {
            tracing::debug!(
                seq = entry.seq,
                record = entry.record.type_name(),
                "journal append"
            );
            self.entries.push(entry);
        }
        crate::test_hook::after_append(self.entries.len() - first);
        Ok(&self.entries[first..])
    }

    fn refold(&mut self) {
        // The entries were each accepted by `apply` when they were appended or opened.
        self.state = replay::fold(&self.entries).unwrap_or_default();
    }

    /// Every committed record of the run, in order.
    pub fn records(&self) -> &[Entry] {
        &self.entries
    }

    /// The run's state, folded from [`Journal::records`] by [`replay::apply`].
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// This process's session (fencing) id, to stamp on `step-started`.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The journal file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// This process's entry in the lock file.
    pub fn lock_holder(&self) -> &LockHolder {
        self.lock.holder()
    }

    fn start_session(&mut self) -> Result<()> {
        let record = Record::SessionStarted {
            session: self.session.clone(),
            pid: identity::pid(),
            host: identity::host_name(),
        };
        self.append(record).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;
    use crate::journal::record::tests::header;

    fn new_run(tmp: &Path) -> (StateDir, RunDir) {
        let state = StateDir::new(tmp);
        let params = json!({"node": "192.168.2.20"}).as_object().unwrap().clone();
        let run = state
            .create_run(SourceKind::Yaml, "name: reboot-verify\n", &params)
            .unwrap();
        (state, run)
    }

    fn intent(journal: &Journal, step: &str, attempt: u32) -> Record {
        Record::StepStarted {
            step: step.into(),
            attempt,
            session: journal.session().into(),
            pre_state: Fields::new(),
        }
    }

    #[test]
    fn create_append_kill_resume_finds_step_in_doubt() {
        let tmp = tempfile::tempdir().unwrap();
        let (state_dir, run) = new_run(tmp.path());
        let mut journal = Journal::create(&run, header(run.id())).unwrap();
        assert_eq!(journal.records().len(), 2);
        let rec = intent(&journal, "drain[n1]", 1);
        journal.append(rec).unwrap();
        journal
            .append(Record::StepSucceeded {
                step: "drain[n1]".into(),
                outputs: Fields::new(),
            })
            .unwrap();
        let rec = intent(&journal, "reboot[n1]", 1);
        let entry = journal.append(rec).unwrap();
        assert_eq!(entry.seq, 5);
        let first_session = journal.session().to_owned();

        // While the driver lives, nobody else can open the run.
        let err = Journal::open(&run).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(matches!(
            state_dir.latest_unfinished().unwrap().unwrap().status,
            RunStatus::Unfinished { in_doubt: 1 }
        ));

        drop(journal); // the process "dies": the OS releases the lock
        let Opened {
            mut journal,
            torn,
            skipped,
        } = Journal::open(&run).unwrap();
        assert_eq!((torn, skipped.len()), (None, 0));
        assert_ne!(journal.session(), first_session);
        let doubt = journal.state().in_doubt_steps();
        assert_eq!(doubt.len(), 1);
        assert_eq!(
            (doubt[0].step.as_str(), doubt[0].session.as_str()),
            ("reboot[n1]", first_session.as_str())
        );
        assert!(matches!(
            journal.state().step_state("drain[n1]"),
            StepState::Succeeded { .. }
        ));

        // Re-declaring the intent without settling the doubt is refused, and nothing is written.
        let len = std::fs::metadata(journal.path()).unwrap().len();
        let rec = intent(&journal, "reboot[n1]", 2);
        assert!(matches!(
            journal.append(rec.clone()),
            Err(Error::Replay { .. })
        ));
        assert_eq!(std::fs::metadata(journal.path()).unwrap().len(), len);

        journal
            .append(Record::InDoubt {
                step: "reboot[n1]".into(),
                attempt: 1,
                resolution: InDoubtResolution::Rerun,
            })
            .unwrap();
        journal.append(rec).unwrap();
        journal
            .append(Record::StepSucceeded {
                step: "reboot[n1]".into(),
                outputs: Fields::new(),
            })
            .unwrap();
        journal
            .append(Record::RunFinished {
                outcome: RunOutcome::Succeeded,
                summary: "2 steps".into(),
            })
            .unwrap();
        let live = journal.state().clone();
        drop(journal);

        // The live state and a fresh fold of the file agree.
        let snapshot = Journal::read(&run).unwrap();
        assert_eq!(snapshot.state, live);
        assert!(matches!(Journal::open(&run), Err(Error::Finished { .. })));
        assert_eq!(state_dir.latest_unfinished().unwrap(), None);
        assert_eq!(
            state_dir.list_runs().unwrap()[0].status,
            RunStatus::Finished(RunOutcome::Succeeded)
        );
    }

    #[test]
    fn open_truncates_a_torn_tail_and_continues_the_sequence() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, run) = new_run(tmp.path());
        let mut journal = Journal::create(&run, header(run.id())).unwrap();
        let rec = intent(&journal, "a", 1);
        journal.append(rec).unwrap();
        drop(journal);
        let path = run.journal_path();
        let mut bytes = std::fs::read(&path).unwrap();
        let committed = bytes.len() as u64;
        bytes.extend_from_slice(br#"{"seq":4,"at_ms":1,"rec":{"type":"action-compl"#);
        std::fs::write(&path, &bytes).unwrap();

        let ro = Journal::read(&run).unwrap();
        assert!(!ro.contents.torn.as_ref().unwrap().truncated);
        let opened = Journal::open(&run).unwrap();
        let torn = opened.torn.unwrap();
        assert_eq!(torn.offset, committed);
        assert_eq!(
            torn.to_string().split(" (").next().unwrap(),
            format!("truncated a torn record at byte {committed}")
        );
        assert_eq!(opened.journal.records().last().unwrap().seq, 4); // the new session-started
        drop(opened.journal);
        let snapshot = Journal::read(&run).unwrap();
        assert_eq!(snapshot.contents.entries.len(), 4);
        assert_eq!(snapshot.state.sessions.len(), 2);
    }

    #[test]
    fn empty_journal_and_wrong_header_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, run) = new_run(tmp.path());
        assert!(matches!(
            Journal::create(&run, header("someone-else")),
            Err(Error::RunIdMismatch { .. })
        ));
        std::fs::write(run.journal_path(), b"{\"seq\":1,\"at").unwrap();
        assert!(matches!(Journal::open(&run), Err(Error::NotStarted { .. })));
    }

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/journals/v1")
            .join(name)
    }

    /// Old journals must stay readable forever (pueue's rule): these files were written by
    /// format 1.0 and are never regenerated.
    #[test]
    fn v1_fixture_complete_run_is_readable() {
        let snapshot = Journal::read(&RunDir::at(fixture("complete"))).unwrap();
        assert_eq!(snapshot.contents.torn, None);
        let state = snapshot.state;
        let header = state.header.as_ref().unwrap();
        assert_eq!(
            (header.format_version, header.runbook.as_str()),
            (FormatVersion { major: 1, minor: 0 }, "reboot-verify")
        );
        assert_eq!(state.outcome(), Some(RunOutcome::Succeeded));
        assert!(matches!(
            state.step_state("reboot[192.168.2.20].wait"),
            StepState::Succeeded { .. }
        ));
        assert_eq!(state.step("reboot[192.168.2.20]").unwrap().attempts, 2);
        assert!(state.in_doubt_steps().is_empty());
    }

    #[test]
    fn v1_fixture_torn_tail_is_readable_and_resumable() {
        let snapshot = Journal::read(&RunDir::at(fixture("torn-tail"))).unwrap();
        let torn = snapshot.contents.torn.clone().unwrap();
        assert!(
            torn.to_string()
                .starts_with("ignored a torn record at byte")
        );
        let doubt = snapshot.state.in_doubt_steps();
        assert_eq!(doubt.len(), 1);
        assert_eq!(doubt[0].step, "reboot[192.168.2.20]");

        // Resume a copy (never modify the fixture).
        let tmp = tempfile::tempdir().unwrap();
        let copy = tmp.path().join("20261124T203401Z-3fa9c1");
        std::fs::create_dir(&copy).unwrap();
        std::fs::copy(
            fixture("torn-tail").join(file::FILE_NAME),
            copy.join(file::FILE_NAME),
        )
        .unwrap();
        let opened = Journal::open(&RunDir::at(&copy)).unwrap();
        assert_eq!(opened.torn.unwrap().offset, torn.offset);
        assert_eq!(opened.journal.state().in_doubt_steps().len(), 1);
    }

    /// Writes the v1 fixtures; run once with `RUNBOOK_WRITE_FIXTURES=1` when a new format
    /// version is introduced (into a new `v<N>` directory; never overwrite an old one).
    #[test]
    fn write_fixtures_on_request() {
        let Some(dir) = std::env::var_os("RUNBOOK_WRITE_FIXTURES") else {
            return;
        };
        let dir = PathBuf::from(dir);
        let wait = "reboot[192.168.2.20].wait";
        let reboot = "reboot[192.168.2.20]";
        for (name, torn) in [("complete", false), ("torn-tail", true)] {
            let run_dir = dir.join(name);
            std::fs::create_dir_all(&run_dir).unwrap();
            let run = RunDir::at(&run_dir);
            let mut h = header(run.id());
            h.run_id = name.to_owned();
            let mut journal = Journal::create(&run, h).unwrap();
            let s = journal.session().to_owned();
            let figures = json!({"members": 3, "healthy": 3})
                .as_object()
                .unwrap()
                .clone();
            let mut records = vec![
                Record::StepStarted {
                    step: reboot.into(),
                    attempt: 1,
                    session: s.clone(),
                    pre_state: json!({"boot_id": "b1"}).as_object().unwrap().clone(),
                },
                Record::GuardPassed {
                    step: reboot.into(),
                    guard: "etcd-quorum-survives".into(),
                    figures,
                },
                Record::ActionFailed {
                    step: reboot.into(),
                    attempt: 1,
                    error: "connection reset".into(),
                    retryable: true,
                },
                Record::RetryScheduled {
                    step: reboot.into(),
                    next_attempt: 2,
                    delay_ms: 2000,
                },
                Record::StepStarted {
                    step: reboot.into(),
                    attempt: 2,
                    session: s.clone(),
                    pre_state: json!({"boot_id": "b1"}).as_object().unwrap().clone(),
                },
            ];
            if !torn {
                records.extend([
                    Record::ActionCompleted {
                        step: reboot.into(),
                        attempt: 2,
                        outputs: Fields::new(),
                    },
                    Record::StepSucceeded {
                        step: reboot.into(),
                        outputs: Fields::new(),
                    },
                    Record::StepStarted {
                        step: wait.into(),
                        attempt: 1,
                        session: s.clone(),
                        pre_state: Fields::new(),
                    },
                    Record::WaitSatisfied {
                        step: wait.into(),
                        attempt: 1,
                        condition: "stage_is(running)".into(),
                        elapsed_ms: 93_412,
                        figures: json!({"stage": "running", "boot_id": "b2"})
                            .as_object()
                            .unwrap()
                            .clone(),
                    },
                    Record::StepSucceeded {
                        step: wait.into(),
                        outputs: json!({"boot_id": "b2"}).as_object().unwrap().clone(),
                    },
                    Record::RunFinished {
                        outcome: RunOutcome::Succeeded,
                        summary: "2 steps succeeded".into(),
                    },
                ]);
            }
            for r in records {
                journal.append(r).unwrap();
            }
            let path = journal.path().to_owned();
            drop(journal);
            std::fs::remove_file(run_dir.join(lock::FILE_NAME)).unwrap();
            if torn {
                let line = file::encode(
                    8,
                    1,
                    &Record::ActionCompleted {
                        step: reboot.into(),
                        attempt: 2,
                        outputs: Fields::new(),
                    },
                )
                .unwrap();
                let mut bytes = std::fs::read(&path).unwrap();
                bytes.extend_from_slice(&line[..line.len() / 2]);
                std::fs::write(&path, bytes).unwrap();
            }
        }
    }
}
