//! `keep: N` retention: after a successful snapshot, delete the oldest verified snapshots of
//! the same cluster beyond the newest N, and nothing else.
//!
//! It exists because a backup directory that only grows is eventually a full disk, and a
//! careless pruner is worse than none: it could delete the only good snapshot. So [`plan`]
//! fails closed. It prunes nothing when any file in the directory fails to verify (a tampered
//! or half-written file is left alone and reported: a person must look), when the cluster id is
//! unknown, or when the snapshot this run just took does not verify; it only ever considers
//! snapshots whose sidecar names this cluster's id; it never deletes the newest `keep` (at
//! least one) of them. [`apply`] deletes the snapshot first and then its sidecar, fsyncing the
//! directory after each, so a kill between the two leaves an orphan sidecar (never a snapshot
//! without one that would block later prunes); the next run removes orphan sidecars of this
//! cluster. Re-running after a kill recomputes the plan from what is on disk, so it can never
//! delete more than `keep` allows.

use std::path::{Path, PathBuf};

use super::{Sidecar, sidecar_path, verify_all};

/// What retention will do in a directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Snapshots to delete (with their sidecars), oldest first.
    pub delete: Vec<PathBuf>,
    /// Verified snapshots of this cluster that stay, oldest first.
    pub keep: Vec<PathBuf>,
    /// Sidecars of this cluster whose snapshot is gone (left by a kill mid-prune).
    pub orphans: Vec<PathBuf>,
    /// Files that did not verify (left alone).
    pub unverified: Vec<String>,
    /// Why nothing is pruned, when that is the decision.
    pub skipped: Option<String>,
}

