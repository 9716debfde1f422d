//! Filesystem steps that survive power loss: directory fsync and atomic file replacement.
//!
//! `rename` and file creation are directory operations: until the directory itself is
//! fsynced, a crash can forget that the file exists even though its data was synced. pueue's
//! state file skips this (see the architecture notes, §6); a journal that decides whether to
//! reboot a node again cannot. These two helpers are the only way the journal module creates
//! or replaces files.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::error::{Error, Result};

/// Fsyncs a directory, making entries created or renamed in it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync directory", dir))
}

/// Replaces `path` with `contents` atomically and durably.
///
/// Writes `<path>.partial`, fsyncs it, renames it over `path`, then fsyncs the directory. A
/// crash at any point leaves either the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = Path::new(&partial);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(partial)
        .map_err(Error::io("create", partial))?;
    file.write_all(contents)
        .map_err(Error::io("write", partial))?;
    file.sync_all().map_err(Error::io("fsync", partial))?;
    drop(file);
    std::fs::rename(partial, path).map_err(Error::io("rename into place", path))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_partial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("params.json");
        write_atomic(&path, b"{\"a\":1}").unwrap();
        write_atomic(&path, b"{\"a\":2}").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":2}");
        assert!(!dir.path().join("params.json.partial").exists());
    }
}
