//! Helpers for the encrypted-restore tests (issue 12: backups encrypted with `age_recipient`
//! are usable by `etcd-quorum-recovery` and `full-rebuild`). The tests themselves sit at the
//! end of quorum_recovery.rs and full_rebuild.rs, beside the rigs they drive. The real `age`
//! and `age-keygen` binaries encrypt and make keys: the tests fail, never skip, without them.
//! What every test checks with these: no plaintext etcd snapshot is left in the backup
//! directory, the run directory or the temp directory the runs were given, and the age key's
//! secret never reaches the run directory or the output.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::run_harness::text;

/// A new age key file made by the real `age-keygen` in `dir`: (key file, recipient, secret line).
pub(crate) fn age_key(dir: &Path, name: &str) -> (PathBuf, String, String) {
    let key = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .expect("age-keygen must be installed (apt-get install age)");
    assert!(out.status.success(), "{}", text(&out));
    let content = std::fs::read_to_string(&key).unwrap();
    let recipient = content
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_string))
        .expect("age-keygen wrote no public key");
    let secret = content
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .expect("age-keygen wrote no secret key")
        .to_string();
    (key, recipient, secret)
}

/// `plain` encrypted to `recipient` by the real `age`, through pipes (no plaintext file).
pub(crate) fn age_encrypt(plain: &[u8], recipient: &str) -> Vec<u8> {
    let mut child = Command::new("age")
        .arg("-r")
        .arg(recipient)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("age must be installed (apt-get install age)");
    let mut stdin = child.stdin.take().unwrap();
    let input = plain.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stdout.starts_with(b"age-encryption.org/v1"));
    out.stdout
}

/// Stores `plain` encrypted to `recipient` as `path` (a `.db.age`) with its sidecar, as
/// `etcd-backup` with `age_recipient` would; `ago_h` hours old.
pub(crate) fn store_encrypted(path: &Path, plain: &[u8], recipient: &str, node: &str, ago_h: u64) {
    use sha2::Digest;
    let cipher = age_encrypt(plain, recipient);
    let now = runbook::journal::time::now_ms();
    runbook::cluster::backup::store(
        path,
        &cipher,
        &runbook::cluster::backup::Sidecar {
            node: node.into(),
            revision: None,
            sha256: hex::encode(sha2::Sha256::digest(&cipher)),
            size: cipher.len() as u64,
            talos_version: None,
            cluster_id: None,
            taken_at: runbook::journal::time::rfc3339(now - ago_h * 3_600_000),
            encrypted: true,
            drill: None,
        },
    )
    .unwrap();
}

/// Every regular file under `dir` (none when it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            out.extend(files(&p));
        } else if meta.is_file() {
            out.push(p);
        }
    }
    out
}

/// No file under any of `dirs` holds an etcd snapshot in plaintext: the simulator's snapshot
/// magic, or a key every snapshot of its clusters holds. Returns how many files were read.
pub(crate) fn assert_no_plaintext(dirs: &[&Path]) -> usize {
    let mut n = 0;
    for d in dirs {
        for f in files(d) {
            let bytes = std::fs::read(&f).unwrap();
            n += 1;
            for marker in [&b"SIMETCD1"[..], b"/registry/namespaces/default"] {
                assert!(
                    !bytes.windows(marker.len()).any(|w| w == marker),
                    "{} holds plaintext etcd data ({})",
                    f.display(),
                    String::from_utf8_lossy(marker)
                );
            }
        }
    }
    n
}

/// The age secret is in no file under `dir` and not in `output`.
pub(crate) fn assert_secret_absent(dir: &Path, secret: &str, output: &str) {
    assert!(!output.contains(secret), "the age secret was printed");
    let files = files(dir);
    assert!(!files.is_empty(), "nothing under {}", dir.display());
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the age secret is in {}",
            f.display()
        );
    }
}

/// Replaces the plain snapshot `plain` (with its sidecar, as `etcd-backup` wrote it) by
/// `<plain>.age`, encrypted to `recipient` by the real `age`, its sidecar saying so; the plain
/// file and its sidecar are removed. Returns the encrypted file.
pub(crate) fn encrypt_in_place(plain: &Path, recipient: &str) -> PathBuf {
    use runbook::cluster::backup::{Sidecar, sidecar_path, store};
    use sha2::Digest;
    let side: Sidecar =
        serde_json::from_slice(&std::fs::read(sidecar_path(plain)).unwrap()).unwrap();
    let cipher = age_encrypt(&std::fs::read(plain).unwrap(), recipient);
    let mut name = plain.as_os_str().to_owned();
    name.push(".age");
    let enc = PathBuf::from(name);
    store(
        &enc,
        &cipher,
        &Sidecar {
            sha256: hex::encode(sha2::Sha256::digest(&cipher)),
            size: cipher.len() as u64,
            encrypted: true,
            ..side
        },
    )
    .unwrap();
    std::fs::remove_file(plain).unwrap();
    std::fs::remove_file(sidecar_path(plain)).unwrap();
    enc
}
