//! Where an embedded simulator (`run --sim`) starts before its run directory exists, and the
//! cleanup of what a killed process left there.
//!
//! The simulator starts in `<state>/sim-staging/<pid>-<nanos>/` and is moved into the run
//! directory once that exists (`cli::reach`). A process killed in between leaves its staging
//! directory behind. So each staging directory has a lock file beside it,
//! `<pid>-<nanos>.lock`, on which the starting process holds an exclusive `flock` for its
//! whole life (the OS releases it however the process dies, as for the run lock in
//! `journal::lock`). Every `--sim` start first sweeps the staging root: a directory whose lock
//! it can take is stale and is removed; one whose lock is held is live and is never touched,
//! however old. A directory without a lock file (left by an older binary, or a sweeper racing
//! a start between the lock and the directory) is removed only when its pid is not alive and
//! it is older than [`UNLOCKED_BOUND`]: never a live one.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::cli::Error;

/// How old an unlocked staging directory without a lock file must be, with its pid gone,
/// before a sweep removes it. A staging directory lives only between the simulator's start
/// and the run directory's creation (seconds), so an hour is far past any live one.
pub const UNLOCKED_BOUND: Duration = Duration::from_secs(3600);

/// One process's staging directory, with its lock held until drop.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    lock_path: PathBuf,
    // Holds the flock; dropping it releases the lock.
    lock: Option<File>,
}

impl Staging {
    /// Sweeps `root` of stale staging directories, then takes the lock of a new one (the
    /// directory itself is created by the simulator).
    pub fn create(root: &Path) -> Result<Staging, Error> {
        let _ = sweep(root);
        crate::journal::durable::create_private_dir_all(root).map_err(|e| {
            Error::Usage(format!(
                "cannot create the simulator's staging directory `{}`: {e}",
                root.display()
            ))
        })?;
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("{}-{nanos:09}", std::process::id());
        let lock_path = root.join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock_path)
            .map_err(|e| {
                Error::Usage(format!(
                    "cannot create the staging lock `{}`: {e}",
                    lock_path.display()
                ))
            })?;
        file.try_lock().map_err(|e| {
            Error::Usage(format!(
                "cannot lock the staging lock `{}`: {e}",
                lock_path.display()
            ))
        })?;
        Ok(Staging {
            dir: root.join(name),
            lock_path,
            lock: Some(file),
        })
    }

    /// The staging directory (not yet created).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Staging {
    /// Removes the lock file (the directory was adopted into the run or removed by then),
    /// then the staging root if nothing else is in it.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock_path);
        drop(self.lock.take());
        if let Some(root) = self.lock_path.parent() {
            let _ = std::fs::remove_dir(root);
        }
    }
}

/// Removes the stale staging directories (and lock files) under `root`; returns the names
/// removed. Never removes one whose lock is held.
pub fn sweep(root: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return removed;
    };
    let mut names: Vec<(String, bool)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let is_dir = e.file_type().ok()?.is_dir();
            Some((e.file_name().into_string().ok()?, is_dir))
        })
        .collect();
    names.sort();
    for (name, is_dir) in &names {
        let path = root.join(name);
        if *is_dir {
            let lock_path = root.join(format!("{name}.lock"));
            let stale = match File::open(&lock_path) {
                Ok(f) => match f.try_lock() {
                    // Taken: its owner is gone. Remove while holding it, so a second sweeper
                    // cannot see it as anything but gone.
                    Ok(()) => {
                        let gone = std::fs::remove_dir_all(&path).is_ok();
                        if gone {
                            let _ = std::fs::remove_file(&lock_path);
                        }
                        if gone {
                            removed.push(name.clone());
                        }
                        continue;
                    }
                    Err(TryLockError::WouldBlock) => false,
                    Err(TryLockError::Error(_)) => false,
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => unlocked_stale(&path, name),
                Err(_) => false,
            };
            if stale && std::fs::remove_dir_all(&path).is_ok() {
                removed.push(name.clone());
            }
        } else if let Some(stem) = name.strip_suffix(".lock") {
            // A lock file without its directory: the owner died before the simulator created
            // it, or after the directory moved. Removed only if its lock can be taken.
            if names.iter().any(|(n, d)| *d && n == stem) {
                continue;
            }
            if let Ok(f) = File::open(&path)
                && f.try_lock().is_ok()
                && std::fs::remove_file(&path).is_ok()
            {
                removed.push(name.clone());
            }
        }
    }
    removed
}

/// A staging directory without a lock file is stale when the pid its name starts with is not
/// alive and it is older than [`UNLOCKED_BOUND`]. An unreadable name or age keeps it.
fn unlocked_stale(path: &Path, name: &str) -> bool {
    let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    if pid_alive(pid) {
        return false;
    }
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    age.is_some_and(|a| a >= UNLOCKED_BOUND)
}

/// Whether a process with this pid exists (Linux `/proc`; elsewhere, assume it does).
fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_removes_dead_staging_and_keeps_live_and_young_unlocked_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("sim-staging");
        std::fs::create_dir_all(&root).unwrap();
        // Live: another holder of the lock (a second open file description), however old.
        let live = Staging::create(&root).unwrap();
        std::fs::create_dir(live.dir()).unwrap();
        // Dead: a lock file nobody holds (its process was killed).
        std::fs::create_dir(root.join("4194400-000000001")).unwrap();
        std::fs::write(root.join("4194400-000000001/calls.jsonl"), "x").unwrap();
        File::create(root.join("4194400-000000001.lock")).unwrap();
        // Unlocked, pid gone, but young: kept (it may be a start between lock and dir).
        std::fs::create_dir(root.join("4194401-000000002")).unwrap();
        // Unlocked, pid alive (this process): kept whatever its age.
        let mine = format!("{}-000000003", std::process::id());
        std::fs::create_dir(root.join(&mine)).unwrap();
        // An orphan lock nobody holds.
        File::create(root.join("4194402-000000004.lock")).unwrap();

        let removed = sweep(&root);
        assert_eq!(
            removed,
            ["4194400-000000001", "4194402-000000004.lock"],
            "{removed:?}"
        );
        assert!(live.dir().is_dir(), "a live staging directory was removed");
        assert!(root.join("4194401-000000002").is_dir());
        assert!(root.join(&mine).is_dir());
        assert!(!root.join("4194400-000000001.lock").exists());
        // A second sweep removes nothing more.
        assert!(sweep(&root).is_empty());
        // Once the live one is gone (adopted, then dropped), its lock file goes with it.
        std::fs::remove_dir(live.dir()).unwrap();
        let lock = live.lock_path.clone();
        drop(live);
        assert!(!lock.exists());
    }

    #[test]
    fn a_dead_unlocked_directory_past_the_bound_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let dir = root.join("4194403-000000005");
        std::fs::create_dir(&dir).unwrap();
        let old = SystemTime::now() - UNLOCKED_BOUND - Duration::from_secs(60);
        File::open(&dir).unwrap().set_modified(old).unwrap();
        assert_eq!(sweep(root), ["4194403-000000005"]);
        assert!(!dir.exists());
    }
}
