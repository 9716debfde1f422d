//! Who is writing: host name, process id, and fresh identifiers for runs and sessions.
//!
//! A run directory may be reached from two laptops over a shared disk, or by a process that an
//! operator forgot in another terminal. Every record that says "this process acts now" (the
//! lock file, `run-started`, `session-started`) therefore carries the pid and host, and every
//! process that drives a run gets its own session id: the fencing token stamped on each
//! `step-started`, so an intent can always be traced to the process that declared it.
//!
//! Identifiers need uniqueness, not cryptographic strength: they hash the clock, the pid, a
//! process-wide counter and a stack address with SHA-256, which avoids a `rand` dependency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::time;

/// The host name of this machine, or `unknown` if it cannot be read.
///
/// Read from `/proc/sys/kernel/hostname`, then `/etc/hostname`, then `$HOSTNAME`.
pub fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The id of this process.
pub fn pid() -> u32 {
    std::process::id()
}

/// `len` lowercase hex characters (at most 64) that differ between calls and processes.
pub fn random_hex(len: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let local = 0_u8;
    let mut hasher = Sha256::new();
    hasher.update(nanos.to_le_bytes());
    hasher.update(pid().to_le_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hasher.update((&raw const local as usize).to_le_bytes());
    let mut hex = hex::encode(hasher.finalize());
    hex.truncate(len);
    hex
}

/// A new run id, sortable by creation time: `20261124T203401Z-3fa9c1` (UTC, then 6 hex).
pub fn new_run_id() -> String {
    format!("{}-{}", time::compact(time::now_ms()), random_hex(6))
}

/// A new session (fencing) id for one process driving a run: `s-` and 12 hex characters.
pub fn new_session_id() -> String {
    format!("s-{}", random_hex(12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_documented_shape_and_differ() {
        let a = new_run_id();
        let b = new_run_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), "20261124T203401Z-3fa9c1".len());
        assert!(a.as_bytes()[8] == b'T' && a.as_bytes()[15] == b'Z');
        assert_ne!(new_session_id(), new_session_id());
        assert!(!host_name().is_empty());
    }
}
