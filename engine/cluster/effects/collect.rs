//! The body of `etcd.collect`: put the newest valid etcd data off the cluster, verified,
//! before a quorum recovery wipes anything. Three sources, in order:
//!
//! 1. a live snapshot from the survivor (`etcd.snapshot`, sha256 trailer, sidecar);
//! 2. else a raw copy of its database file (`MachineService/Copy` of `member/snap/db`, which
//!    works while etcd is stopped): no trailer, so it is restored with the hash check skipped
//!    (`talosctl bootstrap --recover-skip-hash-check`); stored under `<dir>/raw/` with its own
//!    sidecar, so retention and the backup-directory fallback never mistake it for a snapshot;
//! 3. else the newest verified snapshot of the backup directory (by its sidecar): an
//!    age-encrypted one only with `age_identity`, decrypted in memory and its etcd sha256
//!    trailer checked (age_restore.rs; no plaintext file is ever written); without an
//!    identity, each encrypted one skipped is named.
//!
//! The outputs say which source was used (`source`), when the data was taken and how old it
//! is, and whether the bootstrap must skip the hash check — journaled with the step and
//! printed. Each attempt's failure is kept and printed, so a fallback is never silent.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{ClusterEffects, arg, io_error, outputs};
use crate::cluster::backup::{self, Sidecar};
use crate::cluster::talos::{ETCD_DB_PATH, copy_file};
use crate::exec::effects::{ActionCall, ActionOutcome, EffectError};

/// Whether a snapshot file carries etcd's sha256 trailer: etcd's own test
/// (`size % 512 == sha256.Size`) and the digest of the body matching it.
/// Streamed: snapshots can be gigabytes.
fn has_valid_trailer(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let len = std::fs::metadata(path)?.len();
    if len % 512 != 32 {
        return Ok(false);
    }
    let mut file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut body = Hashing {
        inner: std::io::sink(),
        hash: Sha256::new(),
    };
    std::io::copy(&mut (&mut file).take(len - 32), &mut body)?;
    let mut sum = [0u8; 32];
    file.read_exact(&mut sum)?;
    Ok(body.hash.finalize().as_slice() == sum)
}

/// A writer that hashes what it writes.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn age(ms: u64, now: u64) -> String {
    let s = now.saturating_sub(ms) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

impl ClusterEffects {
    pub(super) async fn collect(
        &self,
        call: &ActionCall<'_>,
    ) -> Result<ActionOutcome, EffectError> {
        let node = arg(call, "node")?;
        let dir = PathBuf::from(arg(call, "dir")?);
        let mut tried = Vec::new();
        let now = crate::journal::time::now_ms();

        match self.snapshot(call).await {
            Ok(mut out) => {
                let path = out
                    .outputs
                    .get("path")
                    .and_then(|p| p.as_str())
                    .unwrap_or_default()
                    .to_owned();
                let size = out.outputs.get("size").cloned().unwrap_or_default();
                out.outputs.insert("source".into(), "snapshot".into());
                out.outputs.insert("skip_hash_check".into(), false.into());
                out.outputs
                    .insert("taken_at".into(), crate::journal::time::rfc3339(now).into());
                out.outputs.insert("age".into(), "0s".into());
                out.outputs
                    .insert("tried".into(), Vec::<String>::new().into());
                out.outputs.insert("encrypted".into(), false.into());
                out.messages.push(format!(
                    "collected: a live snapshot of {node} ({size} bytes, sha256 trailer, verified), taken now: {path}"
                ));
                return Ok(out);
            }
            Err(e) => tried.push(format!("live snapshot of {node}: {e}")),
        }

        match self.raw_copy(call.name, node, &dir, now).await {
            Ok((path, sidecar)) => {
                let mut out = outputs([
                    ("path", path.display().to_string().into()),
                    ("source", "raw-copy".into()),
                    ("skip_hash_check", true.into()),
                    ("sha256", sidecar.sha256.clone().into()),
                    ("size", sidecar.size.into()),
                    ("taken_at", sidecar.taken_at.clone().into()),
                    ("age", "0s".into()),
                    ("tried", tried.clone().into()),
                    ("encrypted", false.into()),
                ]);
                out.messages = tried.iter().map(|t| format!("not used: {t}")).collect();
                out.messages.push(format!(
                    "collected: a raw copy of {node}:{ETCD_DB_PATH} ({} bytes, no hash trailer: the bootstrap skips the hash check), taken now: {}",
                    sidecar.size,
                    path.display()
                ));
                return Ok(out);
            }
            Err(e) => tried.push(format!("raw copy of {node}:{ETCD_DB_PATH}: {e}")),
        }

        let identity = super::age_restore::identity(call)?;
        match newest_usable(&dir, identity) {
            Ok(Usable {
                path,
                sidecar,
                at,
                skipped,
                encrypted,
            }) => {
                // An encrypted one was decrypted and its trailer checked already.
                let skip = !encrypted
                    && !has_valid_trailer(&path)
                        .map_err(|e| io_error(call.name, "cannot read the snapshot", e))?;
                let how_old = age(at, now);
                let mut out = outputs([
                    ("path", path.display().to_string().into()),
                    ("source", "backup-dir".into()),
                    ("skip_hash_check", skip.into()),
                    ("sha256", sidecar.sha256.clone().into()),
                    ("size", sidecar.size.into()),
                    ("taken_at", sidecar.taken_at.clone().into()),
                    ("age", how_old.clone().into()),
                    ("tried", tried.clone().into()),
                    ("encrypted", encrypted.into()),
                ]);
                out.messages = tried.iter().map(|t| format!("not used: {t}")).collect();
                out.messages.extend(skipped);
                out.messages.push(format!(
                    "collected: the newest verified snapshot of {}{} (from {}, taken {} — {how_old} old; every write since is lost): {}",
                    dir.display(),
                    if encrypted {
                        " (age-encrypted: decrypted in memory with `age_identity`, its sha256 trailer verified; the bootstrap decrypts it again, no plaintext file is written)"
                    } else {
                        ""
                    },
                    sidecar.node,
                    sidecar.taken_at,
                    path.display()
                ));
                Ok(out)
            }
            Err(e) => {
                tried.push(format!("backup directory {}: {e}", dir.display()));
                Err(EffectError::Failed {
                    message: format!(
                        "`{}`: no valid etcd data could be collected off the cluster; nothing was wiped: {}",
                        call.name,
                        tried.join("; ")
                    ),
                    retryable: false,
                })
            }
        }
    }

