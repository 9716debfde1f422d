//! etcd snapshot sidecars: what a snapshot file is, written beside it, and how to trust it.
//!
//! `etcd.snapshot` stores `<name>.db` (`<name>.db.age` when encrypted) and, beside it,
//! `<name>.db.json` ([`Sidecar`]): the node it came from, the member's raft index, the file's
//! sha256 and size as stored, the Talos version, the cluster id, the time it was taken,
//! whether it is encrypted, and the latest restore drill's result. Both are written durably
//! (temp file in the same directory, fsync, placed, fsync the directory), the snapshot first,
//! so a sidecar never describes a file that is not there.
//! `backup.fresh` trusts a snapshot only through its sidecar: the file's hash and size must
//! match, and its age comes from `taken_at`, never from the file's mtime (a copy or a restore
//! from tape changes mtime). [`stream`] writes a snapshot as it streams (age-encrypted when
//! a recipient is given), [`prune`] applies `keep: N` retention and [`drill`] restores a
//! snapshot into a throwaway simulated cluster and records the result in the sidecar; all
//! three go through [`Sidecar`], [`verify`] and [`newest_verified`]. Design:
//! `docs/design/backup.md`.

pub mod actions;
pub mod drill;
pub mod prune;
pub mod stream;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::condition::view::Verdict;

/// The metadata stored beside a snapshot as `<snapshot>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    /// The node the snapshot was streamed from.
    pub node: String,
    /// The member's raft index when the snapshot was taken (`EtcdStatus.raft_index`; Talos'
    /// API does not expose the MVCC revision). `null` when the role may not read the status.
    #[serde(default)]
    pub revision: Option<u64>,
    /// sha256 of the file as stored (hex).
    pub sha256: String,
    /// Size of the file as stored, in bytes.
    pub size: u64,
    /// The node's Talos version (`Version` call); `null` when it could not be read.
    #[serde(default)]
    pub talos_version: Option<String>,
    /// The Talos cluster id (COSI `Infos.cluster.talos.dev` `current`, `clusterId`); `null`
    /// when it could not be read. Retention only ever prunes snapshots of the same id.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// When it was taken, RFC 3339 UTC.
    pub taken_at: String,
    /// Whether the file is age-encrypted (then `sha256` and `size` are of the ciphertext).
    pub encrypted: bool,
    /// The result of the latest restore drill, once one ran (absent before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<Drill>,
}

/// A restore drill's result, recorded in the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drill {
    /// Whether the restored member served the snapshot's data.
    pub ok: bool,
    /// When the drill ended, RFC 3339 UTC.
    pub at: String,
    /// What was checked, or why it failed.
    pub detail: String,
}

/// What is wrong with a snapshot or its sidecar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    /// No sidecar beside the snapshot.
    #[error("{snapshot}: sidecar {sidecar} is missing")]
    SidecarMissing {
        /// The snapshot.
        snapshot: String,
        /// The expected sidecar.
        sidecar: String,
    },
    /// The sidecar cannot be read or parsed.
    #[error("{snapshot}: sidecar is corrupt: {reason}")]
    SidecarCorrupt {
        /// The snapshot.
        snapshot: String,
        /// Why.
        reason: String,
    },
    /// The snapshot file cannot be read.
    #[error("{snapshot}: cannot read the snapshot: {reason}")]
    Unreadable {
        /// The snapshot.
        snapshot: String,
        /// Why.
        reason: String,
    },
    /// Its size differs from the sidecar's.
    #[error("{snapshot}: size {actual} does not match the sidecar's {expected}")]
    SizeMismatch {
        /// The snapshot.
        snapshot: String,
        /// From the sidecar.
        expected: u64,
        /// On disk.
        actual: u64,
    },
    /// Its sha256 differs from the sidecar's.
    #[error("{snapshot}: sha256 {actual} does not match the sidecar's {expected}")]
    HashMismatch {
        /// The snapshot.
        snapshot: String,
        /// From the sidecar.
        expected: String,
        /// Of the file.
        actual: String,
    },
}

