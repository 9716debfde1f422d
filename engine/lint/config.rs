//! A Talos machine config as the lints read it: every YAML document of the file, the values
//! (decrypted in memory when the file is SOPS-encrypted) and the positions of the file as
//! stored, so a finding points at the line the operator can open.
//!
//! SOPS keeps every key in clear and replaces each value with `ENC[…]`, and `sops -d`
//! re-indents its output; so values come from the decrypted documents and positions from the
//! encrypted ones, matched by the same path (`machine.install.image`). The decrypted text is
//! held in [`Secret`] and never shown: a syntax error in it is reported without a snippet.
//!
//! Documents are split at lines that are exactly `---` (optionally followed by a comment), the
//! YAML document marker at column 0 (a block scalar's lines are indented, so they cannot be
//! one); each document is then read by the same bounded YAML front end as runbooks.

use std::path::{Path, PathBuf};

use crate::diagnostic::Diagnostics;
use crate::dsl::doc::{Node, Value};
use crate::secret::Secret;
use crate::source::{Format, Source};

/// One step of a path into a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    /// A map key.
    Key(&'a str),
    /// A list index.
    Index(usize),
}

/// A path from the document root, e.g. `[Key("machine"), Key("install"), Key("image")]`.
pub type Path_<'a> = &'a [Seg<'a>];

/// One document with where it starts in the file.
#[derive(Clone)]
struct Doc {
    node: Node,
    source: Source,
    /// Lines of the file before this document's first line.
    line_offset: usize,
}

/// A position in the file as stored (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Pos {
    /// Line.
    pub line: usize,
    /// Column.
    pub column: usize,
}

/// Reading a machine config failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file as stored is not YAML (the diagnostics name the position).
    #[error("`{path}` is not valid YAML")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where.
        diagnostics: Diagnostics,
    },
    /// The decrypted content is not YAML (no snippet: it holds secrets).
    #[error("the decrypted content of `{path}` is not valid YAML: {message}")]
    DecryptedSyntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, without the text.
        message: String,
    },
    /// The decrypted content has a different document structure than the stored file.
    #[error(
        "the decrypted content of `{path}` has {decrypted} document(s) but the file has {stored}"
    )]
    Shape {
        /// The file.
        path: PathBuf,
        /// Documents in the decrypted text.
        decrypted: usize,
        /// Documents in the stored file.
        stored: usize,
    },
    /// SOPS could not decrypt the file.
    #[error(transparent)]
    Sops(#[from] crate::sops::SopsError),
}

/// A machine config file, ready for the lints. Its `Debug` shows no value: they may be secret.
#[derive(Clone)]
pub struct ConfigFile {
    /// The file as given.
    pub path: PathBuf,
    /// Whether it was SOPS-encrypted (values decrypted in memory).
    pub encrypted: bool,
    stored: Vec<Doc>,
    /// Decrypted documents (same order as `stored`); `None` for a plain file.
    values: Option<Vec<Node>>,
}

impl std::fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigFile")
            .field("path", &self.path)
            .field("encrypted", &self.encrypted)
            .field("documents", &self.stored.len())
            .finish_non_exhaustive()
    }
}