    /// Copies `member/snap/db` into `<dir>/raw/<stamp>_<node>.db` with a sidecar, verified.
    async fn raw_copy(
        &self,
        action: &str,
        node: &str,
        dir: &Path,
        now: u64,
    ) -> Result<(PathBuf, Sidecar), String> {
        let raw = dir.join("raw");
        crate::journal::durable::create_private_dir_all(&raw).map_err(|e| e.to_string())?;
        let stamp = crate::journal::time::compact(now);
        let name = node.replace(['/', ':', '\\'], "_");
        let path = raw.join(format!("{stamp}_{name}.db"));
        let partial = raw.join(format!("{stamp}_{name}.db.partial"));
        let spool = raw.join(format!(".{stamp}_{name}.tar.gz.partial"));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        let file = crate::journal::durable::private(&mut opts)
            .open(&partial)
            .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        let mut sink = Hashing {
            inner: std::io::BufWriter::new(file),
            hash: Sha256::new(),
        };
        let revision = self.raft_index_of(node).await;
        let copied = copy_file(
            self.talos().machine(),
            node,
            ETCD_DB_PATH,
            &spool,
            &mut sink,
        )
        .await;
        let finish = || -> Result<(u64, String), String> {
            let size = copied.map_err(|e| e.to_string())?;
            if size == 0 {
                return Err("the database file is empty".into());
            }
            let Hashing { inner, hash } = sink;
            let file = inner.into_inner().map_err(|e| e.to_string())?;
            file.sync_all().map_err(|e| e.to_string())?;
            std::fs::rename(&partial, &path).map_err(|e| e.to_string())?;
            crate::journal::durable::sync_dir(&raw).map_err(|e| e.to_string())?;
            Ok((size, hex::encode(hash.finalize())))
        };
        let (size, sha256) = match finish() {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        let sidecar = Sidecar {
            node: node.to_owned(),
            revision,
            sha256,
            size,
            talos_version: None,
            cluster_id: self.cluster_id(node).await,
            taken_at: crate::journal::time::rfc3339(now),
            encrypted: false,
            drill: None,
        };
        backup::write_sidecar(&path, &sidecar).map_err(|e| e.to_string())?;
        // Read back from disk against the sidecar: what is stored is what was copied.
        let verified = backup::verify(&path).map_err(|e| format!("`{action}`: {e}"))?;
        Ok((path, verified))
    }
}

/// The snapshot the backup-directory fallback restores from.
struct Usable {
    path: PathBuf,
    sidecar: Sidecar,
    at: u64,
    /// Lines naming the newer snapshots skipped, and why.
    skipped: Vec<String>,
    /// Age-encrypted (then decrypted in memory and its trailer checked with the identity).
    encrypted: bool,
}

/// The newest verified snapshot of `dir` that can be restored: a plain one, or an encrypted
/// one that decrypts with `identity` to a valid etcd snapshot (in memory; nothing is
/// written). Encryption is read from the sidecar and from the file's own header.
fn newest_usable(dir: &Path, identity: Option<&Path>) -> Result<Usable, String> {
    let (good, problems) = backup::verify_all(dir).map_err(|e| e.to_string())?;
    let mut skipped: Vec<String> = problems
        .iter()
        .map(|p| format!("not used (does not verify): {p}"))
        .collect();
    for (path, sidecar, at) in good.into_iter().rev() {
        let encrypted = sidecar.encrypted
            || match super::age_restore::is_age(&path) {
                Ok(e) => e,
                Err(e) => {
                    skipped.push(format!(
                        "not used (cannot read it: {e}): {}",
                        path.display()
                    ));
                    continue;
                }
            };
        if encrypted {
            let Some(key) = identity else {
                skipped.push(format!(
                    "not used (age-encrypted and no `age_identity` was given; pass the key file with `--param age_identity=KEY` to restore from it): {}",
                    path.display()
                ));
                continue;
            };
            if let Err(e) = super::age_restore::decrypt_file(&path, key) {
                skipped.push(format!(
                    "not used (age-encrypted, and with `age_identity` {e}): {}",
                    path.display()
                ));
                continue;
            }
        }
        return Ok(Usable {
            path,
            sidecar,
            at,
            skipped,
            encrypted,
        });
    }
    Err(format!(
        "no verified snapshot that can be restored{}",
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" ({})", skipped.join("; "))
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trailer_check_is_etcds() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let mut body = vec![7u8; 1024];
        std::fs::write(&p, &body).unwrap();
        assert!(!has_valid_trailer(&p).unwrap());
        let sum = Sha256::digest(&body);
        body.extend_from_slice(&sum);
        std::fs::write(&p, &body).unwrap();
        assert!(has_valid_trailer(&p).unwrap());
        let n = body.len();
        body[n - 1] ^= 1;
        std::fs::write(&p, &body).unwrap();
        assert!(!has_valid_trailer(&p).unwrap());
    }

    #[test]
    fn ages_read_like_a_person_would_say_them() {
        assert_eq!(age(0, 5_000), "5s");
        assert_eq!(age(0, 125_000), "2m05s");
        assert_eq!(age(0, 3_600_000 * 3 + 60_000 * 12), "3h12m");
        assert_eq!(age(10, 0), "0s");
    }

    #[test]
    fn the_newest_plain_snapshot_is_taken_and_encrypted_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let side = |node: &str, at: &str, encrypted: bool, bytes: &[u8]| Sidecar {
            node: node.into(),
            revision: None,
            sha256: hex::encode(Sha256::digest(bytes)),
            size: bytes.len() as u64,
            talos_version: None,
            cluster_id: None,
            taken_at: at.into(),
            encrypted,
            drill: None,
        };
        assert!(newest_usable(dir.path(), None).is_err());
        let a = dir.path().join("a.db");
        backup::store(
            &a,
            b"old",
            &side("n", "2026-01-01T00:00:00Z", false, b"old"),
        )
        .unwrap();
        let b = dir.path().join("b.db.age");
        backup::store(&b, b"enc", &side("n", "2026-01-02T00:00:00Z", true, b"enc")).unwrap();
        let c = dir.path().join("c.db");
        backup::store(
            &c,
            b"bad",
            &side("n", "2026-01-03T00:00:00Z", false, b"other"),
        )
        .unwrap();
        let u = newest_usable(dir.path(), None).unwrap();
        assert_eq!(u.path, a);
        assert!(!u.encrypted);
        assert_eq!(u.skipped.len(), 2, "{:?}", u.skipped);
        assert!(
            u.skipped[1].contains("no `age_identity`") && u.skipped[1].contains("b.db.age"),
            "{:?}",
            u.skipped
        );
        // With an identity it cannot decrypt with, the encrypted one is still skipped, said.
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("key.txt");
        {
            use age::secrecy::ExposeSecret;
            let k = age::x25519::Identity::generate();
            std::fs::write(&key, k.to_string().expose_secret()).unwrap();
        }
        let u = newest_usable(dir.path(), Some(&key)).unwrap();
        assert_eq!(u.path, a);
        assert!(u.skipped[1].contains("not an age file"), "{:?}", u.skipped);
    }

