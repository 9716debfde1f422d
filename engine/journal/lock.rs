//! The run lock: at most one process drives a run at a time.
//!
//! Two processes appending to one journal would interleave intents and repeat side effects, the
//! exact failure the journal exists to prevent. The driving process therefore holds an
//! exclusive OS lock (`flock`, via [`File::try_lock`]) on `<run dir>/lock` for its whole life.
//! The OS releases it when the process dies, however it dies (SIGKILL, OOM, power loss), so
//! there is no stale-lock cleanup and no pid-liveness guessing. The holder writes its pid, host
//! and start time into the file, only so that a refused process can tell the operator *who*
//! holds the run; the file's content never decides anything.
//!
//! Locks are per open file description: a second `RunLock::acquire` in the same process is
//! refused too, which is what the tests rely on. `flock` is only reliable on local file
//! systems; run directories on NFS are not supported.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::{identity, time};

/// The lock file's name inside a run directory.
pub const FILE_NAME: &str = "lock";

/// Who holds a run lock, as written in the lock file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockHolder {
    /// The holder's process id.
    pub pid: u32,
    /// The holder's host name.
    pub host: String,
    /// When the holder took the lock, RFC 3339 UTC.
    pub since: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on host `{}` since {}",
            self.pid, self.host, self.since
        )
    }
}

/// An exclusive lock on a run directory, released on drop or when the process dies.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    holder: LockHolder,
    // Keeps the flock alive; dropping the file releases it.
    _file: File,
}

impl RunLock {
    /// Takes the lock of the run directory `run_dir`, without waiting.
    ///
    /// Fails with [`Error::Locked`] naming the holder (pid, host, start time) if another
    /// process, or another handle in this one, holds it.
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(FILE_NAME);
        let mut file = super::durable::private(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
        )
        .open(&path)
        .map_err(Error::io("open lock file", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let holder = match file.read_to_string(&mut text) {
                    Ok(_) => match serde_json::from_str::<LockHolder>(&text) {
                        Ok(h) => h.to_string(),
                        Err(_) => "another process (it has not written its pid yet)".to_owned(),
                    },
                    Err(e) => format!("another process (lock file unreadable: {e})"),
                };
                return Err(Error::Locked { path, holder });
            }
            Err(TryLockError::Error(source)) => {
                return Err(Error::Io {
                    op: "lock",
                    path,
                    source,
                });
            }
        }
        let holder = LockHolder {
            pid: identity::pid(),
            host: identity::host_name(),
            since: time::now_rfc3339(),
        };
        let text = serde_json::to_string(&holder)
            .map_err(|e| Error::io("write lock file", &path)(std::io::Error::other(e)))?;
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(text.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(Error::io("write lock file", &path))?;
        Ok(Self {
            path,
            holder,
            _file: file,
        })
    }

    /// This process's entry in the lock file.
    pub fn holder(&self) -> &LockHolder {
        &self.holder
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_naming_the_holder_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        assert_eq!(first.holder().pid, std::process::id());
        let err = RunLock::acquire(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Locked { .. }));
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains(&first.holder().host), "{msg}");
        assert!(msg.contains(&first.holder().since), "{msg}");
    }

    #[test]
    fn lock_of_a_dropped_handle_can_be_retaken() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        drop(first);
        let second = RunLock::acquire(dir.path()).unwrap();
        assert!(RunLock::acquire(dir.path()).is_err());
        drop(second);
        RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn lock_released_when_holder_process_dies() {
        // A child process takes the lock through `flock(1)` (util-linux) if available; the
        // test passes vacuously without it. `-o` keeps the lock in `flock` itself, not `sleep`.
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(FILE_NAME);
        let Ok(mut child) = std::process::Command::new("flock")
            .arg("-o")
            .arg(&lock)
            .args(["sleep", "20"])
            .spawn()
        else {
            return;
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while RunLock::acquire(dir.path()).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "child never took the lock"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // The holder was SIGKILLed: the OS released its lock without any cleanup.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while RunLock::acquire(dir.path()).is_err() {
            assert!(std::time::Instant::now() < deadline, "lock not released");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
