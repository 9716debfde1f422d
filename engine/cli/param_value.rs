//! `--param KEY=VALUE`, `--param KEY=@FILE` and `--param KEY=env:VAR`: where a parameter's value
//! comes from, without ever echoing it.
//!
//! A secret typed on the command line is visible in `ps` and shell history, so a value can
//! instead be read from a file (`@FILE`, e.g. one written by a password manager, with a single
//! trailing newline dropped) or from an environment variable (`env:VAR`). `raw:TEXT` passes
//! `TEXT` literally, for a value that itself starts with `@` or `env:`. The argument text may
//! be the secret itself (`--param hunter2` with the key forgotten), so no error here quotes
//! it: errors name only the key, the file or the variable. clap's own value errors quote the
//! value, so this is a [`clap::builder::TypedValueParser`] that builds its errors itself.

use std::ffi::OsStr;
use std::io::Read as _;
use std::path::Path;

use clap::error::ErrorKind;

/// Largest value read from `@FILE`, in bytes.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Why a `--param` argument was refused. The texts never contain the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// No `=`.
    #[error(
        "a `--param` must be KEY=VALUE, KEY=@FILE or KEY=env:VAR (the argument is not shown: it may be a secret)"
    )]
    NoEquals,
    /// `=value` with nothing before it.
    #[error("a `--param` has an empty key (the argument is not shown: it may be a secret)")]
    EmptyKey,
    /// `@FILE` could not be read.
    #[error("cannot read the value of parameter `{key}` from `{path}`: {reason}")]
    File {
        /// The parameter.
        key: String,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// `env:VAR` is unset or not UTF-8.
    #[error(
        "cannot read the value of parameter `{key}` from environment variable `{var}`: {reason}"
    )]
    Env {
        /// The parameter.
        key: String,
        /// The variable.
        var: String,
        /// Why.
        reason: String,
    },
}

/// Parses one `--param` argument into its key and resolved value.
pub fn parse(arg: &str) -> Result<(String, String), ParamError> {
    parse_with(arg, |var| std::env::var(var))
}

/// [`parse`] with an injected environment (for tests).
pub fn parse_with(
    arg: &str,
    env: impl Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<(String, String), ParamError> {
    let (k, v) = arg.split_once('=').ok_or(ParamError::NoEquals)?;
    let key = k.trim();
    if key.is_empty() {
        return Err(ParamError::EmptyKey);
    }
    let key = key.to_string();
    let value = if let Some(path) = v.strip_prefix('@') {
        read_file(Path::new(path)).map_err(|reason| ParamError::File {
            key: key.clone(),
            path: path.to_string(),
            reason,
        })?
    } else if let Some(var) = v.strip_prefix("env:") {
        env(var).map_err(|e| ParamError::Env {
            key: key.clone(),
            var: var.to_string(),
            reason: match e {
                std::env::VarError::NotPresent => "it is not set".into(),
                std::env::VarError::NotUnicode(_) => "it is not valid UTF-8".into(),
            },
        })?
    } else if let Some(raw) = v.strip_prefix("raw:") {
        raw.to_string()
    } else {
        v.to_string()
    };
    Ok((key, value))
}

fn read_file(path: &Path) -> Result<String, String> {
    if path.as_os_str().is_empty() {
        return Err("no file named after `@`".into());
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    if let Some(mode) = loose_mode(&file) {
        // As SSH does for keys, though without refusing: the operator may be mid-incident.
        eprintln!(
            "warning: `{}` is readable by group or others (mode {mode:o}): `chmod 600` it if it holds a secret",
            path.display()
        );
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("it is larger than {MAX_FILE_BYTES} bytes"));
    }
    let mut text = String::from_utf8(bytes).map_err(|_| "it is not valid UTF-8".to_string())?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// The file's permission bits if group or others may read it.
fn loose_mode(file: &std::fs::File) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = file.metadata().ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

/// The clap value parser for `--param`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ParamParser;

impl clap::builder::TypedValueParser for ParamParser {
    type Value = (String, String);

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let text = value.to_str().ok_or_else(|| {
            clap::Error::raw(
                ErrorKind::InvalidUtf8,
                "a `--param` is not valid UTF-8 (the argument is not shown: it may be a secret)\n",
            )
            .with_cmd(cmd)
        })?;
        parse(text).map_err(|e| {
            clap::Error::raw(ErrorKind::ValueValidation, format!("{e}\n")).with_cmd(cmd)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Result<String, std::env::VarError> {
        Err(std::env::VarError::NotPresent)
    }

    #[test]
    fn plain_file_env_and_raw_values() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cr3t\n").unwrap();
        assert_eq!(
            parse_with(&format!("token=@{}", file.display()), no_env).unwrap(),
            ("token".into(), "s3cr3t".into())
        );
        let env = |v: &str| {
            if v == "TOK" {
                Ok("from-env".to_string())
            } else {
                Err(std::env::VarError::NotPresent)
            }
        };
        assert_eq!(
            parse_with("token=env:TOK", env).unwrap(),
            ("token".into(), "from-env".into())
        );
        assert_eq!(
            parse_with("k=raw:@literal", no_env).unwrap(),
            ("k".into(), "@literal".into())
        );
        assert_eq!(
            parse_with(" k =a=b", no_env).unwrap(),
            ("k".into(), "a=b".into())
        );
    }

    #[test]
    fn errors_never_quote_the_argument() {
        let e = parse_with("hunter2", no_env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a `--param` must be KEY=VALUE, KEY=@FILE or KEY=env:VAR (the argument is not shown: it may be a secret)"
        );
        let e = parse_with("=hunter2", no_env).unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
        let e = parse_with("token=env:NOPE_NOT_SET", no_env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read the value of parameter `token` from environment variable `NOPE_NOT_SET`: it is not set"
        );
        let e = parse_with("token=@/nonexistent/x", no_env).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read the value of parameter `token` from `/nonexistent/x`: "),
            "{e}"
        );
    }

    #[test]
    fn group_readable_files_are_noticed() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(
            loose_mode(&std::fs::File::open(&path).unwrap()),
            Some(0o640)
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(loose_mode(&std::fs::File::open(&path).unwrap()), None);
    }

    #[test]
    fn oversized_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big");
        std::fs::write(&file, vec![b'a'; MAX_FILE_BYTES as usize + 1]).unwrap();
        let e = parse_with(&format!("k=@{}", file.display()), no_env).unwrap_err();
        assert!(
            e.to_string().ends_with("it is larger than 65536 bytes"),
            "{e}"
        );
    }
}
