//! Encrypted snapshots in the recovery runbooks: `etcd.collect`'s backup-directory fallback,
//! `rebuild.plan`'s `restore` check and `talos.bootstrap`'s recover upload all take an
//! age-encrypted snapshot (`<name>.db.age`, written by `etcd-backup` with `age_recipient`)
//! when they are given `age_identity`, an age key file.
//!
//! An etcd snapshot holds the cluster's Secrets, so the plaintext never reaches a file: the
//! ciphertext is read, decrypted in memory ([`crate::cluster::backup::stream::decrypt`]) and its
//! etcd sha256 trailer checked there; the bootstrap streams those bytes to `EtcdRecover`. The
//! key file's path is an argument (journaled like any path); its content is read only in memory
//! and never journaled, logged or printed. Whether a file is encrypted is decided by its content
//! (the age header) as well as its sidecar, so a sidecar that lies cannot get ciphertext
//! uploaded as a database.

use std::io::Read as _;
use std::path::Path;

use super::opt;
use crate::exec::effects::{ActionCall, EffectError};

/// How every age file begins (`age-encryption.org/v1`).
pub(super) const AGE_HEADER: &[u8] = b"age-encryption.org/";

/// The `age_identity` argument: the key file's path, or `None` when absent or empty.
pub(super) fn identity<'a>(call: &ActionCall<'a>) -> Result<Option<&'a Path>, EffectError> {
    Ok(opt(call, "age_identity")?
        .filter(|s| !s.trim().is_empty())
        .map(Path::new))
}

/// Whether the file at `path` begins with the age header.
pub(super) fn is_age(path: &Path) -> std::io::Result<bool> {
    let mut head = [0u8; AGE_HEADER.len()];
    let mut file = std::fs::File::open(path)?;
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got == head.len() && head == AGE_HEADER)
}

/// Decrypts the stored bytes of an encrypted snapshot in memory with the key file `identity`
/// and checks the plaintext's etcd sha256 trailer; the plaintext is returned, never written.
pub(super) fn decrypt_snapshot(stored: &[u8], identity: &Path) -> Result<Vec<u8>, String> {
    let plain = crate::cluster::backup::stream::decrypt(stored, identity)?;
    crate::cluster::payload::verify_snapshot(&plain)
        .map_err(|e| format!("decrypted, but it is not a valid etcd snapshot: {e}"))?;
    Ok(plain)
}

/// Reads the encrypted snapshot at `path` and [`decrypt_snapshot`]s it.
pub(super) fn decrypt_file(path: &Path, identity: &Path) -> Result<Vec<u8>, String> {
    let stored =
        std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    decrypt_snapshot(&stored, identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn key_file(dir: &Path, name: &str) -> (std::path::PathBuf, age::x25519::Identity) {
        use age::secrecy::ExposeSecret;
        let key = age::x25519::Identity::generate();
        let path = dir.join(name);
        std::fs::write(&path, key.to_string().expose_secret()).unwrap();
        (path, key)
    }

    fn encrypt(plain: &[u8], to: &age::x25519::Identity) -> Vec<u8> {
        use std::io::Write;
        let r = to.to_public();
        let enc =
            age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap();
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out).unwrap();
        w.write_all(plain).unwrap();
        w.finish().unwrap();
        out
    }

    #[test]
    fn an_encrypted_snapshot_decrypts_in_memory_only_with_its_key_and_a_valid_trailer() {
        let dir = tempfile::tempdir().unwrap();
        let (good, key) = key_file(dir.path(), "good.txt");
        let (other, _) = key_file(dir.path(), "other.txt");
        let mut snap = vec![9u8; 1024];
        let sum = Sha256::digest(&snap);
        snap.extend_from_slice(&sum);
        let path = dir.path().join("s.db.age");
        std::fs::write(&path, encrypt(&snap, &key)).unwrap();
        assert!(is_age(&path).unwrap());
        assert_eq!(decrypt_file(&path, &good).unwrap(), snap);
        assert!(
            decrypt_file(&path, &other)
                .unwrap_err()
                .contains("cannot decrypt")
        );
        assert!(decrypt_file(&path, &dir.path().join("missing.txt")).is_err());
        // Decrypts, but the plaintext is no etcd snapshot: refused.
        let n = snap.len();
        snap[n - 1] ^= 1;
        std::fs::write(&path, encrypt(&snap, &key)).unwrap();
        assert!(
            decrypt_file(&path, &good)
                .unwrap_err()
                .contains("not a valid etcd snapshot")
        );
        // Only the files listed are in the directory: nothing was written in plaintext.
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["good.txt", "other.txt", "s.db.age"]);
    }

    #[test]
    fn only_the_age_header_makes_a_file_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"age-encryption.org").unwrap();
        assert!(!is_age(&p).unwrap());
        std::fs::write(&p, b"SIMETCD1 and more bytes than the header").unwrap();
        assert!(!is_age(&p).unwrap());
        std::fs::write(&p, b"age-encryption.org/v1\n-> X25519 ...").unwrap();
        assert!(is_age(&p).unwrap());
    }
}