/// Why retention cannot even be planned.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// `keep` must be at least 1: the newest verified snapshot is never deleted.
    #[error("keep must be at least 1 (the newest verified snapshot is never deleted), not {0}")]
    KeepZero(u64),
    /// The directory cannot be read, or a file cannot be deleted.
    #[error("cannot {op} `{path}`: {source}")]
    Io {
        /// What.
        op: &'static str,
        /// Which.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The retention plan for `dir`: keep the newest `keep` verified snapshots of `cluster_id`;
/// `just_taken` is the snapshot this run stored (it must verify and be of this cluster).
pub fn plan(
    dir: &Path,
    keep: u64,
    cluster_id: Option<&str>,
    just_taken: &Path,
) -> Result<Plan, PruneError> {
    if keep == 0 {
        return Err(PruneError::KeepZero(keep));
    }
    let (good, problems) = verify_all(dir).map_err(|source| PruneError::Io {
        op: "read the backup directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Plan {
        unverified: problems.iter().map(ToString::to_string).collect(),
        ..Plan::default()
    };
    let skip = |mut out: Plan, why: String| {
        out.skipped = Some(why);
        Ok(out)
    };
    if !out.unverified.is_empty() {
        let why = format!(
            "{} file(s) do not verify; nothing is pruned until a person looks: {}",
            out.unverified.len(),
            out.unverified.join("; ")
        );
        return skip(out, why);
    }
    let Some(cluster) = cluster_id.filter(|c| !c.is_empty()) else {
        return skip(
            out,
            "the cluster id is unknown, so no snapshot can be told to be this cluster's".into(),
        );
    };
    let ours: Vec<&(PathBuf, Sidecar, u64)> = good
        .iter()
        .filter(|(_, s, _)| s.cluster_id.as_deref() == Some(cluster))
        .collect();
    if !ours.iter().any(|(p, _, _)| same_file(p, just_taken)) {
        return skip(
            out,
            format!(
                "the snapshot this run took ({}) is not a verified snapshot of cluster {cluster} in {}",
                just_taken.display(),
                dir.display()
            ),
        );
    }
    let cut = ours
        .len()
        .saturating_sub(usize::try_from(keep).unwrap_or(usize::MAX));
    out.delete = ours[..cut].iter().map(|(p, _, _)| p.clone()).collect();
    out.keep = ours[cut..].iter().map(|(p, _, _)| p.clone()).collect();
    out.orphans = orphans(dir, cluster)?;
    Ok(out)
}

fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Sidecars (`*.json`, regular files) of `cluster` whose snapshot does not exist.
fn orphans(dir: &Path, cluster: &str) -> Result<Vec<PathBuf>, PruneError> {
    let io = |source| PruneError::Io {
        op: "read the backup directory",
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(snapshot) = name.strip_suffix(".json") else {
            continue;
        };
        if name.starts_with('.') || !entry.file_type().map_err(io)?.is_file() {
            continue;
        }
        let snap = dir.join(snapshot);
        if std::fs::symlink_metadata(&snap).is_ok() {
            continue;
        }
        // Only a sidecar of ours that parses, naming this cluster.
        if let Ok(s) = super::load(&snap)
            && s.cluster_id.as_deref() == Some(cluster)
        {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The test hook's name for "between deleting a snapshot and its sidecar" (see
/// `docs/design/backup.md`): `RUNBOOK_TEST_KILL_IN_EFFECT=backup.prune/delete:N:after`.
pub const HOOK_DELETE: &str = "backup.prune/delete";

/// What [`apply`] deleted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pruned {
    /// Snapshots deleted (each with its sidecar).
    pub deleted: Vec<PathBuf>,
    /// Orphan sidecars removed.
    pub orphans: Vec<PathBuf>,
}

/// Carries out a plan: orphan sidecars, then each snapshot (file, then sidecar), durably.
/// A file already gone counts as deleted (a resumed prune).
pub fn apply(dir: &Path, plan: &Plan) -> Result<Pruned, PruneError> {
    let mut out = Pruned::default();
    if plan.skipped.is_some() {
        return Ok(out);
    }
    let sync = || {
        crate::journal::durable::sync_dir(dir).map_err(|e| PruneError::Io {
            op: "fsync",
            path: dir.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })
    };
    for o in &plan.orphans {
        remove(o)?;
        out.orphans.push(o.clone());
    }
    if !plan.orphans.is_empty() {
        sync()?;
    }
    for snap in &plan.delete {
        let ordinal = crate::test_hook::effect_started(HOOK_DELETE);
        remove(snap)?;
        sync()?;
        crate::test_hook::in_effect_at(HOOK_DELETE, ordinal, crate::test_hook::EffectPoint::After);
        remove(&sidecar_path(snap))?;
        sync()?;
        out.deleted.push(snap.clone());
    }
    Ok(out)
}

fn remove(path: &Path) -> Result<(), PruneError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PruneError::Io {
            op: "delete",
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{describe, store};
    use super::*;

    const T0: u64 = 1_795_552_441_000;

    fn snap(dir: &Path, name: &str, cluster: Option<&str>, at: u64) -> PathBuf {
        let p = dir.join(name);
        let bytes = format!("data of {name}").into_bytes();
        let mut s = describe("192.168.2.20", &bytes, Some(1), None, at);
        s.cluster_id = cluster.map(str::to_string);
        store(&p, &bytes, &s).unwrap();
        p
    }

    fn names(v: &[PathBuf]) -> Vec<String> {
        v.iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect()
    }

    #[test]
    fn keeps_the_newest_n_of_this_cluster_and_touches_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        snap(dir, "1.db", Some("c"), T0);
        snap(dir, "2.db", Some("c"), T0 + 1000);
        snap(dir, "other.db", Some("other"), T0 - 5000);
        snap(dir, "noid.db", None, T0 - 6000);
        snap(dir, "3.db", Some("c"), T0 + 2000);
        let last = snap(dir, "4.db", Some("c"), T0 + 3000);
        let p = plan(dir, 2, Some("c"), &last).unwrap();
        assert_eq!(p.skipped, None);
        assert_eq!(names(&p.delete), ["1.db", "2.db"]);
        assert_eq!(names(&p.keep), ["3.db", "4.db"]);
        let done = apply(dir, &p).unwrap();
        assert_eq!(done.deleted, p.delete);
        let mut left: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "3.db",
                "3.db.json",
                "4.db",
                "4.db.json",
                "noid.db",
                "noid.db.json",
                "other.db",
                "other.db.json"
            ]
        );
        // Idempotent: a second pass deletes nothing.
        let again = plan(dir, 2, Some("c"), &last).unwrap();
        assert!(again.delete.is_empty());
    }

    #[test]
    fn a_tampered_file_stops_every_deletion_and_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let old = snap(dir, "1.db", Some("c"), T0);
        snap(dir, "2.db", Some("c"), T0 + 1000);
        let last = snap(dir, "3.db", Some("c"), T0 + 2000);
        std::fs::write(&old, b"evil").unwrap();
        let p = plan(dir, 1, Some("c"), &last).unwrap();
        assert!(p.delete.is_empty(), "{p:?}");
        assert!(
            p.skipped.as_deref().unwrap().contains("do not verify"),
            "{p:?}"
        );
        assert!(p.unverified[0].contains("1.db"), "{p:?}");
        assert_eq!(apply(dir, &p).unwrap(), Pruned::default());
        assert!(old.exists());
    }

    #[test]
    fn refuses_without_a_cluster_id_a_verified_new_snapshot_or_a_keep() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        snap(dir, "1.db", Some("c"), T0);
        let last = snap(dir, "2.db", Some("c"), T0 + 1000);
        assert!(matches!(
            plan(dir, 0, Some("c"), &last),
            Err(PruneError::KeepZero(0))
        ));
        let p = plan(dir, 1, None, &last).unwrap();
        assert!(p.skipped.unwrap().contains("cluster id is unknown"));
        // The run's own snapshot is of another cluster: the run did not produce a backup here.
        let p = plan(dir, 1, Some("x"), &last).unwrap();
        assert!(p.skipped.unwrap().contains("is not a verified snapshot"));
        let p = plan(dir, 1, Some("c"), &dir.join("missing.db")).unwrap();
        assert!(p.skipped.is_some() && p.delete.is_empty());
    }

    #[test]
    fn a_kill_between_file_and_sidecar_resumes_to_exactly_keep() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let a = snap(dir, "1.db", Some("c"), T0);
        snap(dir, "2.db", Some("c"), T0 + 1000);
        snap(dir, "3.db", Some("c"), T0 + 2000);
        let last = snap(dir, "4.db", Some("c"), T0 + 3000);
        // What a kill inside `apply` leaves: the first file gone, its sidecar still there.
        std::fs::remove_file(&a).unwrap();
        let p = plan(dir, 2, Some("c"), &last).unwrap();
        assert_eq!(
            p.skipped, None,
            "an orphan sidecar is not an unverified snapshot"
        );
        assert_eq!(names(&p.orphans), ["1.db.json"]);
        assert_eq!(names(&p.delete), ["2.db"]);
        apply(dir, &p).unwrap();
        let (good, problems) = verify_all(dir).unwrap();
        assert!(problems.is_empty());
        assert_eq!(good.len(), 2);
        assert!(!dir.join("1.db.json").exists());
    }
}
