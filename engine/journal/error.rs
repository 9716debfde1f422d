//! `journal::Error`: every way reading, writing or locking a run can fail, with the place named.
//!
//! An operator who sees a journal error during a disaster recovery needs to know which file and
//! which line, and whether the run can be resumed. Every variant therefore carries the path and,
//! where there is one, the 1-based line and byte offset (`journal.jsonl:3 (byte 812)`). The
//! callers must stop on any of these: a journal that cannot be written is a run that must not
//! take its next side effect.

use std::io;
use std::path::PathBuf;

use super::record::FormatVersion;
use super::replay;

/// A journal, run-directory or lock failure. See the [module docs](self).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed.
    #[error("could not {op} `{path}`")]
    Io {
        /// What was being done, e.g. `append to`.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A committed line (not the last one) failed its checksum or does not parse.
    #[error("`{}:{line}` (byte {offset}): corrupt record: {reason}", path.display())]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// The byte offset of the line's start.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Sequence numbers are not contiguous: a record is missing or duplicated.
    #[error(
        "`{}:{line}` (byte {offset}): sequence gap: expected seq {expected}, found {found}",
        path.display()
    )]
    SequenceGap {
        /// The journal file.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// The byte offset of the line's start.
        offset: u64,
        /// The sequence number that should be there.
        expected: u64,
        /// The one that is.
        found: u64,
    },
    /// A record type this version does not know, not marked skippable.
    #[error(
        "`{}:{line}` (byte {offset}): unknown record type `{record_type}` (written by a newer runbook?)",
        path.display()
    )]
    UnknownRecordType {
        /// The journal file.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// The byte offset of the line's start.
        offset: u64,
        /// The unknown `type`.
        record_type: String,
    },
    /// The journal was written with a major format version this build cannot read.
    #[error("`{}`: journal format {found} is not supported (this build reads {supported}.x)", path.display())]
    UnsupportedVersion {
        /// The journal file.
        path: PathBuf,
        /// The version in `run-started`.
        found: FormatVersion,
        /// The major this build reads.
        supported: u32,
    },
    /// The journal has no committed record, so the run never started.
    #[error("`{}`: journal has no committed `run-started` record", path.display())]
    NotStarted {
        /// The journal file.
        path: PathBuf,
    },
    /// The records are well-formed but do not make a legal history.
    #[error("`{}`: illegal record", path.display())]
    Replay {
        /// The journal file.
        path: PathBuf,
        /// The illegal transition, naming the sequence number.
        #[source]
        source: replay::Error,
    },
    /// The run already finished: there is nothing to resume.
    #[error("`{}`: the run already finished ({outcome:?}); nothing to resume", path.display())]
    Finished {
        /// The journal file.
        path: PathBuf,
        /// How it finished.
        outcome: super::record::RunOutcome,
    },
    /// Another process holds the run lock.
    #[error("`{}` is locked by {holder}", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, e.g. `pid 4242 on host \`ops\` since 2026-…`.
        holder: String,
    },
    /// An earlier append failed; the journal's tail is unknown and nothing more may be written.
    #[error("`{}`: an earlier append failed; stop and run `runbook resume`", path.display())]
    Poisoned {
        /// The journal file.
        path: PathBuf,
    },
    /// A record could not be serialized.
    #[error("could not serialize a `{record_type}` record")]
    Serialize {
        /// The record's type.
        record_type: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// No state directory: neither an explicit one, `$XDG_STATE_HOME` nor `$HOME` is set.
    #[error("no state directory: set `XDG_STATE_HOME` or `HOME`, or pass a state dir")]
    NoStateDir,
    /// No run with this id exists.
    #[error("no run `{run_id}` in `{}`", runs.display())]
    RunNotFound {
        /// The run id asked for.
        run_id: String,
        /// The runs directory searched.
        runs: PathBuf,
    },
    /// The run header does not belong to this run directory.
    #[error("run header names run `{header}` but the run directory is `{dir}`")]
    RunIdMismatch {
        /// The run id in the header.
        header: String,
        /// The run directory's id.
        dir: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}
