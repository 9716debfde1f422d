//! Writing a snapshot as it streams: optionally age-encrypted before any byte reaches the disk,
//! hashed as stored, and its etcd sha256 trailer checked on the plaintext on the way.
//!
//! [`SnapshotSink`] exists so that `etcd.snapshot` never holds a whole database in memory and
//! never writes plaintext when a recipient is given: each chunk from `EtcdSnapshot` goes
//! through the age encryptor (when there is one) into `<file>.partial` (created new, owner-only,
//! a planted file or symlink unlinked first, never followed). [`SnapshotSink::commit`] checks
//! the trailer, finishes the age stream, fsyncs, renames into place, fsyncs the directory and
//! only then writes the sidecar. A sink dropped before `commit` (an error, a lost stream)
//! removes its partial file; a SIGKILL leaves one, which [`super::newest_verified`] never
//! considers (`.partial` names are not candidates) and the next snapshot of the same name
//! replaces.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Sidecar;

/// Why a snapshot could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The recipient is not an age x25519 recipient (`age1…`).
    #[error("`{0}` is not an age x25519 recipient (age1…)")]
    Recipient(String),
    /// The age encryptor refused.
    #[error("cannot encrypt: {0}")]
    Encrypt(String),
    /// A file operation failed.
    #[error("cannot {op} `{path}`: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The plaintext is not an etcd snapshot with a valid sha256 trailer.
    #[error("snapshot rejected: {0}")]
    Rejected(String),
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StreamError + 'a {
    move |source| StreamError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Parses an age x25519 recipient.
pub fn recipient(text: &str) -> Result<age::x25519::Recipient, StreamError> {
    text.trim()
        .parse::<age::x25519::Recipient>()
        .map_err(|_| StreamError::Recipient(text.to_string()))
}

/// A file writer that hashes and counts what it stores.
struct Hashing {
    file: File,
    hasher: Sha256,
    size: u64,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

enum Out {
    Plain(Hashing),
    Age(age::stream::StreamWriter<Hashing>),
}

/// The etcd trailer check over a stream: hashes everything but the last 32 bytes.
#[derive(Default)]
struct Trailer {
    hasher: Sha256,
    held: Vec<u8>,
    len: u64,
}

impl Trailer {
    fn update(&mut self, chunk: &[u8]) {
        self.len += chunk.len() as u64;
        self.held.extend_from_slice(chunk);
        if self.held.len() > 32 {
            let cut = self.held.len() - 32;
            self.hasher.update(&self.held[..cut]);
            self.held.drain(..cut);
        }
    }

    /// The same rule as `payload::verify_snapshot`: `len % 512 == 32` and the trailer is the
    /// sha256 of the body.
    fn check(self) -> Result<(), String> {
        if self.len < 32 || self.len % 512 != 32 {
            return Err(format!(
                "{} bytes: not an etcd API snapshot with a sha256 trailer (size % 512 must be 32)",
                self.len
            ));
        }
        if self.hasher.finalize().as_slice() != self.held.as_slice() {
            return Err("sha256 trailer does not match the snapshot body".into());
        }
        Ok(())
    }
}

/// A snapshot being written; see the module docs.
pub struct SnapshotSink {
    path: PathBuf,
    partial: PathBuf,
    out: Option<Out>,
    trailer: Trailer,
    encrypted: bool,
    placed: bool,
}

/// What [`SnapshotSink::commit`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// sha256 (hex) of the file as stored.
    pub sha256: String,
    /// Its size as stored.
    pub size: u64,
    /// Size of the plaintext snapshot.
    pub plain_size: u64,
}