    #[test]
    fn an_encrypted_snapshot_is_taken_with_its_identity_and_nothing_plain_is_written() {
        use age::secrecy::ExposeSecret;
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let k = age::x25519::Identity::generate();
        let key = keys.path().join("key.txt");
        std::fs::write(&key, k.to_string().expose_secret()).unwrap();
        let mut plain = vec![0x5au8; 1024];
        let sum = Sha256::digest(&plain);
        plain.extend_from_slice(&sum);
        let r = k.to_public();
        let enc =
            age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap();
        let mut stored = Vec::new();
        let mut w = enc.wrap_output(&mut stored).unwrap();
        w.write_all(&plain).unwrap();
        w.finish().unwrap();
        let p = dir.path().join("s.db.age");
        let side = Sidecar {
            node: "n".into(),
            revision: None,
            sha256: hex::encode(Sha256::digest(&stored)),
            size: stored.len() as u64,
            talos_version: None,
            cluster_id: None,
            taken_at: "2026-01-01T00:00:00Z".into(),
            encrypted: true,
            drill: None,
        };
        backup::store(&p, &stored, &side).unwrap();
        let e = newest_usable(dir.path(), None).err().unwrap();
        assert!(e.contains("s.db.age") && e.contains("age_identity"), "{e}");
        let u = newest_usable(dir.path(), Some(&key)).unwrap();
        assert_eq!(u.path, p);
        assert!(u.encrypted && u.skipped.is_empty(), "{:?}", u.skipped);
        for f in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(f.unwrap().path()).unwrap();
            assert!(!bytes.windows(64).any(|w| w.iter().all(|b| *b == 0x5a)));
        }
    }
}