/// The sidecar path of a snapshot: `<snapshot>.json`.
pub fn sidecar_path(snapshot: &Path) -> PathBuf {
    let mut p = snapshot.as_os_str().to_owned();
    p.push(".json");
    PathBuf::from(p)
}

/// Builds the sidecar of `bytes` (the file as it will be stored).
pub fn describe(
    node: &str,
    bytes: &[u8],
    revision: Option<u64>,
    talos_version: Option<String>,
    taken_at_ms: u64,
) -> Sidecar {
    Sidecar {
        node: node.to_string(),
        revision,
        sha256: hex::encode(Sha256::digest(bytes)),
        size: bytes.len() as u64,
        talos_version,
        cluster_id: None,
        taken_at: crate::journal::time::rfc3339(taken_at_ms),
        encrypted: false,
        drill: None,
    }
}

/// Stores a snapshot and then its sidecar, each durably.
pub fn store(snapshot: &Path, bytes: &[u8], sidecar: &Sidecar) -> crate::journal::Result<()> {
    crate::journal::durable::write_atomic(snapshot, bytes)?;
    write_sidecar(snapshot, sidecar)
}

/// Writes (or replaces) the sidecar of `snapshot` durably.
pub fn write_sidecar(snapshot: &Path, sidecar: &Sidecar) -> crate::journal::Result<()> {
    let side = sidecar_path(snapshot);
    let mut json = serde_json::to_vec_pretty(sidecar).map_err(|e| crate::journal::Error::Io {
        op: "serialize the sidecar for",
        path: side.clone(),
        source: std::io::Error::other(e),
    })?;
    json.push(b'\n');
    crate::journal::durable::write_atomic(&side, &json)
}

/// Reads and parses the sidecar of a snapshot, without checking the file.
pub fn load(snapshot: &Path) -> Result<Sidecar, BackupError> {
    let name = snapshot.display().to_string();
    let side = sidecar_path(snapshot);
    let text = match read_sidecar(&side) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::SidecarMissing {
                snapshot: name,
                sidecar: side.display().to_string(),
            });
        }
        Err(e) => {
            return Err(BackupError::SidecarCorrupt {
                snapshot: name,
                reason: e.to_string(),
            });
        }
    };
    let sidecar: Sidecar =
        serde_json::from_slice(&text).map_err(|e| BackupError::SidecarCorrupt {
            snapshot: name.clone(),
            reason: e.to_string(),
        })?;
    if parse_rfc3339_ms(&sidecar.taken_at).is_none() {
        return Err(BackupError::SidecarCorrupt {
            snapshot: name,
            reason: format!("taken_at `{}` is not RFC 3339 UTC", sidecar.taken_at),
        });
    }
    Ok(sidecar)
}

/// Reads and checks a snapshot against its sidecar.
pub fn verify(snapshot: &Path) -> Result<Sidecar, BackupError> {
    let name = snapshot.display().to_string();
    let sidecar = load(snapshot)?;
    let unreadable = |e: std::io::Error| BackupError::Unreadable {
        snapshot: name.clone(),
        reason: e.to_string(),
    };
    // A symlink, FIFO or device (an endless `/dev/zero`) is never hashed.
    let meta = std::fs::symlink_metadata(snapshot).map_err(unreadable)?;
    if !meta.file_type().is_file() {
        return Err(unreadable(std::io::Error::other("not a regular file")));
    }
    let (size, digest) = hash_file(snapshot).map_err(unreadable)?;
    if size != sidecar.size {
        return Err(BackupError::SizeMismatch {
            snapshot: name,
            expected: sidecar.size,
            actual: size,
        });
    }
    let actual = digest;
    if !actual.eq_ignore_ascii_case(&sidecar.sha256) {
        return Err(BackupError::HashMismatch {
            snapshot: name,
            expected: sidecar.sha256,
            actual,
        });
    }
    Ok(sidecar)
}