impl SnapshotSink {
    /// Opens `<path>.partial` for a new snapshot, encrypting to `recipient` when given.
    pub fn create(
        path: &Path,
        recipient: Option<&age::x25519::Recipient>,
    ) -> Result<SnapshotSink, StreamError> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let open = || {
            crate::journal::durable::private(
                std::fs::OpenOptions::new().write(true).create_new(true),
            )
            .open(&partial)
        };
        let file = match open() {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Left by a killed run, or planted: unlink the entry (never follow it).
                std::fs::remove_file(&partial).map_err(io("remove stale", &partial))?;
                open().map_err(io("create", &partial))?
            }
            Err(e) => return Err(io("create", &partial)(e)),
        };
        let hashing = Hashing {
            file,
            hasher: Sha256::new(),
            size: 0,
        };
        let mut sink = SnapshotSink {
            path: path.to_path_buf(),
            partial,
            out: None,
            trailer: Trailer::default(),
            encrypted: recipient.is_some(),
            placed: false,
        };
        sink.out = Some(match recipient {
            None => Out::Plain(hashing),
            Some(r) => {
                let enc =
                    age::Encryptor::with_recipients(std::iter::once(r as &dyn age::Recipient))
                        .map_err(|e| StreamError::Encrypt(e.to_string()))?;
                Out::Age(
                    enc.wrap_output(hashing)
                        .map_err(io("write the age header to", &sink.partial))?,
                )
            }
        });
        Ok(sink)
    }

    /// Whether the stored file is age-encrypted.
    pub fn encrypted(&self) -> bool {
        self.encrypted
    }

    /// Appends a chunk of the plaintext snapshot.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), StreamError> {
        self.trailer.update(chunk);
        let partial = self.partial.clone();
        match self.out.as_mut() {
            Some(Out::Plain(h)) => h.write_all(chunk),
            Some(Out::Age(w)) => w.write_all(chunk),
            None => Err(std::io::Error::other("already committed")),
        }
        .map_err(io("write", &partial))
    }

    /// Checks the trailer, finishes and stores the file durably, then the sidecar made by
    /// `describe` from what was stored. Nothing is renamed into place when the check fails.
    pub fn commit(
        mut self,
        describe: impl FnOnce(&Stored) -> Sidecar,
    ) -> Result<(Stored, Sidecar), StreamError> {
        let trailer = std::mem::take(&mut self.trailer);
        let plain_size = trailer.len;
        trailer.check().map_err(StreamError::Rejected)?;
        let partial = self.partial.clone();
        let hashing = match self.out.take() {
            Some(Out::Plain(h)) => h,
            Some(Out::Age(w)) => w.finish().map_err(io("finish encrypting", &partial))?,
            None => return Err(StreamError::Rejected("already committed".into())),
        };
        let Hashing {
            mut file,
            hasher,
            size,
        } = hashing;
        file.flush().map_err(io("flush", &partial))?;
        file.sync_all().map_err(io("fsync", &partial))?;
        drop(file);
        let stored = Stored {
            sha256: hex::encode(hasher.finalize()),
            size,
            plain_size,
        };
        let sidecar = describe(&stored);
        place(&partial, &self.path)?;
        self.placed = true;
        crate::journal::durable::sync_dir(crate::journal::durable::parent_of(&self.path)).map_err(
            |e| StreamError::Io {
                op: "fsync the directory of",
                path: self.path.clone(),
                source: std::io::Error::other(e.to_string()),
            },
        )?;
        super::write_sidecar(&self.path, &sidecar).map_err(|e| StreamError::Io {
            op: "write the sidecar of",
            path: self.path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok((stored, sidecar))
    }
}

/// Moves `partial` to `path` without ever replacing an existing snapshot: a hard link fails
/// when `path` exists; where links are not supported (some network filesystems), an existence
/// check and a rename.
fn place(partial: &Path, path: &Path) -> Result<(), StreamError> {
    match std::fs::hard_link(partial, path) {
        Ok(()) => std::fs::remove_file(partial).map_err(io("remove", partial)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(io("store (a snapshot of that name exists)", path)(e))
        }
        Err(_) => {
            if std::fs::symlink_metadata(path).is_ok() {
                return Err(io("store (a snapshot of that name exists)", path)(
                    std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                ));
            }
            std::fs::rename(partial, path).map_err(io("rename into place", path))
        }
    }
}

impl Drop for SnapshotSink {
    fn drop(&mut self) {
        if !self.placed {
            // Not stored: an error or a lost stream. Nothing half-written stays behind.
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Decrypts an age file in memory with the identities of `identity_file` (an `age-keygen`
/// key file). The plaintext never touches the disk.
pub fn decrypt(ciphertext: &[u8], identity_file: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let ids = age::IdentityFile::from_file(identity_file.display().to_string())
        .map_err(|e| {
            format!(
                "cannot read the age identity `{}`: {e}",
                identity_file.display()
            )
        })?
        .into_identities()
        .map_err(|e| {
            format!(
                "the age identity `{}` is unusable: {e}",
                identity_file.display()
            )
        })?;
    let decryptor =
        age::Decryptor::new_buffered(ciphertext).map_err(|e| format!("not an age file: {e}"))?;
    let mut reader = decryptor
        .decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| format!("cannot decrypt: {e}"))?;
    let mut out = Vec::new();
    reader
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot decrypt: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid etcd-API snapshot of `n` 512-byte blocks.
    pub(crate) fn etcd_snapshot(n: usize, fill: u8) -> Vec<u8> {
        let mut body = vec![fill; 512 * n];
        let sum = Sha256::digest(&body);
        body.extend_from_slice(&sum);
        body
    }

    fn side(node: &str) -> impl FnOnce(&Stored) -> Sidecar + '_ {
        move |s: &Stored| Sidecar {
            node: node.into(),
            revision: Some(1),
            sha256: s.sha256.clone(),
            size: s.size,
            talos_version: None,
            cluster_id: Some("c1".into()),
            taken_at: crate::journal::time::rfc3339(1_795_552_441_000),
            encrypted: false,
            drill: None,
        }
    }

    #[test]
    fn the_trailer_is_checked_across_any_chunking() {
        let snap = etcd_snapshot(3, 7);
        for size in [1, 5, 31, 32, 33, 512, 544, 10_000] {
            let mut t = Trailer::default();
            for c in snap.chunks(size) {
                t.update(c);
            }
            assert_eq!(t.check(), Ok(()), "chunks of {size}");
        }
        let mut bad = snap.clone();
        bad[10] ^= 1;
        let mut t = Trailer::default();
        t.update(&bad);
        assert!(t.check().unwrap_err().contains("trailer"));
        let mut t = Trailer::default();
        t.update(&snap[..snap.len() - 1]);
        assert!(t.check().unwrap_err().contains("size % 512"));
    }

    #[test]
    fn a_plain_snapshot_is_stored_with_its_hash_and_no_partial() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.db");
        let snap = etcd_snapshot(2, 1);
        let mut sink = SnapshotSink::create(&p, None).unwrap();
        for c in snap.chunks(100) {
            sink.write(c).unwrap();
        }
        let (stored, _) = sink.commit(side("n")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), snap);
        assert_eq!(stored.sha256, hex::encode(Sha256::digest(&snap)));
        assert!(!dir.path().join("a.db.partial").exists());
        assert_eq!(super::super::verify(&p).unwrap().node, "n");
    }

    #[test]
    fn a_rejected_or_abandoned_stream_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.db");
        let mut bad = etcd_snapshot(2, 1);
        bad[0] ^= 1;
        let mut sink = SnapshotSink::create(&p, None).unwrap();
        sink.write(&bad).unwrap();
        assert!(matches!(
            sink.commit(side("n")),
            Err(StreamError::Rejected(_))
        ));
        let mut sink = SnapshotSink::create(&p, None).unwrap();
        sink.write(&[1, 2, 3]).unwrap();
        drop(sink);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn an_existing_snapshot_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.db");
        std::fs::write(&p, b"the only good backup").unwrap();
        let mut sink = SnapshotSink::create(&p, None).unwrap();
        sink.write(&etcd_snapshot(1, 3)).unwrap();
        let e = sink.commit(side("n")).unwrap_err();
        assert!(e.to_string().contains("exists"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"the only good backup");
        assert!(!dir.path().join("a.db.partial").exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_partial_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let p = dir.path().join("a.db");
        std::os::unix::fs::symlink(&victim, dir.path().join("a.db.partial")).unwrap();
        let mut sink = SnapshotSink::create(&p, None).unwrap();
        sink.write(&etcd_snapshot(1, 2)).unwrap();
        sink.commit(side("n")).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    }

    #[test]
    fn an_encrypted_snapshot_has_no_plaintext_on_disk_and_decrypts_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let key = age::x25519::Identity::generate();
        let key_file = dir.path().join("key.txt");
        {
            use age::secrecy::ExposeSecret;
            std::fs::write(&key_file, key.to_string().expose_secret()).unwrap();
        }
        let r = recipient(&key.to_public().to_string()).unwrap();
        let p = dir.path().join("a.db.age");
        let snap = etcd_snapshot(4, 0x5a);
        let mut sink = SnapshotSink::create(&p, Some(&r)).unwrap();
        for c in snap.chunks(1000) {
            sink.write(c).unwrap();
            // While streaming, the partial file never holds the plaintext pattern.
            let on_disk = std::fs::read(dir.path().join("a.db.age.partial")).unwrap();
            assert!(!on_disk.windows(64).any(|w| w.iter().all(|b| *b == 0x5a)));
        }
        assert!(sink.encrypted());
        let (stored, _) = sink.commit(side("n")).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(stored.sha256, hex::encode(Sha256::digest(&bytes)));
        assert!(bytes.starts_with(b"age-encryption.org/v1"));
        assert_eq!(decrypt(&bytes, &key_file).unwrap(), snap);
        // Another key cannot.
        let other = dir.path().join("other.txt");
        {
            use age::secrecy::ExposeSecret;
            let k = age::x25519::Identity::generate();
            std::fs::write(&other, k.to_string().expose_secret()).unwrap();
        }
        assert!(
            decrypt(&bytes, &other)
                .unwrap_err()
                .contains("cannot decrypt")
        );
        assert!(matches!(
            recipient("age1notakey"),
            Err(StreamError::Recipient(_))
        ));
    }
}