/// Splits YAML text into documents: `(first line index, text)`.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_end();
        let marker = t == "---" || t.starts_with("--- #") || t == "...";
        if marker {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 1;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push((start, current));
    docs.into_iter()
        .filter(|(_, d)| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

fn parse_docs(name: &str, text: &str) -> Result<Vec<Doc>, Diagnostics> {
    let mut out = Vec::new();
    let mut diags = Diagnostics::default();
    for (line_offset, piece) in split_documents(text) {
        let source = Source::new(name.to_string(), Format::Yaml, piece);
        match crate::dsl::yaml::parse(&source) {
            Ok(node) => out.push(Doc {
                node,
                source,
                line_offset,
            }),
            Err(d) => {
                for x in d.0 {
                    diags.push(x);
                }
            }
        }
    }
    diags.into_result(out)
}

/// Whether a file is SOPS-encrypted: named `*.sops.yaml`/`*.sops.yml`, or with a top-level
/// `sops:` map in its first document.
pub fn looks_encrypted(path: &Path, text: &str) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    name.ends_with(".sops.yaml")
        || name.ends_with(".sops.yml")
        || text.lines().any(|l| l.trim_end() == "sops:")
}

impl ConfigFile {
    /// Reads a config, decrypting it with the real `sops` when it is encrypted.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let plain = if looks_encrypted(path, &text) {
            Some(crate::sops::decrypt(path)?)
        } else {
            None
        };
        ConfigFile::from_parts(path, &text, plain)
    }

    /// A config from its stored text and, for an encrypted file, its decrypted text.
    pub fn from_parts(
        path: &Path,
        stored_text: &str,
        decrypted: Option<Secret<String>>,
    ) -> Result<ConfigFile, ConfigError> {
        let name = path.display().to_string();
        let stored = parse_docs(&name, stored_text).map_err(|diagnostics| ConfigError::Syntax {
            path: path.to_path_buf(),
            diagnostics,
        })?;
        let values = match &decrypted {
            None => None,
            Some(secret) => {
                let docs = parse_docs(&name, secret.expose()).map_err(|d| {
                    ConfigError::DecryptedSyntax {
                        path: path.to_path_buf(),
                        message: d
                            .0
                            .first()
                            .map(|x| {
                                let (l, c) = x.line_col();
                                format!("line {l}, column {c}: {}", x.message)
                            })
                            .unwrap_or_default(),
                    }
                })?;
                // The stored file's `sops:` metadata is part of each document, not its own.
                if docs.len() != stored.len() {
                    return Err(ConfigError::Shape {
                        path: path.to_path_buf(),
                        decrypted: docs.len(),
                        stored: stored.len(),
                    });
                }
                Some(docs.into_iter().map(|d| d.node).collect())
            }
        };
        Ok(ConfigFile {
            path: path.to_path_buf(),
            encrypted: decrypted.is_some(),
            stored,
            values,
        })
    }

    fn value_docs(&self) -> Vec<&Node> {
        match &self.values {
            Some(v) => v.iter().collect(),
            None => self.stored.iter().map(|d| &d.node).collect(),
        }
    }

    /// The index of the `version: v1alpha1` document.
    fn machine_doc(&self) -> Option<usize> {
        self.value_docs().iter().position(|d| {
            lookup(d, &[Seg::Key("version")]).and_then(Node::as_str) == Some("v1alpha1")
        })
    }

    /// Whether the file has a v1alpha1 document at all.
    pub fn has_machine_doc(&self) -> bool {
        self.machine_doc().is_some()
    }

    /// A value of the v1alpha1 document.
    pub fn get(&self, path: Path_<'_>) -> Option<&Node> {
        let i = self.machine_doc()?;
        lookup(self.value_docs()[i], path)
    }

    /// A string value of the v1alpha1 document.
    pub fn str(&self, path: Path_<'_>) -> Option<&str> {
        self.get(path).and_then(Node::as_str)
    }

    /// Where `path` is in the stored file (the deepest part of it that exists there).
    pub fn pos(&self, path: Path_<'_>) -> Pos {
        let Some(i) = self.machine_doc() else {
            return Pos { line: 1, column: 1 };
        };
        let doc = &self.stored[i];
        let mut best = &doc.node;
        for n in 0..=path.len() {
            match lookup(&doc.node, &path[..n]) {
                Some(node) => best = node,
                None => break,
            }
        }
        let (line, column) = doc.source.line_col(best.span.offset);
        Pos {
            line: line + doc.line_offset,
            column,
        }
    }
}

/// Follows `path` from `node`. A key's node is its value.
pub fn lookup<'a>(node: &'a Node, path: Path_<'_>) -> Option<&'a Node> {
    let mut cur = node;
    for seg in path {
        cur = match (seg, &cur.value) {
            (Seg::Key(k), Value::Map(entries)) => {
                &entries.iter().find(|(key, _)| key.value == *k)?.1
            }
            (Seg::Index(i), Value::Seq(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_DOCS: &str = "# header comment\nversion: v1alpha1\nmachine:\n  type: controlplane\n  install:\n    disk: /dev/sda\n---\napiVersion: v1alpha1\nkind: ExtensionServiceConfig\n";

    #[test]
    fn finds_values_and_positions_across_documents() {
        let c = ConfigFile::from_parts(Path::new("c.yaml"), TWO_DOCS, None).unwrap();
        let disk = [Seg::Key("machine"), Seg::Key("install"), Seg::Key("disk")];
        assert_eq!(c.str(&disk), Some("/dev/sda"));
        assert_eq!(
            c.pos(&disk),
            Pos {
                line: 6,
                column: 11
            }
        );
        // A path that does not exist points at its deepest existing part.
        let image = [Seg::Key("machine"), Seg::Key("install"), Seg::Key("image")];
        assert_eq!(c.get(&image), None);
        assert_eq!(c.pos(&image), Pos { line: 6, column: 5 });
    }

    #[test]
    fn encrypted_values_with_stored_positions() {
        let stored =
            "version: ENC[x]\nmachine:\n    install:\n        disk: ENC[y]\nsops:\n    age: []\n";
        let plain = "version: v1alpha1\nmachine:\n  install:\n    disk: /dev/sdc\n";
        let c = ConfigFile::from_parts(
            Path::new("c.sops.yaml"),
            stored,
            Some(Secret::new(plain.to_string())),
        )
        .unwrap();
        let disk = [Seg::Key("machine"), Seg::Key("install"), Seg::Key("disk")];
        assert_eq!(c.str(&disk), Some("/dev/sdc"));
        assert_eq!(
            c.pos(&disk),
            Pos {
                line: 4,
                column: 15
            }
        );
    }

    #[test]
    fn decrypted_syntax_errors_show_no_text() {
        let e = ConfigFile::from_parts(
            Path::new("c.sops.yaml"),
            "a: ENC[x]\n",
            Some(Secret::new("a: [hunter2\n".to_string())),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("the decrypted content of `c.sops.yaml` is not valid YAML"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn splits_on_column_zero_markers_only() {
        let docs = split_documents("a: |\n  ---\n  x\n---\nb: 1\n--- # two\nc: 2\n");
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[1].0, 4);
        assert_eq!(docs[2].0, 6);
    }
}