/// Largest sidecar read: it is a few hundred bytes; anything bigger is not ours.
const SIDECAR_MAX: u64 = 64 * 1024;

/// Reads a sidecar that is a regular file (not a symlink, FIFO or device) of bounded size.
fn read_sidecar(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > SIDECAR_MAX {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than a sidecar can be",
            meta.len()
        )));
    }
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(SIDECAR_MAX + 1)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// Size and sha256 (hex) of a file, streamed (snapshots can be gigabytes).
fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// The snapshots of a directory: regular files that are neither sidecars nor partial writes.
pub(crate) fn candidates(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".json") || name.ends_with(".partial") || name.starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// A verified snapshot: its path, sidecar and `taken_at` in unix milliseconds.
pub type Verified = (PathBuf, Sidecar, u64);

/// Every snapshot of `dir` that verifies, oldest first (by `taken_at`, then name), and the
/// problems of every one that does not.
pub fn verify_all(dir: &Path) -> std::io::Result<(Vec<Verified>, Vec<BackupError>)> {
    let mut good = Vec::new();
    let mut problems = Vec::new();
    for path in candidates(dir)? {
        match verify(&path) {
            Ok(s) => {
                let at = parse_rfc3339_ms(&s.taken_at).unwrap_or(0);
                good.push((path, s, at));
            }
            Err(e) => problems.push(e),
        }
    }
    good.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.cmp(&b.0)));
    Ok((good, problems))
}

/// The newest snapshot in `dir` whose sidecar verifies (by `taken_at`), with the problems of
/// every snapshot that did not verify.
pub fn newest_verified(dir: &Path) -> std::io::Result<(Option<Verified>, Vec<BackupError>)> {
    let (mut good, problems) = verify_all(dir)?;
    Ok((good.pop(), problems))
}

/// `backup.fresh(dir, max_age)`: the newest verified snapshot in `dir` was taken less than
/// `max_age` before `now`. Needs no cluster.
pub fn fresh(dir: &Path, max_age: Duration, now: SystemTime) -> Verdict {
    fresh_with(dir, max_age, false, now)
}

/// `backup.fresh(dir, max_age, drilled)`: as [`fresh`]; with `drilled`, only snapshots whose
/// sidecar records a passed restore drill count (a failed drill is reported, never counted).
pub fn fresh_with(dir: &Path, max_age: Duration, drilled: bool, now: SystemTime) -> Verdict {
    let shown = dir.display().to_string();
    let (good, problems) = match verify_all(dir) {
        Ok(r) => r,
        Err(e) => {
            return Verdict::fail(format!("cannot read the backup directory {shown}: {e}"));
        }
    };
    let mut problem_texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let any_verified = !good.is_empty();
    let mut best = None;
    for (path, sidecar, at) in good {
        if drilled && !sidecar.drill.as_ref().is_some_and(|d| d.ok) {
            problem_texts.push(match &sidecar.drill {
                None => format!("{}: no restore drill recorded", path.display()),
                Some(d) => format!("{}: its restore drill failed: {}", path.display(), d.detail),
            });
            continue;
        }
        best = Some((path, sidecar, at));
    }
    let Some((path, sidecar, at)) = best else {
        let v = if problems.is_empty() && !any_verified {
            Verdict::fail(format!("no snapshot in {shown}"))
        } else if drilled && any_verified {
            Verdict::fail(format!(
                "no verified snapshot with a passed restore drill in {shown}: {}",
                problem_texts.join("; ")
            ))
        } else {
            Verdict::fail(format!(
                "no verified snapshot in {shown}: {}",
                problem_texts.join("; ")
            ))
        };
        return v.with("problems", problem_texts);
    };
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let file = path.display().to_string();
    if at > now_ms.saturating_add(60_000) {
        return Verdict::fail(format!(
            "{file} claims to be taken at {} in the future: the clock or the sidecar is wrong",
            sidecar.taken_at
        ))
        .with("snapshot", file);
    }
    let age = Duration::from_millis(now_ms.saturating_sub(at));
    let kind = if drilled {
        "verifies, passed its restore drill,"
    } else {
        "verifies"
    };
    let v = if age < max_age {
        Verdict::pass(format!(
            "{file} (from {}, taken {}) {kind} and is {} old (max {})",
            sidecar.node,
            sidecar.taken_at,
            human(age),
            human(max_age)
        ))
    } else {
        Verdict::fail(format!(
            "the newest verified snapshot {file} is too old: taken {} ago (max {})",
            human(age),
            human(max_age)
        ))
    };
    v.with("snapshot", file)
        .with("sha256", sidecar.sha256)
        .with("taken_at", sidecar.taken_at)
        .with("age_s", age.as_secs())
        .with("encrypted", sidecar.encrypted)
        .with("drilled", sidecar.drill.is_some_and(|d| d.ok))
        .with("unverified", problem_texts)
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Parses RFC 3339 UTC (`2026-11-24T20:34:01Z`, optional fraction) to unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' || !matches!(b[b.len() - 1], b'Z' | b'z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let frac = &s[19..s.len() - 1];
    let ms = if frac.is_empty() {
        0
    } else {
        let digits = frac.strip_prefix('.')?;
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let mut padded: String = digits.chars().take(3).collect();
        while padded.len() < 3 {
            padded.push('0');
        }
        padded.parse::<u64>().ok()?
    };
    let days = days_from_civil(y, mo, d)?;
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + ms)
}

