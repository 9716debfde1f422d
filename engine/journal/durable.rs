//! Filesystem steps that survive power loss and keep key material private: directory fsync,
//! owner-only creation and atomic file replacement.
//!
//! `rename` and file creation are directory operations: until the directory itself is
//! fsynced, a crash can forget that the file exists even though its data was synced. pueue's
//! state file skips this (see the architecture notes, §6); a journal that decides whether to
//! reboot a node again cannot. Run directories, journals, kubeconfigs and etcd snapshots hold
//! cluster keys, so everything made here is owner-only (directories 0700, files 0600), and temp
//! files are opened with `create_new` (`O_CREAT|O_EXCL`, which never follows a symlink), so a
//! link planted where the temp file goes cannot redirect the write. These helpers are the only
//! way the journal module and the snapshot/kubeconfig actions create or replace files.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;

use super::error::{Error, Result};

/// Mode of every file created here.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory created here.
pub const DIR_MODE: u32 = 0o700;

/// Makes `opts` create files owner-only (0600).
pub fn private(opts: &mut OpenOptions) -> &mut OpenOptions {
    opts.mode(FILE_MODE)
}

/// Fsyncs a directory, making entries created or renamed in it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync directory", dir))
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Creates the directory `path` (which must not exist) owner-only and makes its entry durable.
pub fn create_private_dir(path: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(DIR_MODE)
        .create(path)
        .map_err(Error::io("create directory", path))?;
    sync_dir(parent_of(path))
}

/// Creates `path` and any missing parents owner-only, fsyncing the parent of each directory it
/// creates. Directories that already exist are left as they are.
pub fn create_private_dir_all(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() || path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        create_private_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => sync_dir(parent_of(path)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(Error::io("create directory", path)(e)),
    }
}

/// Replaces `path` with `contents` atomically and durably, owner-only.
///
/// Writes `<path>.partial` (created with `create_new`, mode 0600; a stale one left by a crash,
/// or a planted symlink, is unlinked first, never followed), fsyncs it, renames it over `path`
/// (a symlink at `path` is replaced, not followed), then fsyncs the directory. A crash at any
/// point leaves either the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = Path::new(&partial);
    let open = || private(OpenOptions::new().write(true).create_new(true)).open(partial);
    let mut file = match open() {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Left by a crash, or planted: remove the entry itself (a symlink is unlinked, its
            // target untouched) and create afresh. If it reappears, refuse.
            std::fs::remove_file(partial).map_err(Error::io("remove stale", partial))?;
            open().map_err(Error::io("create", partial))?
        }
        Err(e) => return Err(Error::io("create", partial)(e)),
    };
    file.write_all(contents)
        .map_err(Error::io("write", partial))?;
    file.sync_all().map_err(Error::io("fsync", partial))?;
    drop(file);
    std::fs::rename(partial, path).map_err(Error::io("rename into place", path))?;
    sync_dir(parent_of(path))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_partial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("params.json");
        write_atomic(&path, b"{\"a\":1}").unwrap();
        write_atomic(&path, b"{\"a\":2}").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":2}");
        assert!(!dir.path().join("params.json.partial").exists());
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn write_atomic_does_not_follow_a_planted_partial_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("admin.kubeconfig");
        std::os::unix::fs::symlink(&victim, dir.path().join("admin.kubeconfig.partial")).unwrap();
        write_atomic(&path, b"key material").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&path).unwrap(), b"key material");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn write_atomic_replaces_a_planted_symlink_at_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("snap.db");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_atomic(&path, b"snapshot").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn private_directories_are_owner_only_and_existing_ones_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/c");
        create_private_dir_all(&nested).unwrap();
        for p in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&dir.path().join(p)), 0o700, "{p}");
        }
        create_private_dir_all(&nested).unwrap();
        let single = dir.path().join("one");
        create_private_dir(&single).unwrap();
        assert_eq!(mode(&single), 0o700);
        assert!(create_private_dir(&single).is_err());
    }
}
