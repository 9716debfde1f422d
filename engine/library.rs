//! Finding runbooks by name: the built-ins embedded in the binary, plus user directories.
//!
//! Built-ins live in `runbooks/` as data and are compiled into the binary with `include_str!`,
//! so `runbook plan reboot-verify` works from any directory with no install step. Users add
//! their own in `./runbooks/` or `$XDG_CONFIG_HOME/runbook/runbooks/`; a file there with the
//! same name takes precedence (the listing shows where each one comes from).

use std::path::{Path, PathBuf};

use crate::diagnostic::did_you_mean;
use crate::source::{Format, Source, SourceError};

/// The runbooks shipped in `runbooks/`, as (file name, text).
pub const BUILTINS: &[(&str, &str)] = &[
    (
        "reboot-verify.yaml",
        include_str!("../runbooks/reboot-verify.yaml"),
    ),
    (
        "node-replace.yaml",
        include_str!("../runbooks/node-replace.yaml"),
    ),
    (
        "etcd-quorum-recovery.rhai",
        include_str!("../runbooks/etcd-quorum-recovery.rhai"),
    ),
    (
        "full-rebuild.yaml",
        include_str!("../runbooks/full-rebuild.yaml"),
    ),
    (
        "etcd-backup.yaml",
        include_str!("../runbooks/etcd-backup.yaml"),
    ),
    (
        "gpu-enable.yaml",
        include_str!("../runbooks/gpu-enable.yaml"),
    ),
    (
        "etcd-restore-drill.yaml",
        include_str!("../runbooks/etcd-restore-drill.yaml"),
    ),
];

/// Where a runbook was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Embedded in the binary.
    Builtin,
    /// A file in a user directory (or given as a path).
    File(PathBuf),
}

/// A runbook that can be named.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The name (file stem).
    pub name: String,
    /// Where it comes from.
    pub origin: Origin,
    /// Its text.
    pub source: Source,
}

/// Looking a runbook up failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No runbook has that name.
    #[error("no runbook named `{name}`")]
    NotFound {
        /// What was asked for.
        name: String,
        /// "did you mean …" or a pointer to `runbook list`.
        help: String,
    },
    /// The file could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// The built-in runbooks as sources named `runbooks/<file>`.
pub fn builtins() -> Vec<Entry> {
    BUILTINS
        .iter()
        .filter_map(|(file, text)| {
            let format = Format::from_path(Path::new(file))?;
            Some(Entry {
                name: stem(file),
                origin: Origin::Builtin,
                source: Source::new(format!("runbooks/{file}"), format, *text),
            })
        })
        .collect()
}

fn stem(file: &str) -> String {
    Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(file)
        .to_string()
}

/// The user directories searched, in precedence order.
pub fn user_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("runbooks")];
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(c) = config {
        dirs.push(c.join("runbook").join("runbooks"));
    }
    dirs
}

/// Runbook files directly inside a directory, sorted by name.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && Format::from_path(p).is_some())
        .collect();
    files.sort();
    files
}

/// Every runbook that can be named: user files first (they shadow built-ins), then built-ins.
pub fn all() -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for dir in user_dirs() {
        for path in files_in(&dir) {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if out.iter().any(|e| e.name == name) {
                continue;
            }
            if let Ok(source) = Source::read(&path) {
                out.push(Entry {
                    name,
                    origin: Origin::File(path),
                    source,
                });
            }
        }
    }
    for b in builtins() {
        if !out.iter().any(|e| e.name == b.name) {
            out.push(b);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Finds a runbook by name, or reads it when given a path to a file.
pub fn find(name_or_path: &str) -> Result<Entry, Error> {
    let path = Path::new(name_or_path);
    if Format::from_path(path).is_some() || name_or_path.contains('/') {
        let source = Source::read(path)?;
        return Ok(Entry {
            name: stem(name_or_path),
            origin: Origin::File(path.to_path_buf()),
            source,
        });
    }
    let all = all();
    if let Some(e) = all.iter().find(|e| e.name == name_or_path) {
        return Ok(e.clone());
    }
    let help = did_you_mean(name_or_path, all.iter().map(|e| e.name.as_str()))
        .unwrap_or_else(|| "`runbook list` shows the runbooks available".into());
    Err(Error::NotFound {
        name: name_or_path.to_string(),
        help,
    })
}