/// Days since 1970-01-01 (Hinnant's `days_from_civil`), for dates from 1970 on.
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(3600);

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    const T0: u64 = 1_795_552_441_000; // 2026-11-24T20:34:01Z

    fn snap(dir: &Path, name: &str, bytes: &[u8], taken_ms: u64) -> PathBuf {
        let p = dir.join(name);
        store(
            &p,
            bytes,
            &describe(
                "192.168.2.20",
                bytes,
                Some(7),
                Some("v1.11.5".into()),
                taken_ms,
            ),
        )
        .unwrap();
        p
    }

    #[test]
    fn rfc3339_round_trips_with_the_journal_formatter() {
        for ms in [0, 951_827_696_789, T0, 4_102_444_799_999] {
            assert_eq!(
                parse_rfc3339_ms(&crate::journal::time::rfc3339(ms)),
                Some(ms)
            );
        }
        assert_eq!(parse_rfc3339_ms("2026-11-24T20:34:01Z"), Some(T0));
        for bad in [
            "",
            "2026-11-24 20:34:01Z",
            "2026-11-24T20:34:01+01:00",
            "2026-13-24T20:34:01Z",
            "2026-11-24T20:34:01.Z",
            "yesterday",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_verified_young_snapshot_is_fresh_and_the_sidecar_has_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = snap(dir.path(), "a.db", b"etcd data", T0);
        let v = fresh(dir.path(), 24 * H, at(T0 + 3_600_000));
        assert!(v.holds, "{}", v.reason);
        assert_eq!(v.figures["age_s"], 3600);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(sidecar_path(&p)).unwrap()).unwrap();
        for key in [
            "node",
            "revision",
            "sha256",
            "size",
            "talos_version",
            "cluster_id",
            "taken_at",
            "encrypted",
        ] {
            assert!(json.get(key).is_some(), "{key} missing: {json}");
        }
        assert_eq!(json["taken_at"], "2026-11-24T20:34:01.000Z");
        assert_eq!(json["encrypted"], false);
        assert_eq!(json["size"], 9);
        assert!(!dir.path().join("a.db.json.partial").exists());
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let now = at(T0 + 1000);
        let v = fresh(dir.path(), 24 * H, now);
        assert!(!v.holds);
        assert!(v.reason.starts_with("no snapshot in"), "{}", v.reason);

        std::fs::write(dir.path().join("bare.db"), b"x").unwrap();
        let v = fresh(dir.path(), 24 * H, now);
        assert!(!v.holds);
        assert!(v.reason.contains("sidecar"), "{}", v.reason);
        assert!(v.reason.contains("is missing"), "{}", v.reason);

        std::fs::write(dir.path().join("bare.db.json"), b"{not json").unwrap();
        let v = fresh(dir.path(), 24 * H, now);
        assert!(v.reason.contains("sidecar is corrupt"), "{}", v.reason);

        let p = snap(dir.path(), "tampered.db", b"good data", T0);
        std::fs::write(&p, b"evil data").unwrap();
        let v = fresh(dir.path(), 24 * H, now);
        assert!(!v.holds);
        assert!(v.reason.contains("sha256"), "{}", v.reason);
        std::fs::write(&p, b"evil data, longer").unwrap();
        let v = fresh(dir.path(), 24 * H, now);
        assert!(v.reason.contains("size 17 does not match"), "{}", v.reason);
    }

    #[test]
    fn too_old_says_its_age_and_a_newer_corrupt_file_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        snap(dir.path(), "old.db", b"old", T0);
        let v = fresh(dir.path(), 24 * H, at(T0 + 30 * 3_600_000));
        assert!(!v.holds);
        assert!(v.reason.contains("too old"), "{}", v.reason);
        assert!(v.reason.contains("30h00m"), "{}", v.reason);
        // A newer snapshot whose bytes were truncated does not make the directory fresh.
        let newer = snap(dir.path(), "new.db", b"newer data", T0 + 29 * 3_600_000);
        std::fs::write(&newer, b"newer").unwrap();
        let v = fresh(dir.path(), 24 * H, at(T0 + 30 * 3_600_000));
        assert!(!v.holds, "{}", v.reason);
        assert!(v.reason.contains("old.db"), "{}", v.reason);
        assert_eq!(v.figures["unverified"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_sidecar_from_the_future_or_with_extra_fields_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        snap(dir.path(), "future.db", b"x", T0 + 48 * 3_600_000);
        let v = fresh(dir.path(), 24 * H, at(T0));
        assert!(!v.holds);
        assert!(v.reason.contains("future"), "{}", v.reason);

        let dir = tempfile::tempdir().unwrap();
        let p = snap(dir.path(), "x.db", b"x", T0);
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(sidecar_path(&p)).unwrap()).unwrap();
        json["trust_me"] = true.into();
        std::fs::write(sidecar_path(&p), json.to_string()).unwrap();
        assert!(matches!(
            verify(&p),
            Err(BackupError::SidecarCorrupt { .. })
        ));
    }

    #[test]
    fn a_store_killed_midway_leaves_nothing_that_counts() {
        let dir = tempfile::tempdir().unwrap();
        snap(dir.path(), "old.db", b"old", T0);
        // Killed while writing the snapshot: only the temp file exists.
        std::fs::write(dir.path().join("new.db.partial"), b"half").unwrap();
        // Killed after the snapshot, before its sidecar.
        std::fs::write(dir.path().join("newer.db"), b"whole").unwrap();
        // Killed while writing the sidecar.
        std::fs::write(dir.path().join("newer.db.json.partial"), b"{\"node\"").unwrap();
        let v = fresh(dir.path(), 24 * H, at(T0 + 60_000));
        assert!(v.holds, "{}", v.reason);
        assert!(v.reason.contains("old.db"), "{}", v.reason);
        let unverified = v.figures["unverified"].as_array().unwrap();
        assert_eq!(unverified.len(), 1, "{unverified:?}");
        assert!(
            unverified[0].as_str().unwrap().contains("newer.db"),
            "{unverified:?}"
        );
    }

    #[test]
    fn an_old_sidecar_without_the_new_fields_still_verifies_and_a_drill_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.db");
        std::fs::write(&p, b"etcd").unwrap();
        // What an early version wrote: no cluster id, Talos version, revision or drill.
        let old = serde_json::json!({
            "node": "192.168.2.20",
            "sha256": hex::encode(Sha256::digest(b"etcd")),
            "size": 4,
            "taken_at": "2026-11-24T20:34:01Z",
            "encrypted": false,
        });
        std::fs::write(sidecar_path(&p), old.to_string()).unwrap();
        let mut s = verify(&p).unwrap();
        assert_eq!(
            (s.cluster_id.clone(), s.revision, s.drill.clone()),
            (None, None, None)
        );
        // A drill result round-trips and the file still verifies.
        s.drill = Some(Drill {
            ok: true,
            at: "2026-11-24T21:00:00.000Z".into(),
            detail: "restored".into(),
        });
        write_sidecar(&p, &s).unwrap();
        assert_eq!(verify(&p).unwrap().drill, s.drill);
        // A drill with fields we never write is not ours.
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(sidecar_path(&p)).unwrap()).unwrap();
        json["drill"]["forged"] = true.into();
        std::fs::write(sidecar_path(&p), json.to_string()).unwrap();
        assert!(matches!(
            verify(&p),
            Err(BackupError::SidecarCorrupt { .. })
        ));
    }

    #[test]
    fn fresh_with_drilled_counts_only_passed_drills() {
        let dir = tempfile::tempdir().unwrap();
        let a = snap(dir.path(), "a.db", b"a", T0);
        let b = snap(dir.path(), "b.db", b"b", T0 + 1000);
        let now = at(T0 + 60_000);
        let v = fresh_with(dir.path(), 24 * H, true, now);
        assert!(!v.holds);
        assert!(
            v.reason.contains("no restore drill recorded"),
            "{}",
            v.reason
        );
        let mark = |p: &Path, ok: bool| {
            let mut s = verify(p).unwrap();
            s.drill = Some(Drill {
                ok,
                at: "2026-11-24T21:00:00.000Z".into(),
                detail: if ok {
                    "restored".into()
                } else {
                    "etcd failed".into()
                },
            });
            write_sidecar(p, &s).unwrap();
        };
        mark(&a, true);
        mark(&b, false);
        // The newer snapshot's drill failed: the older, drilled one is what counts.
        let v = fresh_with(dir.path(), 24 * H, true, now);
        assert!(v.holds, "{}", v.reason);
        assert!(v.reason.contains("a.db"), "{}", v.reason);
        assert_eq!(v.figures["drilled"], true);
        assert!(
            v.figures["unverified"][0]
                .as_str()
                .unwrap()
                .contains("restore drill failed: etcd failed")
        );
        // Without `drilled`, the newest verified one counts whatever its drill said.
        let v = fresh(dir.path(), 24 * H, now);
        assert!(v.reason.contains("b.db"), "{}", v.reason);
    }

    #[cfg(unix)]
    #[test]
    fn a_hostile_sidecar_is_not_followed_or_read_without_bound() {
        let dir = tempfile::tempdir().unwrap();
        let p = snap(dir.path(), "x.db", b"x", T0);
        // A symlink to an endless device would hang a naive reader.
        std::fs::remove_file(sidecar_path(&p)).unwrap();
        std::os::unix::fs::symlink("/dev/zero", sidecar_path(&p)).unwrap();
        let e = verify(&p).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        // A huge one is refused by its size.
        std::fs::remove_file(sidecar_path(&p)).unwrap();
        std::fs::write(sidecar_path(&p), vec![b' '; 100_000]).unwrap();
        let e = verify(&p).unwrap_err();
        assert!(e.to_string().contains("more than a sidecar"), "{e}");
        // Named directly (a drill, a prune's `after`), a symlinked snapshot is not hashed.
        let q = dir.path().join("link.db");
        std::os::unix::fs::symlink("/dev/zero", &q).unwrap();
        write_sidecar(&q, &describe("n", b"x", None, None, T0)).unwrap();
        let e = verify(&q).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        // A symlinked snapshot is not a candidate at all.
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("evil.db")).unwrap();
        let v = fresh(dir.path(), 24 * H, at(T0));
        assert!(v.reason.starts_with("no snapshot in"), "{}", v.reason);
    }
}
